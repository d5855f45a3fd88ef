"""Reading a Server-Sent Events stream: frames from lines, per the HTML standard's rules."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass

__all__ = ["Frame", "frames"]


@dataclass(frozen=True, slots=True)
class Frame:
    """One dispatched event: its ``id`` (if the frame set one), type and data."""

    id: str | None
    event: str
    data: str


async def frames(lines: AsyncIterable[str]) -> AsyncIterator[Frame]:
    """Group the lines of a stream into frames; comments (heartbeats) are skipped.

    A frame ends at a blank line. ``data`` lines are joined with newlines; a frame
    without data is dispatched only when it sets an id (the stream's position moved).
    """
    event_id: str | None = None
    kind: str | None = None
    data: list[str] = []
    async for raw in lines:
        line = raw.rstrip("\r\n")
        if not line:
            if data or event_id is not None:
                yield Frame(id=event_id, event=kind or "message", data="\n".join(data))
            event_id, kind, data = None, None, []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "id" and "\0" not in value:
            event_id = value
        elif name == "event":
            kind = value
        elif name == "data":
            data.append(value)
        # "retry" and unknown fields are ignored: reconnection has its own backoff.
