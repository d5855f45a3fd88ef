"""What a run page shows beside the timeline: model output streaming in, before its
entry is written, a recorded error's chain of causes, and the run's forks."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from kernos.records import Event

__all__ = ["Stream", "cause_chain", "model_streams"]


@dataclass(frozen=True, slots=True)
class Stream:
    """The text a model call has streamed so far, before its entry is written."""

    seq: int
    attempt: int
    text: str
    next_index: int  # the index of the next ``llm.delta`` event expected


def model_streams(events: Sequence[Event], written: Collection[int]) -> list[Stream]:
    """The streamed text of each model call in flight: ``llm.delta`` events whose
    journal position is not ``written`` yet, of each call's latest attempt."""
    parts: dict[int, tuple[int, dict[int, str]]] = {}
    for event in events:
        data = event.data
        if event.kind != "llm.delta" or not isinstance(data, dict):
            continue
        seq, attempt, index, text = (data.get(k) for k in ("seq", "attempt", "index", "text"))
        if not (isinstance(seq, int) and isinstance(index, int) and isinstance(text, str)):
            continue
        if seq in written:
            continue
        attempt = attempt if isinstance(attempt, int) else 0
        known = parts.get(seq)
        if known is None or attempt > known[0]:
            known = parts[seq] = (attempt, {})
        if attempt == known[0]:
            known[1][index] = text
    streams = []
    for seq, (attempt, pieces) in sorted(parts.items()):
        count = 0
        while count in pieces:  # contiguous from 0; the page fetches again on a gap
            count += 1
        streams.append(Stream(seq, attempt, "".join(pieces[i] for i in range(count)), count))
    return streams


def cause_chain(error: Any) -> list[dict[str, Any]]:
    """A recorded error and its causes, outermost first (type, message, code)."""
    chain: list[dict[str, Any]] = []
    seen = 0
    while isinstance(error, dict) and seen < 20:
        chain.append(
            {
                "type": str(error.get("type", "error")),
                "message": str(error.get("message", "")),
                "code": error.get("code"),
            }
        )
        error = error.get("cause")
        seen += 1
    return chain
