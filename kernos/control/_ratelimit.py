"""Token-bucket rate limits kept in memory, per key (API key, IP address, username)."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from kernos.errors import RateLimitedError

__all__ = ["RateLimiter"]


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """Allows ``rate`` requests per ``period`` seconds per key, with bursts up to ``burst``.

    Buckets live in this process: behind several server processes, each
    enforces its own share. The least recently used buckets are forgotten past
    ``max_keys`` so a flood of distinct keys cannot exhaust memory.
    """

    def __init__(
        self,
        rate: float,
        period: float,
        *,
        burst: float | None = None,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0 or period <= 0:
            raise ValueError(f"rate and period must be positive, got {rate}/{period}s")
        self.per_second = rate / period
        self.burst = burst if burst is not None else rate
        self.max_keys = max_keys
        self.clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def check(self, key: str, what: str = "requests") -> None:
        """Take one token for ``key``.

        Raises:
            RateLimitedError: the bucket is empty; ``retry_after`` is when a token returns.
        """
        now = self.clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(self.burst, now)
            if len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            refill = (now - bucket.updated) * self.per_second
            bucket.tokens = min(self.burst, bucket.tokens + refill)
            bucket.updated = now
        if bucket.tokens < 1:
            wait = (1 - bucket.tokens) / self.per_second
            raise RateLimitedError(
                f"too many {what}; retry in {wait:.1f} s", retry_after=max(1, round(wait + 0.5))
            )
        bucket.tokens -= 1
