"""The policy over HTTP: apply, read, versions, check and test, role-checked, tenant-scoped
and audited, against a live server on loopback."""

from __future__ import annotations

from typing import Any

from policy_support import DENY_SHELL, routes_support

from kernos import agents, tools
from kernos.records import Role
from kernos.testing import FakeOpenAI, FakeToolCall

assert_problem = routes_support.assert_problem

BAD = """\
version: 1
rules:
  - tools: shell
    action: allow
  - tools: read_*
    action: allow
  - tools: write_*
    action: maybe
"""


@tools.tool
def shell(command: str) -> str:
    """Run a command (a stand-in).

    Args:
        command: the command line.
    """
    return f"ran {command}"


@tools.tool
def note(text: str) -> str:
    """Write a note.

    Args:
        text: what to write.
    """
    return "noted"


async def test_apply_read_and_list_versions(live: Any) -> None:
    viewer_key = await live.key(Role.VIEWER)
    acme_key = await live.key(Role.ADMIN, "acme")
    async with live.client(live.admin_key) as admin, live.client(viewer_key) as viewer:
        assert_problem(await admin.get("/policy"), 404, "not_found")
        first = await admin.put(
            "/policy", content=DENY_SHELL, headers={"Content-Type": "application/yaml"}
        )
        assert first.status_code == 200, first.text
        assert first.json()["version"] == 1 and first.json()["document"] == DENY_SHELL
        assert first.json()["sha256"] == tools.policy_sha256(DENY_SHELL)
        second = await admin.put("/policy", json={"document": "version: 1\ndefault: allow\n"})
        assert second.json()["version"] == 2

        current = (await viewer.get("/policy")).json()
        assert (current["version"], current["document"]) == (2, "version: 1\ndefault: allow\n")
        assert current["created_by"].startswith("key:") and current["tenant_id"] == "default"
        old = (await viewer.get("/policy", params={"version": 1})).json()
        assert old["document"] == DENY_SHELL
        assert_problem(await viewer.get("/policy", params={"version": 9}), 404, "not_found")
        listed = (await viewer.get("/policy/versions")).json()
        assert [v["version"] for v in listed] == [2, 1] and "document" not in listed[0]

        # An invalid document: 422 with each problem located; nothing stored.
        refused = await admin.put("/policy", content=BAD, headers={"Content-Type": "text/plain"})
        body = assert_problem(refused, 422, "policy_invalid")
        assert body["errors"] == [
            {
                "loc": ["body", "rules", 2, "action"],
                "msg": "8:13: 'maybe' is not one of allow, deny, needs_approval",
                "type": "policy_invalid",
            }
        ]
        assert "policy.yaml:8:13: rules[2].action" in body["detail"]
        assert_problem(await admin.put("/policy", json={"doc": "x"}), 422)
        assert_problem(await admin.put("/policy", content=b"\xff\xfe"), 422)
        assert_problem(await viewer.put("/policy", json={"document": DENY_SHELL}), 403)
        assert [v["version"] for v in (await viewer.get("/policy/versions")).json()] == [2, 1]

        audit = (await admin.get("/audit", params={"action": "policy.apply"})).json()["items"]
        assert [(r["object_id"], r["outcome"]) for r in audit] == [
            (None, "denied"),
            (None, "error"),
            ("2", "ok"),
            ("1", "ok"),
        ]
        assert audit[2]["detail"]["sha256"] == second.json()["sha256"]

    # Tenants never see each other's policies; each counts its own versions.
    async with live.client(acme_key) as acme:
        assert_problem(await acme.get("/policy"), 404)
        mine = await acme.put("/policy", json={"document": "version: 1\n"})
        assert (mine.json()["version"], mine.json()["tenant_id"]) == (1, "acme")
        assert_problem(await acme.get("/policy", params={"version": 2}), 404)
    assert (await live.app.store.current_policy("default")).version == 2


async def test_check_validates_without_storing(live: Any) -> None:
    async with live.client(live.admin_key) as admin:
        good = (await admin.post("/policy/check", json={"document": DENY_SHELL})).json()
        assert good == {"valid": True, "problems": []}
        bad = (await admin.post("/policy/check", json={"document": BAD})).json()
        assert bad["valid"] is False
        assert bad["problems"] == [
            {
                "source": "policy.yaml",
                "line": 8,
                "column": 13,
                "path": "rules[2].action",
                "message": "'maybe' is not one of allow, deny, needs_approval",
            }
        ]
        assert (await admin.get("/policy/versions")).json() == []


async def test_a_document_tested_against_a_recorded_agent_run(
    live: Any, fake: FakeOpenAI, make_agent: Any
) -> None:
    agent: agents.Agent = make_agent(tools=[shell, note])
    fake.reply(
        tool_calls=[
            FakeToolCall(name="shell", arguments={"command": "rm -rf build"}),
            FakeToolCall(name="note", arguments={"text": "cleaned"}),
        ]
    )
    fake.reply(tool_calls=[FakeToolCall(name="shell", arguments={"command": "ls"})])
    fake.reply("done")
    handle = await agent.start(live.app, "clean up")
    await handle.result(timeout=30)
    document = """\
version: 1
default: allow
rules:
  - id: no-rm
    tools: shell
    arguments: {command: "re:rm .*"}
    action: deny
  - id: notes-need-ops
    tools: note
    action: needs_approval
    approvers: {roles: [operator]}
"""
    async with live.client(live.admin_key) as admin:
        response = await admin.post(
            "/policy/test", json={"document": document, "run_id": handle.run_id}
        )
        assert response.status_code == 200, response.text
        rows = response.json()
        journal = await live.app.journal(handle.run_id)
        tool_seqs = [e.seq for e in journal if e.kind.value == "tool"]
        assert [row["seq"] for row in rows] == tool_seqs
        assert [
            (r["tool"], r["arguments"], r["recorded"], r["decision"], r["rule"], r["line"])
            for r in rows
        ] == [
            ("shell", {"command": "rm -rf build"}, "allow", "deny", "no-rm", 4),
            ("note", {"text": "cleaned"}, "allow", "needs_approval", "notes-need-ops", 8),
            ("shell", {"command": "ls"}, "allow", "allow", None, None),
        ]
        assert [r["changed"] for r in rows] == [True, True, False]
        assert all(r["agent"] == agent.name for r in rows)

        body = assert_problem(
            await admin.post("/policy/test", json={"document": BAD, "run_id": handle.run_id}),
            422,
            "policy_invalid",
        )
        assert body["errors"][0]["loc"] == ["body", "rules", 2, "action"]
    # Another tenant's operator cannot test against this tenant's run.
    acme_key = await live.key(Role.ADMIN, "acme")
    async with live.client(acme_key) as acme:
        refused = await acme.post(
            "/policy/test", json={"document": document, "run_id": handle.run_id}
        )
        assert_problem(refused, 404, "not_found")
