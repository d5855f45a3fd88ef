"""What one chat call returns: text, tool calls, usage and finish reason; stream events."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, Literal, TypeAlias, TypeVar

from kernos.llm._messages import Message, ToolCall

__all__ = [
    "ChatResponse",
    "FinishReason",
    "StreamDone",
    "StreamEvent",
    "TextDelta",
    "ToolCallDelta",
    "Usage",
    "stream_event_from_dict",
]

T = TypeVar("T")


class FinishReason(StrEnum):
    """Why the model stopped, the same values for every provider."""

    STOP = "stop"
    """It finished its answer (or hit a stop sequence)."""
    LENGTH = "length"
    """It ran into ``max_tokens`` (the answer is cut short)."""
    TOOL_CALLS = "tool_calls"
    """It wants tools run; their results go back in the next call."""
    CONTENT_FILTER = "content_filter"
    """The provider withheld or refused the content."""
    OTHER = "other"
    """Anything else; ``ChatResponse.raw_finish_reason`` has the provider's word."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Usage:
    """Tokens spent by one call (or a sum of calls) and what they cost.

    Attributes:
        input_tokens: every input (prompt) token, cached ones included.
        output_tokens: every output token, reasoning included.
        cached_input_tokens: of ``input_tokens``, those read from the provider's cache.
        cache_write_tokens: of ``input_tokens``, those written to the cache (Anthropic).
        cost: US dollars from the price table, or ``None`` when the model has no price.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    cost: float | None = None

    @property
    def total_tokens(self) -> int:
        """Input plus output tokens."""
        return self.input_tokens + self.output_tokens

    def __add__(self, other: Usage) -> Usage:
        if not isinstance(other, Usage):
            return NotImplemented
        cost = None if self.cost is None and other.cost is None else 0.0
        if cost is not None:
            cost = (self.cost or 0.0) + (other.cost or 0.0)
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cached_input_tokens=self.cached_input_tokens + other.cached_input_tokens,
            cache_write_tokens=self.cache_write_tokens + other.cache_write_tokens,
            cost=cost,
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON form of this usage."""
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cached_input_tokens": self.cached_input_tokens,
            "cache_write_tokens": self.cache_write_tokens,
            "cost": self.cost,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Usage:
        """Rebuild a usage from :meth:`to_dict`'s output."""
        return cls(
            input_tokens=int(data.get("input_tokens", 0)),
            output_tokens=int(data.get("output_tokens", 0)),
            cached_input_tokens=int(data.get("cached_input_tokens", 0)),
            cache_write_tokens=int(data.get("cache_write_tokens", 0)),
            cost=data.get("cost"),
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class ChatResponse:
    """The model's answer to one chat call.

    Attributes:
        text: the text of the answer (empty when it only calls tools).
        tool_calls: the tools it wants run, in order.
        finish_reason: why it stopped.
        usage: tokens and cost.
        provider: the provider's name (``openai``, ``anthropic``, ``ollama``, ...).
        model: the model that answered, as the provider names it.
        id: the provider's id for the response, when it gives one.
        raw_finish_reason: the provider's own word for ``finish_reason``.
    """

    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    finish_reason: FinishReason = FinishReason.STOP
    usage: Usage = Usage()
    provider: str = ""
    model: str = ""
    id: str | None = None
    raw_finish_reason: str | None = None

    def message(self) -> Message:
        """The assistant message to append to the conversation."""
        return Message.assistant(self.text, self.tool_calls)

    def json(self) -> Any:
        """The text parsed as JSON (for structured output)."""
        return json.loads(self.text)

    def parse(self, model: type[T]) -> T:
        """The text validated as an instance of the pydantic model class ``model``."""
        validate: Any = getattr(model, "model_validate_json")  # noqa: B009 - pydantic, untyped here
        result: T = validate(self.text)
        return result

    def with_usage(self, usage: Usage) -> ChatResponse:
        """A copy with ``usage`` replaced."""
        return replace(self, usage=usage)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form of this response."""
        return {
            "text": self.text,
            "tool_calls": [call.to_dict() for call in self.tool_calls],
            "finish_reason": self.finish_reason.value,
            "usage": self.usage.to_dict(),
            "provider": self.provider,
            "model": self.model,
            "id": self.id,
            "raw_finish_reason": self.raw_finish_reason,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ChatResponse:
        """Rebuild a response from :meth:`to_dict`'s output."""
        return cls(
            text=data.get("text", ""),
            tool_calls=tuple(ToolCall.from_dict(c) for c in data.get("tool_calls") or ()),
            finish_reason=FinishReason(data.get("finish_reason", "stop")),
            usage=Usage.from_dict(data.get("usage") or {}),
            provider=data.get("provider", ""),
            model=data.get("model", ""),
            id=data.get("id"),
            raw_finish_reason=data.get("raw_finish_reason"),
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class TextDelta:
    """A piece of the answer's text."""

    text: str
    type: Literal["text"] = "text"

    def to_dict(self) -> dict[str, Any]:
        """The JSON form of this event."""
        return {"type": self.type, "text": self.text}


@dataclass(frozen=True, kw_only=True, slots=True)
class ToolCallDelta:
    """A piece of a tool call.

    The first piece of a call carries its ``id`` and ``name``; later pieces carry
    more of ``arguments`` (JSON text, to be concatenated in order). ``index``
    says which call of the answer the piece belongs to (0, 1, ...).
    """

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""
    type: Literal["tool_call"] = "tool_call"

    def to_dict(self) -> dict[str, Any]:
        """The JSON form of this event."""
        return {
            "type": self.type,
            "index": self.index,
            "id": self.id,
            "name": self.name,
            "arguments": self.arguments,
        }


@dataclass(frozen=True, kw_only=True, slots=True)
class StreamDone:
    """The last event of a stream: the whole response, with usage and finish reason."""

    response: ChatResponse
    type: Literal["done"] = "done"

    def to_dict(self) -> dict[str, Any]:
        """The JSON form of this event."""
        return {"type": self.type, "response": self.response.to_dict()}


StreamEvent: TypeAlias = TextDelta | ToolCallDelta | StreamDone
"""What :meth:`Provider.stream` yields; the last event is always a :class:`StreamDone`."""


def stream_event_from_dict(data: Mapping[str, Any]) -> StreamEvent:
    """Rebuild a stream event from its ``to_dict()`` output."""
    kind = data.get("type")
    if kind == "text":
        return TextDelta(text=data["text"])
    if kind == "tool_call":
        return ToolCallDelta(
            index=int(data["index"]),
            id=data.get("id"),
            name=data.get("name"),
            arguments=data.get("arguments", ""),
        )
    if kind == "done":
        return StreamDone(response=ChatResponse.from_dict(data["response"]))
    raise ValueError(f"unknown stream event type {kind!r}")
