"""The `kernos` command as an API client: the console script against a real server.

A server (``tests/api/api_support.live_server``: the API on loopback with an
embedded worker and the ``api_greet``, ``api_wait`` and ``api_fail`` workflows)
runs in a thread of the test process with an event loop of its own; the CLI
runs in subprocesses with ``KERNOS_URL`` and ``KERNOS_API_KEY``, as users run
it. Local mode (``--store``) is covered here for what only it can do (a rescue
key) and by ``test_cli.py`` for the rest.
"""

from __future__ import annotations

import asyncio
import csv
import importlib
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

from kernos.control import Principal
from kernos.records import Role

sys.path.insert(0, str(Path(__file__).parents[1] / "api"))
api_support = importlib.import_module("api_support")  # the same module tests/api imports

T = TypeVar("T")
PASSWORD = "a long enough password"


def kernos_script() -> str:
    """The installed console script, next to this interpreter."""
    return str(Path(sys.executable).parent / "kernos")


@dataclass
class Server:
    """A live server in a background thread, and a way to run coroutines in its loop."""

    live: Any
    loop: asyncio.AbstractEventLoop
    stop: asyncio.Event

    @property
    def url(self) -> str:
        return str(self.live.url)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=60)

    def key(self, role: Role, tenant: str = "default") -> str:
        return self.run(self.live.key(role, tenant))

    def start(self, workflow: str, **input: Any) -> str:
        async def go() -> str:
            run, _ = await self.live.service.runs.start(
                Principal.system("default"), workflow, input
            )
            return str(run.run_id)

        return self.run(go())


@pytest.fixture
def server(store_url: str) -> Iterator[Server]:
    """A real server on loopback over this test's database, in a thread of its own."""
    ready = threading.Event()
    box: dict[str, Any] = {}

    async def serve() -> None:
        async with api_support.live_server(store_url) as live:
            box["server"] = Server(live, asyncio.get_running_loop(), asyncio.Event())
            ready.set()
            await box["server"].stop.wait()

    def main() -> None:
        try:
            asyncio.run(serve())
        except BaseException as exc:
            box["error"] = exc
            ready.set()

    thread = threading.Thread(target=main, name="kernos-test-server", daemon=True)
    thread.start()
    assert ready.wait(60), "the server did not start"
    if "error" in box:
        raise box["error"]
    found: Server = box["server"]
    try:
        yield found
    finally:
        found.loop.call_soon_threadsafe(found.stop.set)
        thread.join(30)


@dataclass
class Cli:
    """Runs `kernos` with a server URL and key in the environment."""

    root: Path
    url: str | None
    key: str | None
    extra: dict[str, str] = field(default_factory=dict)

    def env(self, **changes: str | None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("KERNOS_")}
        env["KERNOS_CONFIG"] = str(self.root / "no-config.toml")
        if self.url:
            env["KERNOS_URL"] = self.url
        if self.key:
            env["KERNOS_API_KEY"] = self.key
        env.update(self.extra)
        for name, value in changes.items():
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value
        return env

    def __call__(
        self,
        *args: str,
        code: int = 0,
        input: str | None = None,
        env: dict[str, str | None] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [kernos_script(), *args],
            cwd=self.root,
            env=self.env(**(env or {})),
            input=input,
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

    def json(self, *args: str, code: int = 0, **kwargs: Any) -> Any:
        return json.loads(self(*args, "--json", code=code, **kwargs).stdout)

    def error(self, *args: str, code: int, **kwargs: Any) -> str:
        """Run a command that must fail; return its one-line error."""
        done = self(*args, code=code, **kwargs)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1, done.stderr
        assert lines[0].startswith("error: "), done.stderr
        assert done.stdout == ""
        return lines[0]


@pytest.fixture
def cli(server: Server, tmp_path: Path) -> Cli:
    """The CLI pointed at the server with its first admin key."""
    return Cli(root=tmp_path, url=server.url, key=server.live.admin_key)


# -- runs ---------------------------------------------------------------------------------


def test_runs_start_wait_list_show(cli: Cli) -> None:
    run = cli.json("runs", "start", "api_greet", "-i", "name=ada", "-i", "times:=2", "--wait")
    assert run["status"] == "succeeded" and run["output"] == "hello ADA hello ADA"
    done = cli("runs", "start", "api_greet", "--input", '{"name": "bo"}', "--wait")
    assert "succeeded" in done.stdout and '"hello BO"' in done.stdout

    waiting = cli.json("runs", "start", "api_wait")
    assert waiting["status"] in ("pending", "running", "waiting")
    text = cli("runs", "start", "api_wait").stdout
    assert "started run" in text and "api_wait" in text

    listed = cli.json("runs", "list")
    assert run["run_id"] in [r["run_id"] for r in listed["runs"]]
    assert len(listed["runs"]) == 4 and listed["next_cursor"] is None
    succeeded = cli.json("runs", "list", "--status", "succeeded", "--workflow", "api_greet")
    assert {r["status"] for r in succeeded["runs"]} == {"succeeded"}
    first = cli.json("runs", "list", "--limit", "3")
    rest = cli.json("runs", "list", "--limit", "3", "--before", first["next_cursor"])
    assert len(first["runs"]) == 3 and len(rest["runs"]) == 1
    assert "api_greet" in cli("runs", "list").stdout

    shown = cli.json("runs", "show", run["run_id"])
    assert shown["run"]["output"] == "hello ADA hello ADA"
    assert [(e["kind"], e["name"]) for e in shown["journal"]] == [("step", "shout")]
    assert "shout" in cli("runs", "show", run["run_id"]).stdout
    kinds = [e["kind"] for e in cli.json("runs", "events", run["run_id"])["events"]]
    assert kinds[0] == "run.created" and kinds[-1] == "run.succeeded"
    assert "no checkpoints" in cli("checkpoints", "list", run["run_id"]).stdout


def test_runs_start_input_errors_and_idempotency(cli: Cli) -> None:
    first = cli.json("runs", "start", "api_greet", "-i", "name=x", "--idempotency-key", "k1")
    again = cli("runs", "start", "api_greet", "-i", "name=x", "--idempotency-key", "k1", "--json")
    assert json.loads(again.stdout)["run_id"] == first["run_id"]
    assert "started earlier" in again.stderr

    missing = cli.error("runs", "start", "api_greet", "-i", "nickname=x", code=2)
    assert "input.name" in missing and "api_greet" in missing
    assert "not valid JSON" in cli.error("runs", "start", "api_greet", "-i", "n:=[", code=2)
    assert "'nosuch'" in cli.error("runs", "start", "nosuch", code=1)
    failed = cli("runs", "start", "api_fail", "--wait", code=1)
    started, error = failed.stderr.strip().splitlines()
    assert started.startswith("started run ") and failed.stdout == ""
    assert error.startswith("error: run ") and " failed: " in error


def test_cancel_fork_replay(cli: Cli, server: Server) -> None:
    waiting = server.start("api_wait")
    assert f"cancelled {waiting}" in cli("runs", "cancel", waiting, "--reason", "enough").stdout
    shown = cli.json("runs", "show", waiting)["run"]
    assert shown["status"] == "cancelled" and shown["error"]["message"] == "enough"
    assert "nothing to cancel" in cli("runs", "cancel", waiting).stdout

    greeted = cli.json("runs", "start", "api_greet", "-i", "name=ada", "--wait")["run_id"]
    fork = cli.json("fork", greeted, "--at", "0", "--patch", '"PATCHED"', "--wait")
    assert fork["status"] == "succeeded" and fork["output"] == "hello PATCHED"
    assert fork["forked_from"] == greeted
    assert "forked " in cli("fork", fork["run_id"], "--at", "0").stdout
    assert "--id needs a local store" in cli.error(
        "fork", greeted, "--at", "0", "--id", "x", code=2
    )
    assert "seq 9" in cli.error("fork", fork["run_id"], "--at", "9", code=2)

    report = cli.json("replay", greeted)
    assert report["identical"] is True
    assert "identical" in cli("runs", "replay", greeted).stdout
    assert cli.json("runs", "fork", greeted, "--at", "0")["forked_from"] == greeted


def test_queues_and_workers(cli: Cli, server: Server) -> None:
    server.start("api_wait")
    names = [q["name"] for q in cli.json("queues", "list")["queues"]]
    assert "default" in names
    workers = cli.json("workers", "list")["workers"]
    assert workers and workers[0]["state"] == "active"
    assert "default" in cli("queues", "list").stdout


def test_export_csv_and_jsonl(cli: Cli, server: Server, tmp_path: Path) -> None:
    for n in range(7):
        server.start("api_wait", topic=f"t{n}")
    server.start("api_greet", name="x")
    total = len(cli.json("runs", "list", "--limit", "500")["runs"])
    assert total == 8

    done = cli("runs", "export", "--format", "csv", "--output", str(tmp_path / "runs.csv"))
    assert "wrote 8 run(s)" in done.stderr
    with (tmp_path / "runs.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == total and {r["workflow"] for r in rows} == {"api_wait", "api_greet"}

    cli("runs", "export", "-o", str(tmp_path / "runs.jsonl"), "--workflow", "api_wait")
    lines = (tmp_path / "runs.jsonl").read_text().splitlines()
    assert len(lines) == 7 and all(json.loads(line)["workflow"] == "api_wait" for line in lines)
    assert not list(tmp_path.glob("*.partial"))

    piped = cli("runs", "export", "--format", "jsonl").stdout.splitlines()
    assert len(piped) == total
    viewer = cli(
        "runs",
        "export",
        "-o",
        str(tmp_path / "v.jsonl"),
        env={"KERNOS_API_KEY": server.key(Role.VIEWER)},
    )
    assert "wrote 8 run(s)" in viewer.stderr


# -- events ---------------------------------------------------------------------------------


def test_events_tail_follows_a_run_started_meanwhile(cli: Cli, server: Server) -> None:
    tail = subprocess.Popen(
        [
            *(kernos_script(), "events", "tail", "--workflow", "api_greet", "--json"),
            *("--kind", "run.created", "--kind", "run.succeeded", "--max-events", "2"),
            *("--timeout", "60"),
        ],
        cwd=cli.root,
        env=cli.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert tail.stderr is not None
        assert "following events at" in tail.stderr.readline()
        run_id = server.start("api_greet", name="tail")
        out, err = tail.communicate(timeout=60)
    finally:
        tail.kill()
    assert tail.returncode == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    assert [(e["run_id"], e["kind"]) for e in events] == [
        (run_id, "run.created"),
        (run_id, "run.succeeded"),
    ]

    # From an id: what happened before is replayed, in order, then it follows.
    replayed = cli("events", "tail", "--run", run_id, "--from-id", "0", "--max-events", "3")
    lines = replayed.stdout.splitlines()
    assert len(lines) == 3 and "run.created" in lines[0] and run_id in lines[0]
    quiet = cli("events", "tail", "--run", "nothing-here", "--timeout", "1", "--json")
    assert quiet.stdout == ""


# -- keys, users, tenants, audit -------------------------------------------------------------


def test_keys_create_list_rotate_revoke(cli: Cli) -> None:
    created = cli.json("keys", "create", "ci", "--role", "operator")
    key_id, secret = created["key"]["key_id"], created["secret"]
    assert created["key"]["role"] == "operator" and secret.startswith(f"kn_{key_id}_")
    text = cli("keys", "create", "laptop", "--expires-in", "3600").stdout
    assert "shown this once" in text and "kn_" in text

    listed = {k["key_id"]: k for k in cli.json("keys", "list")["keys"]}
    assert listed[key_id]["name"] == "ci" and "secret_hash" not in listed[key_id]
    assert "ci" in cli("keys", "list").stdout and secret not in cli("keys", "list").stdout

    me = cli.json("whoami", env={"KERNOS_API_KEY": secret})
    assert me == {
        "actor": f"key:{key_id}",
        "tenant": "default",
        "role": "operator",
        "where": cli.url,
    }

    rotated = cli.json("keys", "rotate", key_id, "--overlap", "0")
    new_id, new_secret = rotated["key"]["key_id"], rotated["secret"]
    assert rotated["key"]["rotated_from"] == key_id and new_id != key_id
    assert cli.json("whoami", env={"KERNOS_API_KEY": new_secret})["actor"] == f"key:{new_id}"
    old = cli.error("runs", "list", code=1, env={"KERNOS_API_KEY": secret})
    assert "API key" in old and secret not in old

    assert f"revoked API key {new_id}" in cli("keys", "revoke", new_id).stdout
    refused = cli.error("runs", "list", code=1, env={"KERNOS_API_KEY": new_secret})
    assert "refused the API key" in refused and new_secret not in refused
    assert "'nope'" in cli.error("keys", "revoke", "nope", code=1)


def test_users_and_tenants(cli: Cli) -> None:
    made = cli.json(
        "users", "create", "alice", "--role", "operator", "--password-stdin", input=PASSWORD + "\n"
    )
    assert made["username"] == "alice" and made["role"] == "operator"
    short = cli.error("users", "create", "bob", "--password-stdin", input="short\n", code=2)
    assert "password" in short and "12 characters" in short
    assert "--password-stdin" in cli.error("users", "create", "carol", code=2, input="")
    taken = cli.error("users", "create", "alice", "--password-stdin", input=PASSWORD, code=1)
    assert "'alice' is taken" in taken

    names = {u["username"]: u for u in cli.json("users", "list")["users"]}
    assert set(names) == {"admin", "alice"}
    assert cli.json("users", "update", "alice", "--disable")["disabled"] is True
    assert cli.json("users", "update", "alice", "--role", "admin", "--enable")["role"] == "admin"
    assert "removed user alice" in cli("users", "remove", "alice", "--yes").stdout

    assert cli.json("tenants", "create", "acme", "--name", "Acme")["tenant_id"] == "acme"
    tenants = [t["tenant_id"] for t in cli.json("tenants", "list")["tenants"]]
    assert sorted(tenants) == ["acme", "default"]
    assert "Acme" in cli("tenants", "list").stdout

    records = cli.json("audit", "--action", "user.")["records"]
    actions = [r["action"] for r in records]
    assert "user.create" in actions and "user.remove" in actions
    assert "user.create" in cli("audit", "--action", "user.create").stdout


def test_bulk_cancel_asks_then_follows(cli: Cli, server: Server) -> None:
    for _ in range(3):
        server.start("api_wait")
    aborted = cli("bulk", "cancel", "--workflow", "api_wait", input="n\n", code=1)
    assert "cancel 3 run(s)?" in aborted.stderr
    assert len(cli.json("runs", "list", "--status", "cancelled")["runs"]) == 0

    job = cli.json("bulk", "cancel", "--workflow", "api_wait", "--yes")
    assert job["state"] == "done" and job["done"] == 3 and job["failed"] == 0
    assert len(cli.json("runs", "list", "--status", "cancelled")["runs"]) == 3
    assert "no runs match" in cli("bulk", "cancel", "--workflow", "nothing", "--yes").stdout
    assert job["job_id"] in cli("bulk", "list").stdout
    assert "3 done" in cli("bulk", "show", job["job_id"]).stdout


# -- errors and configuration -------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_errors_are_one_line(cli: Cli, server: Server) -> None:
    wrong = "kn_AAAAAAAAAAAA_" + "A" * 43
    refused = cli.error("runs", "list", code=1, env={"KERNOS_API_KEY": wrong})
    assert wrong not in refused and "API key" in refused
    assert "refused" in cli.error("runs", "list", code=1, env={"KERNOS_API_KEY": "oops"})

    url = f"http://127.0.0.1:{_free_port()}"
    unreachable = cli.error("runs", "list", code=1, env={"KERNOS_URL": url})
    assert unreachable == (
        f"error: cannot reach the Kernos server at {url}: is `kernos up` running?"
    )

    assert "'ghost'" in cli.error("runs", "show", "ghost", code=1)
    viewer = server.key(Role.VIEWER)
    denied = cli.error("runs", "cancel", "ghost", code=1, env={"KERNOS_API_KEY": viewer})
    assert "operator" in denied and viewer not in denied
    assert "no API key" in cli.error("runs", "list", code=2, env={"KERNOS_API_KEY": None})
    assert "not an http" in cli.error("runs", "list", code=2, env={"KERNOS_URL": "ftp://x"})
    both = cli.error("--url", cli.url or "", "--store", "sqlite:///x.db", "runs", "list", code=2)
    assert "--url" in both and "--store" in both


def test_config_file(cli: Cli, server: Server) -> None:
    config = cli.root / "kernos.toml"
    config.write_text(f'url = "{server.url}"\napi_key = "{server.live.admin_key}"\n')
    config.chmod(0o644)
    env: dict[str, str | None] = {
        "KERNOS_CONFIG": str(config),
        "KERNOS_URL": None,
        "KERNOS_API_KEY": None,
    }
    insecure = cli.error("runs", "list", code=2, env=env)
    assert f"chmod 600 {config}" in insecure and server.live.admin_key not in insecure

    config.chmod(0o600)
    assert cli.json("whoami", env=env)["role"] == "admin"
    # KERNOS_STORE in the environment beats the file; --url on the command line beats both.
    assert cli.json("whoami", env={**env, "KERNOS_URL": server.url + "/api/v1/"})["role"] == "admin"
    # The file's key is for the file's server only.
    elsewhere = {**env, "KERNOS_URL": "http://127.0.0.1:1"}
    assert "no API key" in cli.error("runs", "list", code=2, env=elsewhere)
    config.write_text('url = "http://x"\napikey = "typo"\n')
    assert "apikey" in cli.error("runs", "list", code=2, env=env)


def test_local_rescue_key(server: Server, store_url: str, tmp_path: Path) -> None:
    local = Cli(root=tmp_path, url=None, key=None)
    created = local.json("keys", "create", "rescue", "--role", "admin", "--store", store_url)
    assert created["key"]["created_by"] == "system"
    remote = Cli(root=tmp_path, url=server.url, key=created["secret"])
    assert remote.json("whoami") == {
        "actor": f"key:{created['key']['key_id']}",
        "tenant": "default",
        "role": "admin",
        "where": server.url,
    }
    listed = [k["name"] for k in local.json("keys", "list", "--store", store_url)["keys"]]
    assert "rescue" in listed
    audit = local.json("audit", "--action", "key.create", "--store", store_url)["records"]
    assert audit[0]["actor"] == "system"
    assert "applies to a local store" in remote.error("--tenant", "x", "runs", "list", code=2)


COMMANDS = [
    ["runs", "start"],
    ["runs", "show"],
    ["runs", "events"],
    ["runs", "cancel"],
    ["runs", "fork"],
    ["runs", "replay"],
    ["checkpoints", "list"],
    ["queues", "list"],
    ["workers", "list"],
    ["db", "migrate"],
    ["db", "status"],
    ["worker"],
    ["up"],
    ["runs", "export"],
    ["events", "tail"],
    ["keys", "create"],
    ["keys", "list"],
    ["keys", "revoke"],
    ["keys", "rotate"],
    ["users", "list"],
    ["users", "create"],
    ["users", "update"],
    ["users", "remove"],
    ["tenants", "list"],
    ["tenants", "create"],
    ["tenants", "add-member"],
    ["audit"],
    ["bulk", "cancel"],
    ["bulk", "retry"],
    ["bulk", "replay"],
    ["bulk", "list"],
    ["bulk", "show"],
    ["whoami"],
    ["webhooks", "create"],
    ["webhooks", "list"],
    ["webhooks", "delete"],
    ["webhooks", "rotate"],
    ["webhooks", "deliveries"],
    ["webhooks", "test"],
    ["approvals", "list"],
    ["approvals", "show"],
    ["approvals", "approve"],
    ["approvals", "reject"],
    ["policy", "check"],
    ["policy", "apply"],
    ["policy", "show"],
    ["policy", "versions"],
    ["policy", "test"],
    ["runs", "list"],
    ["fork"],
    ["replay"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_help_has_an_example(command: list[str], tmp_path: Path) -> None:
    done = subprocess.run(
        [kernos_script(), *command, "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert done.returncode == 0, done.stderr
    assert "Example: kernos" in done.stdout
    assert not list(tmp_path.iterdir())


def test_export_matches_the_server() -> None:
    from kernos.api._runs_routes import _CSV_COLUMNS
    from kernos.api._schemas import RunOut
    from kernos.cli._export import CSV_COLUMNS, EXPORT_FIELDS

    assert CSV_COLUMNS == _CSV_COLUMNS
    assert tuple(RunOut.model_fields) == EXPORT_FIELDS


def test_every_command_is_in_the_help_test() -> None:
    import typer

    from kernos.cli import app

    def leaves(command: Any, path: list[str]) -> list[list[str]]:
        children = getattr(command, "commands", None)  # a group
        if children is None:
            return [path]
        return [leaf for name, sub in children.items() for leaf in leaves(sub, [*path, name])]

    assert sorted(leaves(typer.main.get_command(app), [])) == sorted(COMMANDS)
