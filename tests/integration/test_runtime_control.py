"""Controlling runs: cancel, pause at a step boundary, resume. Every test runs on
SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
from runtime_support import make_gate, new_app, run_status, until

import kernos
from kernos import errors
from kernos.records import EntryStatus, RunStatus

CALLS: Counter[str] = Counter()
GATES: dict[str, asyncio.Event] = {}
gate = make_gate(GATES)


@pytest.fixture(autouse=True)
def _reset() -> None:
    CALLS.clear()
    GATES.clear()


@pytest.fixture
async def app(store_url: str) -> AsyncIterator[kernos.Kernos]:
    async with new_app(store_url) as app:
        yield app


@kernos.step
async def count(key: str) -> str:
    CALLS[key] += 1
    return key


@kernos.step
async def gated(key: str) -> str:
    CALLS[key] += 1
    try:
        await gate(key).wait()
    except Exception:  # a step's broad except must not swallow cancellation
        CALLS[f"{key}:swallowed"] += 1
        return "swallowed"
    except BaseException:
        CALLS[f"{key}:interrupted"] += 1
        raise
    return key


@kernos.workflow(name="rt_control.three")
async def three_steps() -> list[str]:
    return [await count("a"), await gated("b"), await count("c")]


@kernos.workflow(name="rt_control.receiver")
async def receiver() -> Any:
    first = await count("a")
    return [first, await kernos.recv("t")]


# -- cancel -------------------------------------------------------------------------


async def test_cancel_interrupts_a_running_run(app: kernos.Kernos) -> None:
    handle = await app.start(three_steps, run_id="c1")
    await until(lambda: CALLS["b"] == 1)
    assert await handle.cancel("no longer needed") == ["c1"]
    with pytest.raises(errors.RunCancelledError) as info:
        await handle.result(timeout=10)
    assert info.value.run_id == "c1"
    assert isinstance(info.value, errors.RunFailedError)
    await until(lambda: CALLS["b:interrupted"] == 1)
    assert CALLS["b:swallowed"] == 0
    assert CALLS["c"] == 0
    run = await app.get_run("c1")
    assert run.status is RunStatus.CANCELLED
    assert run.error["code"] == "cancelled"
    assert run.error["message"] == "no longer needed"
    assert run.owner is None
    assert [e.name for e in await app.journal("c1")] == ["count"]
    assert "run.cancelled" in [e.kind for e in await app.events("c1")]
    assert not app.engine.is_local("c1")


async def test_cancel_a_waiting_run(app: kernos.Kernos) -> None:
    handle = await app.start(receiver, run_id="c2")
    await run_status(app, "c2", RunStatus.WAITING)
    assert await app.cancel("c2") == ["c2"]
    with pytest.raises(errors.RunCancelledError):
        await handle.result(timeout=10)
    with pytest.raises(errors.RunStateError):
        await app.send("c2", "late", topic="t")


async def test_cancelled_run_is_never_claimed_again(store_url: str) -> None:
    async with new_app(store_url) as app_a:
        await app_a.start(three_steps, run_id="c3")
        await until(lambda: CALLS["b"] == 1)
        await app_a.cancel("c3")
    async with new_app(store_url) as app_b:
        gate("b").set()
        await asyncio.sleep(0.3)  # several claim rounds
        assert (await app_b.get_run("c3")).status is RunStatus.CANCELLED
        assert CALLS["b"] == 1


async def test_cancel_a_finished_run_changes_nothing(app: kernos.Kernos) -> None:
    gate("b").set()
    handle = await app.start(three_steps, run_id="c4")
    await handle.result(timeout=10)
    assert await app.cancel("c4") == []
    assert (await app.get_run("c4")).status is RunStatus.SUCCEEDED
    assert await handle.result(timeout=10) == ["a", "b", "c"]
    with pytest.raises(errors.RunNotFoundError):
        await app.cancel("nope")


async def test_cancel_from_another_process_stops_the_run(store_url: str) -> None:
    async with new_app(store_url) as runner, new_app(store_url, worker=False) as other:
        handle = await runner.start(three_steps, run_id="c5")
        await until(lambda: CALLS["b"] == 1)
        assert await other.cancel("c5") == ["c5"]
        gate("b").set()  # the step ends; its journal write is refused by the fence
        with pytest.raises(errors.RunCancelledError):
            await handle.result(timeout=10)
        await until(lambda: not runner.engine.is_local("c5"))
        assert CALLS["c"] == 0
        assert [e.name for e in await runner.journal("c5")] == ["count"]


# -- pause and resume ------------------------------------------------------------------


async def test_pause_stops_at_the_next_step_boundary_and_resume_finishes(
    app: kernos.Kernos,
) -> None:
    handle = await app.start(three_steps, run_id="p1")
    await until(lambda: CALLS["b"] == 1)
    requested = await app.pause("p1")
    assert requested.status is RunStatus.RUNNING
    assert requested.pause_requested
    gate("b").set()
    paused = await run_status(app, "p1", RunStatus.PAUSED)
    assert paused.owner is None
    assert not paused.pause_requested
    assert CALLS["c"] == 0
    journal = await app.journal("p1")
    assert [(e.name, e.status) for e in journal] == [
        ("count", EntryStatus.OK),
        ("gated", EntryStatus.OK),
    ]
    await asyncio.sleep(0.2)  # a paused run is not claimed
    assert (await app.get_run("p1")).status is RunStatus.PAUSED
    resumed = await app.resume("p1")
    assert resumed.status in (RunStatus.PENDING, RunStatus.RUNNING, RunStatus.SUCCEEDED)
    assert await handle.result(timeout=10) == ["a", "b", "c"]
    assert CALLS == {"a": 1, "b": 1, "c": 1}
    kinds = [e.kind for e in await app.events("p1")]
    assert kinds.count("run.paused") == 1
    assert kinds.count("run.resumed") == 1


async def test_pause_an_idle_run_at_once(app: kernos.Kernos) -> None:
    handle = await app.start(receiver, run_id="p2")
    await run_status(app, "p2", RunStatus.WAITING)
    paused = await app.pause("p2")
    assert paused.status is RunStatus.PAUSED
    await app.send("p2", "hello", topic="t")  # kept, but does not wake a paused run
    await asyncio.sleep(0.2)
    assert (await app.get_run("p2")).status is RunStatus.PAUSED
    await app.resume("p2")
    assert await handle.result(timeout=10) == ["a", "hello"]
    assert CALLS == {"a": 1}


async def test_resume_before_the_boundary_withdraws_the_pause(app: kernos.Kernos) -> None:
    handle = await app.start(three_steps, run_id="p3")
    await until(lambda: CALLS["b"] == 1)
    assert (await app.pause("p3")).pause_requested
    withdrawn = await app.resume("p3")
    assert withdrawn.status is RunStatus.RUNNING
    assert not withdrawn.pause_requested
    gate("b").set()
    assert await handle.result(timeout=10) == ["a", "b", "c"]
    assert "run.paused" not in [e.kind for e in await app.events("p3")]


async def test_paused_run_resumes_on_another_worker(store_url: str) -> None:
    async with new_app(store_url) as app_a:
        await app_a.start(three_steps, run_id="p4")
        await until(lambda: CALLS["b"] == 1)
        await app_a.pause("p4")
        gate("b").set()
        await run_status(app_a, "p4", RunStatus.PAUSED)
    async with new_app(store_url) as app_b:
        await app_b.resume("p4")
        assert await app_b.handle("p4").result(timeout=10) == ["a", "b", "c"]
    assert CALLS == {"a": 1, "b": 1, "c": 1}


async def test_cancel_a_paused_run(app: kernos.Kernos) -> None:
    handle = await app.start(receiver, run_id="p5")
    await run_status(app, "p5", RunStatus.WAITING)
    await app.pause("p5")
    assert await app.cancel("p5") == ["p5"]
    with pytest.raises(errors.RunCancelledError):
        await handle.result(timeout=10)
    with pytest.raises(errors.RunStateError):
        await app.resume("p5")


async def test_pause_and_resume_of_finished_or_unknown_runs_raise(app: kernos.Kernos) -> None:
    gate("b").set()
    handle = await app.start(three_steps, run_id="done")
    await handle.result(timeout=10)
    for operation in (app.pause, app.resume):
        with pytest.raises(errors.RunStateError) as info:
            await operation("done")
        assert info.value.run_id == "done"
        assert info.value.status == "succeeded"
        with pytest.raises(errors.RunNotFoundError):
            await operation("nope")
    assert (await app.get_run("done")).status is RunStatus.SUCCEEDED
