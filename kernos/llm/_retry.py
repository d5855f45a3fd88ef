"""One retry policy for provider calls: backoff with jitter that honours ``Retry-After``.

The SDKs' own retries are switched off (``max_retries=0``) so that this is the
only policy. Which errors retry follows :class:`kernos.RetryPolicy`:
the transient provider errors (rate limited, timeout, unavailable) do, the
permanent ones (auth, bad request, model not found) never do.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from email.utils import parsedate_to_datetime
from typing import Any

from kernos.errors import ProviderError
from kernos.retry import RetryPolicy

__all__ = ["DEFAULT_RETRIES", "parse_retry_after", "retry_delay"]

DEFAULT_RETRIES = RetryPolicy(
    max_attempts=3, initial_delay=0.5, multiplier=2.0, max_delay=20.0, jitter=0.5
)
"""Three attempts, 0.5 s then about 1 s apart (unless the provider says otherwise)."""


def parse_retry_after(
    headers: Mapping[str, Any] | None, *, now: Callable[[], float] = time.time
) -> float | None:
    """Seconds a response asks the client to wait, from its headers.

    Reads ``retry-after-ms`` (milliseconds, sent by OpenAI and Anthropic) and
    ``retry-after`` (seconds, fractional accepted, or an HTTP date). ``None``
    when neither is present or readable.
    """
    if headers is None:
        return None
    millis = _header(headers, "retry-after-ms")
    if millis is not None:
        try:
            return max(0.0, float(millis) / 1000.0)
        except ValueError:
            pass
    value = _header(headers, "retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - now())


def _header(headers: Mapping[str, Any], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        value = headers.get(name.title())
    return None if value is None else str(value).strip()


def retry_delay(
    policy: RetryPolicy, error: ProviderError, attempt: int, max_retry_after: float
) -> float | None:
    """Seconds to wait before the next attempt, or ``None`` to give up.

    A ``Retry-After`` from the provider is honoured as given; when it asks for
    longer than ``max_retry_after`` the call gives up at once, so the caller (a
    step's retry policy, a durable sleep) can wait without holding a worker.
    """
    if not policy.should_retry(error, attempt):
        return None
    retry_after: float | None = getattr(error, "retry_after", None)
    if retry_after is not None:
        return retry_after if retry_after <= max_retry_after else None
    return policy.delay(attempt)
