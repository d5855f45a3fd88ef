"""Child workflows and gather: results, failures, cancellation of a tree, and the
partial-failure semantics of fan-out. Every test runs on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
from runtime_support import make_gate, new_app, run_status, until

import kernos
from kernos import errors
from kernos.records import EntryKind, EntryStatus, RunStatus

CALLS: Counter[str] = Counter()
GATES: dict[str, asyncio.Event] = {}
gate = make_gate(GATES)
SEEN: dict[str, Any] = {}


@pytest.fixture(autouse=True)
def _reset() -> None:
    CALLS.clear()
    GATES.clear()
    SEEN.clear()


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
    except asyncio.CancelledError:
        CALLS[f"{key}:cancelled"] += 1
        raise
    return key


# -- children ------------------------------------------------------------------------


@kernos.workflow(name="rt_children.child")
async def child(x: int) -> dict[str, Any]:
    await count(f"child-{x}")
    return {"x": x, "run": kernos.current_run_id()}


@kernos.workflow(name="rt_children.parent")
async def parent(x: int) -> list[Any]:
    first = await count("parent-first")
    result = await child.run_child(x)
    return [first, result]


async def test_child_result_is_returned_to_the_parent(app: kernos.Kernos) -> None:
    handle = await app.start(parent, 7, run_id="p")
    assert await handle.result(timeout=10) == ["parent-first", {"x": 7, "run": "p.1"}]
    child_run = await app.get_run("p.1")
    assert child_run.status is RunStatus.SUCCEEDED
    assert (child_run.parent_id, child_run.parent_seq) == ("p", 1)
    assert child_run.workflow == "rt_children.child"
    entry = (await app.journal("p"))[1]
    assert (entry.kind, entry.name, entry.status) == (
        EntryKind.CHILD,
        "rt_children.child",
        EntryStatus.OK,
    )
    assert entry.detail == {"child_id": "p.1"}
    assert entry.output == {"x": 7, "run": "p.1"}
    assert [r.run_id for r in await app.list_runs(parent_id="p")] == ["p.1"]
    assert CALLS == {"parent-first": 1, "child-7": 1}


@kernos.workflow(name="rt_children.failing_child")
async def failing_child() -> None:
    raise errors.PermanentError("child gave up")


@kernos.workflow(name="rt_children.catching_parent")
async def catching_parent() -> dict[str, Any]:
    try:
        await failing_child.run_child()
    except errors.RunFailedError as exc:
        return {"run_id": exc.run_id, "type": exc.error_type, "code": exc.error_code}
    return {}


@kernos.workflow(name="rt_children.uncaught_parent")
async def uncaught_parent() -> None:
    await failing_child.run_child()


async def test_child_failure_raises_run_failed_error_in_the_parent(app: kernos.Kernos) -> None:
    handle = await app.start(catching_parent, run_id="cp")
    assert await handle.result(timeout=10) == {
        "run_id": "cp.0",
        "type": "kernos.errors.PermanentError",
        "code": "permanent",
    }
    assert (await app.get_run("cp.0")).status is RunStatus.FAILED
    (entry,) = await app.journal("cp")
    assert entry.status is EntryStatus.ERROR
    assert entry.error["code"] == "permanent"


async def test_uncaught_child_failure_fails_the_parent(app: kernos.Kernos) -> None:
    handle = await app.start(uncaught_parent, run_id="up")
    with pytest.raises(errors.RunFailedError) as info:
        await handle.result(timeout=10)
    assert info.value.run_id == "up"
    assert info.value.error_type == "kernos.errors.RunFailedError"
    assert (await app.get_run("up.0")).status is RunStatus.FAILED


@kernos.workflow(name="rt_children.waiting_child")
async def waiting_child() -> Any:
    return await kernos.recv("go")


@kernos.workflow(name="rt_children.blocked_child")
async def blocked_child() -> str:
    return await gated("child-blocked")


@kernos.workflow(name="rt_children.two_children")
async def two_children() -> list[Any]:
    return await kernos.gather(waiting_child.run_child(), blocked_child.run_child())


async def test_cancelling_the_parent_cancels_its_children_and_their_waits(
    app: kernos.Kernos,
) -> None:
    handle = await app.start(two_children, run_id="tree")
    await run_status(app, "tree.0", RunStatus.WAITING)
    await until(lambda: CALLS["child-blocked"] == 1)
    cancelled = await app.cancel("tree")
    assert cancelled == ["tree", "tree.0", "tree.1"]
    for run_id in cancelled:
        run = await app.get_run(run_id)
        assert run.status is RunStatus.CANCELLED
        assert run.wake_at is None and run.owner is None
        with pytest.raises(errors.RunCancelledError):
            await app.handle(run_id).result(timeout=10)
    await until(lambda: CALLS["child-blocked:cancelled"] == 1)
    with pytest.raises(errors.RunStateError):
        await app.send("tree.0", "too late", topic="go")
    with pytest.raises(errors.RunCancelledError):
        await handle.result(timeout=10)
    await asyncio.sleep(0.2)  # nothing wakes them again
    assert {r.status for r in await app.list_runs()} == {RunStatus.CANCELLED}


@kernos.workflow(name="rt_children.suspended_parent")
async def suspended_parent() -> Any:
    return await waiting_child.run_child()


async def test_parent_suspends_until_its_child_finishes(app: kernos.Kernos) -> None:
    handle = await app.start(suspended_parent, run_id="sp")
    await run_status(app, "sp.0", RunStatus.WAITING)
    await run_status(app, "sp", RunStatus.WAITING)
    await app.send("sp.0", {"go": True}, topic="go")
    assert await handle.result(timeout=10) == {"go": True}
    assert (await app.get_run("sp.0")).status is RunStatus.SUCCEEDED


async def test_cancelling_a_child_fails_the_waiting_parent(app: kernos.Kernos) -> None:
    handle = await app.start(suspended_parent, run_id="cc")
    await run_status(app, "cc.0", RunStatus.WAITING)
    assert await app.cancel("cc.0") == ["cc.0"]
    with pytest.raises(errors.RunFailedError) as info:
        await handle.result(timeout=10)
    assert info.value.error_type == "kernos.errors.RunCancelledError"


# -- gather --------------------------------------------------------------------------


@kernos.step
async def branch(key: str, delay: float, error: str | None) -> str:
    CALLS[key] += 1
    await asyncio.sleep(delay)
    SEEN.setdefault("finished", []).append(key)
    if error == "value":
        raise ValueError(key)
    if error == "key":
        raise KeyError(key)
    return key


@kernos.workflow(name="rt_children.gather_raise")
async def gather_raise(catch: bool) -> Any:
    calls = [
        branch("a", 0.0, None),
        branch("b", 0.15, "value"),  # fails last in time, first in argument order
        branch("c", 0.0, "key"),
        branch("d", 0.05, None),
    ]
    if not catch:
        return await kernos.gather(*calls)
    try:
        await kernos.gather(*calls)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return "no error"


@kernos.workflow(name="rt_children.gather_return")
async def gather_return() -> list[str]:
    results = await kernos.gather(
        branch("a", 0.0, None),
        branch("b", 0.1, "value"),
        branch("c", 0.0, "key"),
        branch("d", 0.05, None),
        return_exceptions=True,
    )
    return [r if isinstance(r, str) else f"{type(r).__name__}:{r}" for r in results]


async def test_gather_runs_every_branch_and_raises_the_first_failure_in_order(
    app: kernos.Kernos,
) -> None:
    handle = await app.start(gather_raise, True)
    assert await handle.result(timeout=10) == "ValueError: b"
    assert SEEN["finished"][-1] == "b"  # every branch ran to completion, "b" last
    assert CALLS == {"a": 1, "b": 1, "c": 1, "d": 1}
    journal = await app.journal(handle.run_id)
    assert [(e.seq, e.status) for e in journal] == [
        (0, EntryStatus.OK),
        (1, EntryStatus.ERROR),
        (2, EntryStatus.ERROR),
        (3, EntryStatus.OK),
    ]
    assert [e.output for e in journal] == ["a", None, None, "d"]
    assert journal[1].error["type"] == "builtins.ValueError"
    assert journal[2].error["type"] == "builtins.KeyError"


async def test_uncaught_gather_failure_fails_the_run_with_the_first_failure(
    app: kernos.Kernos,
) -> None:
    handle = await app.start(gather_raise, False)
    with pytest.raises(errors.RunFailedError) as info:
        await handle.result(timeout=10)
    assert info.value.error_type == "builtins.ValueError"
    assert len(await app.journal(handle.run_id)) == 4


async def test_gather_return_exceptions_returns_failures_in_place(app: kernos.Kernos) -> None:
    handle = await app.start(gather_return)
    assert await handle.result(timeout=10) == ["a", "ValueError:b", "KeyError:'c'", "d"]
    assert [e.status for e in await app.journal(handle.run_id)] == [
        EntryStatus.OK,
        EntryStatus.ERROR,
        EntryStatus.ERROR,
        EntryStatus.OK,
    ]
    report = await app.replay(handle.run_id)
    assert report.identical, str(report)
    assert CALLS == {"a": 1, "b": 1, "c": 1, "d": 1}


@kernos.workflow(name="rt_children.gather_recover")
async def gather_recover() -> list[str]:
    results: list[str] = await kernos.gather(count("x"), count("y"), gated("z"))
    return results


async def test_finished_gather_branches_are_not_rerun_on_recovery(store_url: str) -> None:
    async with new_app(store_url) as app_a:
        handle = await app_a.start(gather_recover)
        await until(lambda: CALLS["z"] == 1)
        for _ in range(1000):  # until "x" and "y" are durable
            if len(await app_a.journal(handle.run_id)) == 2:
                break
            await asyncio.sleep(0.01)
    async with new_app(store_url) as app_b:
        gate("z").set()
        assert await app_b.handle(handle.run_id).result(timeout=10) == ["x", "y", "z"]
        assert CALLS == {"x": 1, "y": 1, "z": 2, "z:cancelled": 1}
        assert [e.name for e in await app_b.journal(handle.run_id)] == [
            "count",
            "count",
            "gated",
        ]


@kernos.workflow(name="rt_children.fan_out")
async def fan_out(n: int) -> list[Any]:
    return await kernos.gather(*(child.run_child(i) for i in range(n)))


async def test_gather_of_children_numbers_them_in_call_order(app: kernos.Kernos) -> None:
    handle = await app.start(fan_out, 3, run_id="fan")
    assert await handle.result(timeout=10) == [
        {"x": 0, "run": "fan.0"},
        {"x": 1, "run": "fan.1"},
        {"x": 2, "run": "fan.2"},
    ]
    assert sorted(r.run_id for r in await app.list_runs(parent_id="fan")) == [
        "fan.0",
        "fan.1",
        "fan.2",
    ]


@kernos.workflow(name="rt_children.gather_sleep")
async def gather_sleep() -> list[Any]:
    return await kernos.gather(count("s"), kernos.sleep(0.4), kernos.recv("m", timeout=0.3))


async def test_gather_with_waiting_branches_suspends_once_and_finishes(
    app: kernos.Kernos,
) -> None:
    handle = await app.start(gather_sleep)
    await run_status(app, handle.run_id, RunStatus.WAITING)
    assert await handle.result(timeout=10) == ["s", None, None]
    assert CALLS == {"s": 1}
    kinds = [e.kind for e in await app.journal(handle.run_id)]
    assert kinds == [EntryKind.STEP, EntryKind.SLEEP, EntryKind.RECV]
