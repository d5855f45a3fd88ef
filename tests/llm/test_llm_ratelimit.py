"""Client-side rate limits: token buckets under an injected clock, and against a fake server."""

from __future__ import annotations

import asyncio

import pytest
from conftest import Connect
from llm_support import Kind, user

from kernos import errors, llm
from kernos.llm._ratelimit import shared_limiter
from kernos.testing import FakeServer


class Clock:
    """A clock that moves only when told; ``sleep`` advances it and records the wait."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_a_full_bucket_serves_its_capacity_then_makes_callers_wait() -> None:
    clock = Clock()
    bucket = llm.TokenBucket(60, capacity=3, clock=clock)  # one a second, three at once

    assert [bucket.reserve(1) for _ in range(3)] == [0, 0, 0]
    assert bucket.reserve(1) == pytest.approx(1.0)
    assert bucket.reserve(1) == pytest.approx(2.0)  # queued behind the previous caller


def test_a_bucket_refills_with_time_up_to_its_capacity() -> None:
    clock = Clock()
    bucket = llm.TokenBucket(120, capacity=10, clock=clock)  # two a second
    bucket.reserve(10)

    clock.now += 2.5
    assert bucket.level == pytest.approx(5.0)
    clock.now += 100
    assert bucket.level == pytest.approx(10.0)


def test_a_request_larger_than_the_bucket_waits_for_a_full_bucket_only() -> None:
    clock = Clock()
    bucket = llm.TokenBucket(600, capacity=100, clock=clock)  # ten a second
    bucket.reserve(100)

    assert bucket.reserve(5_000) == pytest.approx(10.0)


async def test_the_limiter_sleeps_for_the_slower_of_requests_and_tokens() -> None:
    clock = Clock()
    limiter = llm.RateLimiter(
        llm.RateLimit(requests_per_minute=60, tokens_per_minute=6_000, burst=0.1),
        clock=clock,
        sleep=clock.sleep,
    )  # bursts: 6 requests, 600 tokens; refills: 1 request and 100 tokens a second

    for _ in range(3):
        assert await limiter.acquire(tokens=200) == 0
    wait = await limiter.acquire(tokens=200)  # tokens run out first: 200 short, 2 s

    assert wait == pytest.approx(2.0)
    assert clock.sleeps == [pytest.approx(2.0)]


async def test_settling_charges_the_real_usage() -> None:
    clock = Clock()
    limiter = llm.RateLimiter(
        llm.RateLimit(tokens_per_minute=6_000, burst=0.1), clock=clock, sleep=clock.sleep
    )
    await limiter.acquire(tokens=100)
    limiter.settle(estimated=100, actual=600)  # 500 more than reserved: the bucket is empty

    assert await limiter.acquire(tokens=100) == pytest.approx(1.0)


async def test_a_cancelled_waiter_gives_its_reservation_back() -> None:
    clock = Clock()
    gate = asyncio.Event()

    async def blocked_sleep(seconds: float) -> None:
        await gate.wait()

    limiter = llm.RateLimiter(
        llm.RateLimit(requests_per_minute=60, burst=1 / 60), clock=clock, sleep=blocked_sleep
    )
    await limiter.acquire()
    waiter = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter

    clock.now += 1.0  # one request's refill: enough only if the cancelled one gave back
    assert limiter.reserve() == 0


def test_one_limiter_per_provider_endpoint_and_key() -> None:
    limit = llm.RateLimit(requests_per_minute=10)

    a = shared_limiter("openai", "https://x", "key-a", limit)

    assert shared_limiter("openai", "https://x", "key-a", limit) is a
    assert shared_limiter("openai", "https://x", "key-b", limit) is not a
    assert shared_limiter("anthropic", "https://x", "key-a", limit) is not a
    assert (
        shared_limiter("openai", "https://x", "key-a", llm.RateLimit(requests_per_minute=5))
        is not a
    )


def test_limits_must_be_positive() -> None:
    with pytest.raises(errors.ConfigError):
        llm.TokenBucket(0)
    with pytest.raises(errors.ConfigError):
        llm.RateLimit(requests_per_minute=10, burst=0)


async def test_calls_over_the_limit_are_spaced_out(
    kind: Kind, fake: FakeServer, connect: Connect
) -> None:
    # 600 a minute with a burst of one: a request every 0.1 s.
    limit = llm.RateLimit(requests_per_minute=600, burst=1 / 600)
    first = await connect(rate_limit=limit)
    second = await connect(rate_limit=limit)  # same key: the same limiter
    fake.default = fake.reply("ok")

    await asyncio.gather(*(p.chat(user()) for p in (first, second, first, second)))

    times = sorted(request.time for request in fake.requests)
    assert len(times) == 4
    # Released 0.1 s apart (0.3 s in all); unlimited, all four would arrive within a few ms.
    assert times[-1] - times[0] >= 0.2
