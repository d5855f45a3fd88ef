"""Helpers of the shell sandbox tests: limits, canaries, a ticker, process scans, controls."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from kernos.tools import ShellLimits, ShellTool

# Small limits keep the battery fast; each test that needs a larger one says so.
FAST = ShellLimits(
    timeout=20.0,
    cpu_seconds=5,
    memory_bytes=512 << 20,
    processes=64,
    file_size_bytes=16 << 20,
    open_files=256,
    output_bytes=64 << 10,
)


@dataclass
class Outside:
    """Things outside the workspace that the sandbox user could reach without a sandbox."""

    root: Path
    canary: Path
    secret: str
    drop: Path  # a world-writable directory


class MakeTool(Protocol):
    """Build a ShellTool for this test's mode and workspace."""

    def __call__(self, limits: ShellLimits = FAST) -> ShellTool: ...


@dataclass
class Ticker:
    """Ticks on the event loop; a long gap means the loop (the host) was starved."""

    interval: float = 0.05
    gaps: list[float] = field(default_factory=list)
    last: float = field(default_factory=time.monotonic)

    async def run(self) -> None:
        self.last = time.monotonic()
        while True:
            await asyncio.sleep(self.interval)
            now = time.monotonic()
            self.gaps.append(now - self.last)
            self.last = now

    @property
    def worst(self) -> float:
        """The longest time between two ticks, the one still open included (a test
        shorter than one interval has no closed gap, and a starved loop none either)."""
        return max([*self.gaps, time.monotonic() - self.last])


def marker() -> str:
    """A number no other process's command line contains (as ``sleep`` accepts it)."""
    return f"{secrets.randbelow(10**6) + 1000}.{secrets.randbelow(10**9):09d}"


def running_with(text: str) -> list[int]:
    """Pids of live (non-zombie) processes whose command line contains ``text``."""
    found = []
    needle = text.encode()
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{name}/cmdline").read_bytes()
            state = Path(f"/proc/{name}/stat").read_bytes().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if needle in cmdline and state not in (b"Z", b"X"):
            found.append(int(name))
    return found


def kill_pids(pids: list[int]) -> None:
    """SIGKILL processes this test started (found by their unique marker)."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


async def unsandboxed(
    tool: ShellTool, command: str, *, new_session: bool = False
) -> tuple[int, str, str]:
    """Run ``command`` as the sandbox user but *without* the sandbox: the positive control."""
    process = await asyncio.create_subprocess_exec(
        "/bin/sh",
        "-c",
        command,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=str(tool.workspace),
        start_new_session=new_session,
        **tool.user.spawn_options(),
    )
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(errors="replace"), err.decode(errors="replace")
