"""Policy documents: the schema, every problem located by line and column, and what
the rules they make decide."""

# ruff: noqa: E501  (the corpus compares whole error lines, which are long)

from __future__ import annotations

import pickle
import textwrap

import pytest

from kernos import errors
from kernos.tools import (
    Action,
    ApprovalDefault,
    Approvers,
    CallContext,
    Escalation,
    Rule,
    ToolPolicy,
    check_policy,
    parse_policy,
    policy_sha256,
    strictest,
)

FULL = """\
version: 1
default: deny
budgets:
  tenant: {cost_usd: 50, tokens: 2000000}
  agents: {researcher: {cost_usd: 2, tokens: 200000, turns: 40, wall_time_s: 600}}
rules:
  - id: shell-rm-needs-ops
    tools: ["shell"]
    arguments: {command: "re:.*rm .*"}
    agents: ["*"]
    models: ["openai:*"]
    when: {cost_usd_over: 1.0}
    action: needs_approval
    approvers:
      roles: [operator]
      users: [alice]
      timeout: 3600
      escalate: [{to: {roles: [admin]}, after: 7200}]
      default: reject
  - id: read-anything
    tools: [read_file, "list_*"]
    action: allow
  - tools: fetch
    arguments: {"urls.*": "https://docs.example.com/*", "options.follow": false}
    workflows: "agent:*"
    tenants: [acme]
    action: allow
    reason: docs only
"""


def test_a_full_document_parses_into_rules_budgets_and_approvers() -> None:
    document = parse_policy(FULL, name="tenant acme policy v1")
    assert document.sha256 == policy_sha256(FULL)
    policy = document.policy
    assert (policy.default, policy.name, len(policy.rules)) == (
        Action.DENY,
        "tenant acme policy v1",
        3,
    )
    first, second, third = policy.rules
    assert (first.id, first.line, first.tool, first.action) == (
        "shell-rm-needs-ops",
        7,
        "shell",
        Action.NEEDS_APPROVAL,
    )
    assert first.approvers == Approvers(
        roles=("operator",),
        users=("alice",),
        timeout=3600,
        escalate=(Escalation(after=7200, roles=("admin",)),),
        default=ApprovalDefault.REJECT,
    )
    assert (first.models, first.agents, first.cost_usd_over) == (("openai:*",), ("*",), 1.0)
    assert (second.tool, second.tools, second.line) == ("read_file", ("list_*",), 20)
    assert third.arguments == {"urls.*": "https://docs.example.com/*", "options.follow": "false"}
    assert (third.workflows, third.tenants, third.reason) == (("agent:*",), ("acme",), "docs only")
    budgets = document.budgets
    assert budgets.tenant is not None and budgets.tenant.to_dict() == {
        "cost_usd": 50,
        "tokens": 2000000,
    }
    assert [b.to_dict() for b in budgets.for_agent("researcher")] == [
        {"cost_usd": 50, "tokens": 2000000},
        {"cost_usd": 2, "tokens": 200000, "turns": 40, "wall_time_s": 600},
    ]
    assert budgets.for_agent("writer") == [budgets.tenant]
    assert first.approvers is not None and first.approvers.to_dict() == {
        "roles": ["operator"],
        "users": ["alice"],
        "timeout": 3600,
        "escalate": [{"to": {"roles": ["admin"], "users": []}, "after": 7200}],
        "default": "reject",
    }


def test_decisions_carry_the_rule_id_line_and_approvers() -> None:
    policy = parse_policy(FULL).policy
    call = CallContext(
        tool="shell",
        arguments={"command": "rm -rf /tmp/x"},
        agent="researcher",
        model="openai:gpt-4o-mini",
        cost_usd=1.5,
    )
    decision = policy.decide(call)
    assert decision.action is Action.NEEDS_APPROVAL
    assert (decision.rule_id, decision.line, decision.policy) == ("shell-rm-needs-ops", 7, "policy")
    assert decision.approvers is not None and decision.approvers.users == ("alice",)
    assert "shell-rm-needs-ops" in decision.reason
    # Below the spend threshold, under another model or without rm: the default (deny).
    for other in (
        CallContext(tool="shell", arguments={"command": "rm x"}, model="openai:x", cost_usd=1.0),
        CallContext(tool="shell", arguments={"command": "rm x"}, model="anthropic:x", cost_usd=9),
        CallContext(tool="shell", arguments={"command": "ls"}, model="openai:x", cost_usd=9),
    ):
        assert policy.decide(other).rule is None
    assert policy.decide("list_dir", {}).rule_id == "read-anything"
    assert policy.decide("list_dir", {}).approvers is None


def test_an_unknown_context_value_fails_closed() -> None:
    policy = ToolPolicy(
        rules=(
            Rule("t", Action.DENY, agents=("bad-*",)),
            Rule("u", Action.ALLOW, tenants=("acme",)),
        ),
        default=Action.NEEDS_APPROVAL,
    )
    # No agent known: the deny rule applies; no tenant known: the allow rule does not.
    assert policy.decide("t").action is Action.DENY
    assert policy.decide(CallContext(tool="t", agent="good")).action is Action.NEEDS_APPROVAL
    assert policy.decide(CallContext(tool="t", agent="bad-1")).action is Action.DENY
    assert policy.decide("u").action is Action.NEEDS_APPROVAL
    assert policy.decide(CallContext(tool="u", tenant="acme")).action is Action.ALLOW
    assert policy.decide(CallContext(tool="u", tenant="globex")).action is Action.NEEDS_APPROVAL


def test_spend_thresholds_are_strictly_above() -> None:
    rule = Rule("t", Action.DENY, cost_usd_over=1.0, tokens_over=100)
    assert not rule.matches(CallContext(tool="t", cost_usd=1.0, tokens=500))
    assert not rule.matches(CallContext(tool="t", cost_usd=2.0, tokens=100))
    assert rule.matches(CallContext(tool="t", cost_usd=1.01, tokens=101))


def test_the_default_approvers_and_ties_in_strictest() -> None:
    document = parse_policy(
        "version: 1\ndefault: needs_approval\napprovers: {users: [bob], timeout: 60}\n"
    )
    decision = document.policy.decide("anything")
    assert decision.approvers == Approvers(users=("bob",), timeout=60)
    agent = ToolPolicy(default=Action.NEEDS_APPROVAL, name="agent")
    # Ties go to the first: the tenant's decision (and its approvers) is put first.
    assert strictest([decision, agent.decide("anything")]) is decision


def test_rules_with_context_still_pickle_and_compare() -> None:
    rule = parse_policy(FULL).policy.rules[0]
    again = pickle.loads(pickle.dumps(rule))
    assert again == rule and again.line == rule.line and again.approvers == rule.approvers
    assert hash(again) == hash(rule)
    with pytest.raises(errors.ConfigError, match="approvers only go with needs_approval"):
        Rule("t", Action.ALLOW, approvers=Approvers(roles=("admin",)))
    with pytest.raises(errors.ConfigError, match="unknown approval default"):
        Approvers(default="maybe")  # type: ignore[arg-type]


def _problems(text: str) -> list[str]:
    return [str(problem) for problem in check_policy(textwrap.dedent(text))]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            """\
            version: 1
            rules:
              - tools: shell
                action: allow
              - tools: read_*
                action: allow
              - tools: write_*
                action: maybe
            """,
            [
                "policy.yaml:8:13: rules[2].action: 'maybe' is not one of allow, deny, needs_approval"
            ],
        ),
        (
            "version: 1\nrulez: []\n",
            ["policy.yaml:2:1: rulez: unknown key 'rulez'; did you mean 'rules'?"],
        ),
        (
            "version: 1\nrules:\n  - tools: x\n    acton: deny\n",
            [
                "policy.yaml:3:5: rules[0]: 'action' is missing",
                "policy.yaml:4:5: rules[0].acton: unknown key 'acton'; did you mean 'action'?",
            ],
        ),
        (
            "default: allow\n",
            ["policy.yaml:1:1: 'version' is missing: start the document with 'version: 1'"],
        ),
        (
            "version: 2\n",
            ["policy.yaml:1:10: version: 2 is not a schema version Kernos reads: use 1"],
        ),
        ("", ["policy.yaml:1:1: the document is empty: start it with 'version: 1'"]),
        (
            "- just\n- a list\n",
            [
                "policy.yaml:1:1: must be a mapping of version, default, approvers, budgets, rules, not a list"
            ],
        ),
        (
            "version: 1\nrules:\n  - tools: x\n    action: deny\n    arguments: {path: 're:(unclosed'}\n",
            [
                "policy.yaml:5:23: rules[0].arguments.path: bad regular expression '(unclosed': "
                "missing ), unterminated subpattern at position 0"
            ],
        ),
        (
            "version: 1\nrules:\n  - tools: ['ok', 'x[ab']\n    action: deny\n",
            ["policy.yaml:3:19: rules[0].tools[1]: bad glob 'x[ab': unbalanced '[' ... ']'"],
        ),
        (
            "version: 1\nrules:\n  - tools: []\n    action: deny\n",
            [
                "policy.yaml:3:12: rules[0].tools: must be a glob or a non-empty list of globs, not a list"
            ],
        ),
        (
            "version: 1\nrules:\n  - tools: x\n    action: allow\n    approvers: {roles: [operator]}\n",
            [
                "policy.yaml:5:5: rules[0].approvers: approvers only go with 'action: needs_approval', not 'allow'"
            ],
        ),
        (
            "version: 1\nrules:\n  - tools: x\n    action: needs_approval\n"
            "    approvers: {roles: [boss], escalate: [{to: {users: []}, after: -1}], default: later}\n",
            [
                "policy.yaml:5:25: rules[0].approvers.roles[0]: 'boss' is not one of viewer, operator, admin",
                "policy.yaml:5:32: rules[0].approvers.escalate: escalation needs a 'timeout' for the first level",
                "policy.yaml:5:48: rules[0].approvers.escalate[0].to: name at least one of 'roles' or 'users'",
                "policy.yaml:5:68: rules[0].approvers.escalate[0].after: must be positive, not -1",
                "policy.yaml:5:83: rules[0].approvers.default: 'later' is not one of reject, approve, fail",
            ],
        ),
        (
            "version: 1\nbudgets:\n  tenant: {tokens: 1.5, cost_usd: yes}\n  agents: {a: {turns: 0, money: 3}}\n",
            [
                "policy.yaml:3:20: budgets.tenant.tokens: must be an integer, not float 1.5",
                "policy.yaml:3:35: budgets.tenant.cost_usd: must be a number, not the boolean true",
                "policy.yaml:4:23: budgets.agents.a.turns: must be positive, not 0",
                "policy.yaml:4:26: budgets.agents.a.money: unknown key 'money'; known keys: cost_usd, tokens, turns, wall_time_s",
            ],
        ),
        (
            "version: 1\nrules:\n  - {id: a, tools: x, action: deny}\n  - {id: a, tools: y, action: deny}\n",
            ["policy.yaml:4:10: rules[1].id: 'a' is already the id of rules[0]"],
        ),
        (
            "version: 1\nversion: 1\n",
            ["policy.yaml:2:1: version: 'version' is given twice; keep one"],
        ),
        (
            "version: 1\nrules:\n  - tools: x\n    action: deny\n    when: {cost_usd_over: -2, tokens: 3}\n",
            [
                "policy.yaml:5:27: rules[0].when.cost_usd_over: must be zero or more, not -2",
                "policy.yaml:5:31: rules[0].when.tokens: unknown key 'tokens'; did you mean 'tokens_over'?",
            ],
        ),
        (
            "version: 1\ndefault: allow\napprovers: {roles: [admin]}\n",
            [
                "policy.yaml:3:1: approvers: approvers at the top apply only with 'default: needs_approval'"
            ],
        ),
        (
            "version: 1\nrules: [\n",
            [
                "policy.yaml:3:1: not valid YAML: while parsing a flow node expected the node content, but found '<stream end>'"
            ],
        ),
        (
            "version: 1\n  bad: indent\n",
            ["policy.yaml:2:6: not valid YAML: mapping values are not allowed here"],
        ),
    ],
)
def test_every_problem_is_located(text: str, expected: list[str]) -> None:
    assert _problems(text) == expected


def test_parse_raises_a_policy_error_listing_every_problem() -> None:
    text = "version: 1\nrules:\n  - tools: x\n    action: maybe\n  - action: deny\n"
    with pytest.raises(errors.PolicyError) as caught:
        parse_policy(text, source="team.yaml")
    error = caught.value
    assert isinstance(error, errors.UsageError) and error.code == "policy_invalid"
    assert error.message.splitlines() == [
        "team.yaml is not a valid policy (2 problems):",
        "team.yaml:4:13: rules[0].action: 'maybe' is not one of allow, deny, needs_approval",
        "team.yaml:5:5: rules[1]: 'tools' is missing",
    ]
    assert error.problems[0] == {  # type: ignore[attr-defined]
        "source": "team.yaml",
        "line": 4,
        "column": 13,
        "path": "rules[0].action",
        "message": "'maybe' is not one of allow, deny, needs_approval",
    }
    assert error.errors[1]["loc"] == ["body", "rules", 1]  # type: ignore[attr-defined]
    again = pickle.loads(pickle.dumps(error))
    assert again.message == error.message and again.problems == error.problems  # type: ignore[attr-defined]
