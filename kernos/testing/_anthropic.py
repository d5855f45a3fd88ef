"""A fake Anthropic Messages API server."""

from __future__ import annotations

import json
from typing import Any, ClassVar

from kernos.testing._replies import RecordedRequest, Reply, chunks
from kernos.testing._server import FakeServer, Rendered

__all__ = ["FakeAnthropic"]

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}
_STOP = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "refusal",
}


class FakeAnthropic(FakeServer):
    """``POST /v1/messages`` as Anthropic serves it: JSON, or SSE with ``event:`` lines.

    Streams run ``message_start``, ``ping``, per block ``content_block_start`` /
    ``content_block_delta`` (``text_delta``, or ``input_json_delta`` fragments of
    tool arguments) / ``content_block_stop``, then ``message_delta`` with the stop
    reason and usage, and ``message_stop``. ``url`` is the server's root, as the
    SDK's ``base_url`` is.
    """

    provider: ClassVar[str] = "anthropic"
    routes: ClassVar[frozenset[tuple[str, str]]] = frozenset({("POST", "/v1/messages")})

    def authorized(self, request: RecordedRequest) -> bool:
        """The key must come as ``x-api-key`` or as ``Authorization: Bearer`` (newer SDKs)."""
        bearer = request.headers.get("authorization") == f"Bearer {self.api_key}"
        return bearer or request.headers.get("x-api-key") == self.api_key

    def render_error(self, status: int, message: str, error_type: str | None) -> Rendered:
        """Anthropic's ``{"type": "error", "error": {"type", "message"}}``."""
        kind = error_type or _ERROR_TYPES.get(status, "api_error")
        body = {"type": "error", "error": {"type": kind, "message": message}}
        return Rendered.json(status, body, {"request-id": "req_fake"})

    def model_not_found(self, model: str) -> Rendered:
        """Anthropic's 404 for an unknown model."""
        return self.render_error(404, f"model: {model}", "not_found_error")

    def render(self, request: RecordedRequest, reply: Reply) -> Rendered:
        """A ``message`` object, or its event stream."""
        body = request.json if isinstance(request.json, dict) else {}
        model = reply.model or str(body.get("model", "claude-sonnet-4-5"))
        ident = f"msg_fake{self.next_id():06d}"
        blocks: list[dict[str, Any]] = []
        if reply.text:
            blocks.append({"type": "text", "text": reply.text})
        for call in reply.tool_calls:
            blocks.append(
                {
                    "type": "tool_use",
                    "id": call.id or f"toolu_fake{self.next_id():06d}",
                    "name": call.name,
                    "input": call.arguments_object(),
                }
            )
        stop = _STOP.get(reply.finish(), reply.finish())
        input_tokens, output_tokens = reply.usage(request)
        if body.get("stream"):
            events = _events(reply, ident, model, blocks, stop, input_tokens, output_tokens)
            return Rendered.stream("text/event-stream; charset=utf-8", events)
        message = {
            "id": ident,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": blocks,
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": _usage(reply, input_tokens, output_tokens),
        }
        return Rendered.json(200, message, {"request-id": "req_fake"})


def _usage(reply: Reply, input_tokens: int, output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": max(0, input_tokens - reply.cached_tokens),
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": reply.cached_tokens,
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }


def _event(kind: str, data: dict[str, Any]) -> bytes:
    payload = json.dumps({"type": kind, **data}, separators=(",", ":"))
    return f"event: {kind}\ndata: {payload}\n\n".encode()


def _events(
    reply: Reply,
    ident: str,
    model: str,
    blocks: list[dict[str, Any]],
    stop: str,
    input_tokens: int,
    output_tokens: int,
) -> list[bytes]:
    message: dict[str, Any] = {
        "id": ident,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": _usage(reply, input_tokens, 1),
    }
    out = [_event("message_start", {"message": message}), _event("ping", {})]
    for index, block in enumerate(blocks):
        if block["type"] == "text":
            out.append(
                _event(
                    "content_block_start",
                    {"index": index, "content_block": {"type": "text", "text": ""}},
                )
            )
            for piece in chunks(block["text"], reply.chunk_size):
                delta = {"type": "text_delta", "text": piece}
                out.append(_event("content_block_delta", {"index": index, "delta": delta}))
        else:
            head = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
            out.append(_event("content_block_start", {"index": index, "content_block": head}))
            arguments = json.dumps(block["input"], separators=(",", ":"))
            for piece in chunks(arguments, reply.chunk_size):
                delta = {"type": "input_json_delta", "partial_json": piece}
                out.append(_event("content_block_delta", {"index": index, "delta": delta}))
        out.append(_event("content_block_stop", {"index": index}))
    if reply.stream_error is not None:
        error = {"type": "overloaded_error", "message": reply.stream_error}
        out.append(_event("error", {"error": error}))
        return out
    out.append(
        _event(
            "message_delta",
            {
                "delta": {"stop_reason": stop, "stop_sequence": None},
                "usage": {"output_tokens": output_tokens},
            },
        )
    )
    out.append(_event("message_stop", {}))
    return out
