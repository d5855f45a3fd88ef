"""The two sandboxes of the shell tool: how each is probed and how its command line is built.

**bubblewrap** (``bwrap``, the strong mode). Kernos starts ``bwrap`` as the
unprivileged user with new user, PID, network, IPC, UTS and cgroup namespaces;
a read-only view of ``/usr``, ``/etc`` and the ``/bin``/``/lib`` links, a fresh
``/proc`` and minimal ``/dev``, the workspace read-write at its own path and a
per-run scratch directory as ``/tmp``, the root and ``/dev`` remounted
read-only, no capabilities, no_new_privs, ``--die-with-parent``. Inside,
``prlimit`` sets the resource limits and executes a one-line ``sh`` that
reports readiness on stderr and executes the command under coreutils
``timeout`` (a backstop should Kernos's own timeout never fire). When the
command exits, the namespace's init exits and the kernel kills everything
left in the PID namespace; Kernos then checks ``/proc`` that nothing is.

Where the limits are set matters for RLIMIT_NPROC. The kernel counts processes
per user *per user namespace*, and checks the count at every level up to the
root namespace: at the sandbox's level against the process's own limit, at
each parent level against the limit its creator had when it created the
namespace. Setting the limit *inside* (after ``bwrap`` made the namespace)
therefore bounds this run's processes alone: concurrent runs, and the user's
processes outside, neither count against it nor can be starved by a fork bomb
in it. Set before ``bwrap``, it would be copied into the namespace as the cap
on *all* of the user's processes on the host.

**Landlock + seccomp** (the weaker fallback, where ``bwrap`` cannot create its
namespaces, e.g. in a container without user namespaces). A small launcher
(:mod:`kernos.tools._sandbox_launcher`) forks the command, confines it with
Landlock (read-only system paths, read-write workspace and scratch directory,
no TCP) and seccomp (no sockets, no io_uring), and supervises it as a child
subreaper so that nothing it spawns outlives the call. Without namespaces the
command sees the host's process list and its RLIMIT_NPROC counts every process
of the sandbox user on the host; results say ``sandbox="landlock+seccomp"`` so
callers can mark the run's tool calls as running in the weaker mode.

**The unprivileged user.** Resource limits do not bind root (RLIMIT_NPROC is
not checked for uid 0) and root reads files by ownership alone, so when Kernos
runs as root the command runs as ``nobody`` (or the configured user) with no
supplementary groups: ``subprocess`` switches to it before executing ``bwrap``
(in C, between fork and exec, safe with threads); the launcher switches in the
forked child after opening its Landlock paths. The workspace must be writable
by that user: before each run, entries of the workspace not owned by it are
handed to it (``chown``, never following symlinks, skipping hard-linked files
and special files), so files written there by other tools stay usable by the
shell. Every parent directory of the workspace must be searchable by it.

**What the limits do not cover.** Resource limits are per process (except
RLIMIT_NPROC): memory is bounded per process, not across the run's processes,
nor in SysV shared memory or memfds; disk use in the workspace and scratch
directory has no quota. Bounding those takes a cgroup per run (not done).
bubblewrap's namespace init, when it exits after bwrap stopped waiting for it,
is re-parented to the host's init, which must reap it: run Kernos under an
init (``docker run --init``), not as PID 1 itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import math
import os
import platform
import pwd
import resource
import shutil
import stat
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from kernos import errors
from kernos.tools import _sandbox_launcher as launcher

logger = logging.getLogger(__name__)

SandboxMode = Literal["auto", "bwrap", "landlock"]
"""Which sandbox to use: ``"auto"`` tries bubblewrap, then Landlock + seccomp."""

SandboxKind = Literal["bubblewrap", "landlock+seccomp"]
"""The sandbox a command actually ran in, as reported in every result."""

BUBBLEWRAP: SandboxKind = "bubblewrap"
LANDLOCK: SandboxKind = "landlock+seccomp"

SYSTEM_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")
DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom")
SANDBOX_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
NAMESPACES = (
    "--unshare-user",
    "--unshare-pid",
    "--unshare-net",
    "--unshare-ipc",
    "--unshare-uts",
    "--unshare-cgroup-try",
)
# Once bwrap and prlimit are done, tells Kernos on stderr (whatever came before
# is their error output) and becomes the command, under a backstop timeout.
# (No pipe of its own for this: dash cannot name a descriptor above 9.)
READY_SCRIPT = 'printf "%s\\n" "$1" >&2; exec timeout -s KILL "$2" /bin/sh -c "$3"'


@dataclass(frozen=True, kw_only=True)
class ShellLimits:
    """Resource limits of one shell command. Every limit applies to each run.

    Attributes:
        timeout: wall-clock seconds before the whole process tree is killed.
        cpu_seconds: CPU time of each process (RLIMIT_CPU): SIGXCPU, then SIGKILL.
        memory_bytes: address space of each process (RLIMIT_AS). Runtimes that
            reserve much address space up front (the JVM, V8) need a larger value.
        processes: processes and threads of the run (RLIMIT_NPROC). In the
            fallback sandbox it counts every process of the sandbox user.
        file_size_bytes: largest file the command may write (RLIMIT_FSIZE).
        open_files: open file descriptors of each process (RLIMIT_NOFILE).
        output_bytes: bytes kept of stdout and of stderr each; the rest is
            counted and dropped, and a marker says how much.
    """

    timeout: float = 60.0
    cpu_seconds: int = 30
    memory_bytes: int = 1 << 30
    processes: int = 128
    file_size_bytes: int = 256 << 20
    open_files: int = 512
    output_bytes: int = 1 << 20

    def __post_init__(self) -> None:
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if value <= 0:
                raise errors.ConfigError(
                    f"ShellLimits.{name} must be positive, got {value!r}", setting=name
                )
        if self.processes < 4:
            raise errors.ConfigError(
                "ShellLimits.processes must be at least 4: the sandbox itself needs 3",
                setting="processes",
            )

    def rlimits(self) -> list[tuple[str, int, int]]:
        """``(prlimit option, soft, hard)`` for every kernel-enforced limit."""
        return [
            # The hard CPU limit a little above the soft one: SIGXCPU first, SIGKILL if ignored.
            ("cpu", self.cpu_seconds, self.cpu_seconds + 2),
            ("as", self.memory_bytes, self.memory_bytes),
            ("nproc", self.processes, self.processes),
            ("fsize", self.file_size_bytes, self.file_size_bytes),
            ("nofile", self.open_files, self.open_files),
            ("core", 0, 0),
        ]


_RESOURCES = {
    "cpu": "RLIMIT_CPU",
    "as": "RLIMIT_AS",
    "nproc": "RLIMIT_NPROC",
    "fsize": "RLIMIT_FSIZE",
    "nofile": "RLIMIT_NOFILE",
    "core": "RLIMIT_CORE",
}


@dataclass(frozen=True)
class SandboxUser:
    """Who the command runs as; ``switch`` when Kernos must change to that user first."""

    uid: int
    gid: int
    switch: bool

    def spawn_options(self) -> dict[str, Any]:
        """``subprocess`` options that start a program as this user."""
        if not self.switch:
            return {}
        return {"user": self.uid, "group": self.gid, "extra_groups": []}


def sandbox_user(user: int | str | None) -> SandboxUser:
    """The user commands run as: ``user`` (default ``nobody``) under root, else this user."""
    if os.geteuid() != 0:
        if user is not None and _uid_of(user)[0] != os.geteuid():
            raise errors.ConfigError(
                f"the shell tool can run commands as {user!r} only when Kernos runs as root; "
                "leave user unset to run them as the current user",
                setting="user",
            )
        return SandboxUser(os.geteuid(), os.getegid(), switch=False)
    uid, gid = _uid_of("nobody" if user is None else user)
    if uid == 0:
        raise errors.ConfigError(
            "the shell tool must not run commands as root: limits do not bind root; "
            "pick an unprivileged user",
            setting="user",
        )
    return SandboxUser(uid, gid, switch=True)


def _uid_of(user: int | str) -> tuple[int, int]:
    try:
        entry = pwd.getpwuid(user) if isinstance(user, int) else pwd.getpwnam(user)
    except KeyError:
        if isinstance(user, int):
            return user, user  # a uid need not have a passwd entry
        if user == "nobody":
            return 65534, 65534
        raise errors.ConfigError(
            f"no such user {user!r} for the shell tool", setting="user"
        ) from None
    return entry.pw_uid, entry.pw_gid


def _searchable(info: os.stat_result, user: SandboxUser) -> bool:
    if info.st_uid == user.uid:
        return bool(info.st_mode & stat.S_IXUSR)
    if info.st_gid == user.gid:
        return bool(info.st_mode & stat.S_IXGRP)
    return bool(info.st_mode & stat.S_IXOTH)


def check_reachable(path: Path, user: SandboxUser, what: str) -> None:
    """Raise ConfigError unless every parent directory of ``path`` is searchable by ``user``."""
    if not user.switch:
        return
    for parent in reversed(path.parents):
        info = parent.stat()
        if not _searchable(info, user):
            raise errors.ConfigError(
                f"the {what} {path} is not reachable by uid {user.uid}, which runs shell "
                f"commands: {parent} has mode {stat.filemode(info.st_mode)}; make every "
                f"parent directory searchable (chmod o+x {parent}) or choose another {what}",
                path=str(path),
            )


def claim_workspace(workspace: Path, user: SandboxUser) -> None:
    """Give the workspace's entries to the sandbox user, so the command can write them."""
    if not user.switch:
        return
    owner = (user.uid, user.gid)
    info = os.lstat(workspace)
    if (info.st_uid, info.st_gid) != owner:
        os.chown(workspace, *owner, follow_symlinks=False)
    # fwalk with dir fds and no symlink following cannot be redirected out of
    # the workspace by a symlink swapped in while it walks.
    for _, dirs, files, dir_fd in os.fwalk(workspace, follow_symlinks=False):
        for name in dirs + files:
            with contextlib.suppress(FileNotFoundError):
                entry = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
                if (entry.st_uid, entry.st_gid) == owner:
                    continue
                kind = stat.S_IFMT(entry.st_mode)
                if kind not in (stat.S_IFDIR, stat.S_IFREG, stat.S_IFLNK):
                    continue  # device nodes, fifos, sockets stay as they are
                if kind == stat.S_IFREG and entry.st_nlink > 1:
                    continue  # a hard link may be a file outside the workspace
                os.chown(name, *owner, dir_fd=dir_fd, follow_symlinks=False)


def make_scratch(user: SandboxUser) -> Path:
    """A fresh scratch directory (the command's ``/tmp``), owned by the sandbox user."""
    scratch = Path(tempfile.mkdtemp(prefix="kernos-shell-"))
    if user.switch:
        os.chown(scratch, user.uid, user.gid)
    return scratch


def remove_scratch(scratch: Path) -> None:
    """Remove a scratch directory, whatever modes the command left in it."""
    if os.geteuid() != 0:
        # Root ignores modes; the user may need to undo a ``chmod 000`` of its own.
        with contextlib.suppress(OSError):
            os.chmod(scratch, 0o700)
        for _, dirs, _, dir_fd in os.fwalk(scratch):
            for name in dirs:
                with contextlib.suppress(OSError):
                    os.chmod(name, 0o700, dir_fd=dir_fd)
    shutil.rmtree(scratch, ignore_errors=True)
    if scratch.exists():
        logger.warning(
            "could not remove the shell scratch directory %s",
            scratch,
            extra={"action": "shell_scratch_leftover"},
        )


def sandbox_env(home: Path, tmp: str, extra: Mapping[str, str]) -> dict[str, str]:
    """The command's environment: nothing of Kernos's own (secrets live there)."""
    env = {"PATH": SANDBOX_PATH, "HOME": str(home), "TMPDIR": tmp, "LANG": "C.UTF-8"}
    env.update(extra)
    return env


@dataclass(frozen=True)
class Spec:
    """Everything about one run that both sandboxes need."""

    command: str
    workspace: Path
    scratch: Path
    limits: ShellLimits
    env: Mapping[str, str]
    read_only: Sequence[Path]
    user: SandboxUser
    # Seconds after which the sandbox kills the command by itself, should
    # Kernos's own timeout not fire (an event loop closed under a running call).
    backstop: float


@dataclass(frozen=True)
class Invocation:
    """A command line ready to spawn, with the environment to spawn it in."""

    argv: list[str]
    env: dict[str, str]


def bwrap_invocation(
    bwrap: str, prlimit: str, spec: Spec, *, ready_line: str, status_fd: int
) -> Invocation:
    """The ``bwrap`` command line for a run.

    ``ready_line`` is written to stderr once the sandbox is set up, before the
    command starts; ``status_fd`` receives bwrap's JSON status.
    """
    argv = [bwrap, *NAMESPACES, "--die-with-parent", "--new-session", "--cap-drop", "ALL"]
    for system in SYSTEM_PATHS:
        if os.path.islink(system):
            argv += ["--symlink", os.readlink(system), system]
        elif os.path.isdir(system):
            argv += ["--ro-bind", system, system]
    for path in spec.read_only:
        argv += ["--ro-bind", str(path), str(path)]
    workspace = str(spec.workspace)
    argv += ["--proc", "/proc", "--dev", "/dev", "--remount-ro", "/dev"]
    argv += ["--bind", str(spec.scratch), "/tmp", "--bind", workspace, workspace]
    argv += ["--remount-ro", "/", "--chdir", workspace, "--clearenv"]
    for key, value in sandbox_env(spec.workspace, "/tmp", spec.env).items():
        argv += ["--setenv", key, value]
    argv += ["--json-status-fd", str(status_fd), "--"]
    argv += [prlimit, *(f"--{name}={soft}:{hard}" for name, soft, hard in spec.limits.rlimits())]
    backstop = f"{math.ceil(spec.backstop)}s"
    argv += [
        "--",
        "/bin/sh",
        "-c",
        READY_SCRIPT,
        "kernos-shell",
        ready_line,
        backstop,
        spec.command,
    ]
    return Invocation(argv, {"PATH": SANDBOX_PATH})


@functools.cache
def _launcher_source() -> str:
    return Path(launcher.__file__).read_text()


def landlock_invocation(spec: Spec, *, ready_fd: int) -> Invocation:
    """The launcher command line that runs a command under Landlock and seccomp.

    The launcher writes ``R`` to ``ready_fd`` once the command's process is
    confined, or ``E`` and the reason if it could not be.
    """
    user = spec.user
    config = {
        "parent": os.getpid(),
        "ready_fd": ready_fd,
        "uid": user.uid if user.switch else None,
        "gid": user.gid if user.switch else None,
        "limits": [
            (getattr(resource, _RESOURCES[name]), soft, hard)
            for name, soft, hard in spec.limits.rlimits()
        ],
        "cwd": str(spec.workspace),
        "env": sandbox_env(spec.workspace, str(spec.scratch), spec.env),
        "argv": ["/bin/sh", "-c", spec.command],
        "read": [*SYSTEM_PATHS, "/proc", *map(str, spec.read_only)],
        "write": [str(spec.workspace), str(spec.scratch)],
        "devices": list(DEVICES),
        "arch": platform.machine(),
        "backstop": spec.backstop,
    }
    argv = [sys.executable, "-I", "-S", "-c", _launcher_source(), json.dumps(config)]
    return Invocation(argv, {"PATH": SANDBOX_PATH})


# --- probes: which sandbox works here (cached for the life of the process) ---

_bwrap_probes: dict[tuple[str, int, int], str | None] = {}


async def probe_bwrap(bwrap: str, user: SandboxUser) -> str | None:
    """None when ``bwrap`` can create its namespaces as ``user`` here, else why not."""
    key = (bwrap, user.uid, user.gid)
    if key in _bwrap_probes:
        return _bwrap_probes[key]
    argv = [bwrap, *NAMESPACES, "--die-with-parent", "--ro-bind", "/", "/"]
    argv += ["--proc", "/proc", "--dev", "/dev", "--", "/bin/true"]
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        cwd="/",
        env={"PATH": SANDBOX_PATH},
        start_new_session=True,
        **user.spawn_options(),
    )
    _, stderr = await process.communicate()
    problem = None
    if process.returncode != 0:
        problem = stderr.decode(errors="replace").strip() or f"exit status {process.returncode}"
    _bwrap_probes[key] = problem
    return problem


def probe_landlock() -> str | None:
    """None when the Landlock + seccomp fallback can run here, else why not."""
    machine = platform.machine()
    if machine not in launcher.ARCHES:
        return f"the seccomp filter has no syscall table for {machine}"
    abi = launcher.landlock_abi()
    if abi < 1:
        return (
            f"the kernel ({platform.release()}) has no Landlock: it needs Linux 5.13 or "
            "newer with CONFIG_SECURITY_LANDLOCK=y and landlock in the lsm= boot list"
        )
    with contextlib.suppress(OSError), open("/proc/self/status") as status:
        if any(line.startswith("Seccomp:") for line in status):
            return None
    return "the kernel has no seccomp (CONFIG_SECCOMP_FILTER)"


def find_bwrap() -> str | None:
    """The ``bwrap`` program, if installed."""
    return shutil.which("bwrap") or next(
        (p for p in ("/usr/bin/bwrap", "/bin/bwrap") if os.access(p, os.X_OK)), None
    )


def find_prlimit() -> str | None:
    """The ``prlimit`` program (util-linux), which sets the limits inside bubblewrap."""
    return shutil.which("prlimit", path=SANDBOX_PATH)
