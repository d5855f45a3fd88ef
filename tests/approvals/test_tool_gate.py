"""Tool calls the policy sends for approval: the request shows the exact call, a decision
is bound to its arguments' hash, edits run re-checked, a rejection reaches the model.

A scripted model (kernos.testing's fake OpenAI server) makes the calls; decisions go
over HTTP to a live server whose worker runs the agent.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from typing import Any

import pytest
from approvals_support import Server, approval_server, pending_over_http, wait_run

from kernos import agents, llm, tools
from kernos.agents._toolcalls import tool_args_hash
from kernos.records import EntryKind, Role
from kernos.testing import FakeOpenAI, FakeToolCall

KEY = "sk-approvals-test-0123456789"
WRITES: list[tuple[str, str]] = []
_numbers = itertools.count()


@tools.tool
async def write_note(path: str, text: str) -> str:
    """Write a note.

    Args:
        path: where.
        text: what.
    """
    WRITES.append((path, text))
    return f"wrote {len(text)} characters to {path}"


POLICY = tools.ToolPolicy(
    rules=(
        tools.Rule("write_note", tools.Action.DENY, arguments={"path": "secret*"}, reason="no"),
        tools.Rule(
            "write_note",
            tools.Action.NEEDS_APPROVAL,
            reason="notes need a person",
            approvers=tools.Approvers(roles=("operator",)),
        ),
    ),
    default=tools.Action.ALLOW,
    name="notes policy",
)


@pytest.fixture(autouse=True)
def _clear() -> None:
    WRITES.clear()


@pytest.fixture
async def agent(fake: FakeOpenAI) -> AsyncIterator[agents.Agent]:
    def connect() -> llm.Provider:
        return llm.connect("openai:gpt-4o-mini", base_url=fake.url, api_key=KEY, retries=0)

    made = agents.Agent(
        name=f"approvals-notes-{next(_numbers)}",
        model="openai:gpt-4o-mini",
        provider=connect,
        tools=[write_note],
        capabilities=POLICY,
    )
    yield made
    await made.aclose()


@pytest.fixture
async def server(store_url: str) -> AsyncIterator[Server]:
    async with approval_server(store_url) as live:
        yield live


def tool_results(fake: FakeOpenAI, request: int) -> list[str]:
    body: dict[str, Any] = fake.requests[request].json
    return [m["content"] for m in body["messages"] if m["role"] == "tool"]


async def test_approve_with_edits_runs_the_edited_call_and_the_journal_shows_both(
    server: Server, fake: FakeOpenAI, agent: agents.Agent
) -> None:
    original = {"path": "draft.txt", "text": "hello"}
    fake.reply(tool_calls=[FakeToolCall(name="write_note", arguments=original)])
    fake.reply("noted")
    handle = await agent.start(server.app, "write it down")
    approver = await server.key(Role.OPERATOR, name="approver")
    async with server.client(approver) as client:
        request = await pending_over_http(client, handle.run_id)
        assert request["kind"] == "tool_call"
        assert request["details"]["tool"] == "write_note"
        assert request["details"]["arguments"] == original
        assert request["details"]["reason"] == "notes need a person"
        assert request["current_assignees"] == ["role:operator"]
        assert request["args_hash"] == tool_args_hash("write_note", original)
        assert WRITES == []  # nothing ran while waiting
        url = f"/approvals/{request['approval_id']}/decision"
        other = tool_args_hash("write_note", {"path": "other.txt", "text": "hello"})
        wrong = await client.post(url, json={"decision": "approve", "args_hash": other})
        assert wrong.status_code == 409, wrong.text
        edited = {"path": "final.txt", "text": "hello, edited"}
        ok = await client.post(
            url,
            json={"decision": "approve", "edits": edited, "args_hash": request["args_hash"]},
        )
        assert ok.status_code == 200, ok.text
        await wait_run(client, handle.run_id, "succeeded")
    result = await handle.result(timeout=20)
    assert result.output == "noted"
    assert WRITES == [("final.txt", "hello, edited")]
    assert tool_results(fake, 1) == ["wrote 13 characters to final.txt"]
    journal = await server.app.journal(handle.run_id)
    gate = [e for e in journal if e.kind in (EntryKind.TOOL, EntryKind.APPROVAL)]
    kinds = [(e.kind, (e.detail or {}).get("decision")) for e in gate]  # type: ignore[union-attr]
    assert kinds == [
        (EntryKind.TOOL, "needs_approval"),
        (EntryKind.APPROVAL, None),
        (EntryKind.TOOL, "approved"),
    ]
    gated, approval, ran = gate
    assert gated.detail["approvers"]["roles"] == ["operator"]  # type: ignore[index]
    assert approval.output["value"] == edited and approval.output["edited"] is True  # type: ignore[index]
    assert ran.detail["approval"]["arguments"] == edited  # type: ignore[index]
    assert ran.detail["approval"]["original_arguments"] == original  # type: ignore[index]
    assert ran.detail["approval"]["approval_id"] == request["approval_id"]  # type: ignore[index]
    assert result.tool_calls == 1


async def test_an_edit_the_policy_denies_is_refused_not_run(
    server: Server, fake: FakeOpenAI, agent: agents.Agent
) -> None:
    fake.reply(tool_calls=[FakeToolCall(name="write_note", arguments={"path": "a", "text": "x"})])
    fake.reply("ok")
    handle = await agent.start(server.app, "write")
    async with server.client(server.admin_key) as client:
        request = await pending_over_http(client, handle.run_id)
        ok = await client.post(
            f"/approvals/{request['approval_id']}/decision",
            json={"decision": "approve", "edits": {"path": "secret.txt", "text": "x"}},
        )
        assert ok.status_code == 200, ok.text
        await wait_run(client, handle.run_id, "succeeded")
    assert WRITES == []
    [told] = tool_results(fake, 1)
    assert told == "the edited call to 'write_note' was refused: no"
    journal = await server.app.journal(handle.run_id)
    [_, ran] = [e for e in journal if e.kind is EntryKind.TOOL]
    assert ran.detail["decision"] == "deny"  # type: ignore[index]


async def test_a_rejection_is_told_to_the_model_with_the_comment(
    server: Server, fake: FakeOpenAI, agent: agents.Agent
) -> None:
    fake.reply(tool_calls=[FakeToolCall(name="write_note", arguments={"path": "a", "text": "x"})])
    fake.reply("understood")
    handle = await agent.start(server.app, "write")
    async with server.client(server.admin_key) as client:
        request = await pending_over_http(client, handle.run_id)
        no = await client.post(
            f"/approvals/{request['approval_id']}/decision",
            json={"decision": "reject", "comment": "use the wiki instead"},
        )
        assert no.status_code == 200, no.text
        await wait_run(client, handle.run_id, "succeeded")
    assert WRITES == []
    [told] = tool_results(fake, 1)
    assert "not approved" in told and "use the wiki instead" in told
    tools_run = [e for e in await server.app.journal(handle.run_id) if e.kind is EntryKind.TOOL]
    assert len(tools_run) == 1  # rejected: no second entry
