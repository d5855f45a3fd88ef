"""Reassembling a stream of deltas into one response."""

from __future__ import annotations

from collections.abc import AsyncIterator

from kernos.llm._messages import ToolCall
from kernos.llm._response import (
    ChatResponse,
    FinishReason,
    StreamDone,
    StreamEvent,
    TextDelta,
    ToolCallDelta,
    Usage,
)

__all__ = ["StreamAssembler", "collect"]


class _PartialCall:
    __slots__ = ("arguments", "id", "name")

    def __init__(self) -> None:
        self.id = ""
        self.name = ""
        self.arguments: list[str] = []


class StreamAssembler:
    """Collects text and tool-call deltas; :meth:`response` builds the whole answer."""

    __slots__ = ("_calls", "_text")

    def __init__(self) -> None:
        self._text: list[str] = []
        self._calls: dict[int, _PartialCall] = {}

    def add(self, event: TextDelta | ToolCallDelta) -> None:
        """Take one delta into account."""
        if isinstance(event, TextDelta):
            self._text.append(event.text)
            return
        call = self._calls.get(event.index)
        if call is None:
            call = self._calls[event.index] = _PartialCall()
        if event.id:
            call.id = event.id
        if event.name:
            call.name = event.name
        if event.arguments:
            call.arguments.append(event.arguments)

    @property
    def text(self) -> str:
        """The text so far."""
        return "".join(self._text)

    def tool_calls(self) -> tuple[ToolCall, ...]:
        """The tool calls so far, in index order."""
        return tuple(
            ToolCall(id=call.id, name=call.name, arguments="".join(call.arguments) or "{}")
            for _, call in sorted(self._calls.items())
        )

    def response(
        self,
        *,
        finish_reason: FinishReason,
        usage: Usage,
        provider: str,
        model: str,
        id: str | None = None,
        raw_finish_reason: str | None = None,
    ) -> ChatResponse:
        """The whole response the deltas make up."""
        return ChatResponse(
            text=self.text,
            tool_calls=self.tool_calls(),
            finish_reason=finish_reason,
            usage=usage,
            provider=provider,
            model=model,
            id=id,
            raw_finish_reason=raw_finish_reason,
        )


async def collect(stream: AsyncIterator[StreamEvent]) -> ChatResponse:
    """Consume a stream and return its final response.

    Raises:
        ValueError: the stream ended without a :class:`StreamDone` event.
    """
    async for event in stream:
        if isinstance(event, StreamDone):
            return event.response
    raise ValueError("the stream ended without a final response")
