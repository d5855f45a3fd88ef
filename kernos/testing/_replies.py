"""Scripted replies and recorded requests, shared by every fake provider server."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["FakeToolCall", "RecordedRequest", "Reply"]


@dataclass(frozen=True, kw_only=True, slots=True)
class FakeToolCall:
    """A tool call a fake model makes.

    Attributes:
        name: the tool's name.
        arguments: the arguments, a mapping (sent as JSON) or JSON text sent as is.
        id: the call's id (``None``: one is made up in the provider's style).
    """

    name: str
    arguments: Mapping[str, Any] | str = field(default_factory=dict)
    id: str | None = None

    def arguments_json(self) -> str:
        """The arguments as JSON text."""
        if isinstance(self.arguments, str):
            return self.arguments
        return json.dumps(dict(self.arguments), separators=(",", ":"))

    def arguments_object(self) -> Any:
        """The arguments as a JSON value (text that is not JSON is returned as is)."""
        if isinstance(self.arguments, str):
            try:
                return json.loads(self.arguments)
            except ValueError:
                return self.arguments
        return dict(self.arguments)


@dataclass(frozen=True, kw_only=True, slots=True)
class Reply:
    """One scripted answer of a fake server.

    A reply with ``status`` 200 is a model answer, rendered in the provider's wire
    format (streamed when the request asks for a stream); any other status is an
    error answer in the provider's error format.

    Attributes:
        text: the answer's text.
        tool_calls: tool calls the model makes.
        finish_reason: ``stop``, ``length``, ``tool_calls`` or ``content_filter``
            (``None``: ``tool_calls`` when there are calls, else ``stop``); fakes
            translate it to their provider's word.
        input_tokens: reported input tokens (``None``: about a quarter of the
            request body's length).
        output_tokens: reported output tokens (``None``: about a quarter of the answer).
        cached_tokens: reported input tokens read from the cache.
        status: the HTTP status.
        message: the error message of an error reply.
        error_type: the provider's error type or code (``None``: one fitting ``status``).
        retry_after: a ``Retry-After`` header value in seconds (fractions are sent as is).
        headers: more response headers.
        delay: seconds to wait before answering, on top of the server's latency.
        chunk_size: characters of text (and of tool arguments) per streamed chunk.
        chunk_delay: seconds between streamed chunks (a model that types slowly).
        stream_error: when streaming, an error the server reports after the content.
        model: the model name the reply claims (``None``: the one requested).
    """

    text: str = ""
    tool_calls: tuple[FakeToolCall, ...] = ()
    finish_reason: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cached_tokens: int = 0
    status: int = 200
    message: str | None = None
    error_type: str | None = None
    retry_after: float | str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0
    chunk_size: int = 4
    chunk_delay: float = 0.0
    stream_error: str | None = None
    model: str | None = None

    @classmethod
    def error(
        cls,
        status: int,
        message: str | None = None,
        *,
        retry_after: float | str | None = None,
        error_type: str | None = None,
        headers: Mapping[str, str] | None = None,
        delay: float = 0.0,
    ) -> Reply:
        """An error answer: ``status`` with the provider's error body."""
        return cls(
            status=status,
            message=message,
            retry_after=retry_after,
            error_type=error_type,
            headers=dict(headers or {}),
            delay=delay,
        )

    @property
    def is_error(self) -> bool:
        """Whether this is an error answer."""
        return self.status >= 400

    def finish(self) -> str:
        """The generic finish reason: the given one or the one the content implies."""
        if self.finish_reason:
            return self.finish_reason
        return "tool_calls" if self.tool_calls else "stop"

    def usage(self, request: RecordedRequest) -> tuple[int, int]:
        """Input and output tokens to report."""
        produced = len(self.text) + sum(len(c.arguments_json()) for c in self.tool_calls)
        input_tokens = self.input_tokens
        if input_tokens is None:
            input_tokens = max(1, len(request.body) // 4)
        output_tokens = self.output_tokens
        if output_tokens is None:
            output_tokens = max(1, produced // 4)
        return input_tokens, output_tokens

    def error_message(self) -> str:
        """The message of an error answer."""
        return self.message or _REASONS.get(self.status, f"HTTP {self.status}")

    def response_headers(self) -> dict[str, str]:
        """Headers to add to the answer."""
        headers = {k.lower(): v for k, v in self.headers.items()}
        if self.retry_after is not None:
            value = self.retry_after
            headers["retry-after"] = f"{value:g}" if isinstance(value, float | int) else value
        return headers


_REASONS = {
    400: "Bad request",
    401: "Invalid API key",
    403: "Forbidden",
    404: "Not found",
    408: "Request timeout",
    429: "Rate limit exceeded",
    500: "Internal server error",
    502: "Bad gateway",
    503: "Service unavailable",
    529: "Overloaded",
}


def chunks(text: str, size: int) -> list[str]:
    """``text`` cut into pieces of ``size`` characters (none for an empty text)."""
    size = max(1, size)
    return [text[i : i + size] for i in range(0, len(text), size)]


@dataclass(frozen=True, kw_only=True, slots=True)
class RecordedRequest:
    """A request a fake server received.

    Attributes:
        method: the HTTP method.
        path: the URL path.
        headers: the headers, names in lower case.
        body: the raw body.
        json: the body parsed as JSON (``None`` if it is not JSON).
        time: when it arrived, from ``time.monotonic()`` (compare two requests' times).
    """

    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes
    json: Any
    time: float

    @property
    def model(self) -> str | None:
        """The model the request names."""
        if isinstance(self.json, dict):
            model = self.json.get("model")
            return str(model) if model is not None else None
        return None

    @property
    def messages(self) -> list[Any]:
        """The request's messages (empty when there are none)."""
        if isinstance(self.json, dict):
            return list(self.json.get("messages") or [])
        return []
