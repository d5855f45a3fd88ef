"""Figures over time for a tenant: runs per hour by status, duration percentiles,
tokens and cost per day, and each queue's throughput."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from kernos.control._principal import Principal
from kernos.records import Role, RunStatus
from kernos.store import Store

__all__ = ["Charts", "Insights", "percentile"]

HOUR = 3600.0
DAY = 86400.0


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100) of ascending values, by nearest rank; None if empty."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def _buckets(now: float, size: float, count: int) -> list[float]:
    last = math.floor(now / size) * size
    return [last - size * (count - 1 - i) for i in range(count)]


@dataclass(frozen=True, slots=True)
class Charts:
    """A tenant's recent activity, one value per bucket (oldest first)."""

    hours: list[float]  # start of each hour
    runs: dict[str, list[int]]  # status -> runs created in each hour
    p50: list[float | None]  # median seconds of the runs created in each hour that finished
    p95: list[float | None]
    days: list[float]  # start of each day (UTC)
    tokens: list[int]  # tokens of model calls made each day
    cost: list[float | None]  # their cost (None: no call with a known price)
    finished: int = 0  # runs with a duration in the window
    totals: dict[str, int] = field(default_factory=dict)  # status -> runs in the window


class Insights:
    """Tenant-scoped figures over time, for the dashboard's charts (and anyone else)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def charts(
        self, principal: Principal, *, hours: int = 24, days: int = 14, now: float | None = None
    ) -> Charts:
        """Runs per hour by status and p50/p95 duration over ``hours``; tokens and cost per
        day over ``days`` (of runs created in that window)."""
        principal.require(Role.VIEWER, "reading run statistics")
        now = time.time() if now is None else now
        tenant = principal.tenant_id
        hour_starts = _buckets(now, HOUR, hours)
        day_starts = _buckets(now, DAY, days)
        index = {start: i for i, start in enumerate(hour_starts)}
        runs = {status.value: [0] * hours for status in RunStatus}
        for start, status, n in await self.store.run_activity(tenant, hour_starts[0], HOUR):
            if start in index and status in runs:
                runs[status][index[start]] += n
        spans: list[list[float]] = [[] for _ in hour_starts]
        for start, seconds in await self.store.run_durations(tenant, hour_starts[0], HOUR):
            if start in index:
                spans[index[start]].append(max(seconds, 0.0))
        for values in spans:
            values.sort()
        day_index = {start: i for i, start in enumerate(day_starts)}
        tokens = [0] * days
        cost: list[float | None] = [None] * days
        for start, spent, price in await self.store.usage_over_time(tenant, day_starts[0], DAY):
            if start in day_index:
                i = day_index[start]
                tokens[i] += spent
                if price is not None:
                    cost[i] = (cost[i] or 0.0) + price
        return Charts(
            hours=hour_starts,
            runs=runs,
            p50=[percentile(v, 50) for v in spans],
            p95=[percentile(v, 95) for v in spans],
            days=day_starts,
            tokens=tokens,
            cost=cost,
            finished=sum(len(v) for v in spans),
            totals={status: sum(counts) for status, counts in runs.items()},
        )

    async def throughput(
        self, principal: Principal, *, hours: int = 24, now: float | None = None
    ) -> dict[str, list[int]]:
        """Runs finished per hour over ``hours`` for each queue (oldest hour first)."""
        principal.require(Role.VIEWER, "reading queues")
        now = time.time() if now is None else now
        starts = _buckets(now, HOUR, hours)
        index = {start: i for i, start in enumerate(starts)}
        found: dict[str, list[int]] = {}
        rows = await self.store.queue_throughput(principal.tenant_id, starts[0], HOUR)
        for queue, start, n in rows:
            if start in index:
                found.setdefault(queue, [0] * hours)[index[start]] += n
        return found
