"""Prices per model and the cost of a call.

The table ships as ``prices.toml`` beside this module; users extend or override
it with :func:`register_price`, :func:`register_alias` and :func:`load_prices`.
"""

from __future__ import annotations

import re
import threading
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

from kernos.errors import ConfigError
from kernos.llm._response import Usage

__all__ = [
    "Price",
    "PriceTable",
    "default_prices",
    "load_prices",
    "register_alias",
    "register_price",
]

_PER = 1_000_000.0

# A model name ending in a snapshot date (-20251001, -2024-07-18) or -latest.
_SNAPSHOT = re.compile(r"^(.+?)-(?:\d{8}|\d{4}-\d{2}-\d{2}|latest)$")


@dataclass(frozen=True, kw_only=True, slots=True)
class Price:
    """US dollars per million tokens.

    Attributes:
        input: input tokens not read from or written to a cache.
        output: output tokens.
        cached_input: input tokens read from the cache (``None``: same as ``input``).
        cache_write: input tokens written to the cache (``None``: same as ``input``).
    """

    input: float
    output: float
    cached_input: float | None = None
    cache_write: float | None = None

    def cost(self, usage: Usage) -> float:
        """What ``usage`` costs at this price, in US dollars."""
        cached = usage.cached_input_tokens
        written = usage.cache_write_tokens
        plain = max(0, usage.input_tokens - cached - written)
        dollars = (
            plain * self.input
            + cached * (self.input if self.cached_input is None else self.cached_input)
            + written * (self.input if self.cache_write is None else self.cache_write)
            + usage.output_tokens * self.output
        )
        return dollars / _PER

    @classmethod
    def from_mapping(cls, key: str, data: Mapping[str, Any]) -> Price:
        """A price from a TOML table (``input``, ``output``, optional cache prices)."""
        try:
            return cls(
                input=float(data["input"]),
                output=float(data["output"]),
                cached_input=_optional_float(data.get("cached_input")),
                cache_write=_optional_float(data.get("cache_write")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(
                f"price {key!r} needs numbers 'input' and 'output' (USD per million tokens), "
                f"optionally 'cached_input' and 'cache_write': {exc}",
                key=key,
            ) from exc


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _split(key: str) -> tuple[str, str]:
    provider, sep, model = key.partition(":")
    if not sep or not provider or not model:
        raise ConfigError(f"a price key is 'provider:model', got {key!r}", key=key)
    return provider, model


class PriceTable:
    """Prices keyed by ``provider:model``, with aliases, snapshots and patterns.

    Lookup order for a model: an alias, the exact key, the key without a
    snapshot suffix (``gpt-4o-mini-2024-07-18`` and ``claude-haiku-4-5-20251001``
    cost what ``gpt-4o-mini`` and ``claude-haiku-4-5`` cost; likewise ``-latest``),
    then the longest pattern ending in ``*`` that matches (``ollama:*``,
    ``openai:ft:gpt-4o-mini:*``). Anything else has no price: a cost is never guessed.
    """

    def __init__(self) -> None:
        self._prices: dict[str, Price] = {}
        self._aliases: dict[str, str] = {}
        self._cache: dict[tuple[str, str], Price | None] = {}
        self._lock = threading.Lock()

    def register(self, key: str, price: Price) -> None:
        """Set the price of ``key`` (``provider:model``, or a pattern such as ``provider:*``)."""
        _split(key)
        with self._lock:
            self._prices[key] = price
            self._cache.clear()

    def alias(self, key: str, target: str) -> None:
        """Make ``key`` cost what ``target`` costs."""
        _split(key)
        _split(target)
        with self._lock:
            self._aliases[key] = target
            self._cache.clear()

    def load(self, path: str | Path) -> None:
        """Add the prices and aliases of a TOML file shaped like the shipped ``prices.toml``."""
        try:
            data = tomllib.loads(Path(path).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read the price file {path}: {exc}", path=str(path)) from exc
        self.load_mapping(data)

    def load_mapping(self, data: Mapping[str, Any]) -> None:
        """Add ``[prices]`` and ``[aliases]`` from parsed TOML."""
        for key, table in (data.get("prices") or {}).items():
            self.register(key, Price.from_mapping(key, table))
        for key, target in (data.get("aliases") or {}).items():
            self.alias(key, str(target))

    def lookup(self, provider: str, model: str) -> Price | None:
        """The price of ``model`` served by ``provider``, or ``None``."""
        cache_key = (provider, model)
        try:
            return self._cache[cache_key]
        except KeyError:
            pass
        with self._lock:
            price = self._find(provider, model)
            self._cache[cache_key] = price
            return price

    def _find(self, provider: str, model: str) -> Price | None:
        key = f"{provider}:{model}"
        for _ in range(8):  # aliases may chain; a loop cannot hang the lookup
            target = self._aliases.get(key)
            if target is None:
                break
            key = target
        provider, model = _split(key)
        exact = self._prices.get(key)
        if exact is not None:
            return exact
        snapshot = _SNAPSHOT.match(model)
        if snapshot is not None:
            dated = self._prices.get(f"{provider}:{snapshot.group(1)}")
            if dated is not None:
                return dated
        best: tuple[int, Price] | None = None
        for listed, price in self._prices.items():
            longer = best is None or len(listed) > best[0]
            if longer and listed.endswith("*") and key.startswith(listed[:-1]):
                best = (len(listed), price)
        return best[1] if best is not None else None

    def cost(self, provider: str, model: str, usage: Usage) -> float | None:
        """What ``usage`` of ``model`` costs, or ``None`` when it has no price."""
        price = self.lookup(provider, model)
        return None if price is None else price.cost(usage)

    def priced(self, provider: str, models: tuple[str, ...], usage: Usage) -> Usage:
        """``usage`` with its cost filled in from the first of ``models`` with a price."""
        for model in models:
            if model:
                price = self.lookup(provider, model)
                if price is not None:
                    return replace(usage, cost=price.cost(usage))
        return usage


_default: PriceTable | None = None
_default_lock = threading.Lock()


def default_prices() -> PriceTable:
    """The process-wide table: the shipped prices plus whatever was registered."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                table = PriceTable()
                text = resources.files("kernos.llm").joinpath("prices.toml").read_text()
                table.load_mapping(tomllib.loads(text))
                _default = table
    return _default


def register_price(
    key: str,
    *,
    input: float,
    output: float,
    cached_input: float | None = None,
    cache_write: float | None = None,
) -> None:
    """Set a price (US dollars per million tokens) in the process-wide table.

    Example: ``register_price("openai:ft:gpt-4o-mini:acme", input=0.3, output=1.2)``.
    """
    default_prices().register(
        key, Price(input=input, output=output, cached_input=cached_input, cache_write=cache_write)
    )


def register_alias(key: str, target: str) -> None:
    """Make ``key`` cost what ``target`` costs in the process-wide table."""
    default_prices().alias(key, target)


def load_prices(path: str | Path) -> None:
    """Add the prices of a TOML file to the process-wide table."""
    default_prices().load(path)
