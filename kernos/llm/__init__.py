"""LLM providers behind one interface: OpenAI (and compatible servers), Anthropic, Ollama.

::

    from kernos import llm

    model = llm.connect("openai:gpt-4o-mini")          # or anthropic:..., ollama:...
    response = await model.chat(llm.ChatRequest(
        messages=[llm.Message.system("Be brief."), llm.Message.user("Weather in Paris?")],
        tools=[llm.ToolSpec(name="weather", parameters={...})],
    ))
    for call in response.tool_calls:
        ...  # run it, then send llm.Message.tool(call.id, result)

    async for event in model.stream(request):          # TextDelta, ToolCallDelta, ..., StreamDone
        ...

Every provider takes the same :class:`ChatRequest` and returns the same
:class:`ChatResponse` (text, tool calls, :class:`Usage` with cost, finish
reason); requests and responses are frozen dataclasses of JSON values, so they
journal and replay as they are. Calls are rate-limited per provider and key,
retried with backoff that honours ``Retry-After``, bounded by a timeout, and
failures raise :class:`kernos.errors.ProviderError` subclasses that say what to
do. Keys never appear in reprs, logs, errors or the journal.

The SDKs are imported when a provider is first connected, not before.
"""

from kernos.llm._accounting import UsageLedger
from kernos.llm._assemble import StreamAssembler, collect
from kernos.llm._config import ProviderConfig, load_config
from kernos.llm._messages import Message, Role, ToolCall, ToolSpec
from kernos.llm._pricing import (
    Price,
    PriceTable,
    default_prices,
    load_prices,
    register_alias,
    register_price,
)
from kernos.llm._provider import BaseProvider, Provider
from kernos.llm._ratelimit import RateLimit, RateLimiter, TokenBucket
from kernos.llm._registry import connect, parse_model, provider_names, register_provider
from kernos.llm._request import ChatRequest, ResponseFormat, ToolChoice, strict_schema
from kernos.llm._response import (
    ChatResponse,
    FinishReason,
    StreamDone,
    StreamEvent,
    TextDelta,
    ToolCallDelta,
    Usage,
    stream_event_from_dict,
)
from kernos.llm._retry import DEFAULT_RETRIES, parse_retry_after
from kernos.llm._secret import Secret, redact

__all__ = [
    "DEFAULT_RETRIES",
    "BaseProvider",
    "ChatRequest",
    "ChatResponse",
    "FinishReason",
    "Message",
    "Price",
    "PriceTable",
    "Provider",
    "ProviderConfig",
    "RateLimit",
    "RateLimiter",
    "ResponseFormat",
    "Role",
    "Secret",
    "StreamAssembler",
    "StreamDone",
    "StreamEvent",
    "TextDelta",
    "TokenBucket",
    "ToolCall",
    "ToolCallDelta",
    "ToolChoice",
    "ToolSpec",
    "Usage",
    "UsageLedger",
    "collect",
    "connect",
    "default_prices",
    "load_config",
    "load_prices",
    "parse_model",
    "parse_retry_after",
    "provider_names",
    "redact",
    "register_alias",
    "register_price",
    "register_provider",
    "stream_event_from_dict",
    "strict_schema",
]
