"""The `kernos` command, run as users run it: the installed console script on a real store.

Each test writes a small workflow module into its ``tmp_path``, executes it in a
subprocess to create runs, then drives the CLI in subprocesses against the same
store (SQLite always, PostgreSQL too when ``KERNOS_TEST_POSTGRES_URL`` is set).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from tests.conftest import MakeStoreUrl

MODULE = "cliflows"

FLOWS = textwrap.dedent(
    '''
    """Workflows for the CLI tests; `python -m cliflows` creates the runs."""

    import asyncio
    import sys

    import kernos
    from kernos import errors


    @kernos.step
    async def fetch(topic: str) -> str:
        return f"notes on {topic}"


    @kernos.step
    async def summarize(notes: str) -> str:
        return notes.upper()


    @kernos.step
    async def shorten(notes: str) -> str:
        return notes[:5]


    @kernos.step
    async def publish(summary: str) -> dict:
        return {"published": summary}


    @kernos.step
    async def explode() -> None:
        raise errors.PermanentError("the printer is on fire")


    @kernos.workflow
    async def brief(topic: str) -> dict:
        notes = await fetch(topic)                              # seq 0
        summary = await summarize(notes)                        # seq 1
        kernos.checkpoint("summarized", {"summary": summary})   # seq 2
        return await publish(summary)                           # seq 3


    @kernos.workflow
    async def doomed() -> None:
        await explode()


    @kernos.workflow
    async def sleeper() -> str:
        await kernos.sleep(3600)
        return "rested"


    async def create(url: str) -> None:
        async with kernos.Kernos(url, poll_interval=0.05) as app:
            assert await (await app.start(brief, "kernos", run_id="brief-1")).result(timeout=30)
            try:
                await (await app.start(doomed, run_id="doomed-1")).result(timeout=30)
            except errors.RunFailedError:
                pass
            await app.start(sleeper, run_id="sleeper-1")
            while (await app.get_run("sleeper-1")).status is not kernos.RunStatus.WAITING:
                await asyncio.sleep(0.05)


    if __name__ == "__main__":
        asyncio.run(create(sys.argv[1]))
    '''
)


def kernos_script() -> str:
    """The installed console script, next to this interpreter (or on PATH)."""
    beside = Path(sys.executable).parent / "kernos"
    found = str(beside) if beside.exists() else shutil.which("kernos")
    assert found, "the kernos console script is not installed (pip install -e .)"
    return found


def tamper(url: str, sql: str) -> None:
    """Change the store behind Kernos's back, as corruption would."""
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


@dataclass
class Cli:
    """Runs `kernos` in a project directory holding the workflow module."""

    root: Path
    store_url: str

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("KERNOS_")}
        env["KERNOS_STORE"] = self.store_url
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(self.root), env.get("PYTHONPATH")]))
        # The tests rewrite the module within the same second; a stale .pyc must not win.
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        return env

    def __call__(self, *args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [kernos_script(), *args],
            cwd=self.root,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == code, (
            f"kernos {' '.join(args)} exited {done.returncode}, expected {code}\n"
            f"stdout: {done.stdout}\nstderr: {done.stderr}"
        )
        assert "Traceback" not in done.stderr, done.stderr
        return done

    def json(self, *args: str, code: int = 0) -> Any:
        done = self(*args, "--json", code=code)
        return json.loads(done.stdout)  # one valid document, nothing else on stdout

    def error(self, *args: str, code: int) -> str:
        """Run a command that must fail; return its one-line error."""
        done = self(*args, code=code)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1, done.stderr
        assert lines[0].startswith("error: "), done.stderr
        assert done.stdout == ""
        return lines[0]

    def write_flows(self, text: str) -> None:
        (self.root / f"{MODULE}.py").write_text(text)


@pytest.fixture
def cli(tmp_path: Path, store_url: str) -> Cli:
    """A project with the workflow module and a store holding runs of it:
    ``brief-1`` succeeded, ``doomed-1`` failed, ``sleeper-1`` waiting."""
    project = Cli(root=tmp_path, store_url=store_url)
    project.write_flows(FLOWS)
    subprocess.run(
        [sys.executable, "-m", MODULE, store_url],
        cwd=tmp_path,
        env=project.env(),
        check=True,
        timeout=120,
    )
    return project


def test_runs_list(cli: Cli) -> None:
    listed = cli.json("runs", "list")
    assert {run["run_id"]: run["status"] for run in listed["runs"]} == {
        "brief-1": "succeeded",
        "doomed-1": "failed",
        "sleeper-1": "waiting",
    }
    assert listed["next_cursor"] is None

    failed = cli.json("runs", "list", "--status", "failed")
    assert [run["run_id"] for run in failed["runs"]] == ["doomed-1"]
    assert cli.json("runs", "list", "--workflow", "brief")["runs"][0]["steps"] == 4

    table = cli("runs", "list").stdout
    for expected in ("brief-1", "doomed-1", "sleeper-1", "succeeded", "waiting", "brief"):
        assert expected in table


def test_runs_list_pages_with_a_cursor(cli: Cli) -> None:
    seen = []
    cursor: list[str] = []
    while True:
        page = cli.json("runs", "list", "--limit", "1", *cursor)
        seen += [run["run_id"] for run in page["runs"]]
        if page["next_cursor"] is None:
            break
        cursor = ["--before", page["next_cursor"]]
    assert sorted(seen) == ["brief-1", "doomed-1", "sleeper-1"]
    assert "next page: --before " in cli("runs", "list", "--limit", "1").stdout
    assert "cursor" in cli.error("runs", "list", "--before", "nonsense", code=2)


def test_runs_show(cli: Cli) -> None:
    shown = cli.json("runs", "show", "brief-1")
    assert shown["run"]["output"] == {"published": "NOTES ON KERNOS"}
    assert [(e["seq"], e["kind"], e["name"]) for e in shown["journal"]] == [
        (0, "step", "fetch"),
        (1, "step", "summarize"),
        (2, "checkpoint", "summarized"),
        (3, "step", "publish"),
    ]
    text = cli("runs", "show", "brief-1").stdout
    for expected in ("journal", "summarize", "checkpoint", '"NOTES ON KERNOS"', "succeeded"):
        assert expected in text

    failed = cli("runs", "show", "doomed-1").stdout
    assert "PermanentError: the printer is on fire" in failed


def test_runs_events(cli: Cli) -> None:
    kinds = [event["kind"] for event in cli.json("runs", "events", "brief-1")["events"]]
    assert kinds[0] == "run.created" and kinds[-1] == "run.succeeded"
    assert "step.completed" in cli("runs", "events", "brief-1").stdout


def test_checkpoints_list(cli: Cli) -> None:
    (checkpoint,) = cli.json("checkpoints", "list", "brief-1")["checkpoints"]
    assert checkpoint["name"] == "summarized" and checkpoint["seq"] == 2
    assert checkpoint["intact"] is True
    text = cli("checkpoints", "list", "brief-1").stdout
    assert "summarized" in text and checkpoint["sha256"][:12] in text and "yes" in text
    assert "no checkpoints" in cli("checkpoints", "list", "doomed-1").stdout


def test_fork_with_a_patch_executes_the_fork(cli: Cli) -> None:
    fork = cli.json(
        "fork", "brief-1", "--at", "1", "--patch", '"x"', "--app", MODULE, "--wait", "--id", "f1"
    )
    assert fork["run_id"] == "f1" and fork["status"] == "succeeded"
    assert fork["output"] == {"published": "x"}
    original = cli.json("runs", "show", "brief-1")["run"]
    assert original["superseded_by"] == "f1"

    text = cli("fork", "brief-1", "--at", "summarized", "--app", MODULE, "--wait").stdout
    assert "succeeded" in text and "NOTES ON KERNOS" in text


def test_fork_without_wait_leaves_the_fork_pending(cli: Cli) -> None:
    text = cli("fork", "brief-1", "--at", "3", "--id", "later").stdout
    assert "later" in text and "pending" in text
    assert cli.json("runs", "show", "later")["run"]["status"] == "pending"


def test_fork_errors(cli: Cli) -> None:
    assert "seq 9" in cli.error("fork", "brief-1", "--at", "9", code=2)
    assert "no checkpoint named 'nope'" in cli.error("fork", "brief-1", "--at", "nope", code=2)
    assert "not valid JSON" in cli.error("fork", "brief-1", "--at", "1", "--patch", "x", code=2)
    assert "nosuchmodule" in cli.error(
        "fork", "brief-1", "--at", "1", "--app", "nosuchmodule", "--wait", code=2
    )
    (cli.root / "other.py").write_text("import kernos\n")
    assert "'brief' is not registered" in cli.error(
        "fork", "brief-1", "--at", "1", "--app", "other", "--wait", code=2
    )
    assert cli.json("runs", "show", "brief-1")["run"]["superseded_by"] is None


def test_fork_that_fails_again_exits_1(cli: Cli) -> None:
    done = cli("fork", "doomed-1", "--at", "0", "--app", MODULE, "--wait", code=1)
    assert done.stdout == ""
    created, failed = done.stderr.strip().splitlines()
    assert created.startswith("created fork doomed-1~")
    assert failed.startswith("error: ") and "the printer is on fire" in failed


def test_corrupt_checkpoint(cli: Cli) -> None:
    tamper(
        cli.store_url,
        'UPDATE kernos_journal SET output = \'{"summary": "forged"}\' '
        "WHERE run_id = 'brief-1' AND kind = 'checkpoint'",
    )
    (checkpoint,) = cli.json("checkpoints", "list", "brief-1")["checkpoints"]
    assert checkpoint["intact"] is False
    assert "NO" in cli("checkpoints", "list", "brief-1").stdout
    assert "SHA-256" in cli.error("fork", "brief-1", "--at", "summarized", code=1)


def test_replay_identical_then_diverged(cli: Cli) -> None:
    assert "identical" in cli("replay", "brief-1", "--app", MODULE).stdout
    assert cli.json("replay", "brief-1", "--app", MODULE)["identical"] is True

    cli.write_flows(FLOWS.replace("await summarize(notes)", "await shorten(notes)"))
    diverged = cli("replay", "brief-1", "--app", MODULE, code=1).stdout
    assert "diverged at seq 1" in diverged and "summarize" in diverged
    report = cli.json("replay", "brief-1", "--app", MODULE, code=1)
    assert report["identical"] is False and report["divergence"]["seq"] == 1


def test_replay_needs_the_app(cli: Cli) -> None:
    assert "--app" in cli.error("replay", "brief-1", code=2)
    assert "nosuchmodule" in cli.error("replay", "brief-1", "--app", "nosuchmodule", code=2)
    flows_file = str(cli.root / f"{MODULE}.py")
    assert "identical" in cli("--app", flows_file, "replay", "brief-1").stdout


def test_runs_cancel(cli: Cli) -> None:
    assert "cancelled sleeper-1" in cli("runs", "cancel", "sleeper-1", "--reason", "enough").stdout
    run = cli.json("runs", "show", "sleeper-1")["run"]
    assert run["status"] == "cancelled" and run["error"]["message"] == "enough"
    assert "nothing to cancel" in cli("runs", "cancel", "brief-1").stdout


def test_db_migrate_twice(cli: Cli, make_store_url: MakeStoreUrl) -> None:
    fresh = make_store_url(migrated=False)
    first = cli("db", "migrate", "--store", fresh).stdout
    assert "applied 0001_initial" in first and "schema version" in first
    second = cli.json("db", "migrate", "--store", fresh)
    assert second["applied"] == [] and second["schema_version"] == second["latest"]
    assert "nothing to apply" in cli("db", "migrate", "--store", fresh).stdout

    status = cli.json("db", "status")
    assert status["pending_migrations"] == 0
    assert status["runs"] == {"succeeded": 1, "failed": 1, "waiting": 1}
    assert "up to date" in cli("db", "status").stdout


def test_expected_errors_are_one_line(cli: Cli) -> None:
    assert "nosuch://x" in cli.error("--store", "nosuch://x", "runs", "list", code=2)
    missing = cli.root / "missing.db"
    assert "kernos db migrate" in cli.error(
        "runs", "list", "--store", f"sqlite:///{missing}", code=2
    )
    assert not missing.exists()
    assert "'ghost'" in cli.error("runs", "show", "ghost", code=1)
    assert "'ghost'" in cli.error("runs", "cancel", "ghost", code=1)
    assert "'ghost'" in cli.error("checkpoints", "list", "ghost", code=1)
    assert "'ghost'" in cli.error("runs", "events", "ghost", code=1)


COMMANDS = [
    [],
    ["runs"],
    ["runs", "list"],
    ["runs", "show"],
    ["runs", "cancel"],
    ["runs", "events"],
    ["checkpoints"],
    ["checkpoints", "list"],
    ["fork"],
    ["replay"],
    ["db"],
    ["db", "migrate"],
    ["db", "status"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "kernos")
def test_help(command: list[str], tmp_path: Path) -> None:
    done = subprocess.run(
        [kernos_script(), *command, "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "Usage: kernos" in done.stdout
    assert not list(tmp_path.iterdir()), "--help must not create a store"
