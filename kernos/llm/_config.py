"""Provider settings: keys, base URL, timeout, retries, rate limits; from code, env or TOML."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from kernos.errors import ConfigError
from kernos.llm._pricing import PriceTable, default_prices
from kernos.llm._ratelimit import RateLimit
from kernos.llm._retry import DEFAULT_RETRIES
from kernos.llm._secret import Secret
from kernos.retry import RetryPolicy

__all__ = ["ProviderConfig", "load_config"]


@dataclass(frozen=True, kw_only=True, slots=True)
class ProviderConfig:
    """How to reach and use one provider.

    Every field left unset falls back to the environment (for the key and base
    URL) or to the default shown.

    Attributes:
        api_key: the key (``None``: from the provider's environment variable).
        base_url: where to send requests (``None``: from the environment, else the
            provider's public endpoint).
        timeout: seconds per call unless the request says otherwise.
        retries: attempts and backoff for transient failures (429, 5xx,
            timeouts, connection errors).
        max_retry_after: the longest ``Retry-After`` honoured by waiting; a provider
            asking for more fails the call with the wait in ``retry_after``.
        rate_limit: client-side limits shared by every provider object using the
            same key (``None``: no limit).
        headers: extra HTTP headers on every request.
        prices: the price table for costs (``None``: the process-wide table).
    """

    api_key: Secret | None = None
    base_url: str | None = None
    timeout: float = 60.0
    retries: RetryPolicy = DEFAULT_RETRIES
    max_retry_after: float = 60.0
    rate_limit: RateLimit | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    prices: PriceTable | None = None

    def __post_init__(self) -> None:
        key: Any = self.api_key
        if isinstance(key, str):  # accept a plain string, keep it wrapped
            object.__setattr__(self, "api_key", Secret(key))
        if self.timeout <= 0:
            raise ConfigError(f"timeout must be positive, got {self.timeout}")

    def with_overrides(self, **overrides: Any) -> ProviderConfig:
        """A copy with the given fields replaced; ``None`` values are ignored."""
        changes = {name: value for name, value in overrides.items() if value is not None}
        if isinstance(changes.get("api_key"), str):
            changes["api_key"] = Secret(changes["api_key"])
        return replace(self, **changes) if changes else self

    def price_table(self) -> PriceTable:
        """The table costs are computed from."""
        return self.prices if self.prices is not None else default_prices()

    def key_from(self, env: str) -> Secret | None:
        """The configured key, else the one in environment variable ``env``."""
        if self.api_key:
            return self.api_key
        value = os.environ.get(env)
        return Secret(value) if value else None

    def url_from(self, env: str | None, default: str) -> str:
        """The configured base URL, else the one in ``env``, else ``default``."""
        url = self.base_url or (os.environ.get(env) if env else None) or default
        return url.rstrip("/")


_FIELDS = {f.name for f in fields(ProviderConfig)}
_RETRY_KEYS = {"max_attempts", "initial_delay", "max_delay", "multiplier", "jitter"}
_LIMIT_KEYS = {"requests_per_minute", "tokens_per_minute", "burst"}


def load_config(path: str | Path) -> dict[str, ProviderConfig]:
    """Provider settings from the ``[llm.<provider>]`` tables of a TOML file.

    Example::

        [llm.openai]
        api_key_env = "OPENAI_API_KEY_TEAM_A"   # or api_key = "..."
        timeout = 30
        max_attempts = 4
        requests_per_minute = 500
        tokens_per_minute = 200000

        [llm.vllm]                              # use as connect("openai-compatible:...")
        base_url = "http://gpu-box:8000/v1"

        [llm.prices."openai:ft:gpt-4o-mini:acme"]
        input = 0.30
        output = 1.20

    ``[llm.prices]`` and ``[llm.aliases]`` are added to the process-wide price table.
    Returns the settings keyed by table name, for ``kernos.llm.connect(..., config=...)``.
    """
    try:
        data = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read the config file {path}: {exc}", path=str(path)) from exc
    section = data.get("llm") or {}
    prices = {key: section.pop(key) for key in ("prices", "aliases") if key in section}
    if prices:
        default_prices().load_mapping(prices)
    return {name: _provider_config(name, table, path) for name, table in section.items()}


def _provider_config(name: str, table: Any, path: str | Path) -> ProviderConfig:
    if not isinstance(table, dict):
        raise ConfigError(f"[llm.{name}] in {path} must be a table", path=str(path))
    table = dict(table)
    key_env = table.pop("api_key_env", None)
    if key_env is not None and "api_key" not in table:
        value = os.environ.get(str(key_env))
        if not value:
            raise ConfigError(
                f"[llm.{name}] in {path} takes its key from ${key_env}, which is not set",
                path=str(path),
                variable=str(key_env),
            )
        table["api_key"] = Secret(value)
    retry = {key: table.pop(key) for key in list(table) if key in _RETRY_KEYS}
    limit = {key: table.pop(key) for key in list(table) if key in _LIMIT_KEYS}
    unknown = set(table) - _FIELDS - {"retries", "rate_limit", "prices"}
    if unknown:
        allowed = sorted(_FIELDS - {"retries", "rate_limit", "prices"} | _RETRY_KEYS | _LIMIT_KEYS)
        raise ConfigError(
            f"[llm.{name}] in {path} has unknown keys {sorted(unknown)}; allowed: "
            f"api_key_env, {', '.join(allowed)}",
            path=str(path),
        )
    try:
        if retry:
            table["retries"] = RetryPolicy(**{**_policy_fields(DEFAULT_RETRIES), **retry})
        if limit:
            table["rate_limit"] = RateLimit(**limit)
        return ProviderConfig(**table)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"[llm.{name}] in {path}: {exc}", path=str(path)) from exc


def _policy_fields(policy: RetryPolicy) -> dict[str, Any]:
    return {name: getattr(policy, name) for name in _RETRY_KEYS}
