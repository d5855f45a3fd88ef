"""Durable waits: sleep (inline and suspended) and recv (messages kept, ordered,
delivered once, timeouts). Every test runs on SQLite and PostgreSQL."""

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


@pytest.fixture(autouse=True)
def _reset() -> None:
    CALLS.clear()
    GATES.clear()


@pytest.fixture
async def app(store_url: str) -> AsyncIterator[kernos.Kernos]:
    async with new_app(store_url) as app:
        yield app


async def event_kinds(app: kernos.Kernos, run_id: str) -> list[str]:
    return [e.kind for e in await app.events(run_id)]


@kernos.step
async def count(key: str) -> str:
    CALLS[key] += 1
    return key


@kernos.step
async def gated(key: str) -> str:
    CALLS[key] += 1
    await gate(key).wait()
    return key


# -- sleep --------------------------------------------------------------------------


@kernos.workflow(name="rt_waits.sleeper")
async def sleeper(seconds: float) -> str:
    await count("before")
    await kernos.sleep(seconds)
    return await count("after")


async def test_short_sleep_waits_in_place(app: kernos.Kernos) -> None:
    handle = await app.start(sleeper, 0.05)
    assert await handle.result(timeout=10) == "after"
    assert "run.waiting" not in await event_kinds(app, handle.run_id)
    run = await app.get_run(handle.run_id)
    assert run.executions == 1
    entry = (await app.journal(handle.run_id))[1]
    assert (entry.kind, entry.status) == (EntryKind.SLEEP, EntryStatus.OK)
    assert entry.detail["seconds"] == 0.05
    assert entry.detail["wake_at"] == pytest.approx(entry.started_at + 0.05)


async def test_long_sleep_suspends_the_run_until_it_is_due(app: kernos.Kernos) -> None:
    handle = await app.start(sleeper, 0.4)
    waiting = await run_status(app, handle.run_id, RunStatus.WAITING, RunStatus.SUCCEEDED)
    assert waiting.status is RunStatus.WAITING
    assert waiting.owner is None
    (_, sleep_entry) = await app.journal(handle.run_id)
    assert sleep_entry.status is EntryStatus.PENDING
    assert waiting.wake_at == pytest.approx(sleep_entry.detail["wake_at"])
    assert await handle.result(timeout=10) == "after"
    assert CALLS == {"before": 1, "after": 1}
    run = await app.get_run(handle.run_id)
    assert run.executions == 2
    kinds = await event_kinds(app, handle.run_id)
    assert kinds.count("run.waiting") == 1
    assert kinds.count("sleep.done") == 1
    assert [e.status for e in await app.journal(handle.run_id)] == [EntryStatus.OK] * 3


class Clock:
    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        import time

        return time.time() + self.offset


async def test_sleep_of_an_hour_resumes_when_the_clock_reaches_it(store_url: str) -> None:
    clock = Clock()
    async with new_app(store_url, clock=clock) as app:
        handle = await app.start(sleeper, 3600.0)
        waiting = await run_status(app, handle.run_id, RunStatus.WAITING)
        assert waiting.wake_at is not None
        assert waiting.wake_at - clock() > 3500
        await asyncio.sleep(0.2)  # several claim rounds: not due, not claimed
        assert (await app.get_run(handle.run_id)).status is RunStatus.WAITING
        clock.offset += 3600.0
        assert await handle.result(timeout=10) == "after"
        assert CALLS == {"before": 1, "after": 1}


async def test_suspended_sleep_survives_a_worker_restart(store_url: str) -> None:
    async with new_app(store_url) as app_a:
        handle = await app_a.start(sleeper, 0.5)
        await run_status(app_a, handle.run_id, RunStatus.WAITING)
    async with new_app(store_url) as app_b:
        assert await app_b.handle(handle.run_id).result(timeout=10) == "after"
    assert CALLS == {"before": 1, "after": 1}


# -- recv ---------------------------------------------------------------------------


@kernos.workflow(name="rt_waits.gated_recv")
async def gated_recv(n: int) -> list[Any]:
    await gated("g")
    return [await kernos.recv("t") for _ in range(n)]


@kernos.workflow(name="rt_waits.recv_then_timeout")
async def recv_then_timeout(n: int) -> list[Any]:
    await gated("g")
    received = [await kernos.recv("t") for _ in range(n)]
    received.append(await kernos.recv("t", timeout=0.1))
    return received


async def test_message_sent_before_the_run_waits_is_not_lost(app: kernos.Kernos) -> None:
    handle = await app.start(gated_recv, 1)
    await until(lambda: CALLS["g"] == 1)
    await app.send(handle.run_id, {"hello": 1}, topic="t")
    gate("g").set()
    assert await handle.result(timeout=10) == [{"hello": 1}]
    assert "run.waiting" not in await event_kinds(app, handle.run_id)


async def test_recv_suspends_until_a_message_arrives(app: kernos.Kernos) -> None:
    gate("g").set()
    handle = await app.start(gated_recv, 1)
    waiting = await run_status(app, handle.run_id, RunStatus.WAITING)
    assert waiting.wake_at is None  # no timeout: only a message wakes it
    recv_entry = (await app.journal(handle.run_id))[1]
    assert (recv_entry.kind, recv_entry.name, recv_entry.status) == (
        EntryKind.RECV,
        "t",
        EntryStatus.PENDING,
    )
    await app.send(handle.run_id, "late", topic="other")  # another topic does not wake it
    await asyncio.sleep(0.2)
    assert (await app.get_run(handle.run_id)).status is RunStatus.WAITING
    await app.send(handle.run_id, "ping", topic="t")
    assert await handle.result(timeout=10) == ["ping"]
    assert CALLS["g"] == 1


async def test_messages_are_delivered_in_order_exactly_once(app: kernos.Kernos) -> None:
    handle = await app.start(recv_then_timeout, 3)
    await until(lambda: CALLS["g"] == 1)
    for i in range(3):
        await app.send(handle.run_id, {"n": i}, topic="t")
    gate("g").set()
    assert await handle.result(timeout=10) == [{"n": 0}, {"n": 1}, {"n": 2}, None]
    journal = await app.journal(handle.run_id)
    assert [e.output for e in journal[1:]] == [{"n": 0}, {"n": 1}, {"n": 2}, None]
    received = [e for e in await app.events(handle.run_id) if e.kind == "message.received"]
    assert [e.data["timed_out"] for e in received] == [False, False, False, True]


async def test_messages_sent_while_waiting_arrive_in_order(app: kernos.Kernos) -> None:
    gate("g").set()
    handle = await app.start(gated_recv, 3)
    await run_status(app, handle.run_id, RunStatus.WAITING)
    for i in range(3):
        await app.send(handle.run_id, i, topic="t")
    assert await handle.result(timeout=10) == [0, 1, 2]


async def test_received_messages_are_not_delivered_again_after_a_restart(
    store_url: str,
) -> None:
    async with new_app(store_url) as app_a:
        handle = await app_a.start(recv_then_timeout, 1)
        await until(lambda: CALLS["g"] == 1)
        await app_a.send(handle.run_id, "only", topic="t")
        gate("g").set()
        assert await handle.result(timeout=10) == ["only", None]
    # Re-executing the finished run from its journal (a fork at its end) sees
    # the recorded message and does not take it again.
    async with new_app(store_url) as app_b:
        journal = await app_b.journal(handle.run_id)
        fork = await app_b.fork(handle.run_id, at=len(journal))
        assert await fork.result(timeout=10) == ["only", None]


@kernos.workflow(name="rt_waits.recv_restart")
async def recv_restart() -> list[Any]:
    first = await kernos.recv("t")
    await gated("block")
    second = await kernos.recv("t", timeout=0.1)
    return [first, second]


async def test_message_received_before_a_crash_is_not_received_twice(store_url: str) -> None:
    async with new_app(store_url) as app_a:
        handle = await app_a.start(recv_restart)
        await app_a.send(handle.run_id, "one", topic="t")
        await until(lambda: CALLS["block"] == 1)
    async with new_app(store_url) as app_b:
        gate("block").set()
        assert await app_b.handle(handle.run_id).result(timeout=10) == ["one", None]


@kernos.workflow(name="rt_waits.recv_timeout")
async def recv_timeout(seconds: float) -> Any:
    return await kernos.recv("t", timeout=seconds)


async def test_recv_timeout_returns_none(app: kernos.Kernos) -> None:
    for seconds in (0.0, 0.3):  # expired at once; expired while suspended
        handle = await app.start(recv_timeout, seconds)
        assert await handle.result(timeout=10) is None
        (entry,) = await app.journal(handle.run_id)
        assert (entry.kind, entry.status, entry.output) == (EntryKind.RECV, EntryStatus.OK, None)
        assert entry.detail["deadline"] is not None


async def test_send_refuses_finished_and_unknown_runs_and_non_json(app: kernos.Kernos) -> None:
    finished = await app.start(recv_timeout, 0.0)
    await finished.result(timeout=10)
    with pytest.raises(errors.RunStateError) as state_error:
        await app.send(finished.run_id, "too late", topic="t")
    assert state_error.value.run_id == finished.run_id
    assert state_error.value.status == "succeeded"

    with pytest.raises(errors.RunNotFoundError) as not_found:
        await app.send("no-such-run", "hello", topic="t")
    assert not_found.value.run_id == "no-such-run"

    gate("g").set()
    handle = await app.start(gated_recv, 1)
    with pytest.raises(errors.SerializationError):
        await app.send(handle.run_id, object(), topic="t")
    await app.send(handle.run_id, "fine", topic="t")
    assert await handle.result(timeout=10) == ["fine"]
