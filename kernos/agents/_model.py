"""An agent's model calls, journaled as ``llm`` entries.

The call is a step of kind ``llm`` named by the model string
(``openai:gpt-4o-mini``); its argument is the request, its result the
response's JSON plus the call's latency. The entry's detail records the
provider, model, usage, cost, latency and what the request added to the
conversation; never a key. The client is connected lazily, once per process,
so a run recovered or replayed from its journal connects to nothing.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

from kernos import llm
from kernos.records import EntryKind
from kernos.retry import RetryPolicy
from kernos.runtime import Step, StepScope, current_step
from kernos.serialization import checksum, encode

__all__ = [
    "DELTA_CHARS",
    "DELTA_INTERVAL",
    "Model",
    "ModelCall",
    "ProviderSource",
    "own_scope",
    "response_of",
]

logger = logging.getLogger(__name__)

ProviderSource = llm.Provider | Callable[[], llm.Provider]
"""A connected provider, or a function connecting one (called once, on first use)."""

DELTA_CHARS = 256
"""Streamed text is published as an ``llm.delta`` event once this many characters wait..."""
DELTA_INTERVAL = 0.05
"""... or once this many seconds passed since the last one, so a token stream is
not thousands of commits."""


def response_of(value: Any) -> tuple[llm.ChatResponse, float]:
    """The response a journaled ``llm`` result holds, and the call's latency in ms.

    Accepts what the call journals (the response's JSON with ``latency_ms``) and
    what a person patches in when forking: the JSON of a response, or only
    ``{"text": ...}``, or a plain string, or tool calls whose arguments are an
    object rather than JSON text. An edited answer costs nothing and took no time.
    """
    if isinstance(value, str):
        return llm.ChatResponse(text=value), 0.0
    if not isinstance(value, dict):
        raise TypeError(f"an llm entry holds a response object or a text, not {value!r}")
    calls = [
        {**call, "arguments": json.dumps(call["arguments"])}
        if isinstance(call, dict) and isinstance(call.get("arguments"), dict)
        else call
        for call in value.get("tool_calls") or ()
    ]
    data = {**value, "tool_calls": calls}
    if calls and "finish_reason" not in value:
        data["finish_reason"] = llm.FinishReason.TOOL_CALLS.value
    return llm.ChatResponse.from_dict(data), float(value.get("latency_ms") or 0.0)


class ModelCall:
    """The journaled model call of one agent.

    Args:
        agent: the agent's name (recorded in each entry's detail), if any.
        model: the model string; the entries' name.
        source: the provider to use, or a function making it; ``None`` connects
            ``model`` with :func:`kernos.llm.connect` (keys from the environment).
        stream: stream answers, publishing text deltas as ``llm.delta`` events.
        retries: attempts after the first for a failed call, on top of the
            provider's own retries (default none: the provider already retried).
        timeout: seconds a call may take in all (default: the provider's per-call timeout).
        ledger: a usage ledger to record each call made (not calls read from a journal).
    """

    def __init__(
        self,
        *,
        agent: str | None,
        model: str,
        source: ProviderSource | None,
        stream: bool,
        retries: int | RetryPolicy,
        timeout: float | None,
        ledger: llm.UsageLedger | None,
    ) -> None:
        self.agent = agent
        self.model = model
        self.stream = stream
        self.ledger = ledger
        self._source = source
        self._client: llm.Provider | None = source if isinstance(source, llm.Provider) else None
        self._owned = False
        self.step: Step[..., Any] = Step(
            self._call,
            name=model,
            retry=RetryPolicy.of(retries),
            timeout=timeout,
            kind=EntryKind.LLM,
            key=_call_key,
        )

    def client(self) -> llm.Provider:
        """The provider, connected on first use."""
        if self._client is None:
            source = self._source
            self._client = llm.connect(self.model) if source is None else source()  # type: ignore[operator]
            self._owned = True
        return self._client

    async def aclose(self) -> None:
        """Close the provider if this object connected it."""
        if self._client is not None and self._owned:
            await self._client.aclose()
            self._client = None

    async def _call(self, request: llm.ChatRequest, first_new: int, digest: str) -> dict[str, Any]:
        scope = own_scope(current_step(), EntryKind.LLM, self.model)
        client = self.client()
        if scope is not None:
            scope.annotate(
                {
                    "agent": self.agent,
                    "run_id": scope.run_id,
                    "tenant": scope.tenant,
                    "provider": client.name,
                    "stream": self.stream,
                    "request": _request_detail(request, first_new),
                },
                event={"agent": self.agent},
            )
        started = time.perf_counter()
        try:
            if self.stream:
                response = await self._streamed(client, request, scope)
            else:
                response = await client.chat(request)
        finally:
            latency_ms = round((time.perf_counter() - started) * 1000, 3)
            if scope is not None:
                scope.annotate({"latency_ms": latency_ms}, event={"latency_ms": latency_ms})
        usage = response.usage
        if scope is not None:
            scope.annotate(
                {
                    "model": response.model,
                    "usage": usage.to_dict(),
                    "cost": usage.cost,
                    "finish_reason": response.finish_reason.value,
                },
                event={
                    "input_tokens": usage.input_tokens,
                    "output_tokens": usage.output_tokens,
                    "cost": usage.cost,
                },
            )
        if self.ledger is not None:
            self.ledger.record(
                usage,
                run=scope.run_id if scope else None,
                agent=self.agent,
                tenant=scope.tenant if scope else None,
                model=self.model,
            )
        return {**response.to_dict(), "latency_ms": latency_ms}

    async def _streamed(
        self, client: llm.Provider, request: llm.ChatRequest, scope: StepScope | None
    ) -> llm.ChatResponse:
        deltas = _Deltas(scope)
        response: llm.ChatResponse | None = None
        async for event in client.stream(request):
            if isinstance(event, llm.TextDelta):
                deltas.add(event.text)
            elif isinstance(event, llm.StreamDone):
                response = event.response
        deltas.flush()
        if response is None:
            raise ValueError(f"the stream of {self.model} ended without a final response")
        return response


class Model:
    """A model whose calls, inside a workflow, are journaled ``llm`` entries.

    For workflows that call a model without an agent's loop::

        summarizer = agents.Model("openai:gpt-4o-mini")

        @kernos.workflow
        async def digest(text: str) -> str:
            request = llm.ChatRequest(messages=[llm.Message.user(f"Summarize: {text}")])
            return (await summarizer.chat(request)).text

    Each call is recorded with its request, response, usage, cost and latency;
    recovery and replay answer it from the journal. Outside a workflow it is a
    plain call.

    Args:
        model: ``provider:model``.
        provider: a connected provider, or a function connecting one on first use
            (default: ``kernos.llm.connect(model)``).
        stream: stream answers, publishing text as ``llm.delta`` events.
        retries: retries of a failed call on top of the provider's own.
        timeout: seconds a call may take in all.
        ledger: a usage ledger to record each call this process makes.
    """

    def __init__(
        self,
        model: str,
        *,
        provider: ProviderSource | None = None,
        stream: bool = False,
        retries: int | RetryPolicy = 0,
        timeout: float | None = None,
        ledger: llm.UsageLedger | None = None,
    ) -> None:
        self.model = model
        self.call = ModelCall(
            agent=None,
            model=model,
            source=provider,
            stream=stream,
            retries=retries,
            timeout=timeout,
            ledger=ledger,
        )

    async def chat(self, request: llm.ChatRequest) -> llm.ChatResponse:
        """Send ``request`` (journaled inside a workflow) and return the answer.

        Raises:
            kernos.errors.ProviderError: the call failed (recorded, so a recovered
                run sees the same failure).
        """
        digest = checksum(encode(request, what=f"request to {self.model}"))
        value = await self.call.step(request, 0, digest)
        return response_of(value)[0]

    async def aclose(self) -> None:
        """Close the provider if this object connected it."""
        await self.call.aclose()


class _Deltas:
    """Text deltas gathered into ``llm.delta`` events of a few hundred characters."""

    def __init__(self, scope: StepScope | None) -> None:
        self.scope = scope
        self.pending: list[str] = []
        self.size = 0
        self.index = 0
        self.last = time.monotonic()

    def add(self, text: str) -> None:
        self.pending.append(text)
        self.size += len(text)
        if self.size >= DELTA_CHARS or time.monotonic() - self.last >= DELTA_INTERVAL:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        if self.scope is not None:
            self.scope.emit(
                "llm.delta",
                {
                    "seq": self.scope.seq,
                    "attempt": self.scope.attempt,
                    "index": self.index,
                    "text": "".join(self.pending),
                },
            )
        self.index += 1
        self.pending.clear()
        self.size = 0
        self.last = time.monotonic()


def own_scope(scope: StepScope | None, kind: EntryKind, name: str) -> StepScope | None:
    """The scope if it is this call's own entry, not that of a step the loop runs inside
    (an agent run from a step body is plain code: its calls are not journaled)."""
    if scope is None or scope.kind is not kind or scope.name != name:
        return None
    return scope


def _call_key(request: llm.ChatRequest, first_new: int, digest: str) -> str:
    """What identifies a model call on recovery and replay: the conversation's running
    digest (messages and parameters), kept by the loop so that no turn re-hashes them all."""
    return digest


def _request_detail(request: llm.ChatRequest, first_new: int) -> dict[str, Any]:
    """The request as the journal keeps it: the messages it added to the conversation
    (the earlier ones are in the earlier entries), the tools by name, the parameters."""
    data: dict[str, Any] = {
        "messages": [message.to_dict() for message in request.messages[first_new:]],
        "first_message": first_new,
    }
    if request.tools:
        data["tools"] = [tool.name for tool in request.tools]
    if request.response_format is not None:
        data["response_format"] = request.response_format.name
    for name in ("tool_choice", "temperature", "top_p", "max_tokens", "seed", "model"):
        value = getattr(request, name)
        if value is not None:
            data[name] = value
    return data
