"""`kernos worker`, `kernos queues list` and `kernos workers list`, run as users run them.

Each test writes a small app module (workflows and a queue) and a queue config
into its ``tmp_path``, starts `kernos worker` processes on them, and enqueues
runs from this process through a ``worker=False`` app. The steps append what
they do to a notes file (``tag event pid`` lines), so a test sees which worker
executed what, and that a finished step never ran twice. SQLite always,
PostgreSQL too when ``KERNOS_TEST_POSTGRES_URL`` is set.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import kernos
from kernos.records import RunStatus
from kernos.runtime._definitions import registry
from kernos.runtime._queues import queues as declared_queues

MODULE = "workerflows"

FLOWS = textwrap.dedent(
    '''
    """Workflows served by the `kernos worker` processes of the tests."""

    import asyncio
    import os

    import kernos

    fast = kernos.Queue("fast", concurrency=8, key_concurrency=2)


    def note(tag: str, what: str) -> None:
        with open(os.environ["WK_NOTES"], "a") as notes:
            notes.write(f"{tag} {what} {os.getpid()}\\n")


    @kernos.step
    async def wk_work(i: int) -> int:
        await asyncio.sleep(0.2)
        return os.getpid()


    @kernos.workflow
    async def wk_job(i: int) -> int:
        return await wk_work(i)


    @kernos.step
    async def wk_first(tag: str) -> str:
        note(tag, "first")
        return tag


    @kernos.step
    async def wk_long(tag: str, seconds: float) -> str:
        note(tag, "long-start")
        try:
            await asyncio.sleep(seconds)
        except asyncio.CancelledError:
            note(tag, "long-interrupted")
            raise
        note(tag, "long-end")
        return tag


    @kernos.step
    async def wk_last(tag: str) -> str:
        note(tag, "last")
        return tag


    @kernos.workflow
    async def wk_long_flow(tag: str, seconds: float) -> str:
        await wk_first(tag)
        await wk_long(tag, seconds)
        return await wk_last(tag)
    '''
)

CONFIG = textwrap.dedent(
    """
    [queues.slow]
    worker_concurrency = 1
    rate_limit = 100
    rate_period = 60
    """
)

LEASE = "1.5"  # heartbeats every 0.5 s: cancellations reach a worker quickly


def kernos_script() -> str:
    """The installed console script, next to this interpreter (or on PATH)."""
    beside = Path(sys.executable).parent / "kernos"
    found = str(beside) if beside.exists() else shutil.which("kernos")
    assert found, "the kernos console script is not installed (pip install -e .)"
    return found


async def until(
    check: Callable[[], Awaitable[bool] | bool], what: str, timeout: float = 30
) -> None:
    """Wait until ``check()`` holds; ``timeout`` only bounds a failing test."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + timeout
    while True:
        result = check()
        if result if isinstance(result, bool) else await result:
            return
        assert loop.time() < give_up, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


@dataclass
class Worker:
    """A `kernos worker` process; its stderr goes to a file."""

    process: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def stderr(self) -> str:
        return self.log.read_text()

    @property
    def worker_id(self) -> str:
        (line,) = [line for line in self.stderr().splitlines() if " started: " in line]
        return line.split()[2]

    async def started(self) -> Worker:
        await until(lambda: " started: " in self.stderr() or self.process.poll() is not None, "")
        assert self.process.poll() is None, self.stderr()
        return self

    def signal(self, sig: signal.Signals = signal.SIGTERM) -> None:
        self.process.send_signal(sig)

    async def exited(self, timeout: float = 30) -> int:
        await until(lambda: self.process.poll() is not None, "the worker to exit", timeout)
        code = self.process.returncode
        assert "Traceback" not in self.stderr(), self.stderr()
        return code


@dataclass
class Project:
    """A directory with the app module, its queue config and a store."""

    root: Path
    store_url: str
    workers: list[Worker] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("KERNOS_")}
        env["KERNOS_STORE"] = self.store_url
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(self.root), env.get("PYTHONPATH")]))
        env["WK_NOTES"] = str(self.root / "notes.txt")
        return env

    def cli(self, *args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [kernos_script(), *args],
            cwd=self.root,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == code, (
            f"kernos {' '.join(args)} exited {done.returncode}, expected {code}\n"
            f"stdout: {done.stdout}\nstderr: {done.stderr}"
        )
        assert "Traceback" not in done.stderr, done.stderr
        return done

    def json(self, *args: str) -> Any:
        return json.loads(self.cli(*args, "--json").stdout)

    def error(self, *args: str, code: int) -> str:
        """Run a command that must fail; return its one-line error."""
        done = self.cli(*args, code=code)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
        return lines[0]

    async def worker(self, *args: str, grace: str = "10") -> Worker:
        """Start `kernos worker` on the app and config, and wait until it serves."""
        return await self.spawn(*args, grace=grace).started()

    def spawn(self, *args: str, grace: str = "10") -> Worker:
        """Start `kernos worker` on the app and config."""
        log = self.root / f"worker-{len(self.workers)}.log"
        command = [
            kernos_script(), "worker", "--app", MODULE, "--config", "kernos.toml",
            "--lease", LEASE, "--poll", "0.1", "--grace", grace, *args,
        ]  # fmt: skip
        with log.open("wb") as stderr:
            process = subprocess.Popen(
                command,
                cwd=self.root,
                env=self.env(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        worker = Worker(process, log)
        self.workers.append(worker)
        return worker

    def notes(self, tag: str) -> list[tuple[str, int]]:
        """``(event, pid)`` of each step event the runs tagged ``tag`` noted, in order."""
        path = self.root / "notes.txt"
        lines = path.read_text().splitlines() if path.exists() else []
        return [
            (event, int(pid))
            for line_tag, event, pid in (line.split() for line in lines)
            if line_tag == tag
        ]

    def noted(self, tag: str, event: str) -> bool:
        return any(seen == event for seen, _ in self.notes(tag))


@pytest.fixture
def project(tmp_path: Path, store_url: str) -> Iterator[Project]:
    """The project; its workers are killed at the end if a test left any running."""
    (tmp_path / f"{MODULE}.py").write_text(FLOWS)
    (tmp_path / "kernos.toml").write_text(CONFIG)
    made = Project(root=tmp_path, store_url=store_url)
    yield made
    for worker in made.workers:
        if worker.process.poll() is None:
            worker.process.kill()
            worker.process.wait(10)


@pytest.fixture
async def flows(project: Project) -> AsyncIterator[tuple[ModuleType, kernos.Kernos]]:
    """The app module imported here, and an app that enqueues (never executes) runs."""
    queues_before = dict(declared_queues)
    workflows_before = dict(registry.workflows)
    declared_queues.clear()  # only this module's queues go into the test's store
    spec = importlib.util.spec_from_file_location(MODULE, project.root / f"{MODULE}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    try:
        async with kernos.Kernos(project.store_url, worker=False) as app:
            yield module, app
    finally:
        declared_queues.clear()
        declared_queues.update(queues_before)
        registry.workflows.clear()
        registry.workflows.update(workflows_before)


def tamper(url: str, sql: str) -> None:
    """Change the store behind Kernos's back."""
    if url.startswith("sqlite:///"):
        conn = sqlite3.connect(url[len("sqlite:///") :])
        try:
            with conn:
                conn.execute(sql)
        finally:
            conn.close()
        return
    import psycopg

    with psycopg.connect(url) as pg:
        pg.execute(sql.encode())


async def status_of(app: kernos.Kernos, run_id: str) -> RunStatus:
    return (await app.get_run(run_id)).status


# -- tests ----------------------------------------------------------------------------


async def test_two_workers_share_the_queue_then_stop(
    project: Project, flows: tuple[ModuleType, kernos.Kernos]
) -> None:
    module, app = flows
    first = project.spawn("--queues", "fast,slow", "--concurrency", "4")
    second = project.spawn("--queues", "fast", "--queues", "slow", "-c", "4")
    for worker in (first, second):
        await worker.started()
        line = next(line for line in worker.stderr().splitlines() if " started: " in line)
        assert f"pid={worker.pid}" in line and "queues=fast,slow concurrency=4" in line
        assert f"store={project.store_url}" in line

    handles = [await module.fast.enqueue(module.wk_job, i) for i in range(16)]
    await app.enqueue("other", module.wk_job, (99,), run_id="unserved")  # no worker serves it
    pids = {await handle.result(timeout=60) for handle in handles}
    assert pids == {first.pid, second.pid}, "both workers executed some runs"
    owners = {
        event.data["owner"]
        for handle in handles
        for event in await app.events(handle.run_id)
        if event.kind == "run.started" and isinstance(event.data, dict)
    }
    assert owners == {first.worker_id, second.worker_id}

    queues = {queue["name"]: queue for queue in project.json("queues", "list")["queues"]}
    assert queues["fast"]["spec"] | {"name": "fast"} == {
        "name": "fast",
        "concurrency": 8,
        "worker_concurrency": None,
        "key_concurrency": 2,
        "rate_limit": None,
        "rate_period": None,
    }
    assert queues["slow"]["spec"]["worker_concurrency"] == 1  # from kernos.toml
    assert queues["slow"]["spec"]["rate_limit"] == 100
    assert queues["slow"]["spec"]["rate_period"] == 60
    assert queues["other"]["spec"] is None
    assert [queues["other"][state] for state in ("pending", "running", "waiting", "paused")] == [
        1,
        0,
        0,
        0,
    ]
    assert queues["fast"]["pending"] == queues["fast"]["running"] == 0
    table = project.cli("queues", "list").stdout
    for expected in ("fast", "slow", "other", "100/60s", "pending"):
        assert expected in table

    listed = {w["worker_id"]: w for w in project.json("workers", "list")["workers"]}
    for worker in (first, second):
        shown = listed[worker.worker_id]
        assert shown["pid"] == worker.pid and shown["state"] == "active"
        assert shown["queues"] == ["fast", "slow"] and shown["concurrency"] == 4
        assert shown["in_flight"] == 0 and shown["host"]
        assert 0 <= shown["heartbeat_age"] < 10

    for worker in (first, second):
        worker.signal(signal.SIGTERM)
    assert [await first.exited(), await second.exited()] == [0, 0]
    assert await status_of(app, "unserved") is RunStatus.PENDING
    listed = {w["worker_id"]: w for w in project.json("workers", "list")["workers"]}
    assert listed[first.worker_id]["state"] == listed[second.worker_id]["state"] == "gone"

    # Workers gone for more than an hour are left out unless --all.
    tamper(
        project.store_url,
        "UPDATE kernos_workers SET heartbeat_at = heartbeat_at - 7200 "
        f"WHERE worker_id = '{first.worker_id}'",
    )
    listed_now = project.cli("workers", "list")
    assert second.worker_id in listed_now.stdout and first.worker_id not in listed_now.stdout
    assert "1 worker(s) gone for more than an hour not shown" in listed_now.stderr
    table = project.cli("workers", "list", "--all").stdout
    assert first.worker_id in table and "gone" in table and "2h00m ago" in table
    assert "fast,slow" in table and "0/4" in table


async def test_sigterm_lets_the_running_step_finish(
    project: Project, flows: tuple[ModuleType, kernos.Kernos]
) -> None:
    module, app = flows
    draining = await project.worker(grace="30")
    await app.enqueue("slow", module.wk_long_flow, ("drain", 6.0), run_id="drain")
    await until(lambda: project.noted("drain", "long-start"), "the long step to start")
    # A second worker, ready to take the run over should the draining one lose its lease.
    other = project.spawn()
    draining.signal(signal.SIGTERM)
    await until(lambda: "draining" in draining.stderr(), "the worker to log draining")
    (shown,) = [w for w in await app.workers() if w.pid == draining.pid]
    assert shown.state == "draining" and shown.in_flight == 1
    await other.started()
    assert await draining.exited() == 0
    assert await status_of(app, "drain") is RunStatus.SUCCEEDED
    assert project.notes("drain") == [
        (event, draining.pid) for event in ("first", "long-start", "long-end", "last")
    ]
    assert "SIGTERM received" in draining.stderr() and "stopped" in draining.stderr()
    other.signal(signal.SIGINT)
    assert await other.exited() == 0


async def test_short_grace_hands_the_run_back(
    project: Project, flows: tuple[ModuleType, kernos.Kernos]
) -> None:
    module, app = flows
    leaving = await project.worker(grace="0.5")
    await app.enqueue("slow", module.wk_long_flow, ("back", 3.0), run_id="back")
    await until(lambda: project.noted("back", "long-start"), "the long step to start")
    leaving.signal(signal.SIGTERM)
    assert await leaving.exited(timeout=15) == 0
    run = await app.get_run("back")
    assert run.status is RunStatus.PENDING and run.owner is None
    assert "run.released" in [event.kind for event in await app.events("back")]

    taking_over = await project.worker()
    assert await app.handle("back").result(timeout=30) == "back"
    assert project.notes("back") == [
        ("first", leaving.pid),
        ("long-start", leaving.pid),
        ("long-interrupted", leaving.pid),
        ("long-start", taking_over.pid),  # the unfinished step runs again; "first" does not
        ("long-end", taking_over.pid),
        ("last", taking_over.pid),
    ]
    taking_over.signal(signal.SIGTERM)
    assert await taking_over.exited() == 0


@pytest.mark.parametrize("backend", ["sqlite"])  # signal handling is the same on both
async def test_a_second_signal_skips_the_grace(
    project: Project, flows: tuple[ModuleType, kernos.Kernos]
) -> None:
    module, app = flows
    worker = await project.worker(grace="60")
    await app.enqueue("slow", module.wk_long_flow, ("hurry", 60.0), run_id="hurry")
    await until(lambda: project.noted("hurry", "long-start"), "the long step to start")
    worker.signal(signal.SIGINT)
    await until(lambda: "draining" in worker.stderr(), "the worker to log draining")
    await asyncio.sleep(1.2)  # a repeat within a second counts as the same request
    worker.signal(signal.SIGTERM)
    assert await worker.exited(timeout=15) == 0
    assert "received again" in worker.stderr()
    assert await status_of(app, "hurry") is RunStatus.PENDING
    assert project.noted("hurry", "long-interrupted")


async def test_runs_cancel_stops_a_run_in_a_worker(
    project: Project, flows: tuple[ModuleType, kernos.Kernos]
) -> None:
    module, app = flows
    worker = await project.worker()
    await app.enqueue("slow", module.wk_long_flow, ("stop", 60.0), run_id="stop")
    await until(lambda: project.noted("stop", "long-start"), "the long step to start")
    assert "cancelled stop" in project.cli("runs", "cancel", "stop").stdout
    # The worker's next heartbeat (every lease/3 s) finds it no longer holds the run.
    await until(lambda: project.noted("stop", "long-interrupted"), "the step to be interrupted")
    run = await app.get_run("stop")
    assert run.status is RunStatus.CANCELLED
    assert isinstance(run.error, dict)
    assert run.error["message"] == "cancelled from the command line"

    # The worker goes on serving, then stops at once: nothing is left to drain.
    assert await (await module.fast.enqueue(module.wk_job, 1)).result(timeout=30) == worker.pid
    worker.signal(signal.SIGTERM)
    assert await worker.exited() == 0
    assert "draining" not in worker.stderr()
    assert not project.noted("stop", "last") and not project.noted("stop", "long-end")


def test_worker_help_and_usage_errors(tmp_path: Path) -> None:
    project = Project(root=tmp_path, store_url=f"sqlite:///{tmp_path / 'never.db'}")
    (tmp_path / f"{MODULE}.py").write_text(FLOWS)
    help_text = project.cli("worker", "--help").stdout
    for expected in ("Usage: kernos worker", "--queues", "--concurrency", "--grace", "--config"):
        assert expected in help_text
    assert "--all" in project.cli("workers", "list", "--help").stdout
    assert "Usage: kernos queues list" in project.cli("queues", "list", "--help").stdout

    (tmp_path / "broken.toml").write_text("[queues.slow\nconcurrency = 1\n")
    assert "broken.toml" in project.error(
        "worker", "--app", MODULE, "--config", "broken.toml", code=2
    )
    (tmp_path / "odd.toml").write_text("[queues.slow]\nconcurency = 1\n")
    assert "concurency" in project.error("worker", "--app", MODULE, "--config", "odd.toml", code=2)
    (tmp_path / "typo.toml").write_text('[queues.slow]\nrate_limit = 5\nrate_period = "1m"\n')
    assert "rate_period" in project.error(
        "worker", "--app", MODULE, "--config", "typo.toml", code=2
    )
    assert "--app" in project.error("worker", code=2)
    assert "kernos db migrate" in project.error("worker", "--app", MODULE, code=2)
    assert not (tmp_path / "never.db").exists()
