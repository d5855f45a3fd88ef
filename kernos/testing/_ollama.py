"""A fake Ollama server (native ``/api/chat``)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, ClassVar

from kernos.testing._replies import RecordedRequest, Reply, chunks
from kernos.testing._server import FakeServer, Rendered

__all__ = ["FakeOllama"]

_DONE = {"stop": "stop", "tool_calls": "stop", "length": "length", "content_filter": "stop"}


class FakeOllama(FakeServer):
    """``POST /api/chat`` as Ollama serves it: NDJSON lines (streaming is its default).

    Text comes in pieces, one line each; tool calls come whole (Ollama does not
    split arguments), with arguments as a JSON object; the last line has
    ``done: true``, the ``done_reason`` and the token counts. ``url`` is the
    server's root, like ``OLLAMA_HOST``.
    """

    provider: ClassVar[str] = "ollama"
    routes: ClassVar[frozenset[tuple[str, str]]] = frozenset({("POST", "/api/chat")})

    def authorized(self, request: RecordedRequest) -> bool:
        """The key, when required, must come as ``Authorization: Bearer <key>``."""
        return request.headers.get("authorization") == f"Bearer {self.api_key}"

    def render_error(self, status: int, message: str, error_type: str | None) -> Rendered:
        """Ollama's ``{"error": "..."}``."""
        return Rendered.json(status, {"error": message})

    def model_not_found(self, model: str) -> Rendered:
        """Ollama's 404 for a model that was not pulled."""
        return self.render_error(404, f"model '{model}' not found", None)

    def render(self, request: RecordedRequest, reply: Reply) -> Rendered:
        """One JSON object, or NDJSON lines when streaming."""
        body = request.json if isinstance(request.json, dict) else {}
        model = reply.model or str(body.get("model", "llama3.2"))
        created = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        input_tokens, output_tokens = reply.usage(request)
        calls = [
            {
                **({"id": call.id} if call.id else {}),
                "function": {
                    "index": index,
                    "name": call.name,
                    "arguments": call.arguments_object(),
                },
            }
            for index, call in enumerate(reply.tool_calls)
        ]
        final = {
            "model": model,
            "created_at": created,
            "done": True,
            "done_reason": _DONE.get(reply.finish(), "stop"),
            "total_duration": 1_000_000,
            "load_duration": 100_000,
            "prompt_eval_count": input_tokens,
            "prompt_eval_duration": 200_000,
            "eval_count": output_tokens,
            "eval_duration": 700_000,
        }
        if body.get("stream", True):
            return Rendered.stream(
                "application/x-ndjson", _lines(reply, model, created, calls, final)
            )
        message: dict[str, Any] = {"role": "assistant", "content": reply.text}
        if calls:
            message["tool_calls"] = calls
        return Rendered.json(200, {**final, "message": message})


def _line(data: dict[str, Any]) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode() + b"\n"


def _lines(
    reply: Reply,
    model: str,
    created: str,
    calls: list[dict[str, Any]],
    final: dict[str, Any],
) -> list[bytes]:
    def partial(message: dict[str, Any]) -> bytes:
        return _line({"model": model, "created_at": created, "message": message, "done": False})

    out = [
        partial({"role": "assistant", "content": piece})
        for piece in chunks(reply.text, reply.chunk_size)
    ]
    for call in calls:
        out.append(partial({"role": "assistant", "content": "", "tool_calls": [call]}))
    if reply.stream_error is not None:
        out.append(_line({"error": reply.stream_error}))
        return out
    out.append(_line({**final, "message": {"role": "assistant", "content": ""}}))
    return out
