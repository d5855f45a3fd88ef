"""Facts about local processes, used to spot workers that died on this host."""

from __future__ import annotations

import os

__all__ = ["process_start_marker", "same_process_alive"]


def _stat_fields(pid: int) -> list[str]:
    """Fields 3 onwards of ``/proc/<pid>/stat`` (Linux), or none."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            stat = handle.read()
    except OSError:
        return []
    # The command name (field 2) may contain spaces; fields after it are fixed.
    return stat.rsplit(")", 1)[-1].split()


def process_start_marker(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (Linux), which tells a reused pid apart."""
    fields = _stat_fields(pid)
    return fields[19] if len(fields) > 19 else None


def same_process_alive(pid: int, marker: str | None) -> bool:
    """Whether the process that registered as (``pid``, ``marker``) still runs."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    fields = _stat_fields(pid)
    if fields and fields[0] in ("Z", "X"):  # dead; a zombie is only not reaped yet
        return False
    current = fields[19] if len(fields) > 19 else None
    return marker is None or current is None or current == marker
