"""Ollama's native ``/api/chat`` over httpx: NDJSON streaming, its own tool-call format.

Ollama also serves the OpenAI API at ``/v1``; use ``openai-compatible:`` for that.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx

from kernos import errors
from kernos.llm._assemble import StreamAssembler
from kernos.llm._config import ProviderConfig
from kernos.llm._errors import (
    ErrorContext,
    body_message,
    connection_error,
    status_error,
    stream_error,
    timeout_error,
)
from kernos.llm._messages import Message, Role, ToolCall, ToolSpec
from kernos.llm._provider import BaseProvider
from kernos.llm._request import ChatRequest
from kernos.llm._response import (
    ChatResponse,
    FinishReason,
    StreamDone,
    StreamEvent,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from kernos.llm._retry import parse_retry_after
from kernos.llm._secret import Secret

__all__ = ["OllamaProvider", "connect_ollama", "ollama_url"]

HOST_ENV = "OLLAMA_HOST"
KEY_ENV = "OLLAMA_API_KEY"
DEFAULT_PORT = 11434
MODEL_HINT = "; pull it first with `ollama pull {model}`"
CONNECT_HINT = "; is Ollama running (`ollama serve`)? Set OLLAMA_HOST if it listens elsewhere"

_FINISH = {"stop": FinishReason.STOP, "length": FinishReason.LENGTH}


def ollama_url(host: str) -> str:
    """A base URL from an ``OLLAMA_HOST``-style value (``host``, ``host:port`` or a URL).

    Like Ollama itself: without a scheme, ``http`` and port 11434 are assumed; a
    URL with a scheme keeps that scheme's default port.
    """
    url = host.strip().rstrip("/")
    if "://" in url:
        return url
    hostname, slash, path = url.partition("/")
    if ":" not in hostname:
        hostname = f"{hostname}:{DEFAULT_PORT}"
    return f"http://{hostname}{slash}{path}"


def connect_ollama(model: str, config: ProviderConfig) -> OllamaProvider:
    """Ollama at ``base_url``, ``$OLLAMA_HOST`` or http://localhost:11434."""
    base = config.url_from(HOST_ENV, f"http://localhost:{DEFAULT_PORT}")
    return OllamaProvider(
        model=model, config=config, base_url=ollama_url(base), secret=config.key_from(KEY_ENV)
    )


class _StatusError(Exception):
    """An HTTP error answer from Ollama (httpx raises nothing by itself)."""

    def __init__(self, response: httpx.Response, body: Any) -> None:
        super().__init__(f"HTTP {response.status_code}")
        self.status = response.status_code
        self.headers = response.headers
        self.body = body


class _StreamFailure(Exception):
    """An ``{"error": ...}`` line in the middle of a stream."""


class OllamaProvider(BaseProvider):
    """``/api/chat`` through one pooled ``httpx.AsyncClient``."""

    def __init__(
        self, *, model: str, config: ProviderConfig, base_url: str, secret: Secret | None
    ) -> None:
        super().__init__(
            name="ollama",
            model=model,
            config=config,
            base_url=base_url,
            secret=secret,
            key_env=KEY_ENV,
            model_hint=MODEL_HINT,
            connect_hint=CONNECT_HINT,
        )
        headers = dict(config.headers)
        if secret:
            headers["Authorization"] = f"Bearer {secret.reveal()}"
        self._client = httpx.AsyncClient(base_url=base_url, timeout=config.timeout, headers=headers)

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()

    def _body(self, request: ChatRequest, model: str, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": model,
            "messages": _messages(request.messages),
            "stream": stream,
        }
        if request.tools and request.tool_choice != "none":
            body["tools"] = [_tool(t) for t in request.tools]
        fmt = request.response_format
        if fmt is not None:
            body["format"] = fmt.schema if fmt.schema is not None else "json"
        options: dict[str, Any] = {}
        if request.temperature is not None:
            options["temperature"] = request.temperature
        if request.top_p is not None:
            options["top_p"] = request.top_p
        if request.seed is not None:
            options["seed"] = request.seed
        if request.max_tokens is not None:
            options["num_predict"] = request.max_tokens
        if request.stop:
            options["stop"] = list(request.stop)
        extra = dict(request.extra)
        options.update(extra.pop("options", None) or {})
        if options:
            body["options"] = options
        body.update(extra)
        return body

    async def _post(self, body: dict[str, Any], timeout: float, stream: bool) -> httpx.Response:
        http_request = self._client.build_request("POST", "/api/chat", json=body, timeout=timeout)
        response = await self._client.send(http_request, stream=stream)
        if response.status_code >= 400:
            raw = await response.aread()
            await response.aclose()
            try:
                data: Any = json.loads(raw)
            except ValueError:
                data = raw.decode(errors="replace")
            raise _StatusError(response, data)
        return response

    async def _chat_once(self, request: ChatRequest, model: str, timeout: float) -> ChatResponse:
        response = await self._post(self._body(request, model, False), timeout, False)
        data = response.json()
        message = data.get("message") or {}
        calls = tuple(_tool_call(call) for call in message.get("tool_calls") or ())
        return ChatResponse(
            text=message.get("content") or "",
            tool_calls=calls,
            finish_reason=_finish(data.get("done_reason"), bool(calls)),
            usage=_usage(data),
            provider=self._name,
            model=data.get("model") or model,
            raw_finish_reason=data.get("done_reason"),
        )

    async def _open_stream(
        self, request: ChatRequest, model: str, timeout: float
    ) -> AsyncIterator[StreamEvent]:
        response = await self._post(self._body(request, model, True), timeout, True)
        return self._events(response, model)

    async def _events(self, response: httpx.Response, model: str) -> AsyncIterator[StreamEvent]:
        assembler = StreamAssembler()
        last: dict[str, Any] = {}
        calls = 0
        try:
            async for line in response.aiter_lines():
                if not line.strip():
                    continue
                data = json.loads(line)
                if "error" in data:
                    raise _StreamFailure(str(data["error"]))
                message = data.get("message") or {}
                deltas: list[TextDelta | ToolCallDelta] = []
                if message.get("content"):
                    deltas.append(TextDelta(text=message["content"]))
                for raw in message.get("tool_calls") or ():
                    call = _tool_call(raw)
                    deltas.append(
                        ToolCallDelta(
                            index=calls, id=call.id, name=call.name, arguments=call.arguments
                        )
                    )
                    calls += 1
                for delta in deltas:
                    assembler.add(delta)
                    yield delta
                if data.get("done"):
                    last = data
                    break
        finally:
            await response.aclose()
        yield StreamDone(
            response=assembler.response(
                finish_reason=_finish(last.get("done_reason"), calls > 0),
                usage=_usage(last),
                provider=self._name,
                model=last.get("model") or model,
                raw_finish_reason=last.get("done_reason"),
            )
        )

    def _translate(
        self, error: Exception, ctx: ErrorContext, timeout: float, attempt: int
    ) -> errors.ProviderError | None:
        if isinstance(error, httpx.TimeoutException):
            return timeout_error(ctx, timeout, attempt)
        if isinstance(error, httpx.TransportError):
            return connection_error(ctx, f"{type(error).__name__}: {error}", attempt)
        if isinstance(error, _StatusError):
            return status_error(
                ctx,
                error.status,
                body_message(error.body),
                retry_after=parse_retry_after(error.headers),
                attempts=attempt,
            )
        if isinstance(error, _StreamFailure):
            return stream_error(ctx, str(error), attempt)
        return None


def _finish(reason: str | None, called: bool) -> FinishReason:
    finish = _FINISH.get(reason or "", FinishReason.OTHER)
    return FinishReason.TOOL_CALLS if called and finish is FinishReason.STOP else finish


def _usage(data: dict[str, Any]) -> Usage:
    return Usage(
        input_tokens=int(data.get("prompt_eval_count") or 0),
        output_tokens=int(data.get("eval_count") or 0),
    )


def _tool_call(raw: dict[str, Any]) -> ToolCall:
    function = raw.get("function") or {}
    call_id = raw.get("id") or f"call_{secrets.token_hex(6)}"
    return ToolCall.of(function.get("name", ""), function.get("arguments") or {}, id=call_id)


def _messages(messages: Sequence[Message]) -> list[dict[str, Any]]:
    names = {call.id: call.name for m in messages for call in m.tool_calls}
    return [_message(m, names) for m in messages]


def _message(message: Message, names: dict[str, str]) -> dict[str, Any]:
    data: dict[str, Any] = {"role": message.role.value, "content": message.content}
    if message.role is Role.TOOL:
        name = message.name or names.get(message.tool_call_id or "")
        if name:
            data["tool_name"] = name
    for call in message.tool_calls:
        data.setdefault("tool_calls", []).append(
            {"id": call.id, "function": {"name": call.name, "arguments": _arguments(call)}}
        )
    return data


def _arguments(call: ToolCall) -> dict[str, Any]:
    try:
        return call.args()
    except ValueError:
        return {}


def _tool(tool: ToolSpec) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": tool.name,
            "description": tool.description,
            "parameters": tool.parameters,
        },
    }
