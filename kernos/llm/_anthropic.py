"""Anthropic's Messages API via the official ``anthropic`` SDK.

Differences from the common shape, handled here: system messages travel apart
(``system=``), tool calls are ``tool_use`` content blocks and tool results are
``tool_result`` blocks inside a user turn, ``max_tokens`` is required, and
streamed tool arguments arrive as ``input_json_delta`` fragments.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

try:
    import anthropic
except ImportError as exc:  # pragma: no cover - the SDK is a dependency
    raise ImportError(
        "the Anthropic provider needs the anthropic SDK: pip install anthropic"
    ) from exc

from kernos import errors
from kernos.llm._assemble import StreamAssembler
from kernos.llm._config import ProviderConfig
from kernos.llm._errors import (
    ErrorContext,
    body_code,
    body_message,
    connection_error,
    status_error,
    timeout_error,
)
from kernos.llm._messages import Message, Role, ToolCall, ToolSpec
from kernos.llm._provider import BaseProvider
from kernos.llm._request import TOOL_CHOICE_MODES, ChatRequest
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

__all__ = ["AnthropicProvider", "connect_anthropic"]

ANTHROPIC_URL = "https://api.anthropic.com"
KEY_ENV = "ANTHROPIC_API_KEY"
URL_ENV = "ANTHROPIC_BASE_URL"
DEFAULT_MAX_TOKENS = 4096
JSON_ONLY = "Reply with one JSON object and nothing else."

_FINISH = {
    "end_turn": FinishReason.STOP,
    "stop_sequence": FinishReason.STOP,
    "max_tokens": FinishReason.LENGTH,
    "model_context_window_exceeded": FinishReason.LENGTH,
    "tool_use": FinishReason.TOOL_CALLS,
    "refusal": FinishReason.CONTENT_FILTER,
}

# Error types Anthropic reports inside a stream (HTTP 200), as the status they stand for.
_ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
}


def connect_anthropic(model: str, config: ProviderConfig) -> AnthropicProvider:
    """Anthropic (or, with a ``base_url``, a server speaking its API)."""
    secret = config.key_from(KEY_ENV)
    if secret is None:
        raise errors.ConfigError(
            f"{KEY_ENV} is not set: export it, put api_key in [llm.anthropic] of the config "
            "file, or pass api_key= to kernos.llm.connect()",
            provider="anthropic",
        )
    return AnthropicProvider(
        model=model, config=config, base_url=config.url_from(URL_ENV, ANTHROPIC_URL), secret=secret
    )


class AnthropicProvider(BaseProvider):
    """Messages through the official ``anthropic`` SDK, one pooled client per object."""

    def __init__(
        self, *, model: str, config: ProviderConfig, base_url: str, secret: Secret
    ) -> None:
        super().__init__(
            name="anthropic",
            model=model,
            config=config,
            base_url=base_url,
            secret=secret,
            key_env=KEY_ENV,
        )
        self._client = anthropic.AsyncAnthropic(
            api_key=secret.reveal(),
            base_url=base_url,
            timeout=config.timeout,
            max_retries=0,
            default_headers=dict(config.headers) or None,
        )

    async def aclose(self) -> None:
        """Close the SDK client's connection pool."""
        await self._client.close()

    def _params(self, request: ChatRequest, model: str) -> dict[str, Any]:
        system = [m.content for m in request.messages if m.role is Role.SYSTEM and m.content]
        params: dict[str, Any] = {
            "model": model,
            "max_tokens": request.max_tokens or DEFAULT_MAX_TOKENS,
            "messages": _messages(request.messages),
        }
        fmt = request.response_format
        if fmt is not None and fmt.schema is None:
            system.append(JSON_ONLY)
        if system:
            params["system"] = "\n\n".join(system)
        if request.tools:
            params["tools"] = [_tool(t) for t in request.tools]
        if request.tool_choice is not None:
            params["tool_choice"] = _tool_choice(request.tool_choice)
        if fmt is not None and fmt.schema is not None:
            params["output_config"] = {"format": {"type": "json_schema", "schema": fmt.schema}}
        if request.stop:
            params["stop_sequences"] = list(request.stop)
        # Recent SDKs dropped the sampling arguments (newer models refuse them); models
        # that still take them get them in the body.
        body = {
            name: value
            for name, value in (("temperature", request.temperature), ("top_p", request.top_p))
            if value is not None
        }
        body.update(request.extra)
        if body:
            params["extra_body"] = body
        return params

    async def _chat_once(self, request: ChatRequest, model: str, timeout: float) -> ChatResponse:
        message = await self._client.messages.create(
            **self._params(request, model), timeout=timeout
        )
        text: list[str] = []
        calls: list[ToolCall] = []
        for block in message.content:
            if block.type == "text":
                text.append(block.text)
            elif block.type == "tool_use":
                calls.append(ToolCall.of(block.name, block.input or {}, id=block.id))
        raw_finish = message.stop_reason
        return ChatResponse(
            text="".join(text),
            tool_calls=tuple(calls),
            finish_reason=_FINISH.get(raw_finish or "", FinishReason.OTHER),
            usage=_usage(message.usage),
            provider=self._name,
            model=message.model or model,
            id=message.id,
            raw_finish_reason=raw_finish,
        )

    async def _open_stream(
        self, request: ChatRequest, model: str, timeout: float
    ) -> AsyncIterator[StreamEvent]:
        stream = await self._client.messages.create(
            **self._params(request, model), stream=True, timeout=timeout
        )
        return self._events(stream, model)

    async def _events(self, stream: Any, model: str) -> AsyncIterator[StreamEvent]:
        state = _StreamState(model)
        try:
            async for event in stream:
                handle = _HANDLERS.get(event.type)
                if handle is not None:
                    for delta in handle(state, event):
                        state.assembler.add(delta)
                        yield delta
        finally:
            await stream.close()
        yield StreamDone(
            response=state.assembler.response(
                finish_reason=_FINISH.get(state.stop_reason or "", FinishReason.OTHER),
                usage=state.usage(),
                provider=self._name,
                model=state.model,
                id=state.id,
                raw_finish_reason=state.stop_reason,
            )
        )

    def _translate(
        self, error: Exception, ctx: ErrorContext, timeout: float, attempt: int
    ) -> errors.ProviderError | None:
        if isinstance(error, anthropic.APITimeoutError):
            return timeout_error(ctx, timeout, attempt)
        if isinstance(error, anthropic.APIConnectionError):
            cause = error.__cause__ or error.__context__
            return connection_error(ctx, f"{error} ({cause})" if cause else str(error), attempt)
        if isinstance(error, anthropic.APIStatusError):
            status = error.status_code
            code = body_code(error.body)
            if status < 400:  # an error event inside a stream
                status = _ERROR_STATUS.get(code or "", 500)
            return status_error(
                ctx,
                status,
                body_message(error.body) or error.message,
                code=code,
                retry_after=parse_retry_after(error.response.headers),
                attempts=attempt,
            )
        return None


class _StreamState:
    """What a stream has told so far: ids, usage, and which block is which tool call."""

    __slots__ = (
        "assembler",
        "cache_read",
        "cache_write",
        "id",
        "input_tokens",
        "model",
        "output_tokens",
        "stop_reason",
        "tool_index",
    )

    def __init__(self, model: str) -> None:
        self.assembler = StreamAssembler()
        self.model = model
        self.id: str | None = None
        self.stop_reason: str | None = None
        self.input_tokens = 0
        self.output_tokens = 0
        self.cache_read = 0
        self.cache_write = 0
        self.tool_index: dict[int, int] = {}  # content block index -> tool call index

    def take_usage(self, usage: Any) -> None:
        if usage is None:
            return
        self.input_tokens = getattr(usage, "input_tokens", None) or self.input_tokens
        self.output_tokens = getattr(usage, "output_tokens", None) or self.output_tokens
        self.cache_read = getattr(usage, "cache_read_input_tokens", None) or self.cache_read
        self.cache_write = getattr(usage, "cache_creation_input_tokens", None) or self.cache_write

    def usage(self) -> Usage:
        return Usage(
            input_tokens=self.input_tokens + self.cache_read + self.cache_write,
            output_tokens=self.output_tokens,
            cached_input_tokens=self.cache_read,
            cache_write_tokens=self.cache_write,
        )


Deltas = list[TextDelta | ToolCallDelta]


def _on_message_start(state: _StreamState, event: Any) -> Deltas:
    state.id = event.message.id
    state.model = event.message.model or state.model
    state.take_usage(event.message.usage)
    return []


def _on_block_start(state: _StreamState, event: Any) -> Deltas:
    block = event.content_block
    if block.type == "tool_use":
        index = state.tool_index[event.index] = len(state.tool_index)
        return [ToolCallDelta(index=index, id=block.id, name=block.name)]
    if block.type == "text" and block.text:
        return [TextDelta(text=block.text)]
    return []


def _on_block_delta(state: _StreamState, event: Any) -> Deltas:
    delta = event.delta
    if delta.type == "text_delta" and delta.text:
        return [TextDelta(text=delta.text)]
    if delta.type == "input_json_delta" and delta.partial_json:
        index = state.tool_index.get(event.index)
        if index is not None:
            return [ToolCallDelta(index=index, arguments=delta.partial_json)]
    return []


def _on_message_delta(state: _StreamState, event: Any) -> Deltas:
    state.stop_reason = event.delta.stop_reason or state.stop_reason
    state.take_usage(event.usage)
    return []


_HANDLERS: dict[str, Callable[[_StreamState, Any], Deltas]] = {
    "message_start": _on_message_start,
    "content_block_start": _on_block_start,
    "content_block_delta": _on_block_delta,
    "message_delta": _on_message_delta,
}


def _usage(usage: Any) -> Usage:
    cache_read = usage.cache_read_input_tokens or 0
    cache_write = usage.cache_creation_input_tokens or 0
    return Usage(
        input_tokens=(usage.input_tokens or 0) + cache_read + cache_write,
        output_tokens=usage.output_tokens or 0,
        cached_input_tokens=cache_read,
        cache_write_tokens=cache_write,
    )


def _messages(messages: Any) -> list[dict[str, Any]]:
    """Anthropic turns: tool results become user blocks; consecutive same-role turns merge."""
    turns: list[dict[str, Any]] = []
    for message in messages:
        if message.role is Role.SYSTEM:
            continue
        role = "assistant" if message.role is Role.ASSISTANT else "user"
        blocks = _blocks(message)
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    return turns


def _blocks(message: Message) -> list[dict[str, Any]]:
    if message.role is Role.TOOL:
        block: dict[str, Any] = {
            "type": "tool_result",
            "tool_use_id": message.tool_call_id,
            "content": message.content,
        }
        if message.is_error:
            block["is_error"] = True
        return [block]
    blocks: list[dict[str, Any]] = []
    if message.content:
        blocks.append({"type": "text", "text": message.content})
    for call in message.tool_calls:
        blocks.append({"type": "tool_use", "id": call.id, "name": call.name, "input": _input(call)})
    return blocks


def _input(call: ToolCall) -> dict[str, Any]:
    try:
        return call.args()
    except ValueError:  # the model produced broken JSON; send what can be sent
        return {"_raw_arguments": call.arguments}


def _tool(tool: ToolSpec) -> dict[str, Any]:
    spec: dict[str, Any] = {"name": tool.name, "input_schema": tool.parameters}
    if tool.description:
        spec["description"] = tool.description
    if tool.strict:
        spec["strict"] = True
    return spec


def _tool_choice(choice: str) -> dict[str, Any]:
    if choice in TOOL_CHOICE_MODES:
        return {"type": {"auto": "auto", "none": "none", "required": "any"}[choice]}
    return {"type": "tool", "name": choice}
