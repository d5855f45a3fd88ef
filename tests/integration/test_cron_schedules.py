"""Cron schedules under a clock the test moves: exactly one run per tick however
many schedulers are up, and catch-up (or not) of ticks missed while none was.

The apps share a fake clock (``Kernos(clock=...)``, also the store's clock) that
only the test moves, a minute at a time. The scheduler sleeps in real time, at
most ``MAX_SLEEP`` seconds before it looks at the clock again; the tests set
that to 10 ms, so a tick is noticed at once. Every wait below is for a logical
condition (a tick attempted, a run created); timeouts only bound a failing test.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import pytest

import kernos
from kernos.records import Schedule
from kernos.runtime import _scheduler
from kernos.store import NewRun

START = datetime(2026, 3, 2, 12, 0, 30, tzinfo=UTC).timestamp()  # half a minute past 12:00
MINUTE = 60.0


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat()


def at(hh_mm: str) -> float:
    """A tick on the day of ``START``: ``at("12:05")``."""
    hour, minute = map(int, hh_mm.split(":"))
    return datetime(2026, 3, 2, hour, minute, tzinfo=UTC).timestamp()


class FakeClock:
    """Seconds since the epoch, moved only by :meth:`advance`."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@kernos.workflow(name="ct_tick")
async def tick_wf(tick: str) -> str:
    return tick


@pytest.fixture(autouse=True)
def fast_scheduler(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Look at the clock every 10 ms, and keep this module's schedules to itself
    (they are global: every app opened in this process would run them)."""
    monkeypatch.setattr(_scheduler, "MAX_SLEEP", 0.01)
    before = dict(_scheduler.schedules)
    _scheduler.schedules.clear()
    yield
    _scheduler.schedules.clear()
    _scheduler.schedules.update(before)


def declare(name: str, cron: str = "* * * * *", **options: Any) -> None:
    kernos.schedule(cron, name=name, queue="ct_queue", **options)(tick_wf)


class Spy:
    """Records each scheduler's tick claims (``advance_schedule``) and start-ups."""

    def __init__(self) -> None:
        self.attempts: dict[str, list[tuple[str, float, bool]]] = defaultdict(list)
        self.started: dict[str, set[str]] = defaultdict(set)

    def watch(self, label: str, app: kernos.Kernos) -> None:
        store = app.store
        advance, upsert = store.advance_schedule, store.upsert_schedule

        async def advance_schedule(name: str, tick: float, run: NewRun | None) -> bool:
            won = await advance(name, tick, run)
            self.attempts[label].append((name, tick, won))
            return won

        async def upsert_schedule(schedule: Schedule) -> Schedule:
            stored = await upsert(schedule)
            self.started[label].add(schedule.name)
            return stored

        store.advance_schedule = advance_schedule  # type: ignore[method-assign]
        store.upsert_schedule = upsert_schedule  # type: ignore[method-assign]

    def tried(self, label: str, name: str) -> list[float]:
        return [tick for n, tick, _ in self.attempts[label] if n == name]

    def won(self, name: str) -> list[float]:
        return sorted(
            tick for found in self.attempts.values() for n, tick, won in found if n == name and won
        )


async def until(predicate: Callable[[], Awaitable[bool] | bool], what: str) -> None:
    loop = asyncio.get_running_loop()
    give_up = loop.time() + 20
    while True:
        result = predicate()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if loop.time() > give_up:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


@asynccontextmanager
async def scheduler(
    url: str, clock: FakeClock, spy: Spy, label: str
) -> AsyncIterator[kernos.Kernos]:
    """An app whose scheduler runs, watched by ``spy``, up once this yields."""
    # A long lease: the fake clock's minutes must not expire the claims of runs.
    app = kernos.Kernos(url, poll_interval=0.02, lease=24 * 3600, clock=clock)
    spy.watch(label, app)
    await app.open()
    try:
        await until(lambda: spy.started[label] == set(_scheduler.schedules), f"{label} to start")
        yield app
    finally:
        await app.close()


async def tick_runs(app: kernos.Kernos, name: str) -> dict[str, Any]:
    """The runs of schedule ``name``, by id."""
    runs = await app.list_runs(workflow="ct_tick", limit=1000)
    return {r.run_id: r for r in runs if r.run_id.startswith(f"{name}@")}


async def test_two_schedulers_start_exactly_one_run_per_tick(store_url: str) -> None:
    declare("ct_minutely")
    clock, spy = FakeClock(START), Spy()
    ticks = [at(f"12:0{i}") for i in range(1, 7)]
    async with (
        scheduler(store_url, clock, spy, "a") as app,
        scheduler(store_url, clock, spy, "b"),
    ):
        for tick in ticks:
            clock.advance(MINUTE)

            def both_tried(tick: float = tick) -> bool:
                return all(tick in spy.tried(label, "ct_minutely") for label in "ab")

            await until(both_tried, f"both schedulers to try {iso(tick)}")
        await until(lambda: len(spy.won("ct_minutely")) == len(ticks), "the last run")
        runs = await tick_runs(app, "ct_minutely")
        outputs = {run_id: await app.handle(run_id).result(timeout=20) for run_id in sorted(runs)}
        (stored,) = [s for s in await app.store.list_schedules() if s.name == "ct_minutely"]
    # Each scheduler tried every tick once, in order; exactly one of them won each.
    assert spy.tried("a", "ct_minutely") == spy.tried("b", "ct_minutely") == ticks
    assert spy.won("ct_minutely") == ticks
    assert outputs == {f"ct_minutely@{iso(t)}": iso(t) for t in ticks}
    assert stored.last_tick == ticks[-1]


async def test_missed_ticks_caught_up_or_skipped_after_downtime(store_url: str) -> None:
    declare("ct_catch_up", catch_up=True)
    declare("ct_skip")
    clock, spy = FakeClock(START), Spy()
    async with scheduler(store_url, clock, spy, "before") as app:
        clock.advance(MINUTE)  # 12:01:30
        await until(
            lambda: spy.won("ct_catch_up") == spy.won("ct_skip") == [at("12:01")],
            "the 12:01 tick",
        )
    clock.advance(5 * MINUTE)  # down from 12:01:30 to 12:06:30: 12:02 to 12:06 missed
    async with scheduler(store_url, clock, spy, "after") as app:
        missed = [at(f"12:0{i}") for i in range(2, 7)]
        await until(lambda: spy.won("ct_catch_up") == [at("12:01"), *missed], "the catch-up")
        assert spy.tried("after", "ct_catch_up") == missed  # oldest first
        assert spy.tried("after", "ct_skip") == []
        clock.advance(MINUTE)  # 12:07:30
        await until(lambda: at("12:07") in spy.won("ct_skip"), "12:07 for ct_skip")
        await until(lambda: at("12:07") in spy.won("ct_catch_up"), "12:07 for ct_catch_up")
        catch_up = await tick_runs(app, "ct_catch_up")
        skip = await tick_runs(app, "ct_skip")
    assert sorted(catch_up) == [f"ct_catch_up@{iso(at(f'12:0{i}'))}" for i in range(1, 8)]
    assert sorted(skip) == [f"ct_skip@{iso(at('12:01'))}", f"ct_skip@{iso(at('12:07'))}"]


async def test_catch_up_from_a_stored_last_tick_is_capped(
    store_url: str, store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_scheduler, "MAX_CATCH_UP", 3)
    declare("ct_capped", catch_up=True)
    declare("ct_not_caught")
    for name in ("ct_capped", "ct_not_caught"):
        # Declared by an earlier deployment that last ticked at 11:50.
        await store.upsert_schedule(
            Schedule(
                name=name, cron="* * * * *", workflow="ct_tick", queue="ct_queue", last_tick=None
            )
        )
        assert await store.advance_schedule(name, at("11:50"), None)
    clock, spy = FakeClock(START), Spy()
    async with scheduler(store_url, clock, spy, "app") as app:
        newest = [at("11:58"), at("11:59"), at("12:00")]  # 10 missed; the newest 3 run
        await until(lambda: spy.won("ct_capped") == newest, "the capped catch-up")
        clock.advance(MINUTE)
        await until(lambda: at("12:01") in spy.won("ct_not_caught"), "12:01")
        await until(lambda: at("12:01") in spy.won("ct_capped"), "12:01")
        capped = await tick_runs(app, "ct_capped")
        not_caught = await tick_runs(app, "ct_not_caught")
    assert sorted(capped) == [f"ct_capped@{iso(t)}" for t in [*newest, at("12:01")]]
    assert list(not_caught) == [f"ct_not_caught@{iso(at('12:01'))}"]
    assert all(r.queue == "ct_queue" for r in [*capped.values(), *not_caught.values()])


async def test_schedule_in_a_time_zone_across_dst(store_url: str) -> None:
    # 09:00 in New York is 14:00 UTC in winter (EST) and 13:00 UTC from 8 March
    # 2026 (EDT). The clock jumps three days while the scheduler runs: every tick
    # in between fires (catch_up is about ticks missed while no scheduler ran).
    declare("ct_new_york", "0 9 * * *", tz="America/New_York")

    def utc(day: int, hour: int, minute: int = 0, second: int = 0) -> float:
        return datetime(2026, 3, day, hour, minute, second, tzinfo=UTC).timestamp()

    clock, spy = FakeClock(utc(6, 13, 59, 30)), Spy()
    async with scheduler(store_url, clock, spy, "app") as app:
        clock.advance(MINUTE)
        await until(lambda: spy.won("ct_new_york") == [utc(6, 14)], "the winter tick")
        clock.now = utc(9, 13, 0, 30)
        expected = [utc(6, 14), utc(7, 14), utc(8, 13), utc(9, 13)]
        await until(lambda: spy.won("ct_new_york") == expected, "the ticks after the jump")
        runs = await tick_runs(app, "ct_new_york")
        outputs = sorted([await app.handle(r).result(timeout=20) for r in runs])
    assert spy.tried("app", "ct_new_york") == expected
    assert outputs == [
        "2026-03-06T14:00:00+00:00",
        "2026-03-07T14:00:00+00:00",
        "2026-03-08T13:00:00+00:00",
        "2026-03-09T13:00:00+00:00",
    ]
    assert {r.queue for r in runs.values()} == {"ct_queue"}
