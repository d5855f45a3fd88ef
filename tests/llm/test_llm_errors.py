"""Provider failures: translated to Kernos errors, retried when transient, Retry-After honoured."""

from __future__ import annotations

import pickle
import socket
import time

import pytest
from conftest import Connect
from llm_support import FAST_RETRIES, Kind, user

from kernos import errors, llm, runtime
from kernos.testing import FakeServer


async def test_a_refused_key_is_an_auth_error_naming_the_variable_and_not_retried(
    kind: Kind, fake: FakeServer, provider: llm.Provider
) -> None:
    fake.api_key = "the-right-key"

    with pytest.raises(errors.ProviderAuthError) as caught:
        await provider.chat(user())

    error = caught.value
    assert isinstance(error, errors.PermanentError)
    assert kind.key_env in str(error)
    assert (error.provider, error.status, error.attempts) == (kind.name, 401, 1)
    assert len(fake.requests) == 1


async def test_a_bad_request_carries_the_providers_message(
    fake: FakeServer, provider: llm.Provider
) -> None:
    fake.fail(400, "messages: at least one message is required")

    with pytest.raises(errors.ProviderBadRequestError) as caught:
        await provider.chat(user())

    assert "at least one message is required" in str(caught.value)
    assert not isinstance(caught.value, errors.ModelNotFoundError)
    assert len(fake.requests) == 1


async def test_an_unknown_model_is_model_not_found(
    kind: Kind, fake: FakeServer, connect: Connect
) -> None:
    fake.models = frozenset({kind.model})
    provider = await connect(model=f"{kind.name}:no-such-model")

    with pytest.raises(errors.ModelNotFoundError) as caught:
        await provider.chat(user())

    assert "no-such-model" in str(caught.value)
    assert caught.value.model == "no-such-model"
    if kind.name == "ollama":
        assert "ollama pull no-such-model" in str(caught.value)


async def test_429_waits_as_long_as_retry_after_says(
    fake: FakeServer, provider: llm.Provider
) -> None:
    fake.fail(429, "slow down", retry_after=0.5)
    fake.reply("made it")

    response = await provider.chat(user())

    assert response.text == "made it"
    first, second = fake.requests
    # The retry policy alone would wait 0.01 s: the gap is the provider's Retry-After.
    assert second.time - first.time >= 0.45


async def test_retry_after_in_milliseconds_is_honoured(
    fake: FakeServer, provider: llm.Provider
) -> None:
    fake.fail(429, headers={"retry-after-ms": "300"})
    fake.reply("ok")

    await provider.chat(user())

    first, second = fake.requests
    assert second.time - first.time >= 0.27


async def test_429_after_every_retry_is_a_transient_rate_limit_error(
    fake: FakeServer, provider: llm.Provider
) -> None:
    for _ in range(3):
        fake.fail(429, "Rate limit reached", retry_after=0.01)

    with pytest.raises(errors.ProviderRateLimitError) as caught:
        await provider.chat(user())

    error = caught.value
    assert isinstance(error, errors.TransientError)
    assert (error.status, error.attempts, error.retry_after) == (429, 3, 0.01)
    assert "after 3 attempts" in str(error)
    assert len(fake.requests) == 3


async def test_a_retry_after_too_long_to_wait_fails_at_once_with_the_wait(
    fake: FakeServer, connect: Connect
) -> None:
    provider = await connect(config=llm.ProviderConfig(max_retry_after=5.0))
    fake.fail(429, retry_after=120)
    fake.reply("never reached")

    started = time.monotonic()
    with pytest.raises(errors.ProviderRateLimitError) as caught:
        await provider.chat(user())

    assert caught.value.retry_after == 120
    assert time.monotonic() - started < 2
    assert len(fake.requests) == 1


async def test_5xx_answers_are_retried(fake: FakeServer, provider: llm.Provider) -> None:
    fake.fail(500)
    fake.fail(503)
    fake.reply("third time lucky")

    response = await provider.chat(user())

    assert response.text == "third time lucky"
    assert len(fake.requests) == 3


async def test_5xx_after_every_retry_is_unavailable(
    fake: FakeServer, provider: llm.Provider
) -> None:
    for _ in range(3):
        fake.fail(503, "upstream overloaded")

    with pytest.raises(errors.ProviderUnavailableError) as caught:
        await provider.chat(user())

    assert isinstance(caught.value, errors.TransientError)
    assert "upstream overloaded" in str(caught.value)
    assert caught.value.attempts == 3


async def test_a_slow_answer_times_out(fake: FakeServer, connect: Connect) -> None:
    provider = await connect(retries=0)
    fake.reply("too late", delay=1.5)

    started = time.monotonic()
    with pytest.raises(errors.ProviderTimeoutError) as caught:
        await provider.chat(llm.ChatRequest(messages=user().messages, timeout=0.2))

    assert time.monotonic() - started < 1.2
    assert isinstance(caught.value, errors.TransientError)
    assert "0.2s" in str(caught.value)


async def test_a_timed_out_attempt_is_retried(fake: FakeServer, connect: Connect) -> None:
    provider = await connect(timeout=0.3)
    fake.reply("too late", delay=1.0)
    fake.reply("in time")

    response = await provider.chat(user())

    assert response.text == "in time"
    assert len(fake.requests) == 2


async def test_an_unreachable_server_is_unavailable(kind: Kind, connect: Connect) -> None:
    with socket.socket() as sock:  # a port that nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    suffix = "/v1" if kind.name == "openai" else ""
    provider = await connect(base_url=f"http://127.0.0.1:{port}{suffix}")

    with pytest.raises(errors.ProviderUnavailableError) as caught:
        await provider.chat(user())

    assert f"127.0.0.1:{port}" in str(caught.value)
    assert caught.value.attempts == 3


async def test_a_stream_is_retried_until_it_starts(
    fake: FakeServer, provider: llm.Provider
) -> None:
    fake.fail(429, retry_after=0.3)
    fake.reply("streamed after all")

    response = await llm.collect(provider.stream(user()))

    assert response.text == "streamed after all"
    first, second = fake.requests
    assert second.time - first.time >= 0.27


async def test_an_error_in_the_middle_of_a_stream_raises_after_the_text(
    fake: FakeServer, provider: llm.Provider
) -> None:
    fake.reply("partial answer", stream_error="Overloaded")
    seen: list[llm.StreamEvent] = []

    with pytest.raises(errors.ProviderError) as caught:
        async for event in provider.stream(user()):
            seen.append(event)

    assert "Overloaded" in str(caught.value)
    assert "".join(e.text for e in seen if isinstance(e, llm.TextDelta)) == "partial answer"
    assert len(fake.requests) == 1


def test_provider_errors_pickle_and_classify_for_step_retries() -> None:
    policy = runtime.RetryPolicy(max_attempts=5)
    error = errors.ProviderRateLimitError(
        "m", provider="openai", model="x", status=429, retry_after=2.0
    )
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is errors.ProviderRateLimitError
    assert copy.retry_after == 2.0
    assert policy.should_retry(copy, 1)
    for permanent in (errors.ProviderAuthError, errors.ModelNotFoundError):
        assert not policy.should_retry(permanent("m", provider="p", model="m", status=401), 1)
    assert policy.should_retry(errors.ProviderTimeoutError("m"), 1)
    assert policy.should_retry(errors.ProviderUnavailableError("m"), 1)
    assert FAST_RETRIES.should_retry(errors.ProviderUnavailableError("m"), 2)
    assert not FAST_RETRIES.should_retry(errors.ProviderUnavailableError("m"), 3)
