"""Start, kill and clean up ``torture_worker.py`` subprocesses; read their ledger."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import IO

SCRIPT = Path(__file__).with_name("torture_worker.py")
REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True, slots=True)
class Execution:
    """One line of the ledger: a step body that ran to its side effect."""

    run_id: str
    step: int
    pid: int
    at: float


def read_ledger(path: Path) -> list[Execution]:
    """The ledger's executions in the order they happened."""
    if not path.exists():
        return []
    found = []
    for line in path.read_text().splitlines():
        run_id, step, pid, at = line.split(",")
        found.append(Execution(run_id, int(step), int(pid), float(at)))
    return found


def _state(pid: int) -> str:
    """The process state letter of ``/proc/<pid>/stat`` (``Z`` for a zombie)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[-1].split()[0]


class Processes:
    """The subprocesses of one test; every one is reaped when the test ends."""

    def __init__(self, url: str, ledger: Path, logs: Path) -> None:
        self.url = url
        self.ledger = ledger
        self.logs = logs
        self.live: list[asyncio.subprocess.Process] = []
        self.unreaped: list[int] = []
        self.killed: set[int] = set()
        self._files: list[IO[bytes]] = []

    def _log(self) -> IO[bytes]:
        handle = (self.logs / f"process-{len(self._files)}.log").open("wb")
        self._files.append(handle)
        return handle

    def _argv(self, mode: str, *argv: str) -> list[str]:
        return [sys.executable, str(SCRIPT), mode, self.url, str(self.ledger), *argv]

    def _env(self) -> dict[str, str]:
        return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(SCRIPT.parent)])}

    async def spawn(self, mode: str, *argv: str) -> asyncio.subprocess.Process:
        """Start ``torture_worker.py mode URL LEDGER *argv``."""
        process = await asyncio.create_subprocess_exec(
            *self._argv(mode, *argv),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=self._log(),
            env=self._env(),
        )
        self.live.append(process)
        return process

    def spawn_unreaped(self, mode: str, *argv: str) -> int:
        """Like :meth:`spawn`, but nothing waits for it: killed, it stays a zombie
        until :meth:`close`, as under a parent that has not reaped it yet."""
        pid = os.posix_spawn(
            sys.executable,
            self._argv(mode, *argv),
            self._env(),
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
                (os.POSIX_SPAWN_DUP2, self._log().fileno(), 2),
            ],
        )
        self.unreaped.append(pid)
        return pid

    async def kill_unreaped(self, pid: int) -> None:
        """SIGKILL a process from :meth:`spawn_unreaped` and wait until it is a zombie."""
        os.kill(pid, signal.SIGKILL)
        self.killed.add(pid)
        while True:
            if _state(pid) == "Z":
                return
            await asyncio.sleep(0.01)

    async def worker(self, *options: str) -> asyncio.subprocess.Process:
        """Start a process that claims and executes runs until killed."""
        return await self.spawn("work", *options)

    async def kill(self, process: asyncio.subprocess.Process) -> None:
        """SIGKILL ``process`` and reap it, so its pid is free of zombies at once."""
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGKILL)
        await process.wait()
        self.killed.add(process.pid)
        self.live.remove(process)

    async def wait(self, process: asyncio.subprocess.Process, timeout: float) -> int:
        """Wait for ``process`` to exit by itself; return its exit code."""
        code = await asyncio.wait_for(process.wait(), timeout)
        self.live.remove(process)
        return code

    async def close(self) -> None:
        """Stop what still runs (SIGTERM, then SIGKILL) and close the logs."""
        for process in self.live:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        for process in self.live:
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()
        self.live.clear()
        for pid in self.unreaped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            await asyncio.to_thread(os.waitpid, pid, 0)
        self.unreaped.clear()
        for handle in self._files:
            handle.close()

    def log_tail(self, chars: int = 3000) -> str:
        """The end of every process log, for failure messages."""
        for handle in self._files:
            handle.flush()
        parts = []
        for index in range(len(self._files)):
            text = (self.logs / f"process-{index}.log").read_text(errors="replace")
            if text.strip():
                parts.append(f"--- process-{index}.log\n{text[-chars:]}")
        return "\n".join(parts)
