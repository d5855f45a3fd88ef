"""Open a path beneath a directory handle, and never anything outside it.

Paths are resolved by the kernel relative to an open directory, never by
looking at strings. On Linux 5.6 and later this is one ``openat2(2)`` call with
``RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS`` (and ``RESOLVE_NO_SYMLINKS`` when
symlinks are not followed at all): the kernel refuses absolute paths, ``..``
above the directory, symlinks whose target is absolute or leads out, and
``/proc`` magic links, atomically with respect to concurrent renames.

Where ``openat2`` is missing (an older kernel, or a seccomp filter answering
``ENOSYS``/``EPERM``), :class:`Beneath` walks the path itself, one component at
a time, each opened with ``O_NOFOLLOW`` relative to the file descriptor of the
directory before it. ``..`` pops the walk's own stack of descriptors (never
opening ``..`` on disk) and a symlink is read with ``readlinkat`` and spliced
into the rest of the path, so the same paths are refused with the same errno:

- ``EXDEV``: absolute path, ``..`` above the root, a symlink with an absolute
  target or one that leads out.
- ``ELOOP``: a symlink when symlinks are not followed, more than 40 symlinks,
  or a magic link (the walk refuses every symlink on the proc filesystem).

A directory swapped for a symlink while a path is being resolved cannot lead
out either way: every step starts from a descriptor already held.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
import sys
from collections import deque
from typing import Literal

__all__ = ["PATH_MAX", "Beneath", "Method", "openat2_available"]

RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
_SYS_OPENAT2 = 437  # the same number on every Linux architecture (new syscalls are unified)
_OPEN_HOW_SIZE = 24

PATH_MAX = 4096
MAX_SYMLINKS = 40  # as the kernel
_EAGAIN_RETRIES = 100

O_PATH: int = getattr(os, "O_PATH", 0)

Method = Literal["auto", "openat2", "walk"]


class _OpenHow(ctypes.Structure):
    _fields_ = [
        ("flags", ctypes.c_uint64),
        ("mode", ctypes.c_uint64),
        ("resolve", ctypes.c_uint64),
    ]


_syscall: ctypes._CFuncPtr | None = None  # type: ignore[name-defined]
_available: bool | None = None


def _openat2(dirfd: int, path: bytes, flags: int, mode: int, resolve: int) -> int:
    global _syscall
    if _syscall is None:
        libc = ctypes.CDLL(None, use_errno=True)
        _syscall = libc.syscall
        _syscall.restype = ctypes.c_long
    how = _OpenHow(flags | os.O_CLOEXEC, mode, resolve)
    for _ in range(_EAGAIN_RETRIES):
        fd = _syscall(
            ctypes.c_long(_SYS_OPENAT2),
            ctypes.c_long(dirfd),
            ctypes.c_char_p(path),
            ctypes.byref(how),
            ctypes.c_size_t(_OPEN_HOW_SIZE),
        )
        if fd >= 0:
            return int(fd)
        code = ctypes.get_errno()
        # EAGAIN: a rename raced with a ".." in the path; the kernel asks to retry.
        if code not in (errno.EAGAIN, errno.EINTR):
            raise OSError(code, os.strerror(code))
    raise OSError(errno.EAGAIN, os.strerror(errno.EAGAIN))


def openat2_available() -> bool:
    """Whether this process can use ``openat2(2)`` (probed once)."""
    global _available
    if _available is None:
        _available = False
        if sys.platform.startswith("linux") and O_PATH:
            probe = os.open("/", O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                os.close(_openat2(probe, b".", O_PATH, 0, RESOLVE_BENEATH))
                _available = True
            except OSError as exc:
                if exc.errno not in (errno.ENOSYS, errno.EPERM, errno.EINVAL, errno.E2BIG):
                    raise
            finally:
                os.close(probe)
    return _available


class Beneath:
    """Opens paths beneath one directory descriptor.

    Args:
        root: a descriptor of the directory (kept open by the caller).
        follow_symlinks: follow symlinks that stay beneath the root; when
            False, any symlink in a path is refused (``ELOOP``).
        method: ``"openat2"``, ``"walk"`` (the portable fallback) or
            ``"auto"`` (``openat2`` where the kernel has it).
    """

    def __init__(self, root: int, *, follow_symlinks: bool = True, method: Method = "auto"):
        if method == "auto":
            method = "openat2" if openat2_available() else "walk"
        self.root = root
        self.follow_symlinks = follow_symlinks
        self.method: Method = method

    def open(self, path: bytes, flags: int, mode: int = 0) -> int:
        """Open ``path`` (relative to the root) with ``flags``; return the descriptor.

        ``O_CREAT`` is not supported: create entries in a directory opened
        with this method instead (``dir_fd=``), with ``O_NOFOLLOW``.

        Raises:
            OSError: ``EXDEV`` for a path leading outside, ``ELOOP`` for a
                refused symlink, or the error of the failing open.
        """
        if b"\0" in path:
            raise OSError(errno.EINVAL, "embedded NUL byte")
        if len(path) >= PATH_MAX:
            raise OSError(errno.ENAMETOOLONG, os.strerror(errno.ENAMETOOLONG))
        if flags & os.O_CREAT:
            raise ValueError("Beneath.open does not create files")
        if self.method == "openat2":
            resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS
            if not self.follow_symlinks:
                resolve |= RESOLVE_NO_SYMLINKS
            return _openat2(self.root, path or b".", flags, mode, resolve)
        return self._walk(path, flags, mode)

    def _walk(self, path: bytes, flags: int, mode: int) -> int:
        if path.startswith(b"/"):
            raise OSError(errno.EXDEV, os.strerror(errno.EXDEV))
        parts = deque(path.split(b"/"))
        stack = [os.dup(self.root)]
        hops = 0
        try:
            while True:
                while parts and parts[0] in (b"", b"."):
                    parts.popleft()
                if not parts:
                    return os.open(b".", flags | os.O_CLOEXEC, mode, dir_fd=stack[-1])
                name = parts.popleft()
                if name == b"..":
                    if len(stack) == 1:
                        raise OSError(errno.EXDEV, os.strerror(errno.EXDEV))
                    os.close(stack.pop())
                    continue
                last = all(part in (b"", b".") for part in parts)
                if not last:
                    step_flags = O_PATH | os.O_DIRECTORY
                elif parts:  # "name/" or "name/.": like the kernel, it must be a directory
                    step_flags = flags | os.O_DIRECTORY
                else:
                    step_flags = flags
                opened = _open_component(stack[-1], name, step_flags, mode)
                if isinstance(opened, int):
                    if last:
                        return opened
                    stack.append(opened)
                    continue
                hops += 1
                if not self.follow_symlinks or hops > MAX_SYMLINKS or _on_procfs(stack[-1]):
                    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP))
                if opened.startswith(b"/"):
                    raise OSError(errno.EXDEV, os.strerror(errno.EXDEV))
                parts.extendleft(reversed(opened.split(b"/")))
        finally:
            for fd in stack:
                os.close(fd)


def _open_component(dirfd: int, name: bytes, flags: int, mode: int) -> int | bytes:
    """Open one name in a directory without following it; a symlink gives its target."""
    try:
        fd = os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=dirfd)
    except OSError as exc:
        # O_NOFOLLOW on a symlink fails with ELOOP, or ENOTDIR with O_DIRECTORY.
        if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
            raise
        try:
            return os.readlink(name, dir_fd=dirfd)
        except OSError as link_exc:
            if link_exc.errno == errno.EINVAL:  # not a symlink: the first error stands
                raise exc from None
            raise
    if flags & O_PATH and not flags & os.O_DIRECTORY:
        # O_PATH | O_NOFOLLOW opens a symlink itself rather than failing.
        try:
            if stat.S_ISLNK(os.fstat(fd).st_mode):
                target = os.readlink(b"", dir_fd=fd)
                os.close(fd)
                return target
        except BaseException:
            os.close(fd)
            raise
    return fd


_proc: list[int] = []


def _on_procfs(dirfd: int) -> bool:
    # openat2 refuses magic links (/proc/<pid>/fd/*, /proc/<pid>/root, ...) with
    # ELOOP. The walk cannot tell them from plain symlinks by their target, so it
    # refuses every symlink found in a directory on the proc filesystem.
    if not _proc:
        try:
            _proc.append(os.stat("/proc").st_dev)
        except OSError:
            _proc.append(-1)
    return os.fstat(dirfd).st_dev == _proc[0]
