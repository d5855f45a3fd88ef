"""Agent runs under the tenant's stored policy: the version is journaled once at the
start and reused by forks and replays; decisions are the strictest of the stored
policy and the agent's own; the policy's budgets bind as well as the agent's."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import pytest
from policy_support import DENY_SHELL

import kernos
from kernos import agents, tools
from kernos.agents import Budget, StopReason
from kernos.records import EntryKind
from kernos.testing import FakeOpenAI, FakeToolCall, Reply

MakeAgent = Callable[..., agents.Agent]
CALLS: Counter[str] = Counter()


@tools.tool
def shell(command: str) -> str:
    """Run a command (a stand-in: it only counts).

    Args:
        command: the command line.
    """
    CALLS[f"shell {command}"] += 1
    return f"ran {command}"


@tools.tool
def note(text: str) -> str:
    """Write a note.

    Args:
        text: what to write.
    """
    CALLS[f"note {text}"] += 1
    return "noted"


@pytest.fixture(autouse=True)
def _clear_calls() -> None:
    CALLS.clear()


async def _apply(app: kernos.Kernos, text: str, tenant: str = "default") -> int:
    stored = await app.store.put_policy(tenant, text, tools.policy_sha256(text), "system")
    return stored.version


def _tool_entries(journal: list[kernos.JournalEntry]) -> list[tuple[str, str]]:
    return [
        (e.name, e.output["decision"])  # type: ignore[index]
        for e in journal
        if e.kind is EntryKind.TOOL
    ]


async def test_a_run_records_the_policy_version_and_obeys_it(
    app: kernos.Kernos, fake: FakeOpenAI, make_agent: MakeAgent
) -> None:
    version = await _apply(app, DENY_SHELL)
    agent = make_agent(tools=[shell, note])
    fake.reply(
        tool_calls=[
            FakeToolCall(name="shell", arguments={"command": "ls"}),
            FakeToolCall(name="note", arguments={"text": "hi"}),
        ]
    )
    fake.reply("done")
    handle = await agent.start(app, "work")
    result = await handle.result(timeout=20)
    assert result.stop_reason is StopReason.DONE
    assert CALLS == {"note hi": 1}  # the stored policy refused the shell; the agent allows all
    journal = await app.journal(handle.run_id)
    first = journal[0]
    assert (first.kind, first.name) == (EntryKind.STEP, "policy")
    assert first.output["policy_version"] == version  # type: ignore[index]
    assert first.output["sha256"] == tools.policy_sha256(DENY_SHELL)  # type: ignore[index]
    assert first.detail == {
        "agent": agent.name,
        "policy_version": version,
        "sha256": tools.policy_sha256(DENY_SHELL),
    }
    assert _tool_entries(journal) == [("shell", "deny"), ("note", "allow")]
    refused = next(e for e in journal if e.name == "shell")
    assert "no shell for agents" in refused.output["content"]  # type: ignore[index]
    events = [e.data for e in await app.events(handle.run_id) if e.kind == "agent.policy"]
    assert events == [first.detail]


async def test_a_run_without_a_stored_policy_records_none(
    app: kernos.Kernos, fake: FakeOpenAI, make_agent: MakeAgent
) -> None:
    agent = make_agent(tools=[shell])
    fake.reply(tool_calls=[FakeToolCall(name="shell", arguments={"command": "ls"})])
    fake.reply("done")
    handle = await agent.start(app, "work")
    await handle.result(timeout=20)
    journal = await app.journal(handle.run_id)
    assert journal[0].output["policy_version"] is None  # type: ignore[index]
    assert _tool_entries(journal) == [("shell", "allow")]


async def test_forks_and_replays_keep_the_version_the_run_started_with(
    app: kernos.Kernos, fake: FakeOpenAI, make_agent: MakeAgent
) -> None:
    await _apply(app, "version: 1\ndefault: allow\n")
    agent = make_agent(tools=[shell])
    fake.reply(tool_calls=[FakeToolCall(name="shell", arguments={"command": "ls"})])
    fake.reply(tool_calls=[FakeToolCall(name="shell", arguments={"command": "pwd"})])
    fake.reply("done")
    handle = await agent.start(app, "work")
    await handle.result(timeout=20)
    assert CALLS == {"shell ls": 1, "shell pwd": 1}

    # A newer version denies the shell; a fork of the old run still runs under v1.
    await _apply(app, DENY_SHELL)
    fake.reply("done again")
    journal = await app.journal(handle.run_id)
    edited = {"tool_calls": [{"id": "c1", "name": "shell", "arguments": {"command": "whoami"}}]}
    fork = await app.fork(handle.run_id, at=3, patch=edited)  # the second answer, edited
    forked = await agent.handle(app, fork.run_id).result(timeout=20)
    assert forked.stop_reason is StopReason.DONE
    fork_journal = await app.journal(fork.run_id)
    assert fork_journal[0].output == journal[0].output  # inherited: version 1
    assert _tool_entries(fork_journal)[-1] == ("shell", "allow")
    assert CALLS["shell whoami"] == 1
    assert (await app.replay(handle.run_id)).identical

    # A new run loads the newest version.
    fake.reply(tool_calls=[FakeToolCall(name="shell", arguments={"command": "id"})])
    fake.reply("done")
    fresh = await agent.start(app, "work")
    await fresh.result(timeout=20)
    fresh_journal = await app.journal(fresh.run_id)
    assert fresh_journal[0].output["policy_version"] == 2  # type: ignore[index]
    assert _tool_entries(fresh_journal) == [("shell", "deny")]


async def test_the_strictest_of_stored_and_agent_policy_wins(
    app: kernos.Kernos, fake: FakeOpenAI, make_agent: MakeAgent
) -> None:
    await _apply(app, "version: 1\ndefault: allow\n")
    own = tools.ToolPolicy(rules=(tools.Rule("note", tools.Action.DENY),), default="allow")  # type: ignore[arg-type]
    agent = make_agent(tools=[shell, note], capabilities=own)
    fake.reply(
        tool_calls=[
            FakeToolCall(name="shell", arguments={"command": "ls"}),
            FakeToolCall(name="note", arguments={"text": "x"}),
        ]
    )
    fake.reply("done")
    handle = await agent.start(app, "work")
    await handle.result(timeout=20)
    assert _tool_entries(await app.journal(handle.run_id)) == [("shell", "allow"), ("note", "deny")]


async def test_rules_see_the_agent_model_workflow_and_spend(
    app: kernos.Kernos, fake: FakeOpenAI, make_agent: MakeAgent
) -> None:
    agent = make_agent(tools=[note], budget=Budget(turns=3))
    await _apply(
        app,
        f"""\
version: 1
default: allow
rules:
  - tools: note
    agents: ["{agent.name}"]
    models: ["openai:*"]
    workflows: ["agent:*"]
    when: {{tokens_over: 150}}
    action: deny
""",
    )
    fake.default = Reply(
        tool_calls=(FakeToolCall(name="note", arguments={"text": "x"}),),
        input_tokens=100,
        output_tokens=10,
    )
    handle = await agent.start(app, "work")
    result = await agent.handle(app, handle.run_id).result(timeout=20)
    # 110 tokens after the first answer: allowed; 220 after the second: denied.
    decisions = [d for _, d in _tool_entries(await app.journal(handle.run_id))]
    assert decisions == ["allow", "deny"]
    assert result.stop_reason is StopReason.MAX_TURNS and CALLS == {"note x": 1}


@pytest.mark.parametrize(
    ("own", "policy_budget", "exceeded"),
    [
        (Budget(tokens=10_000), "tenant: {tokens: 150}", "tokens"),
        (Budget(tokens=150), "tenant: {tokens: 10000}", "tokens"),
        (Budget(), "agents: {AGENT: {turns: 2}}", "turns"),
        (Budget(), "agents: {other: {turns: 1}}", None),
    ],
)
async def test_policy_budgets_bind_with_the_agents_own(
    app: kernos.Kernos,
    fake: FakeOpenAI,
    make_agent: MakeAgent,
    own: Budget,
    policy_budget: str,
    exceeded: str | None,
) -> None:
    agent = make_agent(tools=[note], budget=own)
    budgets = policy_budget.replace("AGENT", agent.name)
    await _apply(app, f"version: 1\ndefault: allow\nbudgets:\n  {budgets}\n")
    fake.default = Reply(
        tool_calls=(FakeToolCall(name="note", arguments={"text": "x"}),),
        input_tokens=100,
        output_tokens=10,
    )
    if exceeded is None:
        fake.default = None
        fake.reply(tool_calls=[FakeToolCall(name="note", arguments={"text": "x"})])
        fake.reply("done")
    result = await (await agent.start(app, "spend")).result(timeout=20)
    assert result.exceeded == exceeded
    if exceeded is not None:
        assert result.turns == 2
        expected = StopReason.MAX_TURNS if exceeded == "turns" else StopReason.BUDGET
        assert result.stop_reason is expected
    else:
        assert result.stop_reason is StopReason.DONE
