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

Context
    A rule may also name the agents, workflows, tenants and models it applies
    to (globs; empty means any) and thresholds on what the run has spent so
    far (``cost_usd_over``, ``tokens_over``: strictly above). They are matched
    against the :class:`CallContext` of the call. A context value that is not
    known (``None``, e.g. when deciding with ``decide(tool_name, arguments)``)
    fails closed: an allow rule that names it does not apply, a deny or
    approval rule does.

Approvers
    A ``needs_approval`` rule may say who approves (:class:`Approvers`: roles
    and/or named users, a timeout, escalation steps and the default taken at
    the end); the decision carries them to the approval gate.

Policies are also written as YAML documents, versioned per tenant in the
store: see :mod:`kernos.tools._policy_yaml`.
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

__all__ = [
    "Action",
    "ApprovalDefault",
    "Approvers",
    "CallContext",
    "Decision",
    "Escalation",
    "Rule",
    "ToolPolicy",
    "strictest",
]


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


class ApprovalDefault(StrEnum):
    """What an approval request becomes when its last timeout passes undecided."""

    REJECT = "reject"
    """The call is refused."""
    APPROVE = "approve"
    """The call runs."""
    FAIL = "fail"
    """The run fails."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Escalation:
    """One escalation step of an approval request.

    Args:
        after: seconds after the previous level's deadline that this level waits.
        roles: roles that may decide at this level (``operator``, ``admin``).
        users: usernames that may decide at this level.
    """

    after: float
    roles: tuple[str, ...] = ()
    users: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: ``{"to": {"roles": [...], "users": [...]}, "after": s}``."""
        return {"to": {"roles": list(self.roles), "users": list(self.users)}, "after": self.after}


@dataclass(frozen=True, kw_only=True, slots=True)
class Approvers:
    """Who may approve a call a rule sends for approval, and what happens if nobody does.

    Args:
        roles: roles that may decide (a role includes the ones above it).
        users: usernames that may decide.
        timeout: seconds the first level waits (None: no timeout).
        escalate: the next levels, in order.
        default: what the request becomes after the last level's wait.
    """

    roles: tuple[str, ...] = ()
    users: tuple[str, ...] = ()
    timeout: float | None = None
    escalate: tuple[Escalation, ...] = ()
    default: ApprovalDefault = ApprovalDefault.REJECT

    def __post_init__(self) -> None:
        try:
            default = ApprovalDefault(self.default)
        except ValueError:
            raise errors.ConfigError(
                f"unknown approval default {self.default!r}: use reject, approve or fail",
                default=str(self.default),
            ) from None
        object.__setattr__(self, "default", default)
        object.__setattr__(self, "roles", tuple(self.roles))
        object.__setattr__(self, "users", tuple(self.users))
        object.__setattr__(self, "escalate", tuple(self.escalate))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict in the shape of the YAML ``approvers`` block."""
        return {
            "roles": list(self.roles),
            "users": list(self.users),
            "timeout": self.timeout,
            "escalate": [step.to_dict() for step in self.escalate],
            "default": ApprovalDefault(self.default).value,
        }


@dataclass(frozen=True, kw_only=True, slots=True)
class CallContext:
    """Everything a policy may look at when deciding on one tool call.

    Attributes:
        tool: the tool the model called.
        arguments: the arguments it gave.
        agent: the calling agent's name (None: not known).
        workflow: the run's workflow (None: not known).
        tenant: the run's tenant (None: not known).
        model: the agent's model, ``provider:model`` (None: not known).
        cost_usd: US dollars the run's agent has spent so far.
        tokens: tokens the run's agent has spent so far.
    """

    tool: str
    arguments: Mapping[str, Any] = field(default_factory=dict)
    agent: str | None = None
    workflow: str | None = None
    tenant: str | None = None
    model: str | None = None
    cost_usd: float = 0.0
    tokens: int = 0


_CONTEXT_FIELDS = (
    ("agents", "agent"),
    ("workflows", "workflow"),
    ("tenants", "tenant"),
    ("models", "model"),
)


@dataclass(frozen=True, slots=True)
class Rule:
    """One line of a policy.

    Args:
        tool: a glob over tool names (``"*"``, ``"write_*"``, ``"fetch"``).
        action: what to do with a matching call.
        arguments: argument path -> pattern; every one must match (see the
            module documentation for paths, patterns and any/all).
        reason: why, shown to the model when the call is refused.
        tools: more tool-name globs; the rule applies to a name matching any.
        agents: agent-name globs (empty: any agent).
        workflows: workflow-name globs (empty: any workflow).
        tenants: tenant-id globs (empty: any tenant).
        models: model globs, e.g. ``openai:*`` (empty: any model).
        cost_usd_over: applies only once the run has spent more than this.
        tokens_over: applies only once the run has spent more tokens than this.
        approvers: who approves (``needs_approval`` rules only).
        id: a name for the rule, shown in decisions (``shell-needs-ops``).
        line: the line of the policy document the rule was written on.

    Raises:
        ConfigError: an invalid pattern or action, or approvers on a rule that
            does not ask for approval.
    """

    tool: str
    action: Action
    arguments: Mapping[str, str] = field(default_factory=dict)
    reason: str = ""
    tools: tuple[str, ...] = ()
    agents: tuple[str, ...] = ()
    workflows: tuple[str, ...] = ()
    tenants: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    cost_usd_over: float | None = None
    tokens_over: int | None = None
    approvers: Approvers | None = None
    id: str = ""
    line: int | None = field(default=None, compare=False)
    _compiled: tuple[tuple[tuple[str, ...], re.Pattern[str]], ...] = field(
        init=False, repr=False, compare=False
    )
    _tool: re.Pattern[str] = field(init=False, repr=False, compare=False)
    _context: tuple[tuple[str, tuple[re.Pattern[str], ...]], ...] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        try:
            action = Action(self.action)
        except ValueError:
            raise errors.ConfigError(
                f"unknown action {self.action!r}: use allow, deny or needs_approval",
                action=str(self.action),
            ) from None
        if self.approvers is not None and action is not Action.NEEDS_APPROVAL:
            raise errors.ConfigError(
                f"rule {self.id or self.tool!r}: approvers only go with needs_approval",
                action=action.value,
            )
        frozen = MappingProxyType({str(k): str(v) for k, v in dict(self.arguments).items()})
        compiled = tuple((tuple(key.split(".")), _matcher(value)) for key, value in frozen.items())
        globs = (self.tool, *self.tools)
        tool = re.compile("|".join(f"(?:{_matcher(glob).pattern})" for glob in globs), re.DOTALL)
        context = tuple(
            (attribute, tuple(_matcher(glob) for glob in getattr(self, name)))
            for name, attribute in _CONTEXT_FIELDS
            if getattr(self, name)
        )
        object.__setattr__(self, "action", action)
        object.__setattr__(self, "arguments", frozen)
        for name, _ in _CONTEXT_FIELDS:
            object.__setattr__(self, name, tuple(getattr(self, name)))
        object.__setattr__(self, "tools", tuple(self.tools))
        object.__setattr__(self, "_compiled", compiled)
        object.__setattr__(self, "_tool", tool)
        object.__setattr__(self, "_context", context)

    def __hash__(self) -> int:
        return hash((self.tool, self.action, tuple(self.arguments.items()), self.reason, self.id))

    def __reduce__(self) -> tuple[Any, ...]:
        # The read-only view of the arguments does not pickle; the dict does.
        return (_rebuild_rule, (self._fields(),))

    def _fields(self) -> dict[str, Any]:
        fields = {name: getattr(self, name) for name in _RULE_FIELDS}
        fields["arguments"] = dict(self.arguments)
        return fields

    def matches(
        self, tool_name: str | CallContext, arguments: Mapping[str, Any] | None = None
    ) -> bool:
        """Whether this rule applies to a call (a :class:`CallContext`, or a tool
        name and arguments with the rest of the context unknown)."""
        call = _context_of(tool_name, arguments)
        if not self._tool.fullmatch(call.tool):
            return False
        every = self.action is Action.ALLOW
        if not self._context_matches(call, every):
            return False
        arguments = call.arguments
        for path, pattern in self._compiled:
            values = [_text(value) for value in _select(arguments, path)]
            if not values:
                return False
            hits = (pattern.fullmatch(value) is not None for value in values)
            if not (all(hits) if every else any(hits)):
                return False
        return True

    def _context_matches(self, call: CallContext, every: bool) -> bool:
        for attribute, globs in self._context:
            value = getattr(call, attribute)
            if value is None:
                if every:  # an allow rule cannot be satisfied by what is not known
                    return False
                continue
            if not any(glob.fullmatch(value) for glob in globs):
                return False
        if self.cost_usd_over is not None and not call.cost_usd > self.cost_usd_over:
            return False
        return self.tokens_over is None or call.tokens > self.tokens_over

    def describe(self) -> str:
        """The rule in one line, e.g. ``deny write_file path=secrets/*``."""
        conditions = "".join(f" {key}={value}" for key, value in self.arguments.items())
        for name, _ in _CONTEXT_FIELDS:
            if getattr(self, name):
                conditions += f" {name}={','.join(getattr(self, name))}"
        if self.cost_usd_over is not None:
            conditions += f" cost_usd>{self.cost_usd_over:g}"
        if self.tokens_over is not None:
            conditions += f" tokens>{self.tokens_over}"
        return f"{self.action.value} {','.join((self.tool, *self.tools))}{conditions}"


_RULE_FIELDS = (
    "tool",
    "action",
    "arguments",
    "reason",
    "tools",
    "agents",
    "workflows",
    "tenants",
    "models",
    "cost_usd_over",
    "tokens_over",
    "approvers",
    "id",
    "line",
)


def _rebuild_rule(fields: dict[str, Any]) -> Rule:
    return Rule(**fields)


def _context_of(call: str | CallContext, arguments: Mapping[str, Any] | None) -> CallContext:
    if isinstance(call, CallContext):
        return call
    return CallContext(tool=call, arguments=arguments or {})


@dataclass(frozen=True, slots=True)
class Decision:
    """A policy's answer for one call.

    Attributes:
        action: allow, deny or needs_approval.
        rule: the rule that decided, or None when the default did.
        reason: why, in words fit for the model and the audit trail.
        approvers: who may approve, for ``needs_approval`` (None: any operator).
        policy: the name of the policy that decided.
    """

    action: Action
    rule: Rule | None
    reason: str
    approvers: Approvers | None = None
    policy: str = ""

    @property
    def rule_id(self) -> str | None:
        """The deciding rule's id (None when the default decided or the rule has none)."""
        return (self.rule.id or None) if self.rule is not None else None

    @property
    def line(self) -> int | None:
        """The line of the policy document the deciding rule was written on, if known."""
        return self.rule.line if self.rule is not None else None

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
        approvers: who approves when the default is ``needs_approval``.

    Raises:
        ConfigError: a rule or the default is invalid.
    """

    rules: tuple[Rule, ...] = ()
    default: Action = Action.DENY
    name: str = "policy"
    approvers: Approvers | None = None

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

    def decide(
        self, tool_name: str | CallContext, arguments: Mapping[str, Any] | None = None
    ) -> Decision:
        """Decide on one call.

        Args:
            tool_name: the call's :class:`CallContext`, or just the tool the
                model called (the rest of the context is then unknown).
            arguments: the arguments it gave (as parsed from its JSON), with a
                tool name.

        Returns:
            The first matching rule's decision, or the default's.
        """
        call = _context_of(tool_name, arguments)
        for index, rule in enumerate(self.rules):
            if rule.matches(call):
                label = f"rule {rule.id!r}" if rule.id else f"rule {index + 1}"
                reason = rule.reason or f"{self.name} {label}: {rule.describe()}"
                return Decision(rule.action, rule, reason, rule.approvers, self.name)
        approvers = self.approvers if self.default is Action.NEEDS_APPROVAL else None
        reason = f"{self.name}: {self.default.value} by default"
        return Decision(self.default, None, reason, approvers, self.name)


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
