"""Queues: limits shared by workers (in one loop and in other processes), priority,
delayed starts, dedup ids, DAG dependencies, enqueue from workflows, config and
the queue and worker registries. Every test runs on SQLite and PostgreSQL.

Concurrency is observed from inside the step: each execution appends its
``(start, end)`` to a ledger (``queue_worker.py``). A step runs while its run
holds a slot, so overlapping ledger intervals are a lower bound of what the
store let run at once: a limit exceeded there was exceeded for real. Starts
per rate window are read from the runs' ``started_at``, the very timestamps
the store's rate limit counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from queue_worker import LIMITED, RATED, Interval, busy, declare, read_ledger

import kernos
from kernos import errors
from kernos.records import EntryKind, RunStatus
from kernos.runtime._queues import queues as declared_queues

SCRIPT = Path(__file__).with_name("queue_worker.py")
REPO = Path(__file__).resolve().parents[2]


# Queue declarations are global and every app opened in this process stores
# them: keep this module's out of the other tests' stores.
CHILDREN = kernos.Queue("qt_children")
declared_queues.pop(CHILDREN.name)


@pytest.fixture(autouse=True)
def restore_declared_queues() -> Iterator[None]:
    """Undo the queue declarations a test makes."""
    before = dict(declared_queues)
    yield
    declared_queues.clear()
    declared_queues.update(before)


# -- helpers ------------------------------------------------------------------------


async def until(predicate: Callable[[], Awaitable[bool]], what: str, timeout: float = 20.0) -> None:
    """Wait until ``predicate()`` holds (``timeout`` only bounds a failing test)."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + timeout
    while not await predicate():
        if loop.time() > give_up:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def max_overlap(intervals: Iterable[tuple[float, float]]) -> int:
    """The most intervals open at one moment (one ending as another starts: not both)."""
    points = []
    for start, end in intervals:
        points += [(start, 1), (end, -1)]
    points.sort()  # at equal times -1 (an end) sorts before +1 (a start)
    best = current = 0
    for _, change in points:
        current += change
        best = max(best, current)
    return best


def max_starts_per_window(starts: list[float], period: float) -> int:
    """The most starts in any window ``(t - period, t]``: what a rate limit bounds."""
    ordered = sorted(starts)
    return max(sum(1 for s in ordered if t - period < s <= t) for t in ordered)


def fields(value: object) -> dict[str, Any]:
    """A JSON object read from the store (a run's error, an event's data)."""
    assert isinstance(value, dict), value
    return value


def args(ledger: Path, queue: str, key: str, pause: float) -> tuple[Any, ...]:
    return (str(ledger), queue, key, pause)


async def owners(app: kernos.Kernos, run_ids: Iterable[str]) -> dict[str, list[str]]:
    """The workers that started each run, from its ``run.started`` events."""
    found = {}
    for run_id in run_ids:
        events = await app.events(run_id)
        found[run_id] = [str(fields(e.data)["owner"]) for e in events if e.kind == "run.started"]
    return found


FLAGS: dict[str, asyncio.Event] = {}  # set by a test to let the step named so return
ENTERED: set[str] = set()  # flags whose step began


def new_flag(name: str) -> asyncio.Event:
    FLAGS[name] = asyncio.Event()
    return FLAGS[name]


@kernos.step(name="qt_wait_for_flag")
async def wait_for_flag(name: str) -> str:
    ENTERED.add(name)
    await FLAGS[name].wait()
    return name


@kernos.workflow(name="qt_gated")
async def gated(name: str) -> str:
    return await wait_for_flag(name)


@kernos.workflow(name="qt_fails")
async def fails(reason: str) -> None:
    raise ValueError(reason)


@kernos.workflow(name="qt_parent")
async def parent(ledger: str, flag: str) -> str:
    child = await CHILDREN.enqueue(busy, ledger, CHILDREN.name, "child", 0.0)
    await wait_for_flag(flag)
    return child.run_id


@contextlib.asynccontextmanager
async def worker_processes(
    url: str, queues: list[str], count: int, tmp_path: Path
) -> AsyncIterator[list[int]]:
    """``count`` ``queue_worker.py`` processes, up (registered) when this yields their pids."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(SCRIPT.parent)])}
    processes = []
    logs = []
    try:
        for index in range(count):
            ready = tmp_path / f"ready-{index}"
            log = (tmp_path / f"worker-{index}.log").open("wb")
            logs.append(log)
            processes.append(
                await asyncio.create_subprocess_exec(
                    sys.executable,
                    str(SCRIPT),
                    url,
                    ",".join(queues),
                    str(ready),
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.DEVNULL,
                    stderr=log,
                    env=env,
                )
            )

        async def all_ready() -> bool:
            for index, process in enumerate(processes):
                if process.returncode is not None:
                    text = (tmp_path / f"worker-{index}.log").read_text(errors="replace")
                    raise AssertionError(f"worker {index} exited early:\n{text[-3000:]}")
            return all((tmp_path / f"ready-{i}").exists() for i in range(count))

        await until(all_ready, "worker processes to open", timeout=60)
        yield [process.pid for process in processes]
    finally:
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                await asyncio.wait_for(process.wait(), 15)
            except TimeoutError:
                process.kill()
                await process.wait()
        for log in logs:
            log.close()


# -- limits ---------------------------------------------------------------------------


async def test_limits_hold_across_three_apps_and_two_worker_processes(
    store_url: str, tmp_path: Path
) -> None:
    declare()
    ledger = tmp_path / "ledger.csv"
    keys = [f"tenant-{i}" for i in range(4)]
    apps = [kernos.Kernos(store_url, poll_interval=0.02) for _ in range(3)]
    async with worker_processes(store_url, [LIMITED, RATED], 2, tmp_path) as pids:
        try:
            for app in apps:
                await app.open()
            handles = []
            for i in range(15):
                handles.append(
                    await apps[i % 3].enqueue(RATED, busy, args(ledger, RATED, "-", 0.02))
                )
            for i in range(45):
                key = keys[i % 4]
                handles.append(
                    await apps[i % 3].enqueue(
                        LIMITED, busy, args(ledger, LIMITED, key, 0.1), key=key
                    )
                )
            for handle in handles:
                await handle.result(timeout=60)
            runs = {h.run_id: await apps[0].get_run(h.run_id) for h in handles}
            started_by = await owners(apps[0], runs)
            workers = {w.worker_id: w for w in await apps[0].workers()}
        finally:
            for app in apps:
                await app.close()

    executions = read_ledger(ledger)
    # Every run executed exactly once, and succeeded.
    assert Counter(e.run_id for e in executions) == Counter(list(runs))
    assert {run.status for run in runs.values()} == {RunStatus.SUCCEEDED}
    assert all(len(owner) == 1 for owner in started_by.values())

    limited = [e for e in executions if e.queue == LIMITED]
    assert len(limited) == 45
    assert max_overlap((e.start, e.end) for e in limited) == 3  # concurrency=3, and reached
    by_key: dict[str, list[Interval]] = defaultdict(list)
    for e in limited:
        by_key[e.key].append(e)
    assert set(by_key) == set(keys)
    for key, intervals in by_key.items():
        assert max_overlap((e.start, e.end) for e in intervals) == 1, key  # key_concurrency=1

    rated_starts = [r.started_at or 0.0 for r in runs.values() if r.queue == RATED]
    assert len(rated_starts) == 15 and 0.0 not in rated_starts
    assert max_starts_per_window(rated_starts, 1.0) == 5  # rate_limit=5 per 1.0 s, and reached

    # The work really was shared: this process and the worker processes executed runs.
    executing_pids = {e.pid for e in executions}
    assert os.getpid() in executing_pids
    assert executing_pids & set(pids), "no worker process executed anything"
    executing_workers = {owner[0] for owner in started_by.values()}
    assert len(executing_workers) >= 2
    assert {workers[w].pid for w in executing_workers} <= {os.getpid(), *pids}


async def test_worker_concurrency_caps_each_worker(store_url: str, tmp_path: Path) -> None:
    kernos.Queue("qt_capped", worker_concurrency=2)
    ledger = tmp_path / "ledger.csv"
    named = kernos.Kernos(store_url, poll_interval=0.02, queues=["qt_capped"])
    every = kernos.Kernos(store_url, poll_interval=0.02)  # serves every queue
    await named.open()
    await every.open()
    try:
        handles = [
            await named.enqueue("qt_capped", busy, args(ledger, "qt_capped", str(i), 0.1))
            for i in range(16)
        ]
        for handle in handles:
            await handle.result(timeout=30)
        started_by = await owners(named, [h.run_id for h in handles])
    finally:
        await named.close()
        await every.close()
    intervals: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for e in read_ledger(ledger):
        (owner,) = started_by[e.run_id]
        intervals[owner].append((e.start, e.end))
    assert sum(len(found) for found in intervals.values()) == 16
    # Each worker reached its cap of 2 and never went past it.
    assert {owner: max_overlap(found) for owner, found in intervals.items()} == {
        named.engine.worker_id: 2,
        every.engine.worker_id: 2,
    }


# -- ordering and timing -----------------------------------------------------------------


@pytest.mark.parametrize("limited", [False, True], ids=["open-queue", "limited-queue"])
async def test_higher_priority_first_then_fifo(
    store_url: str, tmp_path: Path, limited: bool
) -> None:
    queue = "qt_prio_limited" if limited else "qt_prio_open"
    if limited:
        kernos.Queue(queue, concurrency=1)
    ledger = tmp_path / "ledger.csv"
    order = [("a", 0), ("b", 5), ("c", 0), ("d", 10), ("e", 5), ("f", 0), ("g", 10), ("h", -1)]
    async with kernos.Kernos(store_url, worker=False) as producer:
        for label, priority in order:
            await producer.enqueue(
                queue, busy, args(ledger, queue, label, 0.0), priority=priority, run_id=label
            )
    # One run at a time: by the app's concurrency, or by the queue's.
    async with kernos.Kernos(
        store_url, poll_interval=0.02, concurrency=100 if limited else 1
    ) as worker:
        for label, _ in order:
            await worker.handle(label).result(timeout=20)
    executed = sorted(read_ledger(ledger), key=lambda e: e.start)
    assert [e.key for e in executed] == ["d", "g", "b", "e", "a", "c", "f", "h"]


async def test_delayed_run_does_not_start_before_its_delay(store_url: str, tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.csv"
    async with kernos.Kernos(store_url, poll_interval=0.02) as app:
        late = await app.enqueue("qt_delay", busy, args(ledger, "qt_delay", "late", 0.0), delay=0.5)
        assert (await late.status()) is RunStatus.PENDING
        soon = await app.enqueue("qt_delay", busy, args(ledger, "qt_delay", "soon", 0.0))
        await soon.result(timeout=20)
        await late.result(timeout=20)
        run = await app.get_run(late.run_id)
    assert run.started_at is not None
    assert run.started_at - run.created_at >= 0.5
    assert [e.key for e in sorted(read_ledger(ledger), key=lambda e: e.start)] == ["soon", "late"]


async def test_negative_delay_is_refused(store_url: str, tmp_path: Path) -> None:
    async with kernos.Kernos(store_url, worker=False) as app:
        with pytest.raises(errors.UsageError, match="delay"):
            await app.enqueue("qt_delay", busy, args(tmp_path, "qt_delay", "x", 0.0), delay=-1)


# -- dedup ids ----------------------------------------------------------------------------


async def test_dedup_id_returns_the_unfinished_run_then_allows_a_new_one(
    store_url: str, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger.csv"
    queue = "qt_dedup"
    async with kernos.Kernos(store_url, worker=False) as producer:
        first = await producer.enqueue(queue, busy, args(ledger, queue, "1", 0.0), dedup_id="job")
        again = await producer.enqueue(queue, busy, args(ledger, queue, "2", 0.0), dedup_id="job")
        assert again.run_id == first.run_id
        elsewhere = await producer.enqueue(
            "qt_dedup_other", busy, args(ledger, "qt_dedup_other", "3", 0.0), dedup_id="job"
        )
        assert elsewhere.run_id != first.run_id  # dedup ids are per queue

        # Concurrent enqueues from two stores: still one run.
        second = kernos.Kernos(store_url, worker=False)
        await second.open()
        try:
            handles = await asyncio.gather(
                *(
                    app.enqueue(queue, busy, args(ledger, queue, "4", 0.0), dedup_id="job-2")
                    for app in [producer, second] * 6
                )
            )
        finally:
            await second.close()
        assert len({h.run_id for h in handles}) == 1

        async with kernos.Kernos(store_url, poll_interval=0.02) as worker:
            await worker.handle(first.run_id).result(timeout=20)
            after = await producer.enqueue(
                queue, busy, args(ledger, queue, "5", 0.0), dedup_id="job"
            )
            assert after.run_id != first.run_id  # the holder finished: a new run
            await after.result(timeout=20)
            await worker.handle(handles[0].run_id).result(timeout=20)
            await elsewhere.result(timeout=20)
        runs = await producer.list_runs(workflow="qt_busy", limit=100)
    assert Counter(r.dedup_id for r in runs) == {"job": 3, "job-2": 1}
    assert sorted(e.key for e in read_ledger(ledger)) == ["1", "3", "4", "5"]


# -- dependencies -------------------------------------------------------------------------


async def test_diamond_runs_in_dependency_order(store_url: str, tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.csv"
    queue = "qt_dag"
    async with kernos.Kernos(store_url, worker=False) as producer:
        # Enqueued before any worker is up, the sink first (its dependencies do not
        # exist yet); B and C are quicker than A, so ignoring an edge shows.
        await producer.enqueue(
            queue, busy, args(ledger, queue, "D", 0.0), run_id="D", depends_on=["B", "C"]
        )
        await producer.enqueue(
            queue, busy, args(ledger, queue, "B", 0.05), run_id="B", depends_on=["A"]
        )
        await producer.enqueue(
            queue, busy, args(ledger, queue, "C", 0.1), run_id="C", depends_on=["A"]
        )
        await producer.enqueue(queue, busy, args(ledger, queue, "A", 0.2), run_id="A")
        assert (await producer.get_run("D")).deps_pending == 2
    async with kernos.Kernos(store_url, poll_interval=0.02) as worker:
        for run_id in "ABCD":
            await worker.handle(run_id).result(timeout=20)
        done = [e.data for e in await worker.events("D") if e.kind == "dependency.done"]
    steps = {e.key: e for e in read_ledger(ledger)}
    assert steps["B"].start >= steps["A"].end
    assert steps["C"].start >= steps["A"].end
    assert steps["D"].start >= max(steps["B"].end, steps["C"].end)
    assert sorted(fields(d)["run_id"] for d in done) == ["B", "C"]


async def test_cycle_is_refused_and_named(store_url: str, tmp_path: Path, fetch_rows: Any) -> None:
    queue = "qt_cycle"
    async with kernos.Kernos(store_url, worker=False) as app:
        await app.enqueue(
            queue, busy, args(tmp_path, queue, "a", 0.0), run_id="a", depends_on=["c"]
        )
        await app.enqueue(
            queue, busy, args(tmp_path, queue, "b", 0.0), run_id="b", depends_on=["a"]
        )
        with pytest.raises(errors.DependencyCycleError) as info:
            await app.enqueue(
                queue, busy, args(tmp_path, queue, "c", 0.0), run_id="c", depends_on=["b"]
            )
        assert info.value.cycle == ["c", "b", "a", "c"]  # type: ignore[attr-defined]
        assert "c -> b -> a -> c" in str(info.value)
        with pytest.raises(errors.DependencyCycleError) as self_loop:
            await app.enqueue(
                queue, busy, args(tmp_path, queue, "s", 0.0), run_id="s", depends_on=["s"]
            )
        assert self_loop.value.cycle == ["s", "s"]  # type: ignore[attr-defined]
        # Nothing was created for the refused runs.
        for refused in ("c", "s"):
            with pytest.raises(errors.RunNotFoundError):
                await app.get_run(refused)
            assert await app.events(refused) == []
    rows = await fetch_rows(store_url, "SELECT run_id FROM kernos_run_deps ORDER BY run_id")
    assert rows == [("a",), ("b",)]


async def test_failed_dependency_cancels_dependents_transitively(
    store_url: str, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger.csv"
    queue = "qt_cascade"

    async def add(run_id: str, deps: list[str], on_dep_failure: str = "cancel") -> None:
        await producer.enqueue(
            queue,
            busy,
            args(ledger, queue, run_id, 0.0),
            run_id=run_id,
            depends_on=deps,
            on_dep_failure=on_dep_failure,
        )

    async with kernos.Kernos(store_url, worker=False) as producer:
        await producer.enqueue(queue, fails, ("boom",), run_id="root")
        await add("b", ["root"])  # cancelled
        await add("c", ["b"])  # cancelled, transitively
        await add("d", ["root"], "run")  # runs anyway
        await add("e", ["c"], "run")  # its dependency was cancelled: runs anyway
        await add("f", ["d"])  # d succeeds: runs
        await add("g", ["c", "f"])  # one dependency cancelled: cancelled
    async with kernos.Kernos(store_url, poll_interval=0.02) as worker:
        with pytest.raises(errors.RunFailedError):
            await worker.handle("root").result(timeout=20)
        for cancelled in "bcg":
            with pytest.raises(errors.RunCancelledError):
                await worker.handle(cancelled).result(timeout=20)
        for ran in "def":
            await worker.handle(ran).result(timeout=20)
        runs = {run_id: await worker.get_run(run_id) for run_id in "bcg"}
        reasons = {
            run_id: [
                fields(e.data)["reason"]
                for e in await worker.events(run_id)
                if e.kind == "run.cancelled"
            ]
            for run_id in "bcg"
        }
    assert fields(runs["b"].error)["code"] == "dependency_failed"
    assert "dependency root" in fields(runs["b"].error)["message"]
    assert "dependency b" in fields(runs["c"].error)["message"]
    assert "dependency c" in fields(runs["g"].error)["message"]
    assert reasons == {
        "b": ["dependency root failed"],
        "c": ["dependency b failed"],
        "g": ["dependency c failed"],
    }
    assert all(run.started_at is None for run in runs.values())
    assert sorted(e.key for e in read_ledger(ledger)) == ["d", "e", "f"]


async def test_dependency_already_failed_at_enqueue(store_url: str, tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.csv"
    queue = "qt_late_deps"
    async with kernos.Kernos(store_url, poll_interval=0.02) as app:
        root = await app.enqueue(queue, fails, ("boom",), run_id="root")
        with pytest.raises(errors.RunFailedError):
            await root.result(timeout=20)
        ok = await app.enqueue(queue, busy, args(ledger, queue, "ok", 0.0), run_id="ok")
        await ok.result(timeout=20)
        cancelled_dep = await app.enqueue(queue, gated, ("never",), run_id="gone")
        await app.cancel(cancelled_dep.run_id)

        cancelled = await app.enqueue(
            queue, busy, args(ledger, queue, "x", 0.0), run_id="x", depends_on=["ok", "root"]
        )
        run = await app.get_run(cancelled.run_id)
        assert run.status is RunStatus.CANCELLED  # at once, without a worker
        assert fields(run.error)["code"] == "dependency_failed"
        assert "dependency root failed" in fields(run.error)["message"]
        events = [(e.kind, e.data) for e in await app.events("x")]
        assert ("run.cancelled", {"reason": "dependency root failed"}) in events
        on_cancelled = await app.get_run(
            (
                await app.enqueue(
                    queue, busy, args(ledger, queue, "y", 0.0), run_id="y", depends_on=["gone"]
                )
            ).run_id
        )
        assert on_cancelled.status is RunStatus.CANCELLED
        assert "dependency gone cancelled" in fields(on_cancelled.error)["message"]
        # And a run depending on the cancelled one is cancelled in turn.
        chained = await app.enqueue(
            queue, busy, args(ledger, queue, "z", 0.0), run_id="z", depends_on=["x"]
        )
        assert (await chained.status()) is RunStatus.CANCELLED

        anyway = await app.enqueue(
            queue,
            busy,
            args(ledger, queue, "anyway", 0.0),
            depends_on=["root", "ok"],
            on_dep_failure="run",
        )
        await anyway.result(timeout=20)
        with pytest.raises(errors.UsageError, match="on_dep_failure"):
            await app.enqueue(queue, busy, args(ledger, queue, "?", 0.0), on_dep_failure="maybe")
    assert sorted(e.key for e in read_ledger(ledger)) == ["anyway", "ok"]


# -- enqueue from a workflow ----------------------------------------------------------------


async def test_enqueue_in_a_workflow_is_journaled_and_not_repeated_after_restart(
    store_url: str, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger.csv"
    flag = f"parent-{store_url}"
    gate = new_flag(flag)
    first = kernos.Kernos(store_url, poll_interval=0.02)
    await first.open()
    try:
        await first.enqueue("qt_parents", parent, (str(ledger), flag), run_id="parent")

        async def blocked_after_enqueue() -> bool:
            journal = await first.journal("parent")
            return [e.kind for e in journal] == [EntryKind.ENQUEUE] and flag in ENTERED

        await until(blocked_after_enqueue, "the parent to enqueue and block")
    finally:
        await first.close()  # mid-way: the parent is handed back unfinished
    gate.set()
    async with kernos.Kernos(store_url, poll_interval=0.02) as second:
        child_id = await second.handle("parent").result(timeout=20)
        await second.handle(child_id).result(timeout=20)
        children = await second.list_runs(workflow="qt_busy")
        run = await second.get_run("parent")
        journal = await second.journal("parent")
        events = await second.events("parent")
    assert [c.run_id for c in children] == [child_id] == ["parent.0"]
    assert children[0].queue == CHILDREN.name
    assert run.executions == 2  # it really was executed again
    assert [e.kind for e in journal] == [EntryKind.ENQUEUE, EntryKind.STEP]
    assert journal[0].output == child_id
    assert [e.data for e in events if e.kind == "run.enqueued"] == [
        {"seq": 0, "run_id": child_id, "queue": CHILDREN.name}
    ]
    assert [e.key for e in read_ledger(ledger)] == ["child"]


# -- configuration --------------------------------------------------------------------------


async def test_queues_from_toml(store_url: str, tmp_path: Path) -> None:
    path = tmp_path / "queues.toml"
    path.write_text(
        "[queues.qt_toml_llm]\nconcurrency = 10\nkey_concurrency = 2\n"
        "rate_limit = 100\nrate_period = 60\n\n"
        "[queues.qt_toml_io]\nworker_concurrency = 4\n"
    )
    loaded = kernos.load_queues(path)
    assert [q.name for q in loaded] == ["qt_toml_llm", "qt_toml_io"]
    assert declared_queues["qt_toml_llm"] is loaded[0]
    async with kernos.Kernos(store_url, worker=False) as app:
        stats = {s.name: s for s in await app.queues()}
    assert stats["qt_toml_llm"].spec == kernos.QueueSpec(
        name="qt_toml_llm", concurrency=10, key_concurrency=2, rate_limit=100, rate_period=60.0
    )
    assert stats["qt_toml_io"].spec == kernos.QueueSpec(name="qt_toml_io", worker_concurrency=4)


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("[queues.qt_bad]\nconcurrency = 2\nburst = 3\n", "burst"),
        ("[queues.qt_bad]\nconcurrency = 0\n", "concurrency"),
        ("[queues.qt_bad]\nkey_concurrency = 'two'\n", "key_concurrency"),
        ("[queues.qt_bad]\nrate_limit = 5\nrate_period = 0\n", "rate_period"),
        ("[queues]\nqt_bad = 3\n", "[queues.qt_bad]"),
        ("[queues.qt_bad\n", "cannot read"),
    ],
)
def test_bad_queue_config_names_the_problem(tmp_path: Path, text: str, named: str) -> None:
    path = tmp_path / "queues.toml"
    path.write_text(text)
    with pytest.raises(errors.ConfigError) as info:
        kernos.load_queues(path)
    assert named in str(info.value)
    assert "qt_bad" not in declared_queues


def test_missing_queue_config_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(errors.ConfigError, match="cannot read"):
        kernos.load_queues(tmp_path / "absent.toml")


# -- registries and shutdown ----------------------------------------------------------------


async def test_queue_depths_and_worker_registry(store_url: str) -> None:
    kernos.Queue("qt_stats", concurrency=1)
    flags = [f"stats-{i}-{store_url}" for i in range(3)]
    async with kernos.Kernos(store_url, worker=False) as observer:
        for flag in flags:
            new_flag(flag)
            await observer.enqueue("qt_stats", gated, (flag,), run_id=flag)

        async def depth() -> tuple[int, int]:
            stats = {s.name: s for s in await observer.queues()}["qt_stats"]
            return stats.pending, stats.running

        assert await depth() == (3, 0)
        worker = kernos.Kernos(store_url, poll_interval=0.02, concurrency=5, queues=["qt_stats"])
        await worker.open()
        try:

            async def one_running() -> bool:
                return await depth() == (2, 1)

            await until(one_running, "one run of qt_stats to run")
            registry = {w.worker_id: w for w in await observer.workers()}
            assert list(registry) == [worker.engine.worker_id]  # the observer claims nothing
            me = registry[worker.engine.worker_id]
            assert (me.queues, me.in_flight, me.state) == (["qt_stats"], 1, "active")
            assert (me.pid, me.concurrency) == (os.getpid(), 5)
            for flag in flags:
                FLAGS[flag].set()
            for flag in flags:
                await worker.handle(flag).result(timeout=20)
            assert await depth() == (0, 0)
        finally:
            await worker.close()
        (gone,) = await observer.workers()
        assert (gone.worker_id, gone.state, gone.in_flight) == (worker.engine.worker_id, "gone", 0)


async def test_close_with_grace_lets_the_in_flight_run_finish(store_url: str) -> None:
    drained, dropped = f"drain-{store_url}", f"drop-{store_url}"
    new_flag(drained)
    new_flag(dropped)
    async with kernos.Kernos(store_url, worker=False) as observer:
        worker = kernos.Kernos(store_url, poll_interval=0.02)
        await worker.open()
        await worker.enqueue("qt_drain", gated, (drained,), run_id="drained")

        async def entered() -> bool:
            return drained in ENTERED

        await until(entered, "the run to start")
        closing = asyncio.create_task(worker.close(grace=60))

        async def draining() -> bool:
            return [w.state for w in await observer.workers()] == ["draining"]

        await until(draining, "the worker to drain")
        assert (await observer.get_run("drained")).status is RunStatus.RUNNING
        FLAGS[drained].set()
        await closing
        run = await observer.get_run("drained")
        assert (run.status, run.executions, run.output) == (RunStatus.SUCCEEDED, 1, drained)
        assert "run.released" not in [e.kind for e in await observer.events("drained")]
        assert [w.state for w in await observer.workers()] == ["gone"]

        # Without grace, the run is handed back unfinished instead.
        worker = kernos.Kernos(store_url, poll_interval=0.02)
        await worker.open()
        await worker.enqueue("qt_drain", gated, (dropped,), run_id="dropped")

        async def entered_too() -> bool:
            return dropped in ENTERED

        await until(entered_too, "the second run to start")
        await worker.close(grace=0)
        run = await observer.get_run("dropped")
        assert (run.status, run.owner) == (RunStatus.PENDING, None)
        assert "run.released" in [e.kind for e in await observer.events("dropped")]
