"""Retry policies for steps: exponential backoff with jitter."""

from __future__ import annotations

import random
from dataclasses import dataclass

from kernos.errors import PermanentError, TransientError, UsageError

__all__ = ["RetryPolicy"]


@dataclass(frozen=True, kw_only=True, slots=True)
class RetryPolicy:
    """How a step retries a failed attempt.

    The delay before attempt ``n + 1`` is ``min(max_delay, initial_delay *
    multiplier ** (n - 1))``, shortened by a random fraction of up to
    ``jitter`` so that many failing steps do not retry in lockstep.

    Which errors retry: :class:`~kernos.errors.TransientError` always;
    :class:`~kernos.errors.PermanentError` and usage errors never; instances of
    ``give_up_on`` never; otherwise instances of ``retry_on``.

    Attributes:
        max_attempts: attempts in all, the first included (1 means no retry).
        initial_delay: seconds before the first retry.
        multiplier: growth of the delay per attempt.
        max_delay: ceiling of the delay, in seconds.
        jitter: fraction (0..1) of each delay that is randomised away.
        retry_on: exception types worth retrying.
        give_up_on: exception types never retried, even if listed in ``retry_on``.
    """

    max_attempts: int = 1
    initial_delay: float = 0.1
    multiplier: float = 2.0
    max_delay: float = 60.0
    jitter: float = 0.5
    retry_on: tuple[type[BaseException], ...] = (Exception,)
    give_up_on: tuple[type[BaseException], ...] = ()

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise UsageError(f"max_attempts must be at least 1, got {self.max_attempts}")
        if not 0.0 <= self.jitter <= 1.0:
            raise UsageError(f"jitter must be between 0 and 1, got {self.jitter}")
        if self.initial_delay < 0 or self.max_delay < 0 or self.multiplier < 1:
            raise UsageError("delays must be non-negative and the multiplier at least 1")

    @classmethod
    def of(cls, retries: int | RetryPolicy) -> RetryPolicy:
        """A policy from a step's ``retries`` argument (a retry count or a policy)."""
        if isinstance(retries, RetryPolicy):
            return retries
        if retries < 0:
            raise UsageError(f"retries must be 0 or more, got {retries}")
        return cls(max_attempts=retries + 1)

    def should_retry(self, error: BaseException, attempt: int) -> bool:
        """Whether ``error``, raised by attempt number ``attempt``, deserves another."""
        if attempt >= self.max_attempts:
            return False
        if isinstance(error, TransientError):
            return True
        if isinstance(error, (PermanentError, UsageError, *self.give_up_on)):
            return False
        return isinstance(error, self.retry_on)

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt``."""
        base = min(self.max_delay, self.initial_delay * self.multiplier ** (attempt - 1))
        return base * (1.0 - self.jitter * random.random())
