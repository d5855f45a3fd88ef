"""Model strings (``openai:gpt-4o-mini``) to connected providers.

Built-in adapters are named by module path and imported on first use, so no
SDK is loaded before a provider needs it.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

from kernos.errors import ConfigError
from kernos.llm._config import ProviderConfig
from kernos.llm._pricing import PriceTable
from kernos.llm._provider import Provider
from kernos.llm._ratelimit import RateLimit
from kernos.llm._secret import Secret
from kernos.retry import RetryPolicy

__all__ = ["connect", "parse_model", "provider_names", "register_provider"]

ProviderFactory = Callable[[str, ProviderConfig], Provider]
"""Builds a provider for a model name (the part after ``provider:``) and its settings."""

_BUILTIN: dict[str, tuple[str, str]] = {
    "openai": ("kernos.llm._openai", "connect_openai"),
    "openai-compatible": ("kernos.llm._openai", "connect_compatible"),
    "anthropic": ("kernos.llm._anthropic", "connect_anthropic"),
    "ollama": ("kernos.llm._ollama", "connect_ollama"),
}

# Model name prefixes that identify a provider when a model string has none.
_INFERRED = (
    ("gpt-", "openai"),
    ("chatgpt-", "openai"),
    ("o1", "openai"),
    ("o3", "openai"),
    ("o4", "openai"),
    ("claude-", "anthropic"),
)

_factories: dict[str, ProviderFactory] = {}
_lock = threading.Lock()


def register_provider(name: str, factory: ProviderFactory) -> None:
    """Make ``connect("<name>:<model>")`` build providers with ``factory``.

    Registering a built-in name replaces the built-in adapter.
    """
    if not name or ":" in name:
        raise ConfigError(f"a provider name is a word without ':', got {name!r}")
    with _lock:
        _factories[name] = factory


def provider_names() -> list[str]:
    """Every provider name :func:`connect` accepts."""
    return sorted(set(_BUILTIN) | set(_factories))


def parse_model(model: str) -> tuple[str, str]:
    """Split ``provider:model`` (the model may contain ``:``, as in ``ollama:llama3.2:3b``).

    A string without a known provider prefix is accepted when the model name says
    which provider it is (``gpt-4o`` is OpenAI's, ``claude-...`` Anthropic's).
    """
    provider, sep, name = model.partition(":")
    if sep and name and (provider in _BUILTIN or provider in _factories):
        return provider, name
    for prefix, inferred in _INFERRED:
        if model.startswith(prefix):
            return inferred, model
    raise ConfigError(
        f"cannot tell which provider serves {model!r}: write 'provider:model', e.g. "
        f"'openai:gpt-4o-mini', 'anthropic:claude-sonnet-4-5' or 'ollama:{model}'. Known "
        f"providers: {', '.join(provider_names())}",
        model=model,
    )


def _factory(name: str) -> ProviderFactory:
    with _lock:
        factory = _factories.get(name)
    if factory is not None:
        return factory
    module, attribute = _BUILTIN[name]
    built: ProviderFactory = getattr(importlib.import_module(module), attribute)
    return built


def connect(
    model: str,
    *,
    api_key: str | Secret | None = None,
    base_url: str | None = None,
    timeout: float | None = None,
    retries: int | RetryPolicy | None = None,
    rate_limit: RateLimit | None = None,
    headers: Mapping[str, str] | None = None,
    prices: PriceTable | None = None,
    config: ProviderConfig | Mapping[str, ProviderConfig] | None = None,
) -> Provider:
    """A provider for ``model``, a string such as ``openai:gpt-4o-mini``.

    Providers: ``openai``, ``openai-compatible`` (needs ``base_url``: vLLM,
    llama.cpp, LM Studio, Ollama's ``/v1``), ``anthropic``, ``ollama``, and any
    registered with :func:`register_provider`. With a mapping from
    :func:`load_config`, a table named like an unknown provider that has a
    ``base_url`` (``[llm.vllm]``) makes ``vllm:<model>`` an OpenAI-compatible server.

    The provider holds one client with a connection pool: connect once and reuse it.
    Keys come from the arguments, then ``config``, then the environment
    (``OPENAI_API_KEY``, ``ANTHROPIC_API_KEY``, ``OLLAMA_API_KEY``); base URLs
    likewise (``OPENAI_BASE_URL``, ``ANTHROPIC_BASE_URL``, ``OLLAMA_HOST``).

    Args:
        model: ``provider:model``.
        api_key: the key, overriding config and environment.
        base_url: the server, overriding config and environment.
        timeout: seconds per call (default 60).
        retries: retries after the first attempt, or a full policy.
        rate_limit: client-side requests and tokens per minute for this key.
        headers: extra HTTP headers.
        prices: the price table for costs (default: the process-wide one).
        config: settings, or settings per provider name (from :func:`load_config`).

    Raises:
        kernos.errors.ConfigError: unknown provider, or a key or URL is missing.
    """
    name, model_name = _split(model, config)
    settings = _settings(name, config)
    if retries is not None:
        retries = RetryPolicy.of(retries)
    settings = settings.with_overrides(
        api_key=api_key,
        base_url=base_url,
        timeout=timeout,
        retries=retries,
        rate_limit=rate_limit,
        headers=headers,
        prices=prices,
    )
    if name in _BUILTIN or name in _factories:
        return _factory(name)(model_name, settings)
    # A named OpenAI-compatible server from the config file.
    compatible: Any = _factory("openai-compatible")
    built: Provider = partial(compatible, name=name)(model_name, settings)
    return built


def _split(
    model: str, config: ProviderConfig | Mapping[str, ProviderConfig] | None
) -> tuple[str, str]:
    provider, sep, name = model.partition(":")
    settings = config.get(provider) if isinstance(config, Mapping) else None
    if sep and name and settings is not None and settings.base_url:
        return provider, name
    return parse_model(model)


def _settings(
    name: str, config: ProviderConfig | Mapping[str, ProviderConfig] | None
) -> ProviderConfig:
    if config is None:
        return ProviderConfig()
    if isinstance(config, ProviderConfig):
        return config
    return config.get(name) or ProviderConfig()
