"""Summing usage and cost per run, agent, tenant, or any other key."""

from __future__ import annotations

import threading
from collections.abc import Mapping

from kernos.llm._response import ChatResponse, Usage

__all__ = ["UsageLedger"]


class UsageLedger:
    """Running totals of tokens and cost, per dimension and key.

    Each recorded call adds to the grand total and to the total of every key it
    is tagged with::

        ledger.record(response, run="r-1", agent="researcher", tenant="acme")
        ledger.total(tenant="acme")        # Usage summed over acme's calls
        ledger.by("agent")                 # {"researcher": Usage(...), ...}

    Safe to share between tasks and threads.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._grand = Usage()
        self._calls = 0
        self._totals: dict[str, dict[str, Usage]] = {}

    def record(self, usage: Usage | ChatResponse, **keys: str | None) -> Usage:
        """Add one call's usage under each ``dimension=key`` given (``None`` keys are skipped).

        Returns the call's usage.
        """
        if isinstance(usage, ChatResponse):
            usage = usage.usage
        with self._lock:
            self._grand = self._grand + usage
            self._calls += 1
            for dimension, key in keys.items():
                if key is None:
                    continue
                per_key = self._totals.setdefault(dimension, {})
                per_key[key] = per_key.get(key, Usage()) + usage
        return usage

    @property
    def calls(self) -> int:
        """How many calls were recorded."""
        return self._calls

    def total(self, **key: str) -> Usage:
        """The grand total, or with one ``dimension=key`` the total of that key."""
        if not key:
            return self._grand
        if len(key) != 1:
            raise TypeError("total() takes at most one dimension=key")
        ((dimension, name),) = key.items()
        with self._lock:
            return self._totals.get(dimension, {}).get(name, Usage())

    def by(self, dimension: str) -> Mapping[str, Usage]:
        """Totals of every key of ``dimension`` (a copy)."""
        with self._lock:
            return dict(self._totals.get(dimension, {}))
