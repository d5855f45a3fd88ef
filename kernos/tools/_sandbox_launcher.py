"""The Landlock + seccomp launcher of the shell tool's fallback sandbox.

This file runs as its own program (``python -I -S -c <this source> <config>``)
so that nothing of the parent process (threads, locks, an event loop) is
inherited: a fresh, single-threaded interpreter may change credentials and
limits between ``fork`` and ``exec``, which ``preexec_fn`` may not. It imports
the standard library only; the parent imports it for :func:`landlock_abi` and
:func:`seccomp_program` (and the tests for both).

It starts as the parent's user (root when Kernos is root) and stays outside the
sandbox as a supervisor:

1. becomes a child subreaper, so every process the command leaves behind
   (``nohup``, ``setsid``, double forks) is re-parented to it, and asks for
   SIGTERM when Kernos dies;
2. forks the command's process, which starts its own session, applies the
   resource limits, switches to the unprivileged user, sets no_new_privs,
   enters a Landlock domain (read-only system, read-write workspace and
   scratch directory, no TCP, no abstract Unix sockets or signals out of the
   domain) and a seccomp filter (no sockets of any family, no io_uring, no
   signals to the supervisor), writes ``R`` on the ready pipe and executes
   ``/bin/sh -c COMMAND``; a failure writes ``E<reason>`` instead;
3. waits for that process; when it exits, on SIGTERM (Kernos's wall-clock
   timeout) or at its own backstop timeout, kills every remaining descendant
   and exits with the command's status (128 + N for signal N, as shells
   report it).
"""

from __future__ import annotations

import ctypes
import json
import os
import platform
import resource
import signal
import struct
import sys
import time
from collections.abc import Iterable
from typing import Any, NoReturn

# Landlock (include/uapi/linux/landlock.h); the syscall numbers are the same on
# every architecture (asm-generic numbering for syscalls added after 5.1).
SYS_LANDLOCK_CREATE_RULESET = 444
SYS_LANDLOCK_ADD_RULE = 445
SYS_LANDLOCK_RESTRICT_SELF = 446
LANDLOCK_CREATE_RULESET_VERSION = 1
LANDLOCK_RULE_PATH_BENEATH = 1

FS_EXECUTE = 1 << 0
FS_WRITE_FILE = 1 << 1
FS_READ_FILE = 1 << 2
FS_READ_DIR = 1 << 3
FS_REFER = 1 << 13  # ABI 2
FS_TRUNCATE = 1 << 14  # ABI 3
FS_IOCTL_DEV = 1 << 15  # ABI 5
NET_BIND_TCP = 1 << 0  # ABI 4
NET_CONNECT_TCP = 1 << 1  # ABI 4
SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0  # ABI 6
SCOPE_SIGNAL = 1 << 1  # ABI 6

PR_SET_PDEATHSIG = 1
PR_SET_SECCOMP = 22
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
SECCOMP_MODE_FILTER = 2

# Classic BPF opcodes and seccomp return values (linux/filter.h, linux/seccomp.h).
BPF_LD_W_ABS = 0x20
BPF_ALU_AND_K = 0x54
BPF_JEQ_K = 0x15
BPF_JSET_K = 0x45
BPF_RET_K = 0x06
RET_ALLOW = 0x7FFF0000
RET_ERRNO = 0x00050000
RET_KILL_PROCESS = 0x80000000
AF_UNIX = 1
SOCK_DGRAM = 2
SOCK_TYPE_MASK = 0xF
EPERM = 1
ENOSYS = 38

# Per architecture: audit arch, and the syscalls the filter looks at.
ARCHES: dict[str, dict[str, int]] = {
    "x86_64": {
        "audit_arch": 0xC000003E,
        "socket": 41,
        "socketpair": 53,
        "kill": 62,
        "tkill": 200,
        "tgkill": 234,
        "pidfd_open": 434,
        "io_uring_setup": 425,
        "io_uring_enter": 426,
        "io_uring_register": 427,
    },
    "aarch64": {
        "audit_arch": 0xC00000B7,
        "socket": 198,
        "socketpair": 199,
        "kill": 129,
        "tkill": 130,
        "tgkill": 131,
        "pidfd_open": 434,
        "io_uring_setup": 425,
        "io_uring_enter": 426,
        "io_uring_register": 427,
    },
}
X32_SYSCALL_BIT = 0x40000000

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def _syscall(number: int, *args: Any) -> int:
    result = int(_libc.syscall(ctypes.c_long(number), *args))
    if result < 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))
    return result


def _prctl(option: int, arg: int, arg3: Any = 0) -> None:
    if _libc.prctl(option, ctypes.c_ulong(arg), arg3, ctypes.c_ulong(0), ctypes.c_ulong(0)) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"prctl({option}): {os.strerror(errno)}")


def landlock_abi() -> int:
    """The kernel's Landlock ABI version, or 0 when Landlock is unavailable."""
    try:
        return _syscall(SYS_LANDLOCK_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    except OSError:
        return 0


def fs_rights(abi: int) -> int:
    """Every filesystem access right the given Landlock ABI knows."""
    rights = (1 << 13) - 1
    if abi >= 2:
        rights |= FS_REFER
    if abi >= 3:
        rights |= FS_TRUNCATE
    if abi >= 5:
        rights |= FS_IOCTL_DEV
    return rights


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def _add_rules(ruleset: int, paths: Iterable[str], rights: int, file_rights: int) -> None:
    for path in paths:
        try:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        except FileNotFoundError:
            continue
        try:
            is_dir = os.path.isdir(f"/proc/self/fd/{fd}")
            rule = _PathBeneath(rights if is_dir else rights & file_rights, fd)
            _syscall(
                SYS_LANDLOCK_ADD_RULE,
                ctypes.c_int(ruleset),
                ctypes.c_int(LANDLOCK_RULE_PATH_BENEATH),
                ctypes.byref(rule),
                ctypes.c_uint32(0),
            )
        finally:
            os.close(fd)


def landlock_ruleset(read: list[str], write: list[str], devices: list[str]) -> int:
    """Create the ruleset: read-only ``read``, read-write ``write`` and ``devices``."""
    abi = landlock_abi()
    if abi < 1:
        raise OSError("Landlock is not available in this kernel")
    handled = fs_rights(abi)
    attr = struct.pack("Q", handled)
    if abi >= 4:
        attr += struct.pack("Q", NET_BIND_TCP | NET_CONNECT_TCP)  # no rule: no TCP at all
    if abi >= 6:
        attr += struct.pack("Q", SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL)
    buffer = ctypes.create_string_buffer(attr, len(attr))
    ruleset = _syscall(
        SYS_LANDLOCK_CREATE_RULESET, buffer, ctypes.c_size_t(len(attr)), ctypes.c_uint32(0)
    )
    file_rights = FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | FS_TRUNCATE | FS_IOCTL_DEV
    _add_rules(ruleset, read, FS_EXECUTE | FS_READ_FILE | FS_READ_DIR, file_rights)
    _add_rules(ruleset, write, handled, file_rights)
    device = FS_READ_FILE | FS_WRITE_FILE | FS_TRUNCATE | FS_IOCTL_DEV
    _add_rules(ruleset, devices, device & handled, file_rights)
    return ruleset


class _Assembler:
    """Classic BPF with symbolic jump targets (``None`` is the next instruction)."""

    def __init__(self) -> None:
        self.code: list[tuple[int, int, str | None, str | None]] = []
        self.labels: dict[str, int] = {}

    def label(self, name: str) -> None:
        self.labels[name] = len(self.code)

    def op(self, code: int, k: int, jt: str | None = None, jf: str | None = None) -> None:
        self.code.append((code, k & 0xFFFFFFFF, jt, jf))

    def assemble(self) -> bytes:
        out = bytearray()
        for index, (code, k, jt, jf) in enumerate(self.code):
            offsets = [0 if t is None else self.labels[t] - index - 1 for t in (jt, jf)]
            assert all(0 <= o < 256 for o in offsets), "BPF jump out of range"
            out += struct.pack("=HBBI", code, offsets[0], offsets[1], k)
        return bytes(out)


def seccomp_program(arch: str, protected_pids: Iterable[int]) -> bytes:
    """The seccomp filter of the fallback sandbox, as packed ``sock_filter`` entries.

    Denies ``socket`` for every family (Unix sockets too: without a mount
    namespace they would reach host daemons such as the DNS resolver), datagram
    ``socketpair``, io_uring (which would bypass the filter), and signals or
    pidfds aimed at ``protected_pids`` or at every process (``kill(-1)``).
    A foreign architecture or an x32 syscall kills the process.
    """
    nr = ARCHES[arch]
    asm = _Assembler()
    asm.op(BPF_LD_W_ABS, 4)  # seccomp_data.arch
    asm.op(BPF_JEQ_K, nr["audit_arch"], None, "kill")
    asm.op(BPF_LD_W_ABS, 0)  # seccomp_data.nr
    if arch == "x86_64":
        asm.op(BPF_JSET_K, X32_SYSCALL_BIT, "kill", None)
    asm.op(BPF_JEQ_K, nr["socket"], "eperm", None)
    asm.op(BPF_JEQ_K, nr["socketpair"], "socketpair", None)
    for name in ("io_uring_setup", "io_uring_enter", "io_uring_register"):
        asm.op(BPF_JEQ_K, nr[name], "enosys", None)
    asm.op(BPF_JEQ_K, nr["kill"], "kill_target", None)
    for name in ("tkill", "tgkill", "pidfd_open"):
        asm.op(BPF_JEQ_K, nr[name], "pid_target", None)
    asm.op(BPF_RET_K, RET_ALLOW)
    asm.label("socketpair")
    asm.op(BPF_LD_W_ABS, 16)  # args[0], low half: the family
    asm.op(BPF_JEQ_K, AF_UNIX, None, "eperm")
    asm.op(BPF_LD_W_ABS, 24)  # args[1]: the type, with flags
    asm.op(BPF_ALU_AND_K, SOCK_TYPE_MASK)
    asm.op(BPF_JEQ_K, SOCK_DGRAM, "eperm", "allow")
    pids = sorted(set(protected_pids))
    asm.label("kill_target")
    asm.op(BPF_LD_W_ABS, 16)
    asm.op(BPF_JEQ_K, -1, "eperm", None)
    for pid in pids:
        asm.op(BPF_JEQ_K, -pid, "eperm", None)  # the process group of a protected pid
    asm.label("pid_target")
    asm.op(BPF_LD_W_ABS, 16)
    for pid in pids:
        asm.op(BPF_JEQ_K, pid, "eperm", None)
    asm.label("allow")
    asm.op(BPF_RET_K, RET_ALLOW)
    asm.label("eperm")
    asm.op(BPF_RET_K, RET_ERRNO | EPERM)
    asm.label("enosys")
    asm.op(BPF_RET_K, RET_ERRNO | ENOSYS)
    asm.label("kill")
    asm.op(BPF_RET_K, RET_KILL_PROCESS)
    return asm.assemble()


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def _install_seccomp(program: bytes) -> None:
    buffer = ctypes.create_string_buffer(program, len(program))
    fprog = _SockFprog(len(program) // 8, ctypes.cast(buffer, ctypes.c_void_p))
    _prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog))


class _Stop(Exception):
    """SIGTERM reached the supervisor: the wall-clock timeout, or Kernos died."""


def _on_stop(signum: int, frame: object) -> None:
    raise _Stop


def _command(config: dict[str, Any], ready: int) -> NoReturn:
    """In the forked child: confine this process, then execute the command."""
    try:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGALRM):
            signal.signal(sig, signal.SIG_DFL)
        os.setsid()
        os.chdir(config["cwd"])
        # Opened while still privileged: the paths need not be searchable by the user.
        ruleset = landlock_ruleset(config["read"], config["write"], config["devices"])
        for number, soft, hard in config["limits"]:
            resource.setrlimit(number, (soft, hard))
        if config["uid"] is not None:
            os.setgroups([])
            os.setresgid(config["gid"], config["gid"], config["gid"])
            os.setresuid(config["uid"], config["uid"], config["uid"])
        _prctl(PR_SET_NO_NEW_PRIVS, 1)
        _syscall(SYS_LANDLOCK_RESTRICT_SELF, ctypes.c_int(ruleset), ctypes.c_uint32(0))
        os.close(ruleset)
        _install_seccomp(seccomp_program(config["arch"], config["protected"]))
        os.set_inheritable(ready, False)
        os.write(ready, b"R")
    except BaseException as exc:
        os.write(ready, f"E{type(exc).__name__}: {exc}".encode())
        os._exit(126)
    try:
        argv = config["argv"]
        os.execve(argv[0], argv, config["env"])
    except OSError as exc:
        os.write(2, f"kernos sandbox: cannot execute {config['argv'][0]}: {exc}\n".encode())
    os._exit(127)


def _processes() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, start time) of every process, from /proc."""
    found = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as file:
                fields = file.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        found[int(name)] = (int(fields[1]), fields[19].decode())
    return found


def _descendants(root: int, table: dict[int, tuple[int, str]]) -> dict[int, str]:
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found: dict[int, str] = {}
    stack = [root]
    while stack:
        for child in children.get(stack.pop(), ()):
            if child not in found:
                found[child] = table[child][1]
                stack.append(child)
    return found


def kill_process(pid: int, started: str) -> None:
    """SIGKILL ``pid`` if it is still the process that started at ``started``."""
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        return
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            if file.read().rsplit(b")", 1)[1].split()[19].decode() == started:
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
    except (OSError, IndexError):
        pass
    finally:
        os.close(pidfd)


def kill_descendants(deadline: float = 10.0) -> None:
    """Kill and reap every descendant of this process (a subreaper), until none is left."""
    me = os.getpid()
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        # A pidfd and the start time make sure a recycled pid is never killed.
        for pid, started in _descendants(me, _processes()).items():
            kill_process(pid, started)
        try:
            while os.waitpid(-1, os.WNOHANG)[0] != 0:
                pass
        except ChildProcessError:
            return
        time.sleep(0.002)


def _exit_code(status: int | None) -> int:
    if status is None:
        return 128 + signal.SIGKILL
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def supervise(config: dict[str, Any]) -> NoReturn:
    """Run the command confined, reap everything it leaves behind, exit with its status."""
    ready = int(config["ready_fd"])
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != config["parent"]:  # Kernos died before the prctl took effect
        os._exit(128 + signal.SIGKILL)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGALRM):
        signal.signal(sig, _on_stop)
    # The backstop: stop by itself should Kernos never send SIGTERM. (Timers
    # are not inherited by the forked command.)
    signal.setitimer(signal.ITIMER_REAL, float(config["backstop"]))
    config["protected"] = [os.getpid(), config["parent"]]
    status: int | None = None
    try:
        child = os.fork()
        if child == 0:
            _command(config, ready)
        os.close(ready)
        while True:
            pid, wait_status = os.waitpid(-1, 0)
            if pid == child:
                status = wait_status
                break
    except (_Stop, ChildProcessError):
        pass
    signal.setitimer(signal.ITIMER_REAL, 0)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGALRM):
        signal.signal(sig, signal.SIG_IGN)
    kill_descendants()
    os._exit(_exit_code(status))


def main() -> None:
    """Entry point: ``python -I -S -c SOURCE CONFIG_JSON``."""
    config = json.loads(sys.argv[1])
    config.setdefault("arch", platform.machine())
    supervise(config)


if __name__ == "__main__":
    main()
