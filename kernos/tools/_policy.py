"""Tool policy: allow, deny, or ask for approval, by tool name and arguments.

A :class:`ToolPolicy` is an ordered list of :class:`Rule` s and a default.
The first rule whose tool-name glob and argument patterns match the call
decides; when none does, the default does (deny, unless told otherwise).

A policy is plain immutable data: it is built from configuration by the
operator, and nothing at run time can change it. In particular a tool's output
is data for the model, never input to the policy; the only thing a policy
looks at is the name and arguments of the call being decided.

Argument patterns
    The key is a path into the arguments: ``path``, ``options.mode``,
    ``urls.0`` or ``urls.*`` (every element of a list, every value of an
    object). The value is a glob (``fnmatch``: ``*``, ``?``, ``[...]``;
    ``*`` also matches ``/``), or a regular expression when written
    ``re:...``, matched in full. Strings are matched as they are; other values
    as their JSON text (``true``, ``3``, ``null``).

    A rule that allows needs every selected value to match (and at least
    one to exist); a rule that denies or asks for approval triggers when any
    selected value matches. So ``urls.*`` in an allow rule cannot be
    satisfied by one good URL among bad ones, and in a deny rule one bad URL
    is enough.

    Patterns see arguments as the model wrote them: ``notes/../secret`` matches
    ``notes/*``. Confinement is the tools' job (the workspace refuses escapes);
    rules narrow what is allowed within it.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from kernos import errors

__all__ = ["Action", "Decision", "Rule", "ToolPolicy", "strictest"]


class Action(StrEnum):
    """What a policy says about a tool call."""

    ALLOW = "allow"
    """The call runs."""
    NEEDS_APPROVAL = "needs_approval"
    """The call waits for a human to approve it."""
    DENY = "deny"
    """The call does not run; the model is told it was refused."""


_SEVERITY = {Action.ALLOW: 0, Action.NEEDS_APPROVAL: 1, Action.DENY: 2}


def _matcher(pattern: str) -> re.Pattern[str]:
    source = pattern[3:] if pattern.startswith("re:") else fnmatch.translate(pattern)
    try:
        return re.compile(source, re.DOTALL)
    except re.error as exc:
        raise errors.ConfigError(f"invalid pattern {pattern!r}: {exc}", pattern=pattern) from exc


@dataclass(frozen=True, slots=True)
class Rule:
    """One line of a policy.

    Args:
        tool: a glob over tool names (``"*"``, ``"write_*"``, ``"fetch"``).
        action: what to do with a matching call.
        arguments: argument path -> pattern; every one must match (see the
            module documentation for paths, patterns and any/all).
        reason: why, shown to the model when the call is refused.

    Raises:
        ConfigError: an invalid pattern or action.
    """

    tool: str
    action: Action
    arguments: Mapping[str, str] = field(default_factory=dict)
    reason: str = ""
    _compiled: tuple[tuple[tuple[str, ...], re.Pattern[str]], ...] = field(
        init=False, repr=False, compare=False
    )
    _tool: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            action = Action(self.action)
        except ValueError:
            raise errors.ConfigError(
                f"unknown action {self.action!r}: use allow, deny or needs_approval",
                action=str(self.action),
            ) from None
        frozen = MappingProxyType({str(k): str(v) for k, v in dict(self.arguments).items()})
        compiled = tuple((tuple(key.split(".")), _matcher(value)) for key, value in frozen.items())
        object.__setattr__(self, "action", action)
        object.__setattr__(self, "arguments", frozen)
        object.__setattr__(self, "_compiled", compiled)
        object.__setattr__(self, "_tool", _matcher(self.tool))

    def __hash__(self) -> int:
        return hash((self.tool, self.action, tuple(self.arguments.items()), self.reason))

    def __reduce__(self) -> tuple[Any, ...]:
        # The read-only view of the arguments does not pickle; the dict does.
        return (type(self), (self.tool, self.action, dict(self.arguments), self.reason))

    def matches(self, tool_name: str, arguments: Mapping[str, Any]) -> bool:
        """Whether this rule applies to a call of ``tool_name`` with ``arguments``."""
        if not self._tool.fullmatch(tool_name):
            return False
        every = self.action is Action.ALLOW
        for path, pattern in self._compiled:
            values = [_text(value) for value in _select(arguments, path)]
            if not values:
                return False
            hits = (pattern.fullmatch(value) is not None for value in values)
            if not (all(hits) if every else any(hits)):
                return False
        return True

    def describe(self) -> str:
        """The rule in one line, e.g. ``deny write_file path=secrets/*``."""
        conditions = "".join(f" {key}={value}" for key, value in self.arguments.items())
        return f"{self.action.value} {self.tool}{conditions}"


@dataclass(frozen=True, slots=True)
class Decision:
    """A policy's answer for one call.

    Attributes:
        action: allow, deny or needs_approval.
        rule: the rule that decided, or None when the default did.
        reason: why, in words fit for the model and the audit trail.
    """

    action: Action
    rule: Rule | None
    reason: str

    @property
    def allowed(self) -> bool:
        """Whether the call may run without approval."""
        return self.action is Action.ALLOW


@dataclass(frozen=True, slots=True)
class ToolPolicy:
    """Ordered rules and a default: the first matching rule decides.

    Args:
        rules: the rules, in order.
        default: the action when no rule matches (deny unless told).
        name: a label for messages and the audit trail (``"tenant acme"``).

    Raises:
        ConfigError: a rule or the default is invalid.
    """

    rules: tuple[Rule, ...] = ()
    default: Action = Action.DENY
    name: str = "policy"

    def __post_init__(self) -> None:
        rules = tuple(self.rules)
        for rule in rules:
            if not isinstance(rule, Rule):
                raise errors.ConfigError(f"{self.name}: {rule!r} is not a Rule")
        try:
            default = Action(self.default)
        except ValueError:
            raise errors.ConfigError(
                f"{self.name}: unknown default {self.default!r}", action=str(self.default)
            ) from None
        object.__setattr__(self, "rules", rules)
        object.__setattr__(self, "default", default)

    @classmethod
    def allow_all(cls, name: str = "allow all") -> ToolPolicy:
        """A policy allowing every call (for tests and trusted tools)."""
        return cls(default=Action.ALLOW, name=name)

    def decide(self, tool_name: str, arguments: Mapping[str, Any] | None = None) -> Decision:
        """Decide on one call.

        Args:
            tool_name: the tool the model called.
            arguments: the arguments it gave (as parsed from its JSON).

        Returns:
            The first matching rule's decision, or the default's.
        """
        arguments = arguments or {}
        for index, rule in enumerate(self.rules):
            if rule.matches(tool_name, arguments):
                reason = rule.reason or f"{self.name} rule {index + 1}: {rule.describe()}"
                return Decision(rule.action, rule, reason)
        return Decision(self.default, None, f"{self.name}: {self.default.value} by default")


def strictest(decisions: Iterable[Decision]) -> Decision:
    """The most restrictive of several decisions (deny, then approval, then allow).

    Use it to combine layers, e.g. a tenant's policy and an agent's: each may
    only narrow what the other allows. Ties go to the first.

    Raises:
        ValueError: no decisions.
    """
    chosen: Decision | None = None
    for decision in decisions:
        if chosen is None or _SEVERITY[decision.action] > _SEVERITY[chosen.action]:
            chosen = decision
    if chosen is None:
        raise ValueError("strictest() needs at least one decision")
    return chosen


def _select(value: Any, path: tuple[str, ...]) -> Iterator[Any]:
    if not path:
        yield value
        return
    key, rest = path[0], path[1:]
    if isinstance(value, Mapping):
        if key == "*":
            for item in value.values():
                yield from _select(item, rest)
        elif key in value:
            yield from _select(value[key], rest)
    elif isinstance(value, list | tuple):
        if key == "*":
            for item in value:
                yield from _select(item, rest)
        elif key.isdigit() and int(key) < len(value):
            yield from _select(value[int(key)], rest)


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
