"""Cron schedules: ``@kernos.schedule`` and the loop that starts one run per tick.

Every worker that claims work also schedules. Each tick is claimed in the store
with a compare-and-set on the schedule's last tick, together with enqueueing
the tick's run (whose id, ``<schedule>@<tick>``, is unique as well), so each
tick starts exactly one run however many schedulers are up.

Missed ticks (no scheduler was up): with ``catch_up=False`` (the default) they
are skipped and the schedule resumes at the next tick after start-up; with
``catch_up=True`` every missed tick since the last one is enqueued on start-up,
oldest first, up to ``MAX_CATCH_UP`` of them (older ones are skipped).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import TYPE_CHECKING, Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from kernos import errors
from kernos.records import Schedule
from kernos.runtime._cron import CronExpression
from kernos.runtime._definitions import Workflow

if TYPE_CHECKING:
    from kernos.runtime._engine import Engine

__all__ = ["ScheduleSpec", "run_schedules", "schedule", "schedules"]

logger = logging.getLogger(__name__)
W = TypeVar("W", bound=Workflow[Any, Any])
MAX_CATCH_UP = 1000
MAX_SLEEP = 30.0  # re-check at least this often (clock jumps, new declarations)


@dataclass(frozen=True, kw_only=True, slots=True)
class ScheduleSpec:
    """A schedule declared in this process."""

    name: str
    cron: CronExpression
    workflow: Workflow[Any, Any]
    queue: str
    catch_up: bool
    tz: tzinfo


schedules: dict[str, ScheduleSpec] = {}
"""Schedules declared in this process, by name."""


def schedule(
    cron: str,
    *,
    name: str | None = None,
    queue: str = "default",
    catch_up: bool = False,
    tz: str = "UTC",
) -> Callable[[W], W]:
    """Start a run of the decorated workflow at every tick of a cron expression.

    Put it above ``@kernos.workflow``. The workflow receives one argument: the
    tick's time as an ISO-8601 string (in UTC)::

        @kernos.schedule("*/5 * * * *")
        @kernos.workflow
        async def poll_inbox(tick: str) -> None: ...

    Args:
        cron: five fields (minute hour day month weekday) or a macro like ``@hourly``.
        name: the schedule's name (default: the workflow's name).
        queue: the queue its runs go to.
        catch_up: enqueue ticks missed while no scheduler ran (default: skip them).
        tz: the time zone the expression is read in.

    Raises:
        ConfigError: a malformed expression or unknown time zone.
        RegistrationError: not applied to a workflow.
    """
    expression = CronExpression.parse(cron)
    try:
        zone: tzinfo = UTC if tz == "UTC" else ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise errors.ConfigError(f"unknown time zone {tz!r} for schedule", tz=tz) from exc

    def decorate(wf: W) -> W:
        if not isinstance(wf, Workflow):
            raise errors.RegistrationError(
                "@kernos.schedule applies to a workflow: put it above @kernos.workflow"
            )
        key = name or wf.name
        schedules[key] = ScheduleSpec(
            name=key, cron=expression, workflow=wf, queue=queue, catch_up=catch_up, tz=zone
        )
        return wf

    return decorate


def tick_id(name: str, tick: float) -> str:
    """The id of the run a schedule starts at ``tick``."""
    return f"{name}@{datetime.fromtimestamp(tick, UTC).isoformat()}"


async def run_schedules(engine: Engine, specs: dict[str, ScheduleSpec]) -> None:
    """Start each schedule's runs at their ticks, forever."""
    now = engine.clock()
    cursor: dict[str, float] = {}
    for spec in specs.values():
        stored = await engine.store.upsert_schedule(
            Schedule(
                name=spec.name,
                cron=str(spec.cron),
                workflow=spec.workflow.name,
                queue=spec.queue,
                last_tick=None,
            )
        )
        last = stored.last_tick
        if spec.catch_up and last is not None:
            missed = spec.cron.ticks_between(last, now, spec.tz)
            if len(missed) > MAX_CATCH_UP:
                last = missed[-MAX_CATCH_UP - 1]
            cursor[spec.name] = last
        else:
            cursor[spec.name] = max(last or now, now)
    while True:
        name, tick = min(
            ((n, specs[n].cron.next_after(t, specs[n].tz)) for n, t in cursor.items()),
            key=lambda item: item[1],
        )
        wait = tick - engine.clock()
        if wait > 0:
            await asyncio.sleep(min(wait, MAX_SLEEP))
            continue
        await _fire(engine, specs[name], tick)
        cursor[name] = tick


async def _fire(engine: Engine, spec: ScheduleSpec, tick: float) -> None:
    when = datetime.fromtimestamp(tick, UTC).isoformat()
    run = engine.app.new_queued_run(
        spec.queue, spec.workflow, (when,), {}, run_id=tick_id(spec.name, tick)
    )
    try:
        if await engine.store.advance_schedule(spec.name, tick, run):
            logger.info(
                "schedule fired", extra={"action": "cron_tick", "schedule": spec.name, "tick": when}
            )
            engine.poke()
    except errors.StoreError as exc:
        logger.warning(
            "schedule tick failed",
            extra={"action": "cron_failed", "schedule": spec.name, "error": str(exc)},
        )
