"""Forking an agent run at a turn with an edited model answer, and replaying a
finished agent run without a single provider request. SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from agent_support import MakeAgent, tool_messages

import kernos
from kernos import agents, llm, tools
from kernos.agents import StopReason
from kernos.records import EntryKind
from kernos.testing import FakeOpenAI, FakeToolCall

CALLS: Counter[str] = Counter()


@pytest.fixture(autouse=True)
def _reset() -> None:
    CALLS.clear()


@tools.tool
async def add(a: int, b: int) -> int:
    """Add two integers.

    Args:
        a: the first.
        b: the second.
    """
    CALLS[f"add {a} {b}"] += 1
    return a + b


async def finished_run(app: kernos.Kernos, fake: FakeOpenAI, agent: agents.Agent) -> str:
    """A run of three turns: add(1, 2), then add(3, 4), then the answer."""
    fake.reply(tool_calls=[FakeToolCall(name="add", arguments={"a": 1, "b": 2})])
    fake.reply(tool_calls=[FakeToolCall(name="add", arguments={"a": 3, "b": 4})])
    fake.reply("3 and 7")
    handle = await agent.start(app, "add things", run_id="original")
    result = await handle.result(timeout=20)
    assert result.output == "3 and 7" and result.turns == 3
    kinds = [e.kind for e in await app.journal("original")]
    # The policy the run loaded (its tenant has none here), then the turns.
    assert kinds == [EntryKind.STEP] + [EntryKind.LLM, EntryKind.TOOL] * 2 + [EntryKind.LLM]
    CALLS.clear()
    return handle.run_id


async def test_a_fork_continues_from_an_edited_model_answer(
    app: kernos.Kernos, fake: FakeOpenAI, make_agent: MakeAgent
) -> None:
    agent = make_agent(tools=[add])
    await finished_run(app, fake, agent)
    seen = len(fake.requests)
    fake.reply("30, as edited")

    # Turn 2 (seq 3) now asks for add(10, 20) instead of add(3, 4).
    edited = {"tool_calls": [{"id": "call_edit", "name": "add", "arguments": {"a": 10, "b": 20}}]}
    fork = await app.fork("original", at=3, patch=edited)
    result = await agents.AgentHandle(app, fork.run_id, agent).result(timeout=20)

    assert result.stop_reason is StopReason.DONE and result.output == "30, as edited"
    assert result.turns == 3
    assert CALLS == {"add 10 20": 1}  # add(1, 2) came from the journal; add(3, 4) never ran
    new = fake.requests[seen:]
    assert len(new) == 1  # the model saw only the request after the fork point
    assistant = [m for m in new[0].messages if m["role"] == "assistant"][-1]
    assert assistant["tool_calls"][0]["id"] == "call_edit"
    assert json.loads(assistant["tool_calls"][0]["function"]["arguments"]) == {"a": 10, "b": 20}
    assert [m["content"] for m in tool_messages(new[0].json)] == ["3", "30"]
    fork_journal = await app.journal(fork.run_id)
    original_journal = await app.journal("original")
    assert [e.output for e in fork_journal[:3]] == [e.output for e in original_journal[:3]]
    assert fork_journal[3].output == edited
    assert (await app.get_run("original")).superseded_by == fork.run_id

    # A fork's usage counts its own calls; the inherited and edited ones stay the original's.
    ledger = await agents.usage_ledger(app)
    assert ledger.by("run")[fork.run_id] == llm.Usage.from_dict(
        fork_journal[5].detail["usage"]  # type: ignore[index]
    )
    assert ledger.calls == 4


async def test_a_fork_with_a_plain_text_answer_needs_no_provider(
    app: kernos.Kernos, fake: FakeOpenAI, make_agent: MakeAgent
) -> None:
    agent = make_agent(tools=[add])
    await finished_run(app, fake, agent)
    seen = len(fake.requests)
    fork = await app.fork("original", at=5, patch="The sums are 3 and 7, checked by a human.")
    result = await agents.AgentHandle(app, fork.run_id, agent).result(timeout=20)
    assert result.output == "The sums are 3 and 7, checked by a human."
    assert len(fake.requests) == seen and CALLS == {}
    assert (
        result.usage
        == sum(
            (
                llm.Usage.from_dict(e.detail["usage"])  # type: ignore[index]
                for e in (await app.journal("original"))[:5]
                if e.kind is EntryKind.LLM
            ),
            llm.Usage(),
        )
    )


async def test_a_fork_may_edit_a_tool_result(
    app: kernos.Kernos, fake: FakeOpenAI, make_agent: MakeAgent
) -> None:
    agent = make_agent(tools=[add])
    await finished_run(app, fake, agent)
    fake.reply(tool_calls=[FakeToolCall(name="add", arguments={"a": 3, "b": 4})])
    fake.reply("edited")
    fork = await app.fork("original", at=2, patch={"content": "three", "is_error": False})
    result = await agents.AgentHandle(app, fork.run_id, agent).result(timeout=20)
    assert result.output == "edited"
    assert tool_messages(fake.requests[-2].json)[0]["content"] == "three"


async def test_replaying_a_finished_agent_run_makes_no_provider_request(
    app: kernos.Kernos, fake: FakeOpenAI, make_agent: MakeAgent
) -> None:
    agent = make_agent(tools=[add])
    run_id = await finished_run(app, fake, agent)
    requests = list(fake.requests)

    report = await app.replay(run_id)

    assert report.identical and report.entries_checked == 6
    assert fake.requests == requests  # not one request reached the provider
    assert CALLS == {}  # and no tool ran


async def test_a_replay_connects_no_model_and_reports_changed_instructions(
    app: kernos.Kernos, fake: FakeOpenAI, make_agent: MakeAgent
) -> None:
    agent = make_agent(tools=[add], instructions="You add.")
    run_id = await finished_run(app, fake, agent)

    def refuse() -> llm.Provider:
        raise AssertionError("a replay must not connect to a provider")

    # The same agent in a new process would have no client yet; this one may not get one.
    same = make_agent(name=agent.name, tools=[add], instructions="You add.", provider=refuse)
    assert (await app.replay(run_id)).identical
    changed = make_agent(
        name=agent.name, tools=[add], instructions="You subtract.", provider=refuse
    )
    report = await app.replay(run_id)
    assert not report.identical and report.divergence is not None
    assert (report.divergence.seq, report.divergence.reason) == (1, "args")
    assert same.name == changed.name
