"""File tools confined to one workspace directory.

Every path a model gives is resolved beneath the workspace's directory
descriptor by the kernel (:mod:`kernos.tools._beneath`), never by inspecting
the string. What is refused, and why:

- absolute paths, ``..`` above the workspace, and symlinks leading outside
  (absolute targets, or relative ones climbing out): refused, the same on
  every kernel.
- symlinks that stay inside the workspace are followed by default (a
  checked-out repository has them); ``follow_symlinks=False`` refuses every
  symlink. Writing to a path whose last component is a symlink replaces the
  link with a regular file; it never writes through it.
- ``/proc`` magic links: refused.
- hard links: a regular file with more than one link is refused for reading,
  searching and overwriting. A hard link cannot be told from the original, so
  a link to ``/etc/shadow`` placed in the workspace looks like any file; the
  link count is the only trace. Deleting such a name is allowed: it removes
  the name only.
- anything but regular files and directories (FIFOs, devices, sockets).

Messages for the model name paths as the model wrote them, relative to the
workspace, and never the workspace's location on the host.
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import os
import re
import secrets
import stat
import weakref
from collections.abc import Generator
from pathlib import Path

from kernos import errors
from kernos.tools._beneath import O_PATH, Beneath, Method
from kernos.tools._tool import Tool

__all__ = ["Workspace"]

_SNIFF = 8192
_SHOWN_PATH = 200
_SHOWN_LINE = 300
_READ = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC  # O_NONBLOCK: a FIFO must not hang

_MESSAGES = {
    errno.ENOENT: "{path}: no such file or directory",
    errno.EXDEV: "{path} is outside the workspace",
    errno.ENOTDIR: "{path}: a component of the path is not a directory",
    errno.EISDIR: "{path} is a directory",
    errno.ENAMETOOLONG: "{path}: the path or one of its names is too long",
    errno.EACCES: "{path}: permission denied",
    errno.EPERM: "{path}: operation not permitted",
    errno.EAGAIN: "{path}: the workspace changed while the path was resolved; try again",
    errno.ENOTEMPTY: "{path}: the directory is not empty",
    errno.EEXIST: "{path}: already exists",
    errno.ENOSPC: "no space left in the workspace",
    errno.EDQUOT: "the workspace's disk quota is exhausted",
    errno.EROFS: "the workspace is read-only",
}
_REASONS = {
    errno.ENOENT: "not_found",
    errno.EXDEV: "outside",
    errno.ELOOP: "symlink",
    errno.EISDIR: "is_directory",
    errno.ENOTDIR: "not_directory",
}


class Workspace:
    """A directory that file tools read and write, and never leave.

    Args:
        root: the workspace directory (it must exist unless ``create``).
        create: create the directory (and its parents) if missing.
        follow_symlinks: follow symlinks that stay inside the workspace; when
            False every symlink is refused.
        read_only: offer only the reading tools from :meth:`tools`.
        max_read_bytes: most bytes of text one ``read_file`` returns, and the
            largest file ``search_files`` looks into.
        max_write_bytes: largest file ``write_file`` writes.
        max_results: most matches ``search_files`` returns, and most entries
            ``list_dir`` shows.
        max_files: most files one ``search_files`` call opens.
        method: how paths are resolved: ``"auto"`` (``openat2`` where the
            kernel has it), ``"openat2"`` or ``"walk"``; for tests and diagnosis.

    Raises:
        ConfigError: the root is missing or is not a directory.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        create: bool = False,
        follow_symlinks: bool = True,
        read_only: bool = False,
        max_read_bytes: int = 256 * 1024,
        max_write_bytes: int = 10 * 1024 * 1024,
        max_results: int = 200,
        max_files: int = 10_000,
        method: Method = "auto",
    ) -> None:
        self.root = Path(root)
        if create:
            self.root.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.root, O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise errors.ConfigError(
                f"workspace {str(self.root)!r} is not a directory that can be opened: "
                f"{exc.strerror}",
                root=str(self.root),
            ) from exc
        self._fd = fd
        self._closer = weakref.finalize(self, os.close, fd)
        self._beneath = Beneath(fd, follow_symlinks=follow_symlinks, method=method)
        self.follow_symlinks = follow_symlinks
        self.read_only = read_only
        self.max_read_bytes = max_read_bytes
        self.max_write_bytes = max_write_bytes
        self.max_results = max_results
        self.max_files = max_files

    @property
    def method(self) -> Method:
        """How paths are resolved: ``"openat2"`` or ``"walk"``."""
        return self._beneath.method

    def close(self) -> None:
        """Close the workspace's directory descriptor; the tools stop working."""
        self._closer()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Workspace({str(self.root)!r})"

    def tools(self) -> list[Tool[..., str]]:
        """The file tools over this workspace, ready to hand to a model.

        ``read_file``, ``list_dir`` and ``search_files``; unless the workspace
        is read-only, also ``write_file`` and ``delete_file``.
        """
        tools: list[Tool[..., str]] = [
            Tool(self.read_file, name="read_file"),
            Tool(self.list_dir, name="list_dir"),
            Tool(self.search_files, name="search_files"),
        ]
        if not self.read_only:
            tools += [
                Tool(self.write_file, name="write_file"),
                Tool(self.delete_file, name="delete_file"),
            ]
        return tools

    # -- the tools (their docstrings are what the model reads) --

    def read_file(self, path: str, start_line: int = 1, max_lines: int | None = None) -> str:
        """Read a UTF-8 text file from the workspace.

        Args:
            path: the file, relative to the workspace root.
            start_line: the first line to return, counting from 1.
            max_lines: how many lines to return at most (default: as many as fit).
        """
        if start_line < 1 or (max_lines is not None and max_lines < 1):
            raise errors.ToolError("start_line and max_lines must be at least 1", reason="invalid")
        fd = self._open_file(path)
        with os.fdopen(fd, "rb") as file:
            if b"\0" in os.pread(fd, _SNIFF, 0):
                raise _binary(path, os.fstat(fd).st_size)
            lines: list[bytes] = []
            size, number, more, skipping = 0, 0, False, False
            while line := file.readline(self.max_read_bytes + 1):
                if skipping:  # the rest of a skipped line longer than a read
                    skipping = not line.endswith(b"\n")
                    continue
                number += 1
                if number < start_line:
                    skipping = not line.endswith(b"\n")
                    continue
                if (max_lines is not None and len(lines) >= max_lines) or (
                    size + len(line) > self.max_read_bytes
                ):
                    more = True
                    break
                lines.append(line)
                size += len(line)
        try:
            text = b"".join(lines).decode("utf-8")
        except UnicodeDecodeError:
            raise _binary(path, size) from None
        if number < start_line and start_line > 1:
            return f"[{_show(path)} has {number} lines; nothing from line {start_line}]"
        if more and not lines:
            raise errors.ToolError(
                f"line {start_line} of {_show(path)} is longer than {self.max_read_bytes} bytes",
                reason="too_large",
            )
        if more:
            last = start_line + len(lines) - 1
            text += (
                f"\n[lines {start_line}-{last} shown; the file goes on: "
                f"read_file with start_line={last + 1} for more]"
            )
        return text

    def write_file(self, path: str, content: str) -> str:
        """Write a text file in the workspace, replacing it if it exists.

        Missing parent directories are created.

        Args:
            path: the file, relative to the workspace root.
            content: the whole new content of the file.
        """
        size = self.write_bytes(path, content.encode("utf-8"))
        return f"wrote {size} bytes to {_show(path)}"

    def list_dir(self, path: str = ".") -> str:
        """List a directory of the workspace: "name/" for directories, "name@" for symlinks.

        Args:
            path: the directory, relative to the workspace root.
        """
        fd = self._open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            with os.scandir(fd) as entries:
                listed = sorted(entries, key=lambda entry: entry.name)
                lines = [_entry_line(entry) for entry in listed[: self.max_results]]
        finally:
            os.close(fd)
        if len(listed) > self.max_results:
            lines.append(f"[... and {len(listed) - self.max_results} more entries]")
        return "\n".join(lines) if lines else "(empty directory)"

    def search_files(
        self,
        pattern: str,
        path: str = ".",
        regex: bool = False,
        ignore_case: bool = False,
        glob: str | None = None,
    ) -> str:
        """Find lines containing a text in the workspace's files, as "path:line: text".

        Symlinks are not followed, binary files and very large files are skipped.

        Args:
            pattern: the text to find (a Python regular expression if regex is true).
            path: the directory (or file) to search, relative to the workspace root.
            regex: treat the pattern as a regular expression.
            ignore_case: match regardless of case.
            glob: only files whose path (relative to the searched path) matches this
                pattern, e.g. "*.py".
        """
        if not pattern:
            raise errors.ToolError("the pattern is empty", reason="invalid")
        try:
            matcher = re.compile(
                pattern if regex else re.escape(pattern), re.IGNORECASE if ignore_case else 0
            )
        except re.error as exc:
            raise errors.ToolError(f"invalid regular expression: {exc}", reason="invalid") from None
        base = _display_base(path)
        fd = self._open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
        results: list[str] = []
        budget = [self.max_files]
        files = self._walk_files(fd, "", budget, depth=0)
        try:
            for relative, file_fd in files:
                if glob is None or fnmatch.fnmatch(relative or base, glob):
                    self._grep(file_fd, _join(base, relative), matcher, results)
                else:
                    os.close(file_fd)
                if len(results) > self.max_results:
                    break
        finally:
            files.close()
            os.close(fd)
        if not results:
            return "no matches"
        shown = results[: self.max_results]
        if len(results) > self.max_results or budget[0] <= 0:
            shown.append("[more matches may exist: narrow the path, glob or pattern]")
        return "\n".join(shown)

    def delete_file(self, path: str) -> str:
        """Delete a file, a symlink or an empty directory of the workspace.

        Args:
            path: what to delete, relative to the workspace root.
        """
        if self.read_only:
            raise errors.ToolError("the workspace is read-only", reason="read_only")
        parent, name = self._open_parent(path, create=False)
        try:
            mode = os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode
            if stat.S_ISDIR(mode):
                os.rmdir(name, dir_fd=parent)
            else:
                os.unlink(name, dir_fd=parent)
        except OSError as exc:
            raise _fail(exc, path) from None
        finally:
            os.close(parent)
        return f"deleted {_show(path)}"

    # -- for programs --

    def read_bytes(self, path: str, *, max_bytes: int | None = None) -> bytes:
        """The content of a workspace file, confined as the tools are.

        Args:
            path: the file, relative to the workspace root.
            max_bytes: refuse a file larger than this (default ``max_read_bytes``).

        Raises:
            ToolError: the path is refused, missing, not a regular file, or too large.
        """
        limit = self.max_read_bytes if max_bytes is None else max_bytes
        fd = self._open_file(path)
        with os.fdopen(fd, "rb") as file:
            data = file.read(limit + 1)
        if len(data) > limit:
            raise errors.ToolError(
                f"{_show(path)} is larger than {limit} bytes", reason="too_large"
            )
        return data

    def write_bytes(self, path: str, data: bytes) -> int:
        """Write a workspace file atomically, creating missing parent directories.

        The data goes to a new file in the target's directory, renamed over the
        target when complete: readers never see half a file, and a symlink or
        hard link at the target is replaced, never written through.

        Returns:
            The number of bytes written.

        Raises:
            ToolError: the path is refused, the workspace is read-only, the
                target is a directory or a hard-linked file, or ``data`` is
                larger than ``max_write_bytes``.
        """
        if self.read_only:
            raise errors.ToolError("the workspace is read-only", reason="read_only")
        if len(data) > self.max_write_bytes:
            raise errors.ToolError(
                f"{len(data)} bytes is more than the {self.max_write_bytes} bytes "
                "a file may have here",
                reason="too_large",
            )
        parent, name = self._open_parent(path, create=True)
        temp = f".kernos-{secrets.token_hex(6)}.tmp".encode()
        try:
            self._check_target(parent, name, path)
            fd = os.open(
                temp,
                os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                0o644,
                dir_fd=parent,
            )
            try:
                with os.fdopen(fd, "wb") as file:
                    file.write(data)
                os.rename(temp, name, src_dir_fd=parent, dst_dir_fd=parent)
            except BaseException:
                _unlink_quietly(temp, parent)
                raise
        except OSError as exc:
            raise _fail(exc, path) from None
        finally:
            os.close(parent)
        return len(data)

    # -- internals --

    def _check_open(self) -> None:
        # The descriptor's number may be reused by anything once closed.
        if not self._closer.alive:
            raise errors.ToolError("the workspace is closed", reason="closed")

    def _open(self, path: str, flags: int) -> int:
        self._check_open()
        try:
            return self._beneath.open(_encode(path), flags)
        except OSError as exc:
            raise _fail(exc, path) from None

    def _open_file(self, path: str) -> int:
        fd = self._open(path, _READ)
        try:
            _check_readable(os.fstat(fd), path)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _open_parent(self, path: str, *, create: bool) -> tuple[int, bytes]:
        self._check_open()
        raw = _encode(path).rstrip(b"/")
        head, _, name = raw.rpartition(b"/")
        if name in (b"", b".", b".."):
            raise errors.ToolError(f"{_show(path)} does not name a file", reason="invalid")
        try:
            try:
                return self._beneath.open(head, O_PATH | os.O_DIRECTORY), name
            except FileNotFoundError:
                if not create:
                    raise
            self._make_dirs(head)
            return self._beneath.open(head, O_PATH | os.O_DIRECTORY), name
        except OSError as exc:
            raise _fail(exc, path) from None

    def _make_dirs(self, head: bytes) -> None:
        parts = head.split(b"/") if head else []
        depth = 0
        for part in parts:
            # Not the safety check (resolution beneath the root is): this only
            # avoids creating directories on the way to a path that will be refused.
            depth += -1 if part == b".." else part not in (b"", b".")
            if depth < 0 or head.startswith(b"/"):
                raise OSError(errno.EXDEV, os.strerror(errno.EXDEV))
        for index, part in enumerate(parts):
            if part in (b"", b".", b".."):
                continue
            prefix = b"/".join(parts[: index + 1])
            try:
                os.close(self._beneath.open(prefix, O_PATH | os.O_DIRECTORY))
                continue
            except FileNotFoundError:
                pass
            above = self._beneath.open(b"/".join(parts[:index]), O_PATH | os.O_DIRECTORY)
            try:
                os.mkdir(part, 0o755, dir_fd=above)
            except FileExistsError:
                pass
            finally:
                os.close(above)

    def _check_target(self, parent: int, name: bytes, path: str) -> None:
        try:
            st = os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            raise OSError(errno.EISDIR, os.strerror(errno.EISDIR))
        if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
            raise _hard_link(path)

    def _walk_files(
        self, dir_fd: int, prefix: str, budget: list[int], depth: int
    ) -> Generator[tuple[str, int], None, None]:
        # Every file is opened relative to its directory's descriptor, without
        # following symlinks: a directory swapped for a link cannot lead out.
        if depth == 0 and not stat.S_ISDIR(os.fstat(dir_fd).st_mode):
            budget[0] -= 1
            yield "", os.dup(dir_fd)
            return
        if depth > 64:
            return
        with os.scandir(dir_fd) as scan:
            entries = sorted(scan, key=lambda entry: entry.name)
        for entry in entries:
            if budget[0] <= 0:
                return
            relative = f"{prefix}{entry.name}"
            try:
                fd = os.open(entry.name, _READ | os.O_NOFOLLOW, dir_fd=dir_fd)
            except OSError:
                continue  # a symlink (ELOOP), or gone meanwhile
            mode = os.fstat(fd).st_mode
            if stat.S_ISDIR(mode):
                try:
                    yield from self._walk_files(fd, relative + "/", budget, depth + 1)
                finally:
                    os.close(fd)
            elif stat.S_ISREG(mode):
                budget[0] -= 1
                yield relative, fd
            else:
                os.close(fd)

    def _grep(self, fd: int, shown: str, matcher: re.Pattern[str], results: list[str]) -> None:
        with os.fdopen(fd, "rb") as file:
            info = os.fstat(fd)
            if (
                not stat.S_ISREG(info.st_mode)
                or info.st_nlink > 1
                or info.st_size > self.max_read_bytes
            ):
                return
            data = file.read(self.max_read_bytes + 1)
        if b"\0" in data[:_SNIFF]:
            return
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return
        for number, line in enumerate(text.splitlines(), 1):
            if matcher.search(line):
                results.append(f"{shown}:{number}: {line[:_SHOWN_LINE]}")
                if len(results) > self.max_results:
                    return


def _encode(path: str) -> bytes:
    if not isinstance(path, str):
        raise errors.ToolError("the path must be a string", reason="invalid")
    if "\0" in path:
        raise errors.ToolError("the path contains a NUL character", reason="invalid")
    try:
        return os.fsencode(path) or b"."
    except UnicodeEncodeError:
        raise errors.ToolError("the path is not valid text", reason="invalid") from None


def _show(path: str) -> str:
    if len(path) > _SHOWN_PATH:
        path = path[:_SHOWN_PATH] + "..."
    return repr(path)


def _fail(exc: OSError, path: str) -> errors.ToolError:
    code = exc.errno or 0
    if code == errno.ELOOP:
        message = (
            "{path} goes through a symbolic link that is not allowed here "
            "(leading outside, a /proc link, or too many links)"
        )
    else:
        message = _MESSAGES.get(code, "{path}: " + os.strerror(code))
    return errors.ToolError(
        message.format(path=_show(path)), reason=_REASONS.get(code, "os_error"), errno=code
    )


def _check_readable(info: os.stat_result, path: str) -> None:
    if stat.S_ISDIR(info.st_mode):
        raise errors.ToolError(f"{_show(path)} is a directory", reason="is_directory")
    if not stat.S_ISREG(info.st_mode):
        raise errors.ToolError(f"{_show(path)} is not a regular file", reason="not_regular")
    if info.st_nlink > 1:
        raise _hard_link(path)


def _hard_link(path: str) -> errors.ToolError:
    return errors.ToolError(
        f"{_show(path)} has several hard links; such files are refused here", reason="hard_link"
    )


def _binary(path: str, size: int) -> errors.ToolError:
    return errors.ToolError(
        f"{_show(path)} is a binary file ({size} bytes), not shown", reason="binary"
    )


def _entry_line(entry: os.DirEntry[str]) -> str:
    try:
        if entry.is_symlink():
            return f"{entry.name}@"
        if entry.is_dir(follow_symlinks=False):
            return f"{entry.name}/"
        info = entry.stat(follow_symlinks=False)
    except OSError:
        return f"{entry.name}  (gone)"
    if stat.S_ISREG(info.st_mode):
        return f"{entry.name}  ({info.st_size} bytes)"
    return f"{entry.name}  (special file)"


def _display_base(path: str) -> str:
    parts = [part for part in path.split("/") if part not in ("", ".")]
    return "/".join(parts)


def _join(base: str, relative: str) -> str:
    if not relative:
        return base
    return f"{base}/{relative}" if base else relative


def _unlink_quietly(name: bytes, dir_fd: int) -> None:
    with contextlib.suppress(OSError):
        os.unlink(name, dir_fd=dir_fd)
