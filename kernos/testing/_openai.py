"""A fake OpenAI chat completions server (also stands in for OpenAI-compatible servers)."""

from __future__ import annotations

import json
import time
from typing import Any, ClassVar

from kernos.testing._replies import RecordedRequest, Reply, chunks
from kernos.testing._server import FakeServer, Rendered

__all__ = ["FakeOpenAI"]

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "permission_error",
    404: "invalid_request_error",
    429: "rate_limit_exceeded",
}
_ERROR_CODES = {401: "invalid_api_key", 404: "model_not_found", 429: "rate_limit_exceeded"}


class FakeOpenAI(FakeServer):
    """``POST /v1/chat/completions`` as OpenAI serves it: JSON, or SSE when ``stream`` is set.

    Streams carry ``chat.completion.chunk`` objects whose ``choices[].delta`` hold
    text pieces and tool calls whose arguments are split across chunks, end with
    ``data: [DONE]``, and carry a usage chunk when ``stream_options.include_usage``.
    ``url`` ends in ``/v1``, as the SDK's ``base_url`` does.
    """

    provider: ClassVar[str] = "openai"
    url_path: ClassVar[str] = "/v1"
    routes: ClassVar[frozenset[tuple[str, str]]] = frozenset({("POST", "/v1/chat/completions")})

    def authorized(self, request: RecordedRequest) -> bool:
        """The key must come as ``Authorization: Bearer <key>``."""
        return request.headers.get("authorization") == f"Bearer {self.api_key}"

    def render_error(self, status: int, message: str, error_type: str | None) -> Rendered:
        """OpenAI's ``{"error": {"message", "type", "param", "code"}}``."""
        return Rendered.json(
            status,
            {
                "error": {
                    "message": message,
                    "type": error_type or _ERROR_TYPES.get(status, "server_error"),
                    "param": None,
                    "code": _ERROR_CODES.get(status),
                }
            },
        )

    def model_not_found(self, model: str) -> Rendered:
        """OpenAI's 404 for an unknown model."""
        return self.render_error(
            404,
            f"The model `{model}` does not exist or you do not have access to it.",
            "invalid_request_error",
        )

    def render(self, request: RecordedRequest, reply: Reply) -> Rendered:
        """A ``chat.completion`` object, or its SSE stream of chunks."""
        body = request.json if isinstance(request.json, dict) else {}
        model = reply.model or str(body.get("model", "gpt-4o-mini"))
        ident = f"chatcmpl-{self.next_id()}"
        calls = [
            {
                "id": call.id or f"call_{self.next_id()}",
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments_json()},
            }
            for call in reply.tool_calls
        ]
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            events = self._chunks(request, reply, ident, model, calls, include_usage)
            return Rendered.stream("text/event-stream", events)
        message: dict[str, Any] = {
            "role": "assistant",
            "content": reply.text if reply.text or not calls else None,
            "refusal": None,
            "annotations": [],
        }
        if calls:
            message["tool_calls"] = calls
        completion = {
            "id": ident,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": reply.finish(),
                }
            ],
            "usage": _usage(request, reply),
            "service_tier": "default",
            "system_fingerprint": "fp_fake",
        }
        return Rendered.json(200, completion)

    def _chunks(
        self,
        request: RecordedRequest,
        reply: Reply,
        ident: str,
        model: str,
        calls: list[dict[str, Any]],
        include_usage: bool,
    ) -> list[bytes]:
        created = int(time.time())

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            data: dict[str, Any] = {
                "id": ident,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "system_fingerprint": "fp_fake",
                "choices": [
                    {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
                ],
            }
            if include_usage:
                data["usage"] = None
            return _sse(data)

        out = [chunk({"role": "assistant", "content": "", "refusal": None})]
        out += [chunk({"content": piece}) for piece in chunks(reply.text, reply.chunk_size)]
        for index, call in enumerate(calls):
            function = call["function"]
            head = {"name": function["name"], "arguments": ""}
            first = {"index": index, "id": call["id"], "type": "function", "function": head}
            out.append(chunk({"tool_calls": [first]}))
            for piece in chunks(function["arguments"], reply.chunk_size):
                out.append(
                    chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
                )
        if reply.stream_error is not None:
            out.append(_sse({"error": {"message": reply.stream_error, "type": "server_error"}}))
            return out
        out.append(chunk({}, reply.finish()))
        if include_usage:
            out.append(
                _sse(
                    {
                        "id": ident,
                        "object": "chat.completion.chunk",
                        "created": created,
                        "model": model,
                        "system_fingerprint": "fp_fake",
                        "choices": [],
                        "usage": _usage(request, reply),
                    }
                )
            )
        out.append(b"data: [DONE]\n\n")
        return out


def _sse(data: Any) -> bytes:
    return b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"


def _usage(request: RecordedRequest, reply: Reply) -> dict[str, Any]:
    input_tokens, output_tokens = reply.usage(request)
    return {
        "prompt_tokens": input_tokens,
        "completion_tokens": output_tokens,
        "total_tokens": input_tokens + output_tokens,
        "prompt_tokens_details": {"cached_tokens": reply.cached_tokens, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }
