"""Prices, costs, the usage ledger, and settings from a TOML file."""

from __future__ import annotations

from pathlib import Path

import pytest

from kernos import errors, llm


def test_cost_is_tokens_times_the_price_per_million() -> None:
    price = llm.Price(input=0.15, output=0.60, cached_input=0.075)
    usage = llm.Usage(input_tokens=1_000_000, output_tokens=500_000, cached_input_tokens=200_000)

    # 800k plain input at 0.15, 200k cached at 0.075, 500k output at 0.60
    assert price.cost(usage) == pytest.approx(0.12 + 0.015 + 0.30)


def test_cache_writes_cost_their_own_price_and_default_to_the_input_price() -> None:
    usage = llm.Usage(input_tokens=2_000_000, cache_write_tokens=1_000_000)

    assert llm.Price(input=3.0, output=15.0, cache_write=3.75).cost(usage) == pytest.approx(6.75)
    assert llm.Price(input=3.0, output=15.0).cost(usage) == pytest.approx(6.0)


def test_the_shipped_table_prices_known_models_and_their_snapshots() -> None:
    table = llm.default_prices()
    mini = table.lookup("openai", "gpt-4o-mini")

    assert mini == llm.Price(input=0.15, output=0.60, cached_input=0.075)
    assert table.lookup("openai", "gpt-4o-mini-2024-07-18") == mini
    assert table.lookup("anthropic", "claude-haiku-4-5-20251001") == table.lookup(
        "anthropic", "claude-haiku-4-5"
    )
    assert table.lookup("ollama", "llama3.2:3b") == llm.Price(input=0.0, output=0.0)


def test_unknown_models_have_no_price_rather_than_a_guess() -> None:
    table = llm.default_prices()

    assert table.lookup("openai", "gpt-unknown") is None
    assert table.lookup("anthropic", "claude-opus-4-99") is None  # not claude-opus-4's price
    assert table.lookup("openai-compatible", "llama3") is None
    assert table.cost("openai", "gpt-unknown", llm.Usage(input_tokens=10)) is None


def test_users_register_prices_aliases_and_patterns() -> None:
    table = llm.PriceTable()
    table.register("openai:gpt-4o", llm.Price(input=2.5, output=10.0))
    table.register("openai:ft:gpt-4o:*", llm.Price(input=3.75, output=15.0))
    table.alias("vllm:my-llama", "openai:gpt-4o")

    assert table.lookup("openai", "ft:gpt-4o:acme:abc123") == llm.Price(input=3.75, output=15.0)
    assert table.lookup("vllm", "my-llama") == llm.Price(input=2.5, output=10.0)
    table.register("openai:gpt-4o", llm.Price(input=1.0, output=1.0))  # replaces, cache cleared
    assert table.lookup("vllm", "my-llama") == llm.Price(input=1.0, output=1.0)
    with pytest.raises(errors.ConfigError):
        table.register("no-provider", llm.Price(input=1, output=1))


def test_prices_load_from_toml(tmp_path: Path) -> None:
    path = tmp_path / "prices.toml"
    path.write_text(
        '[prices."acme:small"]\ninput = 0.5\noutput = 1.5\n[aliases]\n"acme:tiny" = "acme:small"\n'
    )
    table = llm.PriceTable()

    table.load(path)

    assert table.lookup("acme", "tiny") == llm.Price(input=0.5, output=1.5)
    path.write_text('[prices."acme:broken"]\ninput = "cheap"\n')
    with pytest.raises(errors.ConfigError, match="acme:broken"):
        table.load(path)


def test_register_price_extends_the_process_wide_table() -> None:
    llm.register_price("acme-test:model-x", input=1.0, output=2.0)

    assert llm.default_prices().lookup("acme-test", "model-x") == llm.Price(input=1.0, output=2.0)


def test_the_ledger_sums_per_run_agent_and_tenant() -> None:
    ledger = llm.UsageLedger()
    a = llm.Usage(input_tokens=100, output_tokens=10, cost=0.5)
    b = llm.Usage(input_tokens=50, output_tokens=5, cost=0.25)
    c = llm.Usage(input_tokens=1, output_tokens=1)  # no price known

    ledger.record(a, run="r1", agent="writer", tenant="acme")
    ledger.record(llm.ChatResponse(usage=b), run="r1", agent="critic", tenant="acme")
    ledger.record(c, run="r2", agent="writer", tenant="globex")

    assert ledger.calls == 3
    assert ledger.total() == llm.Usage(input_tokens=151, output_tokens=16, cost=0.75)
    assert ledger.total(run="r1") == a + b
    assert ledger.total(tenant="globex") == c
    assert ledger.total(tenant="nobody") == llm.Usage()
    assert set(ledger.by("agent")) == {"writer", "critic"}
    assert ledger.by("agent")["writer"].input_tokens == 101


def test_config_file_gives_keys_limits_retries_and_prices(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEAM_A_KEY", "sk-team-a-1234567")
    path = tmp_path / "kernos.toml"
    path.write_text(
        """
[llm.openai]
api_key_env = "TEAM_A_KEY"
timeout = 12.5
max_attempts = 5
requests_per_minute = 500
tokens_per_minute = 100000

[llm.vllm]
base_url = "http://gpu-box:8000/v1"

[llm.prices."vllm:llama-70b"]
input = 0.2
output = 0.2
"""
    )

    configs = llm.load_config(path)

    openai = configs["openai"]
    assert openai.api_key == llm.Secret("sk-team-a-1234567")
    assert openai.timeout == 12.5
    assert openai.retries.max_attempts == 5
    assert openai.rate_limit == llm.RateLimit(requests_per_minute=500, tokens_per_minute=100000)
    assert llm.default_prices().lookup("vllm", "llama-70b") == llm.Price(input=0.2, output=0.2)
    provider = llm.connect("vllm:llama-70b", config=configs)
    assert (provider.name, provider.model) == ("vllm", "llama-70b")
    assert "gpu-box:8000" in repr(provider)


def test_config_file_mistakes_are_config_errors(tmp_path: Path) -> None:
    path = tmp_path / "kernos.toml"
    path.write_text('[llm.openai]\napi_kee = "typo"\n')
    with pytest.raises(errors.ConfigError, match="api_kee"):
        llm.load_config(path)
    path.write_text('[llm.openai]\napi_key_env = "KERNOS_TEST_UNSET_VARIABLE"\n')
    with pytest.raises(errors.ConfigError, match="KERNOS_TEST_UNSET_VARIABLE"):
        llm.load_config(path)
