"""A toolbox: the tools one agent may call, each call decided by policy first."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from kernos import errors, llm
from kernos.tools._policy import Action, Decision, ToolPolicy, strictest
from kernos.tools._tool import Tool, ToolResult, parse_arguments

__all__ = ["Toolbox"]

logger = logging.getLogger(__name__)


class Toolbox:
    """Named tools under one or more policies (e.g. the tenant's, then the agent's).

    Every call is decided before it runs, on the call's name and arguments
    only, by the strictest answer of the policies. The policies are immutable
    and held by the toolbox; nothing a tool returns reaches them.

    Args:
        tools: the tools; names must be unique.
        policy: one policy, or several that must all allow a call.

    Raises:
        RegistrationError: two tools share a name.
    """

    def __init__(
        self, tools: Iterable[Tool[..., Any]], *, policy: ToolPolicy | Iterable[ToolPolicy]
    ):
        self._tools: dict[str, Tool[..., Any]] = {}
        for item in tools:
            if item.name in self._tools:
                raise errors.RegistrationError(f"two tools are named {item.name!r}", tool=item.name)
            self._tools[item.name] = item
        self.policies: tuple[ToolPolicy, ...] = (
            (policy,) if isinstance(policy, ToolPolicy) else tuple(policy)
        )
        if not self.policies:
            raise errors.ConfigError("a toolbox needs at least one policy")

    @property
    def names(self) -> list[str]:
        """The tools' names, in the order given."""
        return list(self._tools)

    def __getitem__(self, name: str) -> Tool[..., Any]:
        return self._tools[name]

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def specs(self) -> list[llm.ToolSpec]:
        """The definitions to send to a model (policy refusals happen at call time)."""
        return [item.spec() for item in self._tools.values()]

    def decide(self, name: str, arguments: Mapping[str, Any] | None = None) -> Decision:
        """The strictest decision of the policies on this call."""
        return strictest(policy.decide(name, arguments) for policy in self.policies)

    async def call(
        self, name: str, arguments: Mapping[str, Any] | str | None = None, *, approved: bool = False
    ) -> ToolResult:
        """Decide on one call and, if allowed, run it.

        Args:
            name: the tool the model called.
            arguments: its arguments, as a mapping or the model's JSON text.
            approved: a human approved this call (it still cannot pass a deny).

        Returns:
            The tool's result, or an error result saying the tool does not
            exist, the call was refused, or it waits for approval.
        """
        if name not in self._tools:
            available = ", ".join(self._tools) or "none"
            return ToolResult.error(f"there is no tool named {name!r}; available: {available}")
        try:
            parsed = parse_arguments(arguments)
        except errors.ToolError as exc:
            return ToolResult.error(exc.message)
        decision = self.decide(name, parsed)
        logger.info(
            "tool call decided",
            extra={"action": "tool_decision", "tool": name, "decision": decision.action.value},
        )
        if decision.action is Action.DENY:
            return ToolResult.error(f"the call to {name!r} was refused: {decision.reason}")
        if decision.action is Action.NEEDS_APPROVAL and not approved:
            return ToolResult.error(
                f"the call to {name!r} needs a human's approval first: {decision.reason}"
            )
        return await self._tools[name].invoke(parsed)
