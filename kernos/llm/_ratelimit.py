"""Client-side rate limits: requests and tokens per minute, per provider and key.

Each limit is a token bucket that refills continuously. Taking from a bucket is
a reservation: the level may go below zero, and the caller sleeps exactly as
long as it takes to refill to zero. There is no polling and no lock held across
an ``await``, so one limiter can serve every task, thread and event loop of the
process; callers are served in the order they arrived.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from kernos.errors import ConfigError

__all__ = ["RateLimit", "RateLimiter", "TokenBucket", "shared_limiter"]

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


class TokenBucket:
    """A bucket of ``capacity`` units refilled at ``per_minute`` units a minute.

    Args:
        per_minute: the sustained rate.
        capacity: the most that can be taken at once after a quiet spell
            (defaults to one minute's worth).
        clock: seconds from a monotonic clock; injectable for tests.
    """

    __slots__ = ("_capacity", "_clock", "_level", "_lock", "_rate", "_updated")

    def __init__(
        self, per_minute: float, *, capacity: float | None = None, clock: Clock = time.monotonic
    ) -> None:
        if per_minute <= 0:
            raise ConfigError(f"a rate limit must be positive, got {per_minute} a minute")
        self._rate = per_minute / 60.0
        self._capacity = capacity if capacity is not None and capacity > 0 else per_minute
        self._clock = clock
        self._level = self._capacity
        self._updated = clock()
        self._lock = threading.Lock()

    @property
    def capacity(self) -> float:
        """The most the bucket holds."""
        return self._capacity

    @property
    def level(self) -> float:
        """What is available now (negative while reservations are outstanding)."""
        with self._lock:
            self._refill()
            return self._level

    def _refill(self) -> None:
        now = self._clock()
        elapsed = now - self._updated
        if elapsed > 0:
            self._level = min(self._capacity, self._level + elapsed * self._rate)
        self._updated = now

    def reserve(self, amount: float) -> float:
        """Take ``amount`` (at most the capacity); return the seconds to wait before using it."""
        with self._lock:
            self._refill()
            self._level -= min(amount, self._capacity)
            return 0.0 if self._level >= 0 else -self._level / self._rate

    def adjust(self, amount: float) -> None:
        """Take ``amount`` more (or give back, when negative) without waiting."""
        with self._lock:
            self._refill()
            self._level = min(self._capacity, self._level - amount)


@dataclass(frozen=True, kw_only=True, slots=True)
class RateLimit:
    """Limits for one provider and key.

    Attributes:
        requests_per_minute: requests a minute, or ``None`` for no limit.
        tokens_per_minute: input plus output tokens a minute, or ``None``. Before a
            call its tokens are estimated (about four characters a token plus
            ``max_tokens``); the estimate is corrected by the real usage after it.
        burst: the share of a minute's allowance that may be spent at once after
            a quiet spell (1.0: a whole minute's worth).
    """

    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None
    burst: float = 1.0

    def __post_init__(self) -> None:
        if not 0 < self.burst <= 1:
            raise ConfigError(f"burst must be in (0, 1], got {self.burst}")


class RateLimiter:
    """Applies a :class:`RateLimit`: :meth:`acquire` before a call, :meth:`settle` after."""

    __slots__ = ("_clock", "_requests", "_sleep", "_tokens", "limit")

    def __init__(
        self, limit: RateLimit, *, clock: Clock = time.monotonic, sleep: Sleep = asyncio.sleep
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self.limit = limit
        self._requests = self._bucket(limit.requests_per_minute, limit.burst)
        self._tokens = self._bucket(limit.tokens_per_minute, limit.burst)

    def _bucket(self, per_minute: float | None, burst: float) -> TokenBucket | None:
        if per_minute is None:
            return None
        return TokenBucket(per_minute, capacity=per_minute * burst, clock=self._clock)

    @property
    def counts_tokens(self) -> bool:
        """Whether callers need to estimate tokens (there is a token limit)."""
        return self._tokens is not None

    def reserve(self, tokens: int = 0) -> float:
        """Take one request and ``tokens`` tokens; return the seconds to wait."""
        wait = 0.0
        if self._requests is not None:
            wait = self._requests.reserve(1)
        if self._tokens is not None and tokens > 0:
            wait = max(wait, self._tokens.reserve(tokens))
        return wait

    async def acquire(self, tokens: int = 0) -> float:
        """Wait until one request of about ``tokens`` tokens may go; return the wait."""
        wait = self.reserve(tokens)
        if wait > 0:
            try:
                await self._sleep(wait)
            except BaseException:
                self._give_back(tokens)
                raise
        return wait

    def _give_back(self, tokens: int) -> None:
        if self._requests is not None:
            self._requests.adjust(-1)
        if self._tokens is not None and tokens > 0:
            self._tokens.adjust(-tokens)

    def settle(self, estimated: int, actual: int) -> None:
        """Correct the token bucket once a call's real usage is known."""
        if self._tokens is not None and actual != estimated:
            self._tokens.adjust(actual - estimated)


_shared: dict[tuple[str, str, str], RateLimiter] = {}
_shared_lock = threading.Lock()


def shared_limiter(provider: str, endpoint: str, key_id: str, limit: RateLimit) -> RateLimiter:
    """The one limiter of the process for ``provider`` at ``endpoint`` with the key ``key_id``.

    Every provider object connected with the same key shares it. A later call with
    different limits replaces the limiter (the last configuration wins).
    """
    key = (provider, endpoint, key_id)
    with _shared_lock:
        limiter = _shared.get(key)
        if limiter is None or limiter.limit != limit:
            limiter = _shared[key] = RateLimiter(limit)
        return limiter
