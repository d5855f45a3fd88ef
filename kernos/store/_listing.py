"""Reading many runs and events at once: filtered run lists, counts, queue depths
and the event stream, for dashboards, the API and the CLI."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import orjson

from kernos.records import Event, QueueSpec, QueueStats, Run, RunUsage
from kernos.store._base import RunFilter
from kernos.store._tx import Transacting, Tx

__all__ = ["Listing", "like_pattern", "run_filter_params"]

_LAST_ID = 2**63 - 1  # above any event id: the upper bound when none is given


def like_pattern(text: str) -> str:
    """A LIKE pattern matching ``text`` anywhere, its wildcards taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def run_filter_params(query: RunFilter, *, cursor: bool) -> dict[str, Any]:
    """The parameters of the run-listing queries for ``query``.

    Both time bounds are always set, infinite when open: the creation-time
    upper bound and the page cursor merge into one ``(created_at, run_id)``
    bound, so the listing is one index range, newest first.
    """
    upper: tuple[float, str] = (math.inf, "")
    if query.created_before is not None:
        upper = (query.created_before, "")  # no id sorts below "": strictly before
    if cursor and query.before is not None:
        created_at, run_id = query.before
        upper = min(upper, (float(created_at), str(run_id)))
    return {
        "tenant": query.tenant,
        "before_created": upper[0],
        "before_run_id": upper[1],
        "created_after": query.created_after if query.created_after is not None else -math.inf,
        "status": query.status,
        "workflow": query.workflow,
        "parent_id": query.parent_id,
        "forked_from": query.forked_from,
        "queue": query.queue,
        "finished_before": query.finished_before,
        "text": like_pattern(query.text) if query.text is not None else None,
        "limit": query.limit,
    }


class Listing(Transacting):
    """The listing half of :class:`~kernos.store.Store`, for the SQL stores."""

    async def list_runs(self, query: RunFilter) -> list[Run]:
        """Return runs matching ``query``, newest first."""
        params = run_filter_params(query, cursor=True)
        name = "list_runs" if query.tenant is None else "list_tenant_runs"

        def go(tx: Tx) -> list[Run]:
            tx.store._plan_for_values(tx)
            return [Run.from_row(row, tx.decode) for row in tx.all(name, params)]

        return await self._call(go, write=False)

    async def count_matching(self, query: RunFilter) -> int:
        """Return how many runs match ``query`` (its ``limit`` and ``before`` ignored)."""
        params = run_filter_params(query, cursor=False)
        name = "count_matching_runs" if query.tenant is None else "count_tenant_matching_runs"

        def go(tx: Tx) -> int:
            tx.store._plan_for_values(tx)
            return int(tx.one(name, params)["n"])

        return await self._call(go, write=False)

    async def count_runs(self, tenant: str | None = None) -> dict[str, int]:
        """Return the number of runs per status (of one tenant, or of all)."""
        return await self._call(
            lambda tx: {
                row["status"]: row["n"]
                for row in tx.all("count_runs_by_status", {"tenant": tenant})
            },
            write=False,
        )

    async def list_queues(self, tenant: str | None = None) -> list[QueueStats]:
        """Queues with limits or unfinished runs, with counts per state (of one tenant)."""

        def go(tx: Tx) -> list[QueueStats]:
            specs = {row["name"]: QueueSpec.from_row(row) for row in tx.all("list_queue_specs", {})}
            counts: dict[str, dict[str, int]] = {name: {} for name in specs}
            for row in tx.all("queue_depths", {"tenant": tenant}):
                counts.setdefault(row["queue"], {})[row["status"]] = row["n"]
            return [
                QueueStats(name=name, spec=specs.get(name), **by_status)
                for name, by_status in sorted(counts.items())
            ]

        return await self._call(go, write=False)

    async def usage_of_runs(self, run_ids: Sequence[str]) -> dict[str, RunUsage]:
        """Model calls, tokens and cost of each run (runs without calls are absent)."""
        if not run_ids:
            return {}
        params = {"run_ids": orjson.dumps(list(run_ids)).decode()}
        return await self._call(
            lambda tx: {
                row["run_id"]: RunUsage.from_row(row) for row in tx.all("usage_of_runs", params)
            },
            write=False,
        )

    async def run_activity(
        self, tenant: str, since: float, bucket: float
    ) -> list[tuple[float, str, int]]:
        """``(bucket start, status, runs)`` of the tenant's runs created since ``since``."""
        params = {"tenant": tenant, "since": since, "bucket": bucket}
        return await self._call(
            lambda tx: [
                (float(r["bucket"]), r["status"], int(r["n"]))
                for r in tx.all("runs_per_bucket", params)
            ],
            write=False,
        )

    async def run_durations(
        self, tenant: str, since: float, bucket: float
    ) -> list[tuple[float, float]]:
        """``(bucket start, seconds)`` of each finished run created since ``since``."""
        params = {"tenant": tenant, "since": since, "bucket": bucket}
        return await self._call(
            lambda tx: [
                (float(r["bucket"]), float(r["duration"])) for r in tx.all("run_durations", params)
            ],
            write=False,
        )

    async def usage_over_time(
        self, tenant: str, since: float, bucket: float
    ) -> list[tuple[float, int, float | None]]:
        """``(bucket start, tokens, cost)`` of model calls in runs created since ``since``."""
        params = {"tenant": tenant, "since": since, "bucket": bucket}
        return await self._call(
            lambda tx: [
                (
                    float(r["bucket"]),
                    int(r["tokens"]),
                    float(r["cost"]) if r["cost"] is not None else None,
                )
                for r in tx.all("usage_per_bucket", params)
            ],
            write=False,
        )

    async def queue_throughput(
        self, tenant: str, since: float, bucket: float
    ) -> list[tuple[str, float, int]]:
        """``(queue, bucket start, runs)`` of the tenant's runs finished since ``since``."""
        params = {"tenant": tenant, "since": since, "bucket": bucket}
        return await self._call(
            lambda tx: [
                (r["queue"], float(r["bucket"]), int(r["n"]))
                for r in tx.all("queue_throughput", params)
            ],
            write=False,
        )

    async def stream_events(
        self,
        *,
        after: int,
        limit: int = 1000,
        until: int | None = None,
        tenant: str | None = None,
        run_id: str | None = None,
        workflow: str | None = None,
        kinds: Sequence[str] | None = None,
    ) -> list[Event]:
        """Return events in ``(after, until]``, oldest first, with tenant and workflow."""
        params = {
            "after": after,
            "until": until if until is not None else _LAST_ID,
            "tenant": tenant,
            "run_id": run_id,
            "workflow": workflow,
            "kinds": orjson.dumps(list(kinds)).decode() if kinds is not None else None,
            "limit": limit,
        }

        # One plan fits every parameter value here (a primary-key range walked
        # in order), so no per-call planning: this is polled many times a second.
        return await self._call(
            lambda tx: [Event.from_row(row, tx.decode) for row in tx.all("stream_events", params)],
            write=False,
        )

    async def last_event_id(self) -> int:
        """The highest event id written so far (0 when there is none)."""
        return await self._call(lambda tx: int(tx.one("last_event_id", {})["n"]), write=False)
