"""Policy documents: a tenant's tool policy and budgets, written as YAML.

A document is versioned by its ``version`` key (the schema's version, 1 today)
and, once applied, by the store (each tenant's documents are numbered 1, 2, 3,
...). The schema::

    version: 1                  # required: the schema version
    default: deny               # allow | deny | needs_approval (default: deny)
    approvers: {...}            # who approves when the default is needs_approval
    budgets:                    # limits on each agent run (the tighter limit wins)
      tenant: {cost_usd: 5, tokens: 2000000, turns: 40, wall_time_s: 600}
      agents:
        researcher: {cost_usd: 2, tokens: 200000, turns: 40}
    rules:                      # in order: the first rule that matches decides
      - id: shell-rm-needs-ops  # optional, unique: named in decisions and `policy test`
        tools: [shell]          # required: tool-name globs (a string or a list)
        arguments:              # optional: argument path -> glob, or re:regex
          command: "re:.*rm .*"
        agents: ["*"]           # optional context globs (a string or a list);
        workflows: ["agent:*"]  #   empty or absent: any
        tenants: [acme]
        models: ["openai:*"]
        when: {cost_usd_over: 1.0, tokens_over: 50000}   # optional: spent so far, strictly above
        action: needs_approval  # required: allow | deny | needs_approval
        reason: rm needs an operator   # optional: told to the model and recorded
        approvers:              # optional, needs_approval only
          roles: [operator]     # roles (viewer, operator, admin) and/or
          users: [alice]        #   usernames; at least one of the two
          timeout: 3600         # seconds the first level waits
          escalate:             # later levels, each after the previous deadline
            - {to: {roles: [admin]}, after: 7200}
          default: reject       # after the last level: reject | approve | fail

Argument patterns, the any/all rule for lists and how an unknown context value
fails closed are those of :class:`~kernos.tools.ToolPolicy`. Argument patterns
that YAML reads as numbers, booleans or null match the JSON text of the value
(``network: false`` matches ``false``).

Budgets: ``tenant`` limits every agent run of the tenant, ``agents.NAME`` the
runs of that agent; both bind, as does the agent's own budget, and the tightest
limit of each kind wins. They are per run, not totals over the tenant.

Every problem is reported with where it is, as ``FILE:LINE:COLUMN: PATH:
MESSAGE`` (``policy.yaml:12:5: rules[2].action: 'maybe' is not one of allow,
deny, needs_approval``); unknown keys are errors and suggest the closest known
one; bad regular expressions and globs are errors.
"""

from __future__ import annotations

import difflib
import hashlib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import yaml

from kernos import errors
from kernos.records import Role
from kernos.tools._policy import (
    Action,
    ApprovalDefault,
    Approvers,
    Escalation,
    Rule,
    ToolPolicy,
)

__all__ = [
    "SCHEMA_VERSION",
    "BudgetLimits",
    "PolicyBudgets",
    "PolicyDocument",
    "PolicyProblem",
    "check_policy",
    "parse_policy",
    "policy_error",
    "policy_sha256",
]

SCHEMA_VERSION = 1
"""The policy schema version this code reads."""

Path = tuple[str | int, ...]

_TOP = ("version", "default", "approvers", "budgets", "rules")
_RULE = (
    "id",
    "tools",
    "arguments",
    "agents",
    "workflows",
    "tenants",
    "models",
    "when",
    "action",
    "reason",
    "approvers",
)
_CONTEXT = ("agents", "workflows", "tenants", "models")
_WHEN = ("cost_usd_over", "tokens_over")
_LIMITS = ("cost_usd", "tokens", "turns", "wall_time_s")
_INTEGER_LIMITS = {"tokens", "turns"}
_APPROVERS = ("roles", "users", "timeout", "escalate", "default")
_ACTIONS = ", ".join(sorted(action.value for action in Action))
_DEFAULTS = ", ".join(default.value for default in ApprovalDefault)
_ROLES = ", ".join(role.value for role in Role)


@dataclass(frozen=True, kw_only=True, slots=True)
class PolicyProblem:
    """One thing wrong with a policy document, and where.

    Attributes:
        source: the document's name.
        line: 1-based line.
        column: 1-based column.
        path: where in the document, e.g. ``rules[2].action`` ("" for the whole).
        message: what is wrong and what to write instead.
    """

    source: str
    line: int
    column: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return f"{self.source}:{self.line}:{self.column}: {where}{self.message}"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        return {
            "source": self.source,
            "line": self.line,
            "column": self.column,
            "path": self.path,
            "message": self.message,
        }


@dataclass(frozen=True, kw_only=True, slots=True)
class BudgetLimits:
    """Limits a policy puts on an agent run (None: no limit of that kind)."""

    cost_usd: float | None = None
    tokens: int | None = None
    turns: int | None = None
    wall_time_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """The limits that are set."""
        return {name: getattr(self, name) for name in _LIMITS if getattr(self, name) is not None}


@dataclass(frozen=True, kw_only=True, slots=True)
class PolicyBudgets:
    """A policy's budgets: for every run of the tenant, and per agent name."""

    tenant: BudgetLimits | None = None
    agents: Mapping[str, BudgetLimits] = field(default_factory=dict)

    def for_agent(self, agent: str) -> list[BudgetLimits]:
        """The limits that bind a run of ``agent`` (the tenant's, then the agent's)."""
        found = [self.tenant] if self.tenant is not None else []
        if agent in self.agents:
            found.append(self.agents[agent])
        return found


@dataclass(frozen=True, kw_only=True, slots=True)
class PolicyDocument:
    """A parsed, valid policy document.

    Attributes:
        policy: the tool policy its default and rules make.
        budgets: its budgets.
        text: the document as written.
        sha256: hex SHA-256 of ``text`` (UTF-8).
        source: the name it was read from.
    """

    policy: ToolPolicy
    budgets: PolicyBudgets
    text: str
    sha256: str
    source: str


def policy_sha256(text: str) -> str:
    """The hex SHA-256 a document is identified by."""
    return hashlib.sha256(text.encode()).hexdigest()


def check_policy(text: str, *, source: str = "policy.yaml") -> list[PolicyProblem]:
    """Every problem in a policy document, in document order (empty: it is valid)."""
    return _Reader(text, source).read()[1]


def parse_policy(text: str, *, source: str = "policy.yaml", name: str = "policy") -> PolicyDocument:
    """Parse and validate a policy document.

    Args:
        text: the YAML.
        source: its name in problem locations (a file name).
        name: the policy's label in decisions (``"tenant acme policy v3"``).

    Returns:
        The document, with its tool policy and budgets.

    Raises:
        PolicyError: the document is invalid; ``problems`` locates each problem.
    """
    reader = _Reader(text, source)
    data, problems = reader.read()
    if problems:
        raise policy_error(source, problems)
    lines = [reader.values[("rules", index)][0] for index in range(len(data.get("rules") or []))]
    return _build(data, text, source, name, lines)


def policy_error(source: str, problems: list[PolicyProblem]) -> errors.PolicyError:
    """The error for an invalid document: one line per problem after a summary."""
    count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
    lines = "\n".join(str(problem) for problem in problems)
    return errors.PolicyError(
        f"{source} is not a valid policy ({count}):\n{lines}",
        source=source,
        problems=[problem.to_dict() for problem in problems],
        errors=[
            {
                "loc": ["body", *_split(problem.path)],
                "msg": f"{problem.line}:{problem.column}: {problem.message}",
                "type": "policy_invalid",
            }
            for problem in problems
        ],
    )


# -- reading and validating ------------------------------------------------------------


class _Reader:
    """Validates the document's data, locating each problem by the composed YAML nodes."""

    def __init__(self, text: str, source: str) -> None:
        self.text = text
        self.source = source
        self.problems: list[PolicyProblem] = []
        self.values: dict[Path, tuple[int, int]] = {}
        self.keys: dict[Path, tuple[int, int]] = {}

    def read(self) -> tuple[Any, list[PolicyProblem]]:
        try:
            node = yaml.compose(self.text, Loader=yaml.SafeLoader)
            data = yaml.safe_load(self.text)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line, column = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
            what = " ".join(part for part in (exc.context, exc.problem) if part)
            self._at(line, column, (), f"not valid YAML: {what}")
            return None, self.problems
        except yaml.YAMLError as exc:
            self._at(1, 1, (), f"not valid YAML: {exc}")
            return None, self.problems
        if node is None:
            self._at(1, 1, (), f"the document is empty: start it with 'version: {SCHEMA_VERSION}'")
            return None, self.problems
        self._mark(node, ())
        self._document(data)
        self.problems.sort(key=lambda p: (p.line, p.column))
        return data, self.problems

    # -- locations -------------------------------------------------------------------

    def _mark(self, node: yaml.Node, path: Path) -> None:
        self.values[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
        if isinstance(node, yaml.MappingNode):
            seen: set[Any] = set()
            for key_node, value_node in node.value:
                key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
                child = (*path, str(key))
                if key in seen:
                    self._at(
                        key_node.start_mark.line + 1,
                        key_node.start_mark.column + 1,
                        child,
                        f"{key!r} is given twice; keep one",
                    )
                seen.add(key)
                self.keys[child] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
                self._mark(value_node, child)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self._mark(item, (*path, index))

    def _at(self, line: int, column: int, path: Path, message: str) -> None:
        self.problems.append(
            PolicyProblem(
                source=self.source, line=line, column=column, path=_render(path), message=message
            )
        )

    def problem(self, path: Path, message: str, *, key: bool = False) -> None:
        where = (self.keys if key else self.values).get(path)
        probe = path
        while where is None and probe:
            probe = probe[:-1]
            where = self.values.get(probe)
        line, column = where or (1, 1)
        self._at(line, column, path, message)

    # -- shapes ----------------------------------------------------------------------

    def mapping(self, value: Any, path: Path, allowed: tuple[str, ...]) -> dict[str, Any] | None:
        if not isinstance(value, dict):
            self.problem(path, f"must be a mapping of {', '.join(allowed)}, not {_kind(value)}")
            return None
        for key in value:
            if str(key) not in allowed:
                self.problem((*path, str(key)), _unknown(str(key), allowed), key=True)
        return {str(key): item for key, item in value.items()}

    def string(self, value: Any, path: Path) -> str | None:
        if not isinstance(value, str) or not value:
            self.problem(path, f"must be a non-empty string, not {_kind(value)}")
            return None
        return value

    def globs(self, value: Any, path: Path) -> tuple[str, ...]:
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not items:
            self.problem(path, f"must be a glob or a non-empty list of globs, not {_kind(value)}")
            return ()
        found = []
        for index, item in enumerate(items):
            where = path if isinstance(value, str) else (*path, index)
            text = self.string(item, where)
            if text is not None and self.pattern(text, where, glob_only=True):
                found.append(text)
        return tuple(found)

    def pattern(self, text: str, path: Path, *, glob_only: bool = False) -> bool:
        if text.startswith("re:") and not glob_only:
            try:
                re.compile(text[3:])
            except re.error as exc:
                self.problem(path, f"bad regular expression {text[3:]!r}: {exc}")
                return False
            return True
        if text.count("[") != text.count("]"):
            self.problem(path, f"bad glob {text!r}: unbalanced '[' ... ']'")
            return False
        return True

    def number(
        self, value: Any, path: Path, *, integer: bool = False, positive: bool = True
    ) -> float | None:
        kinds = (int,) if integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, kinds) or not math.isfinite(value):
            what = "an integer" if integer else "a number"
            self.problem(path, f"must be {what}, not {_kind(value)}")
            return None
        if value < 0 or (positive and value == 0):
            self.problem(path, f"must be {'positive' if positive else 'zero or more'}, not {value}")
            return None
        return value

    def choice(self, value: Any, path: Path, choices: str) -> str | None:
        if not isinstance(value, str) or value not in choices.split(", "):
            self.problem(path, f"{value!r} is not one of {choices}")
            return None
        return value

    # -- the document ------------------------------------------------------------------

    def _document(self, data: Any) -> None:
        top = self.mapping(data, (), _TOP)
        if top is None:
            return
        if "version" not in top:
            self.problem(
                (), f"'version' is missing: start the document with 'version: {SCHEMA_VERSION}'"
            )
        elif top["version"] != SCHEMA_VERSION or isinstance(top["version"], bool):
            self.problem(
                ("version",),
                f"{top['version']!r} is not a schema version Kernos reads: use {SCHEMA_VERSION}",
            )
        default = top.get("default", Action.DENY.value)
        if "default" in top:
            self.choice(default, ("default",), _ACTIONS)
        if "approvers" in top:
            if default != Action.NEEDS_APPROVAL.value:
                self.problem(
                    ("approvers",),
                    "approvers at the top apply only with 'default: needs_approval'",
                    key=True,
                )
            self._approvers(top["approvers"], ("approvers",))
        if "budgets" in top:
            self._budgets(top["budgets"], ("budgets",))
        rules = top.get("rules", [])
        if rules is None:
            rules = []
        if not isinstance(rules, list):
            self.problem(("rules",), f"must be a list of rules, not {_kind(rules)}")
            return
        ids: dict[str, int] = {}
        for index, rule in enumerate(rules):
            self._rule(rule, ("rules", index), ids)

    def _budgets(self, value: Any, path: Path) -> None:
        budgets = self.mapping(value, path, ("tenant", "agents"))
        if budgets is None:
            return
        if "tenant" in budgets:
            self._limits(budgets["tenant"], (*path, "tenant"))
        if "agents" in budgets:
            agents = budgets["agents"]
            if not isinstance(agents, dict):
                self.problem(
                    (*path, "agents"), f"must map agent names to limits, not {_kind(agents)}"
                )
                return
            for name, limits in agents.items():
                self._limits(limits, (*path, "agents", str(name)))

    def _limits(self, value: Any, path: Path) -> None:
        limits = self.mapping(value, path, _LIMITS)
        if limits is None:
            return
        for name, limit in limits.items():
            if name in _LIMITS:
                self.number(limit, (*path, name), integer=name in _INTEGER_LIMITS)

    def _rule(self, value: Any, path: Path, ids: dict[str, int]) -> None:
        rule = self.mapping(value, path, _RULE)
        if rule is None:
            return
        if "id" in rule:
            rule_id = self.string(rule["id"], (*path, "id"))
            if rule_id is not None:
                if rule_id in ids:
                    self.problem(
                        (*path, "id"), f"{rule_id!r} is already the id of rules[{ids[rule_id]}]"
                    )
                ids.setdefault(rule_id, int(path[-1]))
        for required in ("tools", "action"):
            if required not in rule:
                self.problem(path, f"{required!r} is missing")
        if "tools" in rule:
            self.globs(rule["tools"], (*path, "tools"))
        action = (
            self.choice(rule["action"], (*path, "action"), _ACTIONS) if "action" in rule else None
        )
        for name in _CONTEXT:
            if name in rule:
                self.globs(rule[name], (*path, name))
        if "arguments" in rule:
            self._arguments(rule["arguments"], (*path, "arguments"))
        if "when" in rule:
            when = self.mapping(rule["when"], (*path, "when"), _WHEN)
            for name, limit in (when or {}).items():
                if name in _WHEN:
                    self.number(
                        limit, (*path, "when", name), integer=name == "tokens_over", positive=False
                    )
        if "reason" in rule and not isinstance(rule["reason"], str):
            self.problem((*path, "reason"), f"must be a string, not {_kind(rule['reason'])}")
        if "approvers" in rule:
            if action is not None and action != Action.NEEDS_APPROVAL.value:
                self.problem(
                    (*path, "approvers"),
                    f"approvers only go with 'action: needs_approval', not {action!r}",
                    key=True,
                )
            self._approvers(rule["approvers"], (*path, "approvers"))

    def _arguments(self, value: Any, path: Path) -> None:
        if not isinstance(value, dict) or not value:
            self.problem(path, f"must map argument paths to patterns, not {_kind(value)}")
            return
        for key, pattern in value.items():
            where = (*path, str(key))
            if not isinstance(key, str) or not key or "" in key.split("."):
                self.problem(
                    where,
                    f"{key!r} is not an argument path (e.g. path, options.mode, urls.*)",
                    key=True,
                )
            if isinstance(pattern, dict | list):
                self.problem(
                    where, f"must be a pattern (a glob, or re:regex), not {_kind(pattern)}"
                )
            elif isinstance(pattern, str):
                self.pattern(pattern, where)

    def _approvers(self, value: Any, path: Path) -> None:
        approvers = self.mapping(value, path, _APPROVERS)
        if approvers is None:
            return
        self._deciders(approvers, path)
        if "timeout" in approvers:
            self.number(approvers["timeout"], (*path, "timeout"))
        if "default" in approvers:
            self.choice(approvers["default"], (*path, "default"), _DEFAULTS)
        escalate = approvers.get("escalate")
        if escalate is None:
            return
        if "timeout" not in approvers:
            self.problem(
                (*path, "escalate"), "escalation needs a 'timeout' for the first level", key=True
            )
        if not isinstance(escalate, list) or not escalate:
            self.problem(
                (*path, "escalate"), f"must be a non-empty list of steps, not {_kind(escalate)}"
            )
            return
        for index, step in enumerate(escalate):
            where = (*path, "escalate", index)
            level = self.mapping(step, where, ("to", "after"))
            if level is None:
                continue
            for required in ("to", "after"):
                if required not in level:
                    self.problem(where, f"{required!r} is missing")
            if "after" in level:
                self.number(level["after"], (*where, "after"))
            if "to" in level:
                to = self.mapping(level["to"], (*where, "to"), ("roles", "users"))
                if to is not None:
                    self._deciders(to, (*where, "to"))

    def _deciders(self, value: dict[str, Any], path: Path) -> None:
        if not value.get("roles") and not value.get("users"):
            self.problem(path, "name at least one of 'roles' or 'users'")
        for name in ("roles", "users"):
            if name not in value:
                continue
            items = value[name]
            items = [items] if isinstance(items, str) else items
            if not isinstance(items, list):
                self.problem((*path, name), f"must be a list of names, not {_kind(items)}")
                continue
            for index, item in enumerate(items):
                where = (*path, name, index) if isinstance(value[name], list) else (*path, name)
                if name == "roles":
                    self.choice(item, where, _ROLES)
                else:
                    self.string(item, where)


# -- building -------------------------------------------------------------------------------


def _build(
    data: dict[str, Any], text: str, source: str, name: str, lines: list[int]
) -> PolicyDocument:
    rules = tuple(
        _build_rule(rule, line) for rule, line in zip(data.get("rules") or [], lines, strict=True)
    )
    top_approvers = data.get("approvers")
    policy = ToolPolicy(
        rules=rules,
        default=Action(data.get("default", Action.DENY.value)),
        name=name,
        approvers=_build_approvers(top_approvers) if top_approvers is not None else None,
    )
    budgets = data.get("budgets") or {}
    tenant = budgets.get("tenant")
    return PolicyDocument(
        policy=policy,
        budgets=PolicyBudgets(
            tenant=BudgetLimits(**tenant) if tenant is not None else None,
            agents=MappingProxyType(
                {
                    str(agent): BudgetLimits(**limits)
                    for agent, limits in (budgets.get("agents") or {}).items()
                }
            ),
        ),
        text=text,
        sha256=policy_sha256(text),
        source=source,
    )


def _build_rule(rule: dict[str, Any], line: int) -> Rule:
    tools = _tuple(rule["tools"])
    when = rule.get("when") or {}
    approvers = rule.get("approvers")
    arguments = {
        str(key): _pattern_text(value) for key, value in (rule.get("arguments") or {}).items()
    }
    return Rule(
        tools[0],
        Action(rule["action"]),
        arguments,
        rule.get("reason", ""),
        tools=tools[1:],
        agents=_tuple(rule.get("agents")),
        workflows=_tuple(rule.get("workflows")),
        tenants=_tuple(rule.get("tenants")),
        models=_tuple(rule.get("models")),
        cost_usd_over=when.get("cost_usd_over"),
        tokens_over=when.get("tokens_over"),
        approvers=_build_approvers(approvers) if approvers is not None else None,
        id=str(rule.get("id", "")),
        line=line,
    )


def _build_approvers(value: dict[str, Any]) -> Approvers:
    return Approvers(
        roles=_tuple(value.get("roles")),
        users=_tuple(value.get("users")),
        timeout=value.get("timeout"),
        escalate=tuple(
            Escalation(
                after=float(step["after"]),
                roles=_tuple(step["to"].get("roles")),
                users=_tuple(step["to"].get("users")),
            )
            for step in value.get("escalate") or []
        ),
        default=ApprovalDefault(value.get("default", ApprovalDefault.REJECT.value)),
    )


def _tuple(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(str(item) for item in value)


def _pattern_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    # What the policy matches a non-string argument against: its JSON text.
    return (
        "null"
        if value is None
        else "true"
        if value is True
        else "false"
        if value is False
        else str(value)
    )


def _render(path: Path) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def _split(path: str) -> list[str | int]:
    parts: list[str | int] = []
    for name, index in re.findall(r"([^.\[\]]+)|\[(\d+)\]", path):
        parts.append(int(index) if index else name)
    return parts


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"the string {value!r}"
    return f"{type(value).__name__} {value!r}"


def _unknown(key: str, allowed: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(allowed)}"
    return f"unknown key {key!r}; {hint}"
