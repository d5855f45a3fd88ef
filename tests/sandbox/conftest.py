"""Fixtures for the shell sandbox tests: workspaces, canaries, both sandbox modes.

Every test that takes ``mode`` runs once per sandbox:

- ``bwrap``: must work. When ``bwrap`` is missing the test *fails* (``make
  test`` installs it); a sandbox that silently stopped being tested would look
  exactly like a sandbox that works.
- ``landlock``: the fallback. Where the kernel has no Landlock, the fallback
  cannot run at all (``ShellTool`` raises ``SandboxError`` instead of running
  unsandboxed, which ``test_shell.py`` checks without a kernel's help), so
  there is nothing to attack and the test is skipped, naming the kernel.

Workspaces live in directories of their own under the system temporary
directory, not pytest's ``tmp_path``: its parents are private to root, and the
sandbox user (``nobody`` when the tests run as root) must be able to reach them.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sandbox_support import FAST, MakeTool, Outside, Ticker

from kernos.tools import ShellLimits, ShellTool, _sandbox

MODES = ["bwrap", "landlock"]


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    """The sandbox under test."""
    name: str = request.param
    if name == "bwrap" and _sandbox.find_bwrap() is None:
        pytest.fail("bubblewrap is not installed: apt-get install bubblewrap (make test does)")
    if name == "landlock" and (problem := _sandbox.probe_landlock()) is not None:
        pytest.skip(f"the Landlock + seccomp fallback cannot run on this kernel: {problem}")
    return name


def _private_dir(prefix: str) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)  # reachable by the sandbox user, like a real workspace
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def workspace() -> Iterator[Path]:
    """An empty workspace the sandbox user can reach."""
    yield from _private_dir("kernos-test-ws-")


@pytest.fixture
def outside() -> Iterator[Outside]:
    """A readable canary file and a world-writable directory, outside the workspace."""
    for root in _private_dir("kernos-test-outside-"):
        secret = f"canary-{secrets.token_hex(8)}"
        canary = root / "canary.txt"
        canary.write_text(secret)
        canary.chmod(0o644)
        drop = root / "drop"
        drop.mkdir()
        drop.chmod(0o777)
        yield Outside(root, canary, secret, drop)


@pytest.fixture
def make_tool(mode: str, workspace: Path) -> MakeTool:
    """ShellTools in this test's mode, over its workspace."""

    def make(limits: ShellLimits = FAST) -> ShellTool:
        return ShellTool(workspace, limits, mode="bwrap" if mode == "bwrap" else "landlock")

    return make


@pytest.fixture
def tool(make_tool: MakeTool) -> ShellTool:
    """A ShellTool with the battery's small limits."""
    return make_tool()


@pytest.fixture
async def ticker() -> AsyncIterator[Ticker]:
    """A ticker running for the whole test."""
    ticker = Ticker()
    task = asyncio.create_task(ticker.run())
    yield ticker
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
