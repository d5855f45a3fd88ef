"""Keys never show: not in reprs, error messages, chained causes, logs or journaled values."""

from __future__ import annotations

import copy
import logging
import pickle
import traceback

import pytest
from conftest import Connect
from llm_support import KEY, Kind, user

from kernos import errors, llm, serialization
from kernos.testing import FakeServer


def test_a_secret_never_prints_and_cannot_be_pickled() -> None:
    secret = llm.Secret(KEY)

    assert KEY not in repr(secret)
    assert KEY not in str(secret)
    assert KEY not in f"{secret!r} {secret}"
    assert secret.reveal() == KEY
    assert secret == llm.Secret(KEY)
    assert (
        secret.fingerprint() == llm.Secret(KEY).fingerprint() != llm.Secret("other").fingerprint()
    )
    assert KEY not in secret.fingerprint()
    with pytest.raises(TypeError):
        pickle.dumps(secret)
    assert copy.deepcopy(secret) is secret


def test_config_and_provider_reprs_hide_the_key(kind: Kind, fake: FakeServer) -> None:
    config = llm.ProviderConfig(api_key=llm.Secret(KEY), base_url=fake.url)
    provider = llm.connect(kind.model_string, config=config)

    assert llm.ProviderConfig().with_overrides(api_key=KEY).api_key == llm.Secret(KEY)
    assert KEY not in repr(config)
    assert KEY not in repr(provider)
    assert KEY not in str(vars(config) if hasattr(config, "__dict__") else config)


async def test_a_key_echoed_by_the_provider_is_masked_in_the_error(
    fake: FakeServer, provider: llm.Provider
) -> None:
    fake.fail(401, f"Incorrect API key provided: {KEY}. You can find your key at ...")

    with pytest.raises(errors.ProviderAuthError) as caught:
        await provider.chat(user())

    error = caught.value
    shown = "".join(traceback.format_exception(error))
    assert KEY not in shown
    assert KEY not in repr(error)
    assert KEY not in repr(error.facts)
    assert KEY not in str(pickle.loads(pickle.dumps(error)))
    assert "Incorrect API key provided" in str(error)


def test_redact_masks_the_key_and_key_shaped_tokens() -> None:
    text = f"bad key {KEY} and sk-proj-abcdefghijkl and sk-ant-api03-xyzxyzxyz"

    masked = llm.redact(text, llm.Secret(KEY))

    assert KEY not in masked
    assert "abcdefghijkl" not in masked
    assert "xyzxyzxyz" not in masked
    assert masked.startswith("bad key ")


async def test_retries_log_without_the_key(
    fake: FakeServer, provider: llm.Provider, caplog: pytest.LogCaptureFixture
) -> None:
    fake.fail(500, f"internal error for key {KEY}")
    fake.reply("ok")

    with caplog.at_level(logging.DEBUG):
        await provider.chat(user())

    assert any("retrying" in record.getMessage() for record in caplog.records)
    assert KEY not in caplog.text


async def test_requests_and_responses_journal_without_the_key(
    fake: FakeServer, provider: llm.Provider
) -> None:
    fake.reply("ok")
    request = user()

    response = await provider.chat(request)

    journaled = serialization.encode([request, response], what="llm entry")
    assert KEY not in journaled
    assert "ok" in journaled


async def test_the_key_comes_from_the_environment(
    kind: Kind, fake: FakeServer, connect: Connect, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(kind.key_env, "env-key-123456")
    fake.api_key = "env-key-123456"
    fake.reply("authorised")
    provider = await connect(api_key=None)

    response = await provider.chat(user())

    assert response.text == "authorised"


def test_a_missing_key_is_a_config_error_saying_what_to_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)

    with pytest.raises(errors.ConfigError, match="OPENAI_API_KEY"):
        llm.connect("openai:gpt-4o-mini")
    with pytest.raises(errors.ConfigError, match="ANTHROPIC_API_KEY"):
        llm.connect("anthropic:claude-haiku-4-5")
