"""OpenAI and OpenAI-compatible servers (vLLM, llama.cpp, LM Studio, Ollama's /v1), via ``openai``.

Imported only when such a provider is connected, so ``import kernos.llm`` does
not load the SDK.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

try:
    import openai
except ImportError as exc:  # pragma: no cover - the SDK is a dependency
    raise ImportError("the OpenAI provider needs the openai SDK: pip install openai") from exc

from kernos import errors
from kernos.llm._assemble import StreamAssembler
from kernos.llm._config import ProviderConfig
from kernos.llm._errors import (
    ErrorContext,
    body_code,
    body_message,
    connection_error,
    status_error,
    stream_error,
    timeout_error,
)
from kernos.llm._messages import Message, Role, ToolCall, ToolSpec
from kernos.llm._provider import BaseProvider
from kernos.llm._request import TOOL_CHOICE_MODES, ChatRequest, ResponseFormat
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

__all__ = ["OpenAIProvider", "connect_compatible", "connect_openai"]

OPENAI_URL = "https://api.openai.com/v1"
KEY_ENV = "OPENAI_API_KEY"
URL_ENV = "OPENAI_BASE_URL"
# Compatible servers usually need no key, but the SDK insists on one.
NO_KEY = "not-needed"

_FINISH = {
    "stop": FinishReason.STOP,
    "length": FinishReason.LENGTH,
    "tool_calls": FinishReason.TOOL_CALLS,
    "function_call": FinishReason.TOOL_CALLS,
    "content_filter": FinishReason.CONTENT_FILTER,
}


def connect_openai(model: str, config: ProviderConfig) -> OpenAIProvider:
    """OpenAI itself (or, with a ``base_url``, any server speaking its API)."""
    base_url = config.url_from(URL_ENV, OPENAI_URL)
    secret = config.key_from(KEY_ENV)
    official = base_url == OPENAI_URL
    if secret is None and official:
        raise errors.ConfigError(
            f"{KEY_ENV} is not set: export it, put api_key in [llm.openai] of the config "
            "file, or pass api_key= to kernos.llm.connect()",
            provider="openai",
        )
    return OpenAIProvider(
        name="openai", model=model, config=config, base_url=base_url, secret=secret,
        official=official,
    )  # fmt: skip


def connect_compatible(
    model: str, config: ProviderConfig, *, name: str = "openai-compatible"
) -> OpenAIProvider:
    """A server speaking OpenAI's chat completions API at ``base_url``."""
    base_url = config.url_from(URL_ENV, "")
    if not base_url:
        raise errors.ConfigError(
            f"{name} needs the server's URL: pass base_url= to kernos.llm.connect() "
            f"(e.g. http://localhost:8000/v1), set base_url in [llm.{name}] of the config "
            f"file, or set {URL_ENV}",
            provider=name,
        )
    # Only a key given for this server: an OPENAI_API_KEY in the environment is OpenAI's.
    return OpenAIProvider(
        name=name, model=model, config=config, base_url=base_url,
        secret=config.api_key or None, official=False,
    )  # fmt: skip


class OpenAIProvider(BaseProvider):
    """Chat completions through the official ``openai`` SDK, one pooled client per object."""

    def __init__(
        self,
        *,
        name: str,
        model: str,
        config: ProviderConfig,
        base_url: str,
        secret: Secret | None,
        official: bool,
    ) -> None:
        super().__init__(
            name=name,
            model=model,
            config=config,
            base_url=base_url,
            secret=secret,
            key_env=KEY_ENV,
        )
        # Newer OpenAI models refuse max_tokens; compatible servers know only max_tokens.
        self._max_tokens_field = "max_completion_tokens" if official else "max_tokens"
        self._client = openai.AsyncOpenAI(
            api_key=secret.reveal() if secret else NO_KEY,
            base_url=base_url,
            timeout=config.timeout,
            max_retries=0,
            default_headers=dict(config.headers) or None,
        )

    async def aclose(self) -> None:
        """Close the SDK client's connection pool."""
        await self._client.close()

    # -- request -----------------------------------------------------------------

    def _params(self, request: ChatRequest, model: str) -> dict[str, Any]:
        params: dict[str, Any] = {
            "model": model,
            "messages": [_message(m) for m in request.messages],
        }
        if request.tools:
            params["tools"] = [_tool(t) for t in request.tools]
        if request.tool_choice is not None:
            params["tool_choice"] = _tool_choice(request.tool_choice)
        if request.response_format is not None:
            params["response_format"] = _response_format(request.response_format)
        if request.temperature is not None:
            params["temperature"] = request.temperature
        if request.top_p is not None:
            params["top_p"] = request.top_p
        if request.max_tokens is not None:
            params[self._max_tokens_field] = request.max_tokens
        if request.stop:
            params["stop"] = list(request.stop)
        if request.seed is not None:
            params["seed"] = request.seed
        if request.extra:
            params["extra_body"] = dict(request.extra)
        return params

    # -- response ----------------------------------------------------------------

    async def _chat_once(self, request: ChatRequest, model: str, timeout: float) -> ChatResponse:
        params = self._params(request, model)
        completion = await self._client.chat.completions.create(**params, timeout=timeout)
        return self._response(completion, model)

    def _response(self, completion: Any, model: str) -> ChatResponse:
        text = ""
        calls: list[Any] = []
        raw_finish: str | None = None
        refused = False
        if completion.choices:
            choice = completion.choices[0]
            message = choice.message
            text = message.content or ""
            if not text and getattr(message, "refusal", None):
                text, refused = message.refusal, True
            calls = [c for c in message.tool_calls or () if getattr(c, "function", None)]
            raw_finish = choice.finish_reason
        finish = _FINISH.get(raw_finish or "", FinishReason.OTHER)
        if refused:
            finish = FinishReason.CONTENT_FILTER
        return ChatResponse(
            text=text,
            tool_calls=tuple(
                _tool_call(c.id, c.function.name, c.function.arguments) for c in calls
            ),
            finish_reason=finish,
            usage=_usage(completion.usage),
            provider=self._name,
            model=completion.model or model,
            id=completion.id,
            raw_finish_reason=raw_finish,
        )

    async def _open_stream(
        self, request: ChatRequest, model: str, timeout: float
    ) -> AsyncIterator[StreamEvent]:
        params = self._params(request, model)
        stream = await self._client.chat.completions.create(
            **params, stream=True, stream_options={"include_usage": True}, timeout=timeout
        )
        return self._events(stream, model)

    async def _events(self, stream: Any, model: str) -> AsyncIterator[StreamEvent]:
        assembler = StreamAssembler()
        raw_finish: str | None = None
        usage = Usage()
        response_id: str | None = None
        response_model = model
        try:
            async for chunk in stream:
                response_id = chunk.id or response_id
                response_model = chunk.model or response_model
                if chunk.usage is not None:
                    usage = _usage(chunk.usage)
                if not chunk.choices:
                    continue
                choice = chunk.choices[0]
                for event in _deltas(choice.delta):
                    assembler.add(event)
                    yield event
                raw_finish = choice.finish_reason or raw_finish
        finally:
            await stream.close()
        yield StreamDone(
            response=assembler.response(
                finish_reason=_FINISH.get(raw_finish or "", FinishReason.OTHER),
                usage=usage,
                provider=self._name,
                model=response_model,
                id=response_id,
                raw_finish_reason=raw_finish,
            )
        )

    # -- errors ------------------------------------------------------------------

    def _translate(
        self, error: Exception, ctx: ErrorContext, timeout: float, attempt: int
    ) -> errors.ProviderError | None:
        if isinstance(error, openai.APITimeoutError):
            return timeout_error(ctx, timeout, attempt)
        if isinstance(error, openai.APIConnectionError):
            return connection_error(ctx, _connection_detail(error), attempt)
        if isinstance(error, openai.APIStatusError):
            return status_error(
                ctx,
                error.status_code,
                body_message(error.body) or error.message,
                code=body_code(error.body),
                retry_after=parse_retry_after(error.response.headers),
                attempts=attempt,
            )
        if isinstance(error, openai.APIError):  # an error event inside a stream
            return stream_error(ctx, body_message(error.body) or error.message, attempt)
        return None


def _connection_detail(error: BaseException) -> str:
    cause = error.__cause__ or error.__context__
    return f"{error} ({cause})" if cause else str(error)


def _message(message: Message) -> dict[str, Any]:
    if message.role is Role.TOOL:
        return {"role": "tool", "tool_call_id": message.tool_call_id, "content": message.content}
    if message.role is Role.ASSISTANT and message.tool_calls:
        return {
            "role": "assistant",
            "content": message.content or None,
            "tool_calls": [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments},
                }
                for call in message.tool_calls
            ],
        }
    return {"role": message.role.value, "content": message.content}


def _tool(tool: ToolSpec) -> dict[str, Any]:
    function: dict[str, Any] = {"name": tool.name, "parameters": tool.parameters}
    if tool.description:
        function["description"] = tool.description
    if tool.strict:
        function["strict"] = True
    return {"type": "function", "function": function}


def _tool_choice(choice: str) -> Any:
    if choice in TOOL_CHOICE_MODES:
        return choice
    return {"type": "function", "function": {"name": choice}}


def _response_format(fmt: ResponseFormat) -> dict[str, Any]:
    if fmt.schema is None:
        return {"type": "json_object"}
    return {
        "type": "json_schema",
        "json_schema": {"name": fmt.name, "schema": fmt.schema, "strict": fmt.strict},
    }


def _tool_call(call_id: str, name: str, arguments: str | None) -> ToolCall:
    return ToolCall(id=call_id, name=name, arguments=arguments or "{}")


def _usage(usage: Any) -> Usage:
    if usage is None:
        return Usage()
    details = getattr(usage, "prompt_tokens_details", None)
    cached = (getattr(details, "cached_tokens", None) or 0) if details is not None else 0
    written = (getattr(details, "cache_write_tokens", None) or 0) if details is not None else 0
    return Usage(
        input_tokens=usage.prompt_tokens or 0,
        output_tokens=usage.completion_tokens or 0,
        cached_input_tokens=cached,
        cache_write_tokens=written,
    )


def _deltas(delta: Any) -> list[TextDelta | ToolCallDelta]:
    events: list[TextDelta | ToolCallDelta] = []
    if delta is None:
        return events
    if delta.content:
        events.append(TextDelta(text=delta.content))
    for call in delta.tool_calls or ():
        function = call.function
        events.append(
            ToolCallDelta(
                index=call.index if call.index is not None else 0,
                id=call.id,
                name=function.name if function is not None else None,
                arguments=(function.arguments or "") if function is not None else "",
            )
        )
    return events
