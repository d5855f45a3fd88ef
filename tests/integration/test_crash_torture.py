"""Crash torture: worker processes SIGKILLed at random while 100 runs execute.

Three worker subprocesses (``torture_worker.py``) execute 100 runs of a 5-step
workflow while the test kills a random one at a random moment, at least 50 times,
starting a replacement each time. Every step body appends ``run_id,step,pid``
to a fsync'ed ledger before it returns, so the test sees what really executed.

What must hold at the end:

- every run succeeded with the right output, and holds no lease;
- every journal has exactly steps 0-4, ``ok``, with the deterministic output,
  and entries seen settled during the torture never changed afterwards;
- every step executed at least once. A step executes again only when the
  process that executed it died before journaling it, so: an execution that
  was followed by another of the same step belongs to a killed process; no
  process executes one step twice; a process executes a run's next step only
  after journaling the previous one, so only its last step of a run can be lost;
  and a process loses at most ``CONCURRENCY`` executions (one per run it held
  when it died), which bounds the extra executions by ``kills * CONCURRENCY``;
- dead workers are retired from the registry.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

import orjson
import pytest
from worker_processes import Execution, Processes, read_ledger

from kernos.records import EntryKind, EntryStatus, RunStatus
from kernos.store import NewRun, RunFilter, Store, open_store

if TYPE_CHECKING:
    from tests.conftest import Fetch

pytestmark = pytest.mark.slow

RUNS = 100
STEPS = 5
WORKERS = 3
CONCURRENCY = 4
MIN_KILLS = 50
TIME_LIMIT = 140.0  # seconds for the whole torture, per backend

Snapshot = dict[tuple[str, int], tuple[str, str, str | None]]


def run_ids() -> list[str]:
    return [f"torture-{index:03d}" for index in range(RUNS)]


async def create_run(store: Store, run_id: str) -> None:
    # Created pending through the store, so a worker process claims it; Kernos.start
    # would execute it in this process.
    text = orjson.dumps({"args": [run_id], "kwargs": {}}).decode()
    await store.create_run(NewRun(run_id=run_id, workflow="torture", version="1", input=text))


async def snapshot(fetch_rows: Fetch, url: str) -> Snapshot:
    """Settled journal entries right now: (run, seq) -> (kind, status, raw output)."""
    rows = await fetch_rows(
        url,
        "SELECT run_id, seq, kind, status, output FROM kernos_journal WHERE status <> 'pending'",
    )
    return {(row[0], row[1]): (row[2], row[3], row[4]) for row in rows}


async def torture(
    store: Store, processes: Processes, fetch_rows: Fetch, url: str
) -> tuple[int, list[Snapshot]]:
    """Kill and replace workers until every run succeeded; return kills and snapshots."""
    ids = run_ids()
    workers = [await processes.worker("--concurrency", str(CONCURRENCY)) for _ in range(WORKERS)]
    created = 0
    kills = 0
    snapshots: list[Snapshot] = []
    give_up = time.monotonic() + TIME_LIMIT
    while True:
        # Runs trickle in as the kills go on, so kills land at every stage of a run.
        for run_id in ids[created : min(RUNS, 10 + kills * 9 // 4)]:
            await create_run(store, run_id)
            created += 1
        await asyncio.sleep(random.uniform(0.1, 1.0))
        victim = random.randrange(WORKERS)
        await processes.kill(workers[victim])
        kills += 1
        workers[victim] = await processes.worker("--concurrency", str(CONCURRENCY))
        if kills % 8 == 0:
            snapshots.append(await snapshot(fetch_rows, url))
        counts = await store.count_runs()
        if kills >= MIN_KILLS and counts.get(RunStatus.SUCCEEDED.value, 0) == RUNS:
            return kills, snapshots
        if time.monotonic() > give_up:
            pytest.fail(
                f"after {TIME_LIMIT}s and {kills} kills, runs are {counts}\n" + processes.log_tail()
            )


async def check_runs_and_journals(store: Store) -> None:
    runs = await store.list_runs(RunFilter(workflow="torture", limit=RUNS + 1))
    assert sorted(run.run_id for run in runs) == run_ids()
    for run in runs:
        expected = [f"{run.run_id}:{index}" for index in range(STEPS)]
        assert run.status is RunStatus.SUCCEEDED, run
        assert run.output == expected
        assert run.owner is None and run.lease_expires_at is None, run
        journal = await store.load_journal(run.run_id)
        assert [entry.seq for entry in journal] == list(range(STEPS)), journal
        for entry in journal:
            assert entry.kind is EntryKind.STEP and entry.name == "torture_step", entry
            assert entry.status is EntryStatus.OK, entry
            assert entry.output == expected[entry.seq], entry


def check_snapshots(snapshots: list[Snapshot], final: Snapshot) -> None:
    assert sum(len(taken) for taken in snapshots) > 0, "no entry was settled mid-torture"
    for taken in snapshots:
        for key, recorded in taken.items():
            run_id, seq = key
            assert recorded == ("step", "ok", orjson.dumps(f"{run_id}:{seq}").decode())
            assert final[key] == recorded, f"{key} changed from {recorded} to {final[key]}"


def check_ledger(ledger: list[Execution], killed: set[int], kills: int) -> int:
    """Check what executed against what was killed; return the extra executions."""
    by_step: dict[tuple[str, int], list[Execution]] = defaultdict(list)
    by_process: dict[tuple[str, int], list[Execution]] = defaultdict(list)
    for execution in ledger:
        by_step[execution.run_id, execution.step].append(execution)
        by_process[execution.run_id, execution.pid].append(execution)
    assert set(by_step) == {(run_id, step) for run_id in run_ids() for step in range(STEPS)}

    lost: list[Execution] = []
    for key, executions in by_step.items():
        pids = [execution.pid for execution in executions]
        assert len(set(pids)) == len(pids), f"a process executed {key} twice: {pids}"
        # Each execution before the last was lost: its process did not journal it.
        lost += executions[:-1]
    for execution in lost:
        assert execution.pid in killed, f"{execution} was lost by a process never killed"
        last = by_process[execution.run_id, execution.pid][-1]
        assert execution == last, f"{execution} was lost, yet its process went on to {last}"
    for (run_id, pid), executions in by_process.items():
        steps = [execution.step for execution in executions]
        assert steps == list(range(steps[0], steps[0] + len(steps))), (run_id, pid, steps)

    lost_by_process: dict[int, int] = defaultdict(int)
    for execution in lost:
        lost_by_process[execution.pid] += 1
    assert max(lost_by_process.values(), default=0) <= CONCURRENCY, lost_by_process
    assert len(lost) == len(ledger) - RUNS * STEPS
    assert len(lost) <= kills * CONCURRENCY
    return len(lost)


async def check_workers_retired(store: Store, killed: set[int]) -> None:
    # Each kill was followed by a replacement, whose start retires dead workers
    # of this host; the last replacements may still be starting.
    give_up = time.monotonic() + 15
    while True:
        dead_active = [
            worker
            for worker in await store.list_workers()
            if worker.pid in killed and worker.state == "active"
        ]
        if not dead_active or time.monotonic() > give_up:
            break
        await asyncio.sleep(0.2)
    assert not dead_active


async def test_runs_survive_random_sigkills(
    store_url: str, tmp_path: Path, fetch_rows: Fetch
) -> None:
    started = time.monotonic()
    store = open_store(store_url)
    processes = Processes(store_url, tmp_path / "ledger.csv", tmp_path)
    try:
        kills, snapshots = await torture(store, processes, fetch_rows, store_url)
        await check_workers_retired(store, processes.killed)
        await processes.close()
        await check_runs_and_journals(store)
        check_snapshots(snapshots, await snapshot(fetch_rows, store_url))
        extra = check_ledger(read_ledger(processes.ledger), processes.killed, kills)
        assert extra > 0, "no kill ever landed between a side effect and its journal write"
        print(f"{kills} kills, {extra} extra executions, {time.monotonic() - started:.1f}s")
    finally:
        await processes.close()
        await store.close()
