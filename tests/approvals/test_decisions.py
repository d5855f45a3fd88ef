"""Deciding over HTTP: durability across a full restart, races, escalation, roles, audit.

Everything goes through a real server on loopback, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from approvals_support import (
    Clock,
    Server,
    approval_server,
    pending_over_http,
    until,
    wait_run,
)

from kernos.control import parse_api_key
from kernos.records import Role


def actor(key: str) -> str:
    return f"key:{parse_api_key(key)[0]}"


async def start(client: httpx.AsyncClient, workflow: str, **input: Any) -> str:
    response = await client.post("/runs", json={"workflow": workflow, "input": input})
    assert response.status_code == 201, response.text
    run_id: str = response.json()["run_id"]
    return run_id


async def audit(server: Server, approval_id: str) -> list[dict[str, Any]]:
    async with server.client(server.admin_key) as admin:
        response = await admin.get("/audit", params={"object_id": approval_id, "limit": 100})
        assert response.status_code == 200, response.text
        records: list[dict[str, Any]] = list(reversed(response.json()["items"]))
        return records


def problem_code(response: httpx.Response) -> str:
    assert response.headers["content-type"].startswith("application/problem+json"), response.text
    code: str = response.json()["type"].rsplit("/", 1)[-1]
    return code


async def test_a_pending_approval_survives_a_full_restart_and_the_run_finishes(
    store_url: str,
) -> None:
    async with approval_server(store_url) as first:
        admin_key = first.admin_key
        starter = await first.key(Role.OPERATOR, name="starter")
        approver = await first.key(Role.OPERATOR, name="approver")
        async with first.client(starter) as client:
            run_id = await start(client, "approvals_simple", title="ship v2?")
            request = await pending_over_http(client, run_id)
        assert request["title"] == "ship v2?" and request["current_assignees"] == ["operator"]
    # Server and workers are gone; a new server (and worker) opens the same store.
    async with approval_server(store_url, admin_key=admin_key) as second:
        async with second.client(approver) as client:
            fetched = await client.get(f"/approvals/{request['approval_id']}")
            assert fetched.status_code == 200 and fetched.json()["status"] == "pending"
            decided = await client.post(
                f"/approvals/{request['approval_id']}/decision",
                json={"decision": "approve", "comment": "looks right", "edits": {"plan": "v3"}},
            )
            assert decided.status_code == 200, decided.text
            body = decided.json()
            assert body["status"] == "approved"
            assert body["decision"]["by"] == actor(approver)
            run = await wait_run(client, run_id, "succeeded", "failed")
        assert run["status"] == "succeeded"
        assert run["output"] == {
            "decision": "approved",
            "by": actor(approver),
            "value": {"plan": "v3"},
            "comment": "looks right",
            "by_default": False,
        }
        async with second.client(approver) as client:
            again = await client.post(
                f"/approvals/{request['approval_id']}/decision", json={"decision": "reject"}
            )
            assert again.status_code == 409 and problem_code(again) == "conflict"
            journal = (await client.get(f"/runs/{run_id}/journal")).json()
        assert journal[0]["kind"] == "approval" and journal[0]["status"] == "ok"
        assert journal[0]["output"]["value"] == {"plan": "v3"}
        records = await audit(second, request["approval_id"])
        assert [(r["action"], r["actor"], r["outcome"]) for r in records] == [
            ("approval.approve", actor(approver), "ok"),
            ("approval.reject", actor(approver), "denied"),
        ]


async def test_ten_concurrent_decisions_over_http_one_wins(store_url: str) -> None:
    async with approval_server(store_url) as server:
        keys = [await server.key(Role.OPERATOR, name=f"op{i}") for i in range(10)]
        async with server.client(server.admin_key) as admin:
            run_id = await start(admin, "approvals_simple")
            request = await pending_over_http(admin, run_id)
        url = f"/approvals/{request['approval_id']}/decision"
        clients = [server.client(key) for key in keys]
        try:
            responses = await asyncio.gather(
                *(
                    client.post(url, json={"decision": "approve" if i % 2 else "reject"})
                    for i, client in enumerate(clients)
                )
            )
        finally:
            for client in clients:
                await client.aclose()
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [200] + [409] * 9, [r.text for r in responses]
        winner = next(r.json() for r in responses if r.status_code == 200)
        for loser in (r for r in responses if r.status_code == 409):
            assert problem_code(loser) == "conflict"
        async with server.client(server.admin_key) as admin:
            run = await wait_run(admin, run_id, "succeeded")
        assert run["output"]["decision"] == winner["status"]
        assert run["output"]["by"] == winner["decided_by"]
        records = await audit(server, request["approval_id"])
        outcomes = sorted(r["outcome"] for r in records)
        assert outcomes == ["denied"] * 9 + ["ok"]


async def test_escalation_over_http_moves_who_may_decide(store_url: str, clock: Clock) -> None:
    async with approval_server(store_url, clock=clock) as server:
        alice = await server.user_token("alice", Role.OPERATOR)
        bob = await server.user_token("bob", Role.OPERATOR)
        admin_key = await server.key(Role.ADMIN, name="second admin")
        async with server.client(server.admin_key) as admin:
            run_id = await start(admin, "approvals_escalating", default="fail")
            request = await pending_over_http(admin, run_id)
        approval_id = request["approval_id"]
        url = f"/approvals/{approval_id}/decision"
        assert request["current_assignees"] == ["alice"] and request["level"] == 0
        async with server.client(bob) as client:  # an operator, but not the assignee
            refused = await client.post(url, json={"decision": "approve"})
            assert refused.status_code == 403 and problem_code(refused) == "permission_denied"
        clock.advance(3601)
        server.app.engine.poke()
        async with server.client(server.admin_key) as admin:

            async def escalated() -> dict[str, Any] | None:
                body: dict[str, Any] = (await admin.get(f"/approvals/{approval_id}")).json()
                run = (await admin.get(f"/runs/{run_id}")).json()
                return body if body["level"] == 1 and run["status"] == "waiting" else None

            now = await until(escalated)
        assert now["current_assignees"] == ["admin"]
        assert now["history"][0]["assignees"] == ["admin"]
        async with server.client(alice) as client:
            stale = await client.post(url, json={"decision": "approve", "level": 0})
            assert stale.status_code == 409 and problem_code(stale) == "conflict"
            gone = await client.post(url, json={"decision": "approve"})
            assert gone.status_code == 403 and problem_code(gone) == "permission_denied"
        async with server.client(admin_key) as client:
            ok = await client.post(
                url, json={"decision": "reject", "comment": "too much", "level": 1}
            )
            assert ok.status_code == 200, ok.text
            run = await wait_run(client, run_id, "succeeded", "failed")
        assert run["output"] == {"decision": "rejected", "by_default": False, "level": 1}
        async with server.client(server.admin_key) as admin:
            events = (await admin.get(f"/runs/{run_id}/events")).json()
            journal = (await admin.get(f"/runs/{run_id}/journal")).json()
        kinds = [e["kind"] for e in events]
        assert [k for k in kinds if k.startswith("approval.")] == [
            "approval.requested",
            "approval.escalated",
            "approval.decided",
        ]
        requested = next(e for e in events if e["kind"] == "approval.requested")["data"]
        assert requested["assignees"] == ["alice"] and requested["run_id"] == run_id
        decided = next(e for e in events if e["kind"] == "approval.decided")["data"]
        assert decided == {
            "approval_id": approval_id,
            "run_id": run_id,
            "decision": "rejected",
            "by": actor(admin_key),
            "comment": "too much",
            "edited": False,
            "by_default": False,
        }
        assert journal[0]["detail"]["escalations"][0]["level"] == 1
        assert journal[0]["output"]["level"] == 1
        records = await audit(server, approval_id)
        assert [(r["action"], r["actor"], r["outcome"]) for r in records] == [
            ("approval.approve", "user:bob", "denied"),
            ("approval.escalate", "system", "ok"),
            ("approval.approve", "user:alice", "denied"),
            ("approval.approve", "user:alice", "denied"),
            ("approval.reject", actor(admin_key), "ok"),
        ]


async def test_roles_the_runs_starter_and_other_tenants_cannot_decide(store_url: str) -> None:
    async with approval_server(store_url) as server:
        starter = await server.key(Role.OPERATOR, name="starter")
        viewer = await server.key(Role.VIEWER, name="viewer")
        stranger = await server.key(Role.ADMIN, tenant="acme", name="acme admin")
        async with server.client(starter) as client:
            run_id = await start(client, "approvals_simple")
            request = await pending_over_http(client, run_id)
            url = f"/approvals/{request['approval_id']}/decision"
            own = await client.post(url, json={"decision": "approve"})
            assert own.status_code == 403 and problem_code(own) == "permission_denied"
            assert "started run" in own.json()["detail"]
        async with server.client(viewer) as client:
            seen = await client.get(f"/approvals/{request['approval_id']}")
            assert seen.status_code == 200
            refused = await client.post(url, json={"decision": "approve"})
            assert refused.status_code == 403 and problem_code(refused) == "permission_denied"
        async with server.client(stranger) as client:
            hidden = await client.get(f"/approvals/{request['approval_id']}")
            assert hidden.status_code == 404
            assert (await client.get("/approvals")).json()["items"] == []
            foreign = await client.post(url, json={"decision": "approve"})
            assert foreign.status_code == 404 and problem_code(foreign) == "not_found"
        async with server.client(server.admin_key) as admin:
            mine = (await admin.get("/approvals", params={"mine": True})).json()["items"]
            assert [m["approval_id"] for m in mine] == [request["approval_id"]]
            bad = await admin.post(url, json={"decision": "approve", "args_hash": "0" * 64})
            assert bad.status_code == 409
            ok = await admin.post(url, json={"decision": "approve"})
            assert ok.status_code == 200, ok.text
            assert (await admin.get("/approvals", params={"mine": True})).json()["items"] == []
        records = await audit(server, request["approval_id"])
        assert [(r["actor"], r["outcome"]) for r in records] == [
            (actor(starter), "denied"),
            (actor(viewer), "denied"),
            (actor(server.admin_key), "denied"),
            (actor(server.admin_key), "ok"),
        ]
        # The foreign tenant's attempt is recorded in its own tenant.
        async with server.client(stranger) as client:
            theirs = (await client.get("/audit", params={"action": "approval."})).json()["items"]
        assert [(r["actor"], r["outcome"]) for r in theirs] == [(actor(stranger), "denied")]
