"""The shell tool: run a command in a sandbox with limits, a timeout and capped output.

Every command runs inside a sandbox, never without one (see
:mod:`kernos.tools._sandbox` for both sandboxes and the unprivileged user).
A run ends when the command's process tree is gone: when the command exits,
everything it left behind (daemons, ``nohup``, ``setsid``) is killed with it;
at the wall-clock timeout the whole tree is killed. Output is read as it comes
and only ``output_bytes`` of each stream are kept, so a command printing
gigabytes costs no memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from kernos import errors
from kernos.tools import _sandbox
from kernos.tools._sandbox import SandboxKind, SandboxMode, ShellLimits

logger = logging.getLogger(__name__)

CHUNK = 64 * 1024
KILL_GRACE = 5.0  # seconds to wait for a killed tree's pipes to close
BACKSTOP_MARGIN = 10.0  # the sandbox kills by itself this long after Kernos should have


@dataclass(frozen=True, kw_only=True)
class ShellResult:
    """What a shell command did.

    Attributes:
        command: the command line as given.
        exit_code: the shell's exit status (128 + N when signal N ended it),
            or None when the timeout killed it.
        stdout: standard output, decoded as UTF-8 (invalid bytes replaced),
            ending in a truncation marker if more than ``output_bytes`` came.
        stderr: standard error, likewise.
        stdout_truncated: whether stdout was cut.
        stderr_truncated: whether stderr was cut.
        timed_out: whether the wall-clock timeout killed the process tree.
        killed_by: the signal that ended the command (``"SIGKILL"`` on timeout,
            ``"SIGXCPU"`` past the CPU limit, ...), or None.
        duration: wall-clock seconds from start to the tree being gone.
        sandbox: the sandbox the command ran in. ``"landlock+seccomp"`` is the
            weaker fallback: mark the tool call accordingly.
        limits: the limits applied.
    """

    command: str
    exit_code: int | None
    stdout: str
    stderr: str
    stdout_truncated: bool
    stderr_truncated: bool
    timed_out: bool
    killed_by: str | None
    duration: float
    sandbox: SandboxKind
    limits: ShellLimits

    @property
    def ok(self) -> bool:
        """Whether the command exited with status 0."""
        return self.exit_code == 0

    @property
    def weaker_sandbox(self) -> bool:
        """Whether the command ran in the fallback sandbox rather than bubblewrap."""
        return self.sandbox != _sandbox.BUBBLEWRAP


@dataclass
class _Capture:
    """Keeps the first ``limit`` bytes of a stream and counts the rest."""

    limit: int
    kept: bytearray = field(default_factory=bytearray)
    omitted: int = 0

    def feed(self, chunk: bytes) -> None:
        room = max(self.limit - len(self.kept), 0)
        self.kept += chunk[:room]
        self.omitted += max(len(chunk) - room, 0)

    def text(self) -> str:
        text = self.kept.decode(errors="replace")
        if self.omitted:
            text += f"\n[... output truncated: {self.omitted} bytes omitted ...]\n"
        return text


async def _drain(stream: asyncio.StreamReader | None, capture: _Capture) -> None:
    if stream is None:
        return
    while chunk := await stream.read(CHUNK):
        capture.feed(chunk)


async def _feed(stdin: asyncio.StreamWriter | None, data: bytes) -> None:
    if stdin is None:
        return
    # The command may exit without reading its input; that is not an error.
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        stdin.write(data)
        await stdin.drain()
    stdin.close()
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        await stdin.wait_closed()


class _Pipe:
    """The read end of a pipe the sandbox writes to, as an asyncio stream."""

    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe()
        self.reader: asyncio.StreamReader | None = None
        self.transport: asyncio.BaseTransport | None = None

    async def open(self) -> asyncio.StreamReader:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        file = os.fdopen(self.read_fd, "rb", buffering=0)
        self.transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), file
        )
        self.reader = reader
        return reader

    def close_write(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.write_fd)

    def close(self) -> None:
        self.close_write()
        if self.transport is not None:
            self.transport.close()
        else:
            with contextlib.suppress(OSError):
                os.close(self.read_fd)


async def _read_ready_pipe(reader: asyncio.StreamReader, ready: asyncio.Future[str | None]) -> None:
    """The launcher's verdict: ``R`` once the command is confined, ``E<reason>`` if not."""
    first = await reader.read(1)
    if first == b"R":
        ready.set_result(None)
    elif first == b"E":
        ready.set_result((await reader.read(4096)).decode(errors="replace") or "unknown error")
    else:
        ready.set_result("")  # closed: the launcher died before confining the command


def _signal_name(exit_code: int | None) -> str | None:
    if exit_code is None or not 128 < exit_code < 128 + signal.NSIG:
        return None
    try:
        return signal.Signals(exit_code - 128).name
    except ValueError:
        return None


def _namespace_members(inode: int) -> dict[int, str]:
    """pid -> start time of every process in the PID namespace ``inode``."""
    target = f"pid:[{inode}]"
    found = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                if os.readlink(f"/proc/{name}/ns/pid") == target:
                    with open(f"/proc/{name}/stat", "rb") as file:
                        fields = file.read().rsplit(b")", 1)[1].split()
                    # A zombie runs nothing: the namespace's init, exited after
                    # bwrap stopped waiting, is reaped by the host's init.
                    if fields[0] not in (b"Z", b"X"):
                        found[int(name)] = fields[19].decode()
    return found


def _sweep_namespace(inode: int) -> int:
    """Kill whatever still runs in a sandbox's PID namespace; how many were found.

    Processes killed with the namespace take a moment to exit: only those still
    there after a short grace count, and are killed.
    """
    from kernos.tools._sandbox_launcher import kill_process

    grace = time.monotonic() + 1.0
    while members := _namespace_members(inode):
        if time.monotonic() > grace:
            break
        time.sleep(0.01)
    else:
        return 0
    leftover = len(members)
    deadline = time.monotonic() + KILL_GRACE
    while members and time.monotonic() < deadline:
        for pid, started in members.items():
            kill_process(pid, started)
        time.sleep(0.01)
        members = _namespace_members(inode)
    return leftover


class ShellTool:
    """Runs shell commands for agents, confined to a workspace.

    Args:
        workspace: the directory commands run in and the only place they may
            write (besides a scratch ``/tmp`` that is removed after each run).
            When Kernos runs as root, the workspace's files are handed to the
            sandbox user before each run, so that commands can write them.
        limits: resource limits and the default timeout.
        mode: ``"bwrap"`` (bubblewrap only), ``"landlock"`` (the weaker
            Landlock + seccomp sandbox only) or ``"auto"``: bubblewrap when it
            can create its namespaces here (probed once per process), else
            the fallback, reported in every result.
        user: the unprivileged user (name or uid) commands run as when Kernos
            runs as root; default ``nobody``. Ignored otherwise (commands run
            as the current user), except that naming another user is an error.
        env: extra environment variables for the command. Kernos's own
            environment is never passed on.
        read_only: extra directories to show to the command read-only (e.g.
            a toolchain under ``/opt``); system directories always are.

    Raises:
        errors.ConfigError: the workspace is missing or unreachable by the
            sandbox user, or a setting is invalid.
    """

    def __init__(
        self,
        workspace: Path | str,
        limits: ShellLimits | None = None,
        mode: SandboxMode = "auto",
        *,
        user: int | str | None = None,
        env: Mapping[str, str] | None = None,
        read_only: Sequence[Path | str] = (),
    ) -> None:
        if mode not in ("auto", "bwrap", "landlock"):
            raise errors.ConfigError(
                f"unknown sandbox mode {mode!r}: use 'auto', 'bwrap' or 'landlock'",
                setting="mode",
            )
        self.workspace = Path(workspace).resolve()
        if not self.workspace.is_dir():
            raise errors.ConfigError(
                f"the shell workspace {self.workspace} is not a directory: create it first",
                path=str(self.workspace),
            )
        self.limits = limits or ShellLimits()
        self.mode: SandboxMode = mode
        self.user = _sandbox.sandbox_user(user)
        self.env = dict(env or {})
        self.read_only = [Path(p).resolve() for p in read_only]
        for path in self.read_only:
            if not path.is_dir():
                raise errors.ConfigError(
                    f"the read-only directory {path} for the shell tool does not exist",
                    path=str(path),
                )
        _sandbox.check_reachable(self.workspace, self.user, "workspace")
        self._kind: SandboxKind | None = None

    @property
    def uid(self) -> int:
        """The uid commands run as."""
        return self.user.uid

    async def sandbox(self) -> SandboxKind:
        """The sandbox commands will run in, probing the first time.

        Raises:
            errors.SandboxError: no usable sandbox for the mode; the message
                says what to install or enable.
        """
        if self._kind is None:
            self._kind = await self._choose()
        return self._kind

    async def _choose(self) -> SandboxKind:
        problems = []
        if self.mode in ("auto", "bwrap"):
            problem = await self._bwrap_problem()
            if problem is None:
                return _sandbox.BUBBLEWRAP
            if self.mode == "bwrap":
                raise errors.SandboxError(problem, mode=self.mode, reason=problem)
            problems.append(problem)
        problem = _sandbox.probe_landlock()
        if problem is None:
            if self.mode == "auto":
                logger.warning(
                    "bubblewrap is unusable here (%s); shell commands run in the weaker "
                    "Landlock + seccomp sandbox",
                    problems[0],
                    extra={"action": "shell_sandbox_fallback"},
                )
            return _sandbox.LANDLOCK
        problems.append(f"the Landlock + seccomp fallback is unusable: {problem}")
        message = "; ".join(problems) + ". Shell commands are never run unsandboxed."
        raise errors.SandboxError(message, mode=self.mode, reason=message)

    async def _bwrap_problem(self) -> str | None:
        bwrap = _sandbox.find_bwrap()
        if bwrap is None:
            return "bubblewrap is not installed: apt-get install bubblewrap"
        if _sandbox.find_prlimit() is None:
            return "prlimit is not installed (it sets the limits): apt-get install util-linux"
        problem = await _sandbox.probe_bwrap(bwrap, self.user)
        if problem is not None:
            return (
                f"bubblewrap cannot create its namespaces as uid {self.user.uid}: {problem} "
                "(enable unprivileged user namespaces: sysctl kernel.unprivileged_userns_clone=1, "
                "or kernel.apparmor_restrict_unprivileged_userns=0 on Ubuntu)"
            )
        return None

    async def run(
        self, command: str, *, timeout: float | None = None, stdin: str | None = None
    ) -> ShellResult:
        """Run ``command`` with ``/bin/sh -c`` in the sandbox and wait for its tree to end.

        Args:
            command: the shell command line.
            timeout: wall-clock seconds; default ``limits.timeout``.
            stdin: text given on standard input; default none (``/dev/null``).

        Returns:
            The result, also when the command failed, was killed or timed out.

        Raises:
            errors.SandboxError: the sandbox could not be set up; the command
                did not run.
            errors.ConfigError: ``timeout`` is not positive.
        """
        wall = self.limits.timeout if timeout is None else timeout
        if wall <= 0:
            raise errors.ConfigError(f"the shell timeout must be positive, got {wall!r}")
        kind = await self.sandbox()
        scratch = await asyncio.to_thread(self._prepare)
        try:
            return await _Run(self, kind, command, scratch, wall, stdin).execute()
        finally:
            await asyncio.to_thread(_sandbox.remove_scratch, scratch)

    def _prepare(self) -> Path:
        _sandbox.claim_workspace(self.workspace, self.user)
        return _sandbox.make_scratch(self.user)


class _Run:
    """One command from spawn to the last process of its tree gone."""

    def __init__(
        self,
        tool: ShellTool,
        kind: SandboxKind,
        command: str,
        scratch: Path,
        wall: float,
        stdin: str | None,
    ) -> None:
        self.tool = tool
        self.kind = kind
        self.command = command
        self.scratch = scratch
        self.wall = wall
        self.stdin = stdin
        self.stdout = _Capture(tool.limits.output_bytes)
        self.stderr = _Capture(tool.limits.output_bytes)
        # bubblewrap: its JSON status; the fallback: the launcher's ready pipe.
        self.pipe = _Pipe()
        self.ready_line = f"kernos-sandbox-ready-{secrets.token_hex(8)}\n".encode()
        self.namespace: int | None = None
        self.process: asyncio.subprocess.Process | None = None

    @property
    def bwrap(self) -> bool:
        return self.kind == _sandbox.BUBBLEWRAP

    def _invocation(self) -> _sandbox.Invocation:
        tool = self.tool
        spec = _sandbox.Spec(
            command=self.command,
            workspace=tool.workspace,
            scratch=self.scratch,
            limits=tool.limits,
            env=tool.env,
            read_only=tool.read_only,
            user=tool.user,
            backstop=self.wall + BACKSTOP_MARGIN,
        )
        if self.bwrap:
            bwrap, prlimit = _sandbox.find_bwrap(), _sandbox.find_prlimit()
            assert bwrap is not None and prlimit is not None
            return _sandbox.bwrap_invocation(
                bwrap,
                prlimit,
                spec,
                ready_line=self.ready_line.decode().strip(),
                status_fd=self.pipe.write_fd,
            )
        return _sandbox.landlock_invocation(spec, ready_fd=self.pipe.write_fd)

    async def execute(self) -> ShellResult:
        started = time.monotonic()
        try:
            return await self._execute(started)
        finally:
            self.pipe.close()

    async def _spawn(self) -> asyncio.subprocess.Process:
        invocation = self._invocation()
        # The launcher switches user itself, after opening its Landlock paths.
        options = self.tool.user.spawn_options() if self.bwrap else {}
        try:
            self.process = await asyncio.create_subprocess_exec(
                *invocation.argv,
                stdin=asyncio.subprocess.DEVNULL if self.stdin is None else asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                pass_fds=(self.pipe.write_fd,),
                start_new_session=True,
                cwd="/",
                env=invocation.env,
                **options,
            )
        finally:
            self.pipe.close_write()
        return self.process

    async def _execute(self, started: float) -> ShellResult:
        process = await self._spawn()
        pipe = await self.pipe.open()
        ready: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        if self.bwrap:
            readers = [
                asyncio.ensure_future(self._drain_stderr_until_ready(process.stderr, ready)),
                asyncio.ensure_future(self._read_status(pipe)),
            ]
        else:
            readers = [
                asyncio.ensure_future(_drain(process.stderr, self.stderr)),
                asyncio.ensure_future(_read_ready_pipe(pipe, ready)),
            ]
        readers.append(asyncio.ensure_future(_drain(process.stdout, self.stdout)))
        readers.append(asyncio.ensure_future(_feed(process.stdin, (self.stdin or "").encode())))
        timed_out = False
        try:
            async with asyncio.timeout(self.wall):
                problem = await ready
                await process.wait()
                await asyncio.gather(*readers)
                if problem is not None:
                    raise self._failure(problem)
        except TimeoutError:
            timed_out = True
        finally:
            # Also on cancellation: the tree must not outlive the call.
            await asyncio.shield(self._end(readers))
        exit_code = None if timed_out else process.returncode
        result = ShellResult(
            command=self.command,
            exit_code=exit_code,
            stdout=self.stdout.text(),
            stderr=self.stderr.text(),
            stdout_truncated=bool(self.stdout.omitted),
            stderr_truncated=bool(self.stderr.omitted),
            timed_out=timed_out,
            killed_by="SIGKILL" if timed_out else _signal_name(exit_code),
            duration=time.monotonic() - started,
            sandbox=self.kind,
            limits=self.tool.limits,
        )
        logger.debug(
            "shell command ended: exit %s, %.3fs, %s",
            exit_code,
            result.duration,
            self.kind,
            extra={"action": "shell_run", "timed_out": timed_out, "sandbox": self.kind},
        )
        return result

    async def _drain_stderr_until_ready(
        self, stream: asyncio.StreamReader | None, ready: asyncio.Future[str | None]
    ) -> None:
        """Read stderr; what precedes the ready line is bwrap's or prlimit's own output."""
        assert stream is not None
        before = bytearray()
        while not ready.done():
            chunk = await stream.read(CHUNK)
            if not chunk:
                ready.set_result(before.decode(errors="replace").strip())
                return
            before += chunk
            index = before.find(self.ready_line)
            if index >= 0:
                self.stderr.feed(bytes(before[:index]))
                self.stderr.feed(bytes(before[index + len(self.ready_line) :]))
                ready.set_result(None)
            elif len(before) > CHUNK:  # not a setup error any more: the line never came
                ready.set_result(before[:4096].decode(errors="replace").strip())
        await _drain(stream, self.stderr)

    def _failure(self, problem: str) -> errors.SandboxError:
        stderr = self.stderr.text().strip()
        status = self.process.returncode if self.process else None
        reason = problem or stderr or f"exit status {status}"
        message = f"the {self.kind} sandbox failed to start the command: {reason}"
        return errors.SandboxError(message, mode=self.tool.mode, reason=reason)

    async def _read_status(self, reader: asyncio.StreamReader) -> None:
        while line := await reader.readline():
            with contextlib.suppress(ValueError):
                info = json.loads(line)
                if isinstance(info, dict) and "pid-namespace" in info and self.namespace is None:
                    self.namespace = int(info["pid-namespace"])

    async def _end(self, readers: Sequence[asyncio.Future[None]]) -> None:
        """Kill the tree if it still runs, wait for its pipes to close, sweep its namespace."""
        process = self.process
        assert process is not None
        if process.returncode is None:
            await self._kill(process)
        done, pending = await asyncio.wait(readers, timeout=KILL_GRACE)
        for future in pending:
            future.cancel()
        for future in done:
            if not future.cancelled() and future.exception() is not None:
                logger.debug("shell reader failed: %r", future.exception())
        if pending:
            logger.error(
                "a sandboxed process kept the shell tool's pipes open after the kill",
                extra={"action": "shell_pipes_open"},
            )
        if self.namespace is not None:
            leftover = await asyncio.to_thread(_sweep_namespace, self.namespace)
            if leftover:
                logger.error(
                    "%d processes outlived the sandbox's PID namespace and were killed",
                    leftover,
                    extra={"action": "shell_leftover_processes"},
                )

    async def _kill(self, process: asyncio.subprocess.Process) -> None:
        if self.kind == _sandbox.BUBBLEWRAP:
            # bwrap leads its own session; with it gone, --die-with-parent takes
            # the namespace's init, and the kernel every process in the namespace.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
            return
        # The launcher kills every descendant on SIGTERM, then exits.
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(KILL_GRACE * 2):
                await process.wait()
        except TimeoutError:
            logger.error(
                "the sandbox launcher did not exit after SIGTERM; killing it",
                extra={"action": "shell_launcher_stuck"},
            )
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
