"""Durability across whole-process restarts: timers, early messages, kills mid-step.

The runs execute in ``torture_worker.py`` subprocesses; every step body appends
``run_id,step,pid,time`` to a fsync'ed ledger, so the tests count real executions.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from worker_processes import Execution, Processes, read_ledger

import kernos
from kernos.records import EntryKind, EntryStatus, Run, RunStatus
from kernos.store import NewRun, Store, open_store

RUN_ID = "durable-1"


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    opened = open_store(store_url)
    yield opened
    await opened.close()


@pytest.fixture
async def processes(store_url: str, tmp_path: Path) -> AsyncIterator[Processes]:
    started = Processes(store_url, tmp_path / "ledger.csv", tmp_path)
    yield started
    await started.close()


async def eventually(
    check: Callable[[], Awaitable[bool]], what: str, processes: Processes, timeout: float = 20
) -> None:
    give_up = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > give_up:
            pytest.fail(f"timed out after {timeout}s waiting until {what}\n{processes.log_tail()}")
        await asyncio.sleep(0.05)


async def wait_status(store: Store, processes: Processes, status: RunStatus) -> Run:
    async def reached() -> bool:
        try:
            return (await store.get_run(RUN_ID)).status is status
        except kernos.errors.RunNotFoundError:  # its creator is still starting
            return False

    await eventually(reached, f"{RUN_ID} is {status.value}", processes)
    return await store.get_run(RUN_ID)


async def wait_executed(processes: Processes, step: int) -> None:
    async def executed() -> bool:
        return any(e.step == step for e in read_ledger(processes.ledger))

    await eventually(executed, f"step {step} executed", processes)


async def create_run(store: Store, workflow: str, *args: Any) -> None:
    text = orjson.dumps({"args": [RUN_ID, *args], "kwargs": {}}).decode()
    await store.create_run(NewRun(run_id=RUN_ID, workflow=workflow, version="1", input=text))


def executions(processes: Processes) -> dict[int, list[int]]:
    """Step index -> pids of the processes that executed it, in order."""
    found: dict[int, list[int]] = {}
    for execution in read_ledger(processes.ledger):
        assert execution.run_id == RUN_ID
        found.setdefault(execution.step, []).append(execution.pid)
    return found


@pytest.mark.parametrize("exit", ["clean", "killed"])
async def test_a_durable_timer_fires_in_a_process_started_after_a_restart(
    store: Store, processes: Processes, exit: str
) -> None:
    options = ["--inline-wait", "1.0"] + (["--linger"] if exit == "killed" else [])
    args = orjson.dumps([RUN_ID, 3.0]).decode()
    starter = await processes.spawn("start", "timer_then_mark", RUN_ID, args, *options)
    waiting = await wait_status(store, processes, RunStatus.WAITING)
    if exit == "clean":
        assert await processes.wait(starter, 15) == 0, processes.log_tail()
    else:
        await processes.kill(starter)
    assert waiting.wake_at is not None
    assert time.time() < waiting.wake_at, "the timer fired before the first process was gone"
    assert (await store.get_run(RUN_ID)).status is RunStatus.WAITING

    worker = await processes.worker()
    run = await wait_status(store, processes, RunStatus.SUCCEEDED)

    assert run.output == [f"{RUN_ID}:0", f"{RUN_ID}:1"]
    assert executions(processes) == {0: [starter.pid], 1: [worker.pid]}
    after_timer: Execution = read_ledger(processes.ledger)[-1]
    assert after_timer.at >= waiting.wake_at
    journal = await store.load_journal(RUN_ID)
    assert [(e.kind, e.status) for e in journal] == [
        (EntryKind.STEP, EntryStatus.OK),
        (EntryKind.SLEEP, EntryStatus.OK),
        (EntryKind.STEP, EntryStatus.OK),
    ]


@pytest.mark.parametrize("crash", [False, True], ids=["same-worker", "worker-killed"])
async def test_messages_sent_before_the_run_waits_are_received(
    store_url: str, store: Store, processes: Processes, crash: bool
) -> None:
    first = await processes.worker()
    await create_run(store, "slow_then_recv", 2.0)
    await wait_executed(processes, 0)  # the slow first step is under way
    async with kernos.Kernos(store_url, worker=False) as app:
        assert (await app.get_run(RUN_ID)).status is RunStatus.RUNNING
        await app.send(RUN_ID, {"n": 1}, topic="notes")
        await app.send(RUN_ID, {"n": 2}, topic="notes")
    if crash:
        await processes.kill(first)
        second = await processes.worker()

    run = await wait_status(store, processes, RunStatus.SUCCEEDED)

    assert run.output == [{"n": 1}, {"n": 2}]
    step_0 = [first.pid, second.pid] if crash else [first.pid]
    last = second.pid if crash else first.pid
    assert executions(processes) == {0: step_0, 1: [last]}
    journal = await store.load_journal(RUN_ID)
    received = [e.output for e in journal if e.kind is EntryKind.RECV]
    assert received == [{"n": 1}, {"n": 2}]


@pytest.mark.parametrize("reaped", [True, False], ids=["reaped", "zombie"])
async def test_a_worker_killed_mid_step_resumes_without_redoing_finished_steps(
    store: Store, processes: Processes, reaped: bool
) -> None:
    # A lease far longer than the test: the run must be taken over because its
    # worker's process died, not because the lease ran out. Unreaped, the dead
    # worker lingers as a zombie, which is just as dead.
    lease = ["--lease", "60"]
    if reaped:
        first = (await processes.worker(*lease)).pid
    else:
        first = processes.spawn_unreaped("work", *lease)
    await create_run(store, "marks", [0.0, 0.0, 3.0, 0.0, 0.0])
    await wait_executed(processes, 2)  # step 2 did its side effect and is still going
    if reaped:
        await processes.kill(next(p for p in processes.live if p.pid == first))
    else:
        await processes.kill_unreaped(first)
    assert len(await store.load_journal(RUN_ID)) == 2

    second = (await processes.worker(*lease)).pid
    run = await wait_status(store, processes, RunStatus.SUCCEEDED)

    assert run.output == [f"{RUN_ID}:{index}" for index in range(5)]
    assert run.executions == 2
    assert executions(processes) == {
        0: [first],
        1: [first],
        2: [first, second],
        3: [second],
        4: [second],
    }
    journal = await store.load_journal(RUN_ID)
    assert [e.output for e in journal] == run.output
    assert all(e.status is EntryStatus.OK for e in journal)
