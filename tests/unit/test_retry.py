from __future__ import annotations

import pytest

from kernos import RetryPolicy, errors


def test_retries_count_becomes_attempts() -> None:
    assert RetryPolicy.of(0).max_attempts == 1
    assert RetryPolicy.of(5).max_attempts == 6
    policy = RetryPolicy(max_attempts=2)
    assert RetryPolicy.of(policy) is policy


def test_invalid_policies_are_refused() -> None:
    with pytest.raises(errors.UsageError):
        RetryPolicy.of(-1)
    with pytest.raises(errors.UsageError):
        RetryPolicy(jitter=2.0)


def test_which_errors_retry() -> None:
    policy = RetryPolicy(max_attempts=3, give_up_on=(KeyError,))
    assert policy.should_retry(ValueError("x"), 1)
    assert not policy.should_retry(ValueError("x"), 3)  # attempts exhausted
    assert not policy.should_retry(errors.PermanentError("no"), 1)
    assert policy.should_retry(errors.TransientError("again"), 1)
    assert not policy.should_retry(KeyError("k"), 1)
    only = RetryPolicy(max_attempts=3, retry_on=(ConnectionError,))
    assert only.should_retry(ConnectionError(), 1)
    assert not only.should_retry(ValueError(), 1)


def test_backoff_grows_and_is_jittered_within_bounds() -> None:
    policy = RetryPolicy(initial_delay=1.0, multiplier=2.0, max_delay=5.0, jitter=0.5)
    for attempt, base in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 5.0), (10, 5.0)]:
        delays = [policy.delay(attempt) for _ in range(200)]
        assert all(base * 0.5 <= d <= base for d in delays)
        assert max(delays) - min(delays) > 0  # jitter spreads retries
    exact = RetryPolicy(initial_delay=1.0, jitter=0.0)
    assert exact.delay(3) == 4.0
