"""What an agent run ends with."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kernos import llm
from kernos.agents._budget import StopReason

__all__ = ["AgentResult"]


@dataclass(frozen=True, kw_only=True, slots=True)
class AgentResult:
    """The outcome of one agent run.

    Attributes:
        output: the final answer: its text, or an instance of the agent's
            ``output_type`` for structured output; ``None`` unless ``done``.
        stop_reason: why the loop ended.
        turns: model calls made.
        tool_calls: tool calls made.
        usage: tokens and cost of every model answer in the conversation (a fork
            counts the answers it inherited; an edited answer counts as free).
        cost: ``usage.cost``: US dollars, or ``None`` when the model has no price.
        wall_time_s: seconds of work (model calls, and each turn's slowest tool call).
        exceeded: for ``budget``, the limit reached (``tokens``, ``cost_usd``,
            ``wall_time_s``); for ``max_turns``, ``turns``.
        error: what stopped the run, in words, unless it is ``done``.
        text: the model's last answer as text (the raw JSON for structured output).
    """

    output: Any
    stop_reason: StopReason
    turns: int
    tool_calls: int
    usage: llm.Usage
    cost: float | None
    wall_time_s: float = 0.0
    exceeded: str | None = None
    error: str | None = None
    text: str = ""

    @property
    def ok(self) -> bool:
        """Whether the model gave its final answer."""
        return self.stop_reason is StopReason.DONE

    def to_dict(self) -> dict[str, Any]:
        """The JSON form of this result (a structured output as its JSON)."""
        output = self.output
        dump = getattr(output, "model_dump", None)
        if callable(dump):
            output = dump(mode="json")
        return {
            "output": output,
            "stop_reason": self.stop_reason.value,
            "turns": self.turns,
            "tool_calls": self.tool_calls,
            "usage": self.usage.to_dict(),
            "cost": self.cost,
            "wall_time_s": self.wall_time_s,
            "exceeded": self.exceeded,
            "error": self.error,
            "text": self.text,
        }

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], output_type: type[Any] | None = None
    ) -> AgentResult:
        """Rebuild a result from :meth:`to_dict`'s output.

        Args:
            data: the JSON form.
            output_type: the pydantic model class to rebuild a structured output with.
        """
        output = data.get("output")
        if output_type is not None and output is not None and not isinstance(output, str):
            output = output_type.model_validate(output)
        return cls(
            output=output,
            stop_reason=StopReason(data["stop_reason"]),
            turns=int(data.get("turns", 0)),
            tool_calls=int(data.get("tool_calls", 0)),
            usage=llm.Usage.from_dict(data.get("usage") or {}),
            cost=data.get("cost"),
            wall_time_s=float(data.get("wall_time_s", 0.0)),
            exceeded=data.get("exceeded"),
            error=data.get("error"),
            text=str(data.get("text", "")),
        )
