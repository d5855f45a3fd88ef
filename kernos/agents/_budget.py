"""Budgets and stop reasons: when an agent's loop ends, and why."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from kernos import errors, llm

__all__ = ["DEFAULT_TURNS", "Budget", "Spent", "StopReason"]

DEFAULT_TURNS = 25
"""Model calls an agent makes at most unless its budget says otherwise."""


class StopReason(enum.StrEnum):
    """Why an agent's loop ended."""

    DONE = "done"  # the model gave its final answer (validated, when structured)
    MAX_TURNS = "max_turns"  # the turn budget ran out while the model still wanted tools
    BUDGET = "budget"  # tokens, cost or wall time ran out (``AgentResult.exceeded`` says which)
    ERROR = "error"  # a model call failed, or the structured answer stayed invalid
    CANCELLED = "cancelled"  # the run was cancelled (reported by AgentHandle.result)


@dataclass(frozen=True, kw_only=True, slots=True)
class Spent:
    """What a conversation has spent so far, as its journal records it.

    Attributes:
        turns: model calls.
        usage: tokens and cost of the model's answers.
        wall_time_s: seconds the agent worked: its model calls plus, per turn,
            its slowest tool call (parallel calls overlap). Time spent crashed,
            suspended or waiting for a worker does not count.
        tool_calls: tool calls made.
    """

    turns: int = 0
    usage: llm.Usage = field(default_factory=llm.Usage)
    wall_time_s: float = 0.0
    tool_calls: int = 0


@dataclass(frozen=True, kw_only=True, slots=True)
class Budget:
    """Limits on one agent run; the first one exceeded stops the run with its reason.

    Every figure comes from the run's journal (the recorded usage and latency of
    each call), so a recovered or replayed run stops exactly where the original did.

    Args:
        tokens: input plus output tokens over all model calls.
        cost_usd: US dollars over all model calls (calls to a model without a
            price count as free).
        turns: model calls (default 25); running out gives ``max_turns``.
        wall_time_s: seconds of work (see :class:`Spent`).

    Raises:
        ConfigError: a limit is not positive.
    """

    tokens: int | None = None
    cost_usd: float | None = None
    turns: int | None = DEFAULT_TURNS
    wall_time_s: float | None = None

    def __post_init__(self) -> None:
        for name in ("tokens", "cost_usd", "turns", "wall_time_s"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise errors.ConfigError(f"budget {name} must be positive, got {value!r}")

    def exceeded(self, spent: Spent) -> tuple[str, str] | None:
        """The limit ``spent`` has reached, if any: ``(name, explanation)``.

        Turns are not checked here (see :meth:`turns_left`).
        """
        if self.tokens is not None and spent.usage.total_tokens >= self.tokens:
            return "tokens", f"{spent.usage.total_tokens} tokens spent of {self.tokens}"
        cost = spent.usage.cost or 0.0
        if self.cost_usd is not None and cost >= self.cost_usd:
            return "cost_usd", f"${cost:.6f} spent of ${self.cost_usd:g}"
        if self.wall_time_s is not None and spent.wall_time_s >= self.wall_time_s:
            return "wall_time_s", f"{spent.wall_time_s:.3f}s of work of {self.wall_time_s:g}s"
        return None

    def tighter(self, other: Budget) -> Budget:
        """The budget with, for each limit, the tighter of this one's and ``other``'s."""
        values: dict[str, Any] = {}
        for name in ("tokens", "cost_usd", "turns", "wall_time_s"):
            mine, theirs = getattr(self, name), getattr(other, name)
            values[name] = theirs if mine is None else mine if theirs is None else min(mine, theirs)
        return Budget(**values)

    def turns_left(self, spent: Spent) -> bool:
        """Whether another model call is within the turn budget."""
        return self.turns is None or spent.turns < self.turns
