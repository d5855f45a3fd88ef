"""Writes the runtime hands to the store to be applied in one transaction.

The runtime's journal writer collects these from every run in the process and
applies a batch with :meth:`Store.apply`, one commit for all of them (group
commit). JSON values arrive already encoded as text: encoding happens in the
runtime, where an error can name the step that produced the value.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["EntryWrite", "EventWrite", "Fence", "FinishWrite", "Write"]


class Fence(enum.StrEnum):
    """What a fenced write found when it checked the run's lease."""

    OK = "ok"  # written; the run goes on
    PAUSE = "pause"  # written; a pause was requested, stop at this boundary
    LOST = "lost"  # not written: the lease is gone (cancelled, taken over, finished)
    READY = "ready"  # not suspended: what the run waits for has already happened


@dataclass(frozen=True, kw_only=True, slots=True)
class EntryWrite:
    """Write (or settle) the journal entry ``seq`` of a run held under ``epoch``."""

    run_id: str
    epoch: int
    seq: int
    kind: str
    name: str
    status: str
    args_hash: str | None = None
    output: str | None = None
    error: str | None = None
    attempts: str | None = None
    detail: str | None = None
    started_at: float
    finished_at: float | None = None
    event_kind: str | None = None
    event_data: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class EventWrite:
    """Append one event to the event record (unfenced: events describe, never decide)."""

    run_id: str
    kind: str
    data: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class FinishWrite:
    """End a run held under ``epoch`` with an output or an error, and wake its parent."""

    run_id: str
    epoch: int
    status: str
    output: str | None = None
    error: str | None = None
    event_data: str | None = None


Write = EntryWrite | EventWrite | FinishWrite
