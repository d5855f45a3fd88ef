"""The shell tool's API: results, output capping, sandbox choice, errors, cleanup."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from sandbox_support import FAST, MakeTool, Outside, marker, running_with

from kernos import errors
from kernos.tools import ShellLimits, ShellTool, _sandbox, _sandbox_launcher, _shell

ROOT = os.geteuid() == 0


async def test_result_reports_the_command(tool: ShellTool) -> None:
    result = await tool.run("cat; echo err >&2; exit 3", stdin="hello\n")
    assert (result.exit_code, result.stdout, result.stderr) == (3, "hello\n", "err\n")
    assert not (result.ok or result.timed_out or result.stdout_truncated or result.killed_by)
    assert result.limits == tool.limits and result.duration > 0
    assert result.sandbox == await tool.sandbox()
    assert result.weaker_sandbox == (result.sandbox == "landlock+seccomp")


async def test_a_signal_that_ends_the_command_is_named(tool: ShellTool) -> None:
    result = await tool.run("kill -TERM $$")
    assert (result.exit_code, result.killed_by, result.timed_out) == (143, "SIGTERM", False)


async def test_output_is_cut_with_a_marker(make_tool: MakeTool) -> None:
    tool = make_tool(replace(FAST, output_bytes=10))
    result = await tool.run("printf 0123456789abcdef; printf 'é' >&2")
    assert result.stdout == "0123456789\n[... output truncated: 6 bytes omitted ...]\n"
    assert result.stdout_truncated and not result.stderr_truncated
    assert result.stderr == "é"


async def test_environment_and_workspace(make_tool: MakeTool, workspace: Path) -> None:
    tool = ShellTool(workspace, FAST, mode=make_tool().mode, env={"GREETING": "hi"})
    result = await tool.run('echo "$GREETING $HOME"; pwd; echo data > made')
    assert result.stdout.split("\n")[:2] == [f"hi {workspace}", str(workspace)]
    assert (workspace / "made").read_text() == "data\n"


@pytest.mark.skipif(not ROOT, reason="Kernos hands the workspace to the sandbox user only as root")
async def test_files_other_tools_wrote_stay_writable(
    tool: ShellTool, workspace: Path, outside: Outside
) -> None:
    (workspace / "sub").mkdir()
    (workspace / "sub" / "notes.txt").write_text("from a file tool\n")
    os.link(outside.canary, workspace / "hardlink")  # must not be handed over
    os.symlink(outside.canary, workspace / "symlink")
    result = await tool.run("echo appended >> sub/notes.txt && touch sub/new && echo ok")
    assert result.stdout == "ok\n", result.stderr
    assert (workspace / "sub" / "notes.txt").read_text() == "from a file tool\nappended\n"
    assert os.stat(outside.canary).st_uid == 0  # neither through the hard link nor the symlink
    assert (await tool.run("echo x >> hardlink")).exit_code != 0


async def test_cancelling_the_call_kills_the_tree(tool: ShellTool) -> None:
    tag = marker()
    sleeps = f"sleep\0{tag}"  # the command lines of the sleeps alone
    task = asyncio.ensure_future(tool.run(f"sleep {tag} & sleep {tag}"))
    try:
        for _ in range(200):
            if len(running_with(sleeps)) == 2:
                break
            await asyncio.sleep(0.02)
        assert len(running_with(sleeps)) == 2
    finally:
        task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert running_with(tag) == []


async def test_the_sandbox_kills_by_itself_should_kernos_not(
    tool: ShellTool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The backstop normally fires 10 s after Kernos's timeout; here before it.
    monkeypatch.setattr(_shell, "BACKSTOP_MARGIN", -2.0)
    tag = marker()
    result = await tool.run(f"sleep {tag} & sleep {tag}", timeout=3)
    assert (result.timed_out, result.killed_by) == (False, "SIGKILL")
    assert result.duration < 2.5
    assert running_with(tag) == []


async def test_concurrent_runs_have_their_own_process_limit(make_tool: MakeTool) -> None:
    if make_tool().mode != "bwrap":
        pytest.skip("in the fallback every run of the sandbox user shares one count (documented)")
    tool = make_tool(replace(FAST, processes=16))
    bomb = asyncio.ensure_future(tool.run("b(){ b | b & }; b; sleep 30", timeout=3))
    await asyncio.sleep(0.5)
    result = await tool.run("for i in 1 2 3 4 5 6 7 8 9 10; do sleep 0.2 & done; wait; echo ok")
    assert (result.stdout, result.stderr) == ("ok\n", "")
    assert "fork" in (await bomb).stderr.lower()


# --- choosing the sandbox, and refusing to run without one ------------------------------


@pytest.fixture
def no_bwrap_probe(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    async def refuse(bwrap: str, user: _sandbox.SandboxUser) -> str:
        return "bwrap: No permissions to create new namespace"

    monkeypatch.setattr(_sandbox, "probe_bwrap", refuse)
    yield


async def test_auto_falls_back_and_says_so(
    workspace: Path, no_bwrap_probe: None, caplog: pytest.LogCaptureFixture
) -> None:
    if (problem := _sandbox.probe_landlock()) is not None:
        pytest.skip(f"no fallback on this kernel: {problem}")
    tool = ShellTool(workspace, FAST)
    with caplog.at_level(logging.WARNING, logger="kernos.tools._shell"):
        result = await tool.run("echo hi")
    assert (result.stdout, result.sandbox) == ("hi\n", "landlock+seccomp")
    assert result.weaker_sandbox
    assert "weaker" in caplog.text and "No permissions" in caplog.text


async def test_auto_prefers_bubblewrap(workspace: Path) -> None:
    assert await ShellTool(workspace, FAST).sandbox() == "bubblewrap"


async def test_without_any_sandbox_nothing_runs(
    workspace: Path, outside: Outside, no_bwrap_probe: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_sandbox, "probe_landlock", lambda: "the kernel has no Landlock")
    for mode in ("auto", "landlock"):
        tool = ShellTool(workspace, FAST, mode=mode)  # type: ignore[arg-type]
        with pytest.raises(errors.SandboxError, match="no Landlock") as caught:
            await tool.run(f"echo x > {outside.drop}/ran")
        assert caught.value.mode == mode
        assert "never run unsandboxed" in str(caught.value)
    assert list(outside.drop.iterdir()) == []


async def test_missing_bubblewrap_names_the_package(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_sandbox, "find_bwrap", lambda: None)
    with pytest.raises(errors.SandboxError, match="apt-get install bubblewrap"):
        await ShellTool(workspace, FAST, mode="bwrap").run("true")


async def test_a_sandbox_that_fails_to_start_raises(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tool = ShellTool(workspace, FAST, mode="bwrap")
    await tool.sandbox()
    monkeypatch.setattr(_sandbox, "find_prlimit", lambda: "/nonexistent/prlimit")
    with pytest.raises(errors.SandboxError, match="nonexistent/prlimit"):
        await tool.run("echo never")


async def test_a_fallback_that_fails_to_confine_raises(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if (problem := _sandbox.probe_landlock()) is not None:
        pytest.skip(f"no fallback on this kernel: {problem}")
    tool = ShellTool(workspace, FAST, mode="landlock")
    await tool.sandbox()
    monkeypatch.setattr(_sandbox.platform, "machine", lambda: "pdp11")  # no seccomp table
    with pytest.raises(errors.SandboxError, match="pdp11"):
        await tool.run(f"echo never > {workspace}/ran")
    assert not (workspace / "ran").exists()


# --- configuration --------------------------------------------------------------------


def test_configuration_errors(workspace: Path) -> None:
    with pytest.raises(errors.ConfigError, match="not a directory"):
        ShellTool(workspace / "missing")
    with pytest.raises(errors.ConfigError, match="unknown sandbox mode"):
        ShellTool(workspace, mode="docker")  # type: ignore[arg-type]
    with pytest.raises(errors.ConfigError, match="read-only directory"):
        ShellTool(workspace, read_only=["/nonexistent"])
    with pytest.raises(errors.ConfigError, match="memory_bytes"):
        ShellLimits(memory_bytes=0)
    if ROOT:
        with pytest.raises(errors.ConfigError, match="must not run commands as root"):
            ShellTool(workspace, user="root")


@pytest.mark.skipif(not ROOT, reason="only a root Kernos switches to another user")
def test_an_unreachable_workspace_is_refused(workspace: Path) -> None:
    private = workspace / "private"
    (private / "ws").mkdir(parents=True)
    private.chmod(0o700)
    with pytest.raises(errors.ConfigError, match=r"chmod o\+x"):
        ShellTool(private / "ws")


def test_scratch_directories_are_removed(workspace: Path) -> None:
    user = _sandbox.sandbox_user(None)
    scratch = _sandbox.make_scratch(user)
    (scratch / "locked").mkdir()
    (scratch / "locked" / "file").write_text("x")
    (scratch / "locked").chmod(0)
    _sandbox.remove_scratch(scratch)
    assert not scratch.exists()
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(scratch)


def test_seccomp_programs_assemble() -> None:
    for arch in _sandbox_launcher.ARCHES:
        program = _sandbox_launcher.seccomp_program(arch, [1234, 5678])
        assert len(program) % 8 == 0 and 16 < len(program) // 8 < 64
