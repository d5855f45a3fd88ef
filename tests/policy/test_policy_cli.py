"""`kernos policy ...` as users run it: the console script in subprocesses, offline for
`check`, against a live server on loopback and directly on a store for the rest."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from policy_support import DENY_SHELL

from kernos import agents, tools
from kernos.records import Role
from kernos.testing import FakeOpenAI, FakeToolCall

BAD = "version: 1\nrules:\n  - tools: shell\n    action: maybe\n    rulez: 1\n"
COMMANDS = [["policy", name] for name in ("check", "apply", "show", "versions", "test")]


def _kernos() -> str:
    return str(Path(sys.executable).parent / "kernos")


def _env(root: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KERNOS_")}
    env["KERNOS_CONFIG"] = str(root / "no-config.toml")
    env["COLUMNS"] = "200"
    return env | extra


async def _run(root: Path, *args: str, **extra: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        _kernos(),
        *args,
        cwd=root,
        env=_env(root, **extra),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@tools.tool
def shell(command: str) -> str:
    """Run a command (a stand-in).

    Args:
        command: the command line.
    """
    return f"ran {command}"


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_help_has_an_example(command: list[str], tmp_path: Path) -> None:
    done = subprocess.run(
        [_kernos(), *command, "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(tmp_path),
    )
    assert done.returncode == 0, done.stderr
    assert "Example: kernos policy" in done.stdout


def _sync(root: Path, *args: str, **extra: str) -> tuple[int, str, str]:
    done = subprocess.run(
        [_kernos(), *args],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(root, **extra),
    )
    return done.returncode, done.stdout, done.stderr


def test_check_works_offline_and_locates_each_problem(tmp_path: Path) -> None:
    bad, good = tmp_path / "bad.yaml", tmp_path / "good.yaml"
    bad.write_text(BAD)
    good.write_text(DENY_SHELL)
    # No server and a store URL that cannot open: check needs neither.
    offline = {"KERNOS_URL": "http://127.0.0.1:9", "KERNOS_STORE": "sqlite:////nonexistent/x.db"}
    code, out, err = _sync(tmp_path, "policy", "check", "bad.yaml", **offline)
    assert code == 1
    assert out.splitlines() == [
        "bad.yaml:4:13: rules[0].action: 'maybe' is not one of allow, deny, needs_approval",
        "bad.yaml:5:5: rules[0].rulez: unknown key 'rulez'; known keys: id, tools, arguments, "
        "agents, workflows, tenants, models, when, action, reason, approvers",
    ]
    assert "2 problems" in err
    code, out, _ = _sync(tmp_path, "policy", "check", "good.yaml", **offline)
    assert (code, out) == (0, "good.yaml: a valid policy\n")
    code, out, _ = _sync(tmp_path, "policy", "check", "--json", "bad.yaml", **offline)
    assert code == 1 and json.loads(out)["problems"][0]["line"] == 4
    code, _, err = _sync(tmp_path, "policy", "check", "missing.yaml", **offline)
    assert code == 2 and "missing.yaml" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml", "good.yaml"]


async def test_apply_show_versions_and_test_against_a_server(
    live: Any, fake: FakeOpenAI, make_agent: Any, tmp_path: Path
) -> None:
    agent: agents.Agent = make_agent(tools=[shell])
    fake.reply(tool_calls=[FakeToolCall(name="shell", arguments={"command": "ls -la"})])
    fake.reply("done")
    handle = await agent.start(live.app, "look around")
    await handle.result(timeout=30)

    (tmp_path / "deny.yaml").write_text(DENY_SHELL)
    (tmp_path / "bad.yaml").write_text(BAD)
    server = {"KERNOS_URL": live.url, "KERNOS_API_KEY": live.admin_key}

    code, out, err = await _run(tmp_path, "policy", "apply", "deny.yaml", **server)
    assert code == 0, err
    assert out.startswith("applied deny.yaml as policy version 1 of tenant default (sha256 ")
    code, out, _ = await _run(tmp_path, "policy", "apply", "bad.yaml", **server)
    assert code == 1 and out.splitlines()[0].startswith("bad.yaml:4:13: rules[0].action")
    code, out, err = await _run(tmp_path, "policy", "show", **server)
    assert (code, out) == (0, DENY_SHELL)
    assert "policy version 1 of tenant default" in err
    code, out, _ = await _run(tmp_path, "policy", "versions", "--json", **server)
    assert [v["version"] for v in json.loads(out)] == [1]
    code, _, err = await _run(tmp_path, "policy", "show", "--version", "7", **server)
    assert code == 1 and "no policy version 7" in err

    code, out, err = await _run(
        tmp_path, "policy", "test", "deny.yaml", "--run", handle.run_id, **server
    )
    assert code == 0, err
    [row] = [line for line in out.splitlines() if "shell" in line]
    assert "allow" in row and "deny (changed)" in row and "no-shell (line 4)" in row
    assert "ls -la" in row
    assert "1 tool calls, 1 decided differently" in err
    code, out, _ = await _run(
        tmp_path, "policy", "test", "deny.yaml", "--run", handle.run_id, "--json", **server
    )
    [data] = json.loads(out)
    assert (data["tool"], data["recorded"], data["decision"], data["rule"]) == (
        "shell",
        "allow",
        "deny",
        "no-shell",
    )

    viewer = {**server, "KERNOS_API_KEY": await live.key(Role.VIEWER)}
    code, _, err = await _run(tmp_path, "policy", "apply", "deny.yaml", **viewer)
    assert code == 1 and "admin" in err


async def test_local_mode_works_on_a_store(tmp_path: Path) -> None:
    (tmp_path / "deny.yaml").write_text(DENY_SHELL)
    store = {"KERNOS_STORE": f"sqlite:///{tmp_path / 'kernos.db'}"}
    code, _, err = await _run(tmp_path, "db", "migrate", **store)
    assert code == 0, err
    code, out, err = await _run(tmp_path, "policy", "apply", "deny.yaml", **store)
    assert code == 0, err
    assert "policy version 1" in out
    code, out, _ = await _run(tmp_path, "policy", "show", **store)
    assert out == DENY_SHELL
    code, out, _ = await _run(tmp_path, "policy", "versions", **store)
    assert "system" in out
