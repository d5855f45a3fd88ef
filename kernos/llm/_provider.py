"""The provider interface, and the base that gives every adapter the same policies.

An adapter implements three things for its wire API: one call
(:meth:`BaseProvider._chat_once`), opening a stream
(:meth:`BaseProvider._open_stream`) and describing its SDK's exceptions
(:meth:`BaseProvider._translate`). The base adds, the same way for all: the
client-side rate limit, the per-call timeout, retries that honour
``Retry-After``, error translation and the cost of each call.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Protocol, runtime_checkable

from kernos import errors
from kernos.llm._config import ProviderConfig
from kernos.llm._errors import ErrorContext, timeout_error
from kernos.llm._ratelimit import RateLimiter, shared_limiter
from kernos.llm._request import ChatRequest
from kernos.llm._response import ChatResponse, StreamDone, StreamEvent, Usage
from kernos.llm._retry import retry_delay
from kernos.llm._secret import Secret

__all__ = ["BaseProvider", "Provider"]

logger = logging.getLogger("kernos.llm")


@runtime_checkable
class Provider(Protocol):
    """A chat model reached through one provider: the one interface agents use.

    Get one with :func:`kernos.llm.connect`. Every provider takes the same
    :class:`ChatRequest` and returns the same :class:`ChatResponse`.
    """

    @property
    def name(self) -> str:
        """The provider's name: ``openai``, ``anthropic``, ``ollama``, ..."""
        ...

    @property
    def model(self) -> str:
        """The model requests go to unless a request names another."""
        ...

    async def chat(self, request: ChatRequest) -> ChatResponse:
        """Send one request and return the whole answer."""
        ...

    def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        """Send one request and yield the answer as it comes; the last event is a StreamDone."""
        ...

    async def aclose(self) -> None:
        """Close the connections."""
        ...


class BaseProvider(ABC):
    """Rate limit, timeout, retries, error translation and cost around an adapter."""

    def __init__(
        self,
        *,
        name: str,
        model: str,
        config: ProviderConfig,
        base_url: str,
        secret: Secret | None,
        key_env: str,
        model_hint: str = "",
        connect_hint: str = "",
    ) -> None:
        self._name = name
        self._model = model
        self._config = config
        self._base_url = base_url
        self._secret = secret
        self._prices = config.price_table()
        self._ctx = ErrorContext(
            provider=name,
            model=model,
            base_url=base_url,
            key_env=key_env,
            secret=secret,
            model_hint=model_hint.format(model=model),
            connect_hint=connect_hint,
        )
        self._limiter: RateLimiter | None = None
        if config.rate_limit is not None:
            key_id = secret.fingerprint() if secret else "-"
            self._limiter = shared_limiter(name, base_url, key_id, config.rate_limit)

    @property
    def name(self) -> str:
        """The provider's name."""
        return self._name

    @property
    def model(self) -> str:
        """The model requests go to unless a request names another."""
        return self._model

    @property
    def base_url(self) -> str:
        """Where requests go."""
        return self._base_url

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._name}:{self._model} at {self._base_url}>"

    # -- what adapters implement -------------------------------------------------

    @abstractmethod
    async def _chat_once(self, request: ChatRequest, model: str, timeout: float) -> ChatResponse:
        """One attempt: send the request, return the response (its cost unset)."""

    @abstractmethod
    async def _open_stream(
        self, request: ChatRequest, model: str, timeout: float
    ) -> AsyncIterator[StreamEvent]:
        """One attempt: send the request; return its events once the response has begun.

        HTTP errors must raise here, before the iterator is returned, so that they
        can be retried. The last event is a :class:`StreamDone` (its cost unset).
        """

    @abstractmethod
    def _translate(
        self, error: Exception, ctx: ErrorContext, timeout: float, attempt: int
    ) -> errors.ProviderError | None:
        """The Kernos error for an SDK or transport exception; ``None`` if it is not one."""

    @abstractmethod
    async def aclose(self) -> None:
        """Close the client and its connections."""

    # -- the shared policies -----------------------------------------------------

    async def chat(self, request: ChatRequest) -> ChatResponse:
        """Send one request and return the whole answer.

        Raises:
            kernos.errors.ProviderError: a subclass saying what went wrong and what to
                do; transient failures were retried first.
        """
        model = request.model or self._model
        timeout = request.timeout or self._config.timeout
        estimate = self._estimate(request)
        attempt = 0
        while True:
            attempt += 1
            if self._limiter is not None:
                await self._limiter.acquire(estimate)
            try:
                async with asyncio.timeout(timeout):
                    response = await self._chat_once(request, model, timeout)
                break
            except Exception as exc:
                await self._after_failure(exc, model, timeout, attempt)
        return self._finish(response, model, estimate)

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        """Send one request and yield text and tool-call deltas, then a :class:`StreamDone`.

        Failures before the first event are retried like :meth:`chat`; a failure
        after it raises (the caller has already seen part of the answer).
        """
        model = request.model or self._model
        timeout = request.timeout or self._config.timeout
        estimate = self._estimate(request)
        attempt = 0
        while True:
            attempt += 1
            if self._limiter is not None:
                await self._limiter.acquire(estimate)
            try:
                async with asyncio.timeout(timeout):
                    events = await self._open_stream(request, model, timeout)
                break
            except Exception as exc:
                await self._after_failure(exc, model, timeout, attempt)
        try:
            async for event in events:
                if isinstance(event, StreamDone):
                    event = StreamDone(response=self._finish(event.response, model, estimate))
                yield event
        except Exception as exc:
            error = self._error(exc, model, timeout, attempt)
            if error is exc:
                raise
            raise error from self._cause(exc)
        finally:
            close = getattr(events, "aclose", None)
            if close is not None:
                await close()

    async def _after_failure(
        self, exc: Exception, model: str, timeout: float, attempt: int
    ) -> None:
        """Sleep before the next attempt, or raise the translated error."""
        error = self._error(exc, model, timeout, attempt)
        delay = retry_delay(self._config.retries, error, attempt, self._config.max_retry_after)
        if delay is None:
            if error is exc:
                raise error
            raise error from self._cause(exc)
        logger.info(
            "%s:%s attempt %d failed (%s); retrying in %.2fs",
            self._name,
            model,
            attempt,
            error.code,
            delay,
        )
        await asyncio.sleep(delay)

    def _error(
        self, exc: Exception, model: str, timeout: float, attempt: int
    ) -> errors.ProviderError:
        if isinstance(exc, errors.ProviderError):
            return exc
        ctx = self._ctx if model == self._model else replace(self._ctx, model=model)
        if isinstance(exc, TimeoutError):
            return timeout_error(ctx, timeout, attempt)
        error = self._translate(exc, ctx, timeout, attempt)
        if error is None:
            raise exc
        return error

    def _cause(self, exc: BaseException) -> BaseException | None:
        """The exception to chain, unless its text would disclose the key."""
        if self._secret and self._secret.reveal() in f"{exc} {exc.args!r}":
            return None
        return exc

    def _estimate(self, request: ChatRequest) -> int:
        """About how many tokens a request will spend (for the token rate limit)."""
        if self._limiter is None or not self._limiter.counts_tokens:
            return 0
        chars = sum(
            len(m.content) + sum(len(c.arguments) for c in m.tool_calls) for m in request.messages
        )
        chars += sum(len(t.description) + len(str(t.parameters)) for t in request.tools)
        return chars // 4 + (request.max_tokens or 0)

    def _finish(self, response: ChatResponse, model: str, estimate: int) -> ChatResponse:
        usage: Usage = self._prices.priced(self._name, (model, response.model), response.usage)
        if self._limiter is not None:
            self._limiter.settle(estimate, usage.total_tokens)
        return response.with_usage(usage) if usage is not response.usage else response
