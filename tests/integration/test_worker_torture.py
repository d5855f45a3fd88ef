"""Worker chaos on one PostgreSQL queue: processes SIGKILLed and frozen (SIGSTOP) at random.

Four worker subprocesses (``chaos_worker.py``, each ``queues=["torture"]``,
``concurrency=8``, ``lease=1.5``) serve 150 runs of a 5-step workflow that the
test enqueues with ``kernos.Queue("torture").enqueue`` from a ``worker=False``
app while, round after round, it either SIGKILLs a random worker (and starts a
replacement) or freezes one with SIGSTOP for 2-4 s (longer than the lease, so
its runs go to others) and then SIGCONTs it. A frozen worker wakes up in the
middle of steps whose runs now belong to someone else: the lease epoch fence
must refuse its journal writes.

What must hold at the end:

- every run succeeded, once: one ``run.succeeded`` event, no owner, no lease;
- every journal holds exactly seq 0-4, ``ok``, with the deterministic outputs;
  each entry was written once (one ``step.completed`` event per entry) and
  entries seen settled during the chaos never changed afterwards;
- every step executed at least once (the fsync'ed ledger). An execution is
  wasted only when its process lost the run before journaling it, i.e. was
  killed or frozen past its lease; a process starts a run's next step only
  once the previous one is journaled under its epoch, so each run it held
  wastes at most one execution per kill or freeze, and it holds at most
  ``CONCURRENCY`` runs (claims only fill free slots; a claim frozen in its
  transaction counts among them). Hence
  ``extra executions <= (kills + freezes) * CONCURRENCY``. A process never
  signalled heartbeats every ``lease / 3`` and so never loses a lease: each
  step was executed by at most one such process;
- the registry shows every killed worker as ``stale`` or ``gone``, every
  surviving one (frozen ones included, once awake) as ``active``.

A second test cancels, from the test process, a run whose long step executes
in a worker subprocess: the worker's heartbeat (every ``lease / 3``) sees the
run is no longer held and interrupts the step, and the run does nothing more.
A third one has a worker claim again a run it still executes (its lease ran
out): the run must go on under the new epoch rather than stay held forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import orjson
import pytest
from chaos_worker import (
    COMPLETED,
    CONCURRENCY,
    INTERRUPTED,
    LEASE,
    STEPS,
    chaos,
    chaos_long,
    torture_queue,
)
from torture_worker import LEDGER_ENV
from worker_processes import REPO, Execution, Processes, read_ledger

import kernos
from kernos import errors
from kernos.records import EntryKind, EntryStatus, RunStatus

if TYPE_CHECKING:
    from tests.conftest import Fetch

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

SCRIPT = Path(__file__).with_name("chaos_worker.py")
RUNS = 150
WORKERS = 4
RUNS_PER_ROUND = 4  # runs trickle in, so the chaos lands at every stage of a run
MIN_KILLS = 15
MIN_FREEZES = 15
MAX_FROZEN = 2  # at once, out of WORKERS
FREEZE = (2.0, 4.0)  # seconds, all longer than LEASE
TIME_LIMIT = 100.0  # seconds for the chaos

Snapshot = dict[tuple[str, int], tuple[str, str, str | None]]


@pytest.fixture
def backend() -> str:
    """PostgreSQL only: several processes on one SQLite file is not what this tests."""
    if not os.environ.get("KERNOS_TEST_POSTGRES_URL"):
        pytest.skip("KERNOS_TEST_POSTGRES_URL is not set")
    return "postgres"


class ChaosProcesses(Processes):
    """``chaos_worker.py`` subprocesses, which the test may also freeze for a while."""

    def __init__(self, url: str, ledger: Path, logs: Path) -> None:
        super().__init__(url, ledger, logs)
        self.frozen_once: set[int] = set()
        self._thaws: dict[int, asyncio.Task[None]] = {}

    async def spawn(self, mode: str, *argv: str) -> asyncio.subprocess.Process:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(SCRIPT.parent)])}
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(SCRIPT),
            mode,
            self.url,
            str(self.ledger),
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=self._log(),
            env=env,
        )
        self.live.append(process)
        return process

    @property
    def frozen(self) -> set[int]:
        """Pids frozen right now."""
        return set(self._thaws)

    def freeze(self, process: asyncio.subprocess.Process, seconds: float) -> None:
        """SIGSTOP ``process`` and SIGCONT it ``seconds`` later."""
        process.send_signal(signal.SIGSTOP)
        self.frozen_once.add(process.pid)
        self._thaws[process.pid] = asyncio.get_running_loop().create_task(
            self._thaw_later(process, seconds)
        )

    async def _thaw_later(self, process: asyncio.subprocess.Process, seconds: float) -> None:
        try:
            await asyncio.sleep(seconds)
        finally:  # also when cancelled by thaw_all
            self._thaws.pop(process.pid, None)
            if process.returncode is None:
                process.send_signal(signal.SIGCONT)

    async def thaw_all(self) -> None:
        """SIGCONT every frozen process now."""
        tasks = list(self._thaws.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def kill(self, process: asyncio.subprocess.Process) -> None:
        # Forget a pending thaw first: once reaped, the pid may belong to anyone.
        thaw = self._thaws.pop(process.pid, None)
        if thaw is not None:
            thaw.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await thaw
        await super().kill(process)

    async def close(self) -> None:
        await self.thaw_all()
        await super().close()


def run_ids() -> list[str]:
    return [f"chaos-{index:03d}" for index in range(RUNS)]


def expected_output(run_id: str, seq: int) -> str:
    return f"{run_id}:{seq}"


async def snapshot(fetch_rows: Fetch, url: str) -> Snapshot:
    """Settled journal entries right now: (run, seq) -> (kind, status, raw output)."""
    rows = await fetch_rows(
        url,
        "SELECT run_id, seq, kind, status, output FROM kernos_journal WHERE status <> 'pending'",
    )
    return {(row[0], row[1]): (row[2], row[3], row[4]) for row in rows}


async def wait_until(check: Callable[[], object], timeout: float, what: str) -> None:
    give_up = time.monotonic() + timeout
    while not check():
        if time.monotonic() > give_up:
            pytest.fail(f"after {timeout}s: {what}")
        await asyncio.sleep(0.05)


async def run_chaos(
    app: kernos.Kernos, processes: ChaosProcesses, fetch_rows: Fetch, url: str
) -> tuple[int, int, list[Snapshot]]:
    """Enqueue the runs, kill and freeze workers until every run succeeded."""
    ids = run_ids()
    workers = [await processes.worker() for _ in range(WORKERS)]
    enqueued = 0
    kills = freezes = 0
    snapshots: list[Snapshot] = []
    give_up = time.monotonic() + TIME_LIMIT
    while True:
        for run_id in ids[enqueued : enqueued + RUNS_PER_ROUND]:
            await torture_queue.enqueue(chaos, run_id, run_id=run_id)
            enqueued += 1
        await asyncio.sleep(random.uniform(0.3, 0.9))
        index = random.randrange(WORKERS)
        victim = workers[index]
        may_freeze = len(processes.frozen) < MAX_FROZEN and victim.pid not in processes.frozen
        if may_freeze and freezes <= kills:
            processes.freeze(victim, random.uniform(*FREEZE))
            freezes += 1
        else:  # frozen or not: SIGKILL works on a stopped process too
            await processes.kill(victim)
            kills += 1
            workers[index] = await processes.worker()
        snapshots.append(await snapshot(fetch_rows, url))
        counts = await app.store.count_runs()
        done = counts.get(RunStatus.SUCCEEDED.value, 0) == RUNS
        if done and kills >= MIN_KILLS and freezes >= MIN_FREEZES:
            return kills, freezes, snapshots
        if time.monotonic() > give_up:
            pytest.fail(
                f"after {TIME_LIMIT}s, {kills} kills and {freezes} freezes, runs are {counts}\n"
                + processes.log_tail()
            )


async def check_runs_and_journals(app: kernos.Kernos, fetch_rows: Fetch, url: str) -> None:
    runs = await app.list_runs(workflow="chaos", limit=RUNS + 1)
    assert sorted(run.run_id for run in runs) == run_ids()
    for run in runs:
        expected = [expected_output(run.run_id, seq) for seq in range(STEPS)]
        assert run.status is RunStatus.SUCCEEDED, run
        assert run.output == expected, run
        assert run.owner is None and run.lease_expires_at is None, run
        journal = await app.journal(run.run_id)
        assert [entry.seq for entry in journal] == list(range(STEPS)), journal
        for entry in journal:
            assert entry.kind is EntryKind.STEP and entry.name == "chaos_step", entry
            assert entry.status is EntryStatus.OK, entry
            assert entry.output == expected[entry.seq], entry
    assert await app.list_runs(status=RunStatus.RUNNING) == []

    succeeded = await fetch_rows(
        url,
        "SELECT run_id, count(*) FROM kernos_events WHERE kind = 'run.succeeded' GROUP BY run_id",
    )
    assert dict(succeeded) == dict.fromkeys(run_ids(), 1)
    completed = await fetch_rows(
        url, "SELECT run_id, data FROM kernos_events WHERE kind = 'step.completed'"
    )
    written = Counter((run_id, orjson.loads(data)["seq"]) for run_id, data in completed)
    assert written == Counter({(r, seq): 1 for r in run_ids() for seq in range(STEPS)})


def check_snapshots(snapshots: list[Snapshot], final: Snapshot) -> None:
    assert sum(len(taken) for taken in snapshots) > 0, "no entry was settled mid-chaos"
    for taken in snapshots:
        for key, recorded in taken.items():
            run_id, seq = key
            assert recorded == ("step", "ok", orjson.dumps(expected_output(run_id, seq)).decode())
            assert final[key] == recorded, f"{key} changed from {recorded} to {final[key]}"


def check_ledger(ledger: list[Execution], signalled: set[int], kills: int, freezes: int) -> int:
    """Check what executed against the chaos; return the extra executions."""
    by_step: dict[tuple[str, int], list[Execution]] = defaultdict(list)
    for execution in ledger:
        by_step[execution.run_id, execution.step].append(execution)
    assert set(by_step) == {(run_id, step) for run_id in run_ids() for step in range(STEPS)}
    for key, executions in by_step.items():
        calm = [execution.pid for execution in executions if execution.pid not in signalled]
        assert len(calm) <= 1, f"{key} was executed by several unsignalled processes {calm}"
    extra = len(ledger) - RUNS * STEPS
    assert extra <= (kills + freezes) * CONCURRENCY, (extra, kills, freezes)
    return extra


async def count_reclaims(fetch_rows: Fetch, url: str) -> int:
    """How often a worker claimed again a run it held just before (its lease had run out)."""
    rows = await fetch_rows(
        url, "SELECT run_id, data FROM kernos_events WHERE kind = 'run.started' ORDER BY event_id"
    )
    last: dict[str, str] = {}
    reclaims = 0
    for run_id, data in rows:
        owner = orjson.loads(data)["owner"]
        reclaims += last.get(run_id) == owner
        last[run_id] = owner
    return reclaims


async def freeze_until_stale(app: kernos.Kernos, processes: ChaosProcesses) -> None:
    """Freeze a worker until the others mark it stale in the registry, then wake it."""
    victim = processes.live[0]
    processes.freeze(victim, 30)
    give_up = time.monotonic() + 4 * LEASE + 3
    while True:
        states = {worker.pid: worker.state for worker in await app.workers()}
        if states.get(victim.pid) == "stale":
            break
        if time.monotonic() > give_up:
            pytest.fail(f"a worker frozen for {4 * LEASE + 3}s is still {states.get(victim.pid)}")
        await asyncio.sleep(0.2)
    await processes.thaw_all()


async def check_registry(app: kernos.Kernos, processes: ChaosProcesses) -> None:
    """Killed workers are stale or gone; surviving ones (frozen ones too, once awake)
    are active; nobody holds a run."""
    live = {process.pid for process in processes.live}

    def wrong(workers: list[kernos.Worker]) -> list[kernos.Worker]:
        return [
            worker
            for worker in workers
            if (worker.pid in processes.killed and worker.state not in ("stale", "gone"))
            or (worker.pid in live and worker.state != "active")
            or worker.in_flight
        ]

    def missing(workers: list[kernos.Worker]) -> set[int]:
        return live - {worker.pid for worker in workers}

    give_up = time.monotonic() + 10
    while True:
        workers = await app.workers()
        if not (wrong(workers) or missing(workers)) or time.monotonic() > give_up:
            break
        await asyncio.sleep(0.2)
    assert not wrong(workers), wrong(workers)
    assert not missing(workers), f"workers never registered: {missing(workers)}"


async def test_queue_survives_kills_and_freezes(
    store_url: str, tmp_path: Path, fetch_rows: Fetch
) -> None:
    started = time.monotonic()
    processes = ChaosProcesses(store_url, tmp_path / "ledger.csv", tmp_path)
    async with kernos.Kernos(store_url, worker=False) as app:
        try:
            kills, freezes, snapshots = await run_chaos(app, processes, fetch_rows, store_url)
            chaos_s = time.monotonic() - started
            await processes.thaw_all()
            await check_registry(app, processes)
            await freeze_until_stale(app, processes)
            await check_registry(app, processes)
            await processes.close()
            await check_runs_and_journals(app, fetch_rows, store_url)
            check_snapshots(snapshots, await snapshot(fetch_rows, store_url))
            signalled = processes.killed | processes.frozen_once
            extra = check_ledger(read_ledger(processes.ledger), signalled, kills, freezes)
            assert extra > 0, "no kill or freeze ever landed between a side effect and its write"
            reclaims = await count_reclaims(fetch_rows, store_url)
            print(
                f"{kills} kills, {freezes} freezes, {extra} extra executions, "
                f"{reclaims} runs claimed again by their previous owner, "
                f"chaos {chaos_s:.1f}s, total {time.monotonic() - started:.1f}s"
            )
        finally:
            await processes.close()


async def test_cancel_reaches_a_run_in_another_process(
    store_url: str, tmp_path: Path, fetch_rows: Fetch
) -> None:
    seconds = 4.0  # the long step's sleep
    heartbeat = LEASE / 3
    processes = ChaosProcesses(store_url, tmp_path / "ledger.csv", tmp_path)

    def marks(run_id: str) -> dict[int, Execution]:
        return {e.step: e for e in read_ledger(processes.ledger) if e.run_id == run_id}

    async with kernos.Kernos(store_url, worker=False) as app:
        try:
            await processes.worker()
            handle = await torture_queue.enqueue(chaos_long, "long", seconds, run_id="long")
            await wait_until(lambda: 1 in marks("long"), 30, "the long step never started")
            step_started = marks("long")[1].at
            await asyncio.sleep(0.3)
            cancelled_at = time.time()
            assert await app.cancel("long") == ["long"]
            await wait_until(
                lambda: INTERRUPTED in marks("long"),
                3 * heartbeat + 0.5,
                f"the long step was not interrupted\n{processes.log_tail()}",
            )
            delay = marks("long")[INTERRUPTED].at - cancelled_at
            assert delay <= 3 * heartbeat, f"interrupted {delay:.2f}s after the cancel"
            with pytest.raises(errors.RunCancelledError):
                await handle.result(timeout=5)

            # Past the moment the step would have ended: nothing more happened.
            await asyncio.sleep(max(0.0, step_started + seconds + 1.0 - time.time()))
            assert set(marks("long")) == {0, 1, INTERRUPTED}, marks("long")
            assert COMPLETED not in marks("long")
            run = await app.get_run("long")
            assert run.status is RunStatus.CANCELLED and run.owner is None, run
            assert [entry.seq for entry in await app.journal("long")] == [0]
            kinds = [event.kind for event in await app.events("long")]
            assert kinds.count("step.completed") == 1 and "run.succeeded" not in kinds, kinds

            # The worker carries on with other runs.
            after = await torture_queue.enqueue(chaos, "after", run_id="after")
            assert await after.result(timeout=30) == [
                expected_output("after", seq) for seq in range(STEPS)
            ]
            print(f"interrupted {delay:.2f}s after the cancel (heartbeat every {heartbeat}s)")
        finally:
            await processes.close()


async def test_a_worker_that_claims_its_own_run_again_executes_it(
    store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run whose lease ran out mid-step (its worker stalled) may be claimed again
    by that same worker: the execution under the old epoch must make way for one
    under the new epoch, or the run stays held, renewed and never executed."""
    import psycopg

    ledger = tmp_path / "ledger.csv"
    monkeypatch.setenv(LEDGER_ENV, str(ledger))

    def marks() -> list[int]:
        return [execution.step for execution in read_ledger(ledger)]

    async with kernos.Kernos(store_url, lease=LEASE, poll_interval=0.05) as app:
        handle = await app.start(chaos_long, "again", 1.5, run_id="again")
        await wait_until(lambda: 1 in marks(), 10, "the long step never started")
        with psycopg.connect(store_url, autocommit=True) as conn:  # as if the lease ran out
            conn.execute("UPDATE kernos_runs SET lease_expires_at = 0 WHERE run_id = 'again'")
        app.engine.poke()
        output = await handle.result(timeout=10)
        assert output == [expected_output("again", seq) for seq in range(STEPS)]
        started = [
            (event.data["owner"], event.data["epoch"])
            for event in await app.events("again")
            if event.kind == "run.started" and isinstance(event.data, dict)
        ]
        assert started == [(app.engine.worker_id, 1), (app.engine.worker_id, 2)], started
        assert marks() == [0, 1, INTERRUPTED, 1, COMPLETED, 2, 3, 4]
