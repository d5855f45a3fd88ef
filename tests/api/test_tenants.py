"""Tenant isolation: one tenant never sees or touches another's runs, journals, events,
checkpoints, keys, users, bulk jobs, audit records, queue counts or stream events.

Foreign ids answer 404 exactly like ids that do not exist (the answer must not
reveal that the object exists elsewhere); lists, exports, counts and streams
never include foreign objects.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
from api_support import Live
from routes_support import assert_problem, wait_status

from kernos.records import Role

WAIT = {"workflow": "api_wait", "input": {}}
GREET = {"workflow": "api_greet", "input": {"name": "tenant"}}


async def _start(client: httpx.AsyncClient, body: dict[str, Any]) -> str:
    response = await client.post("/runs", json=body)
    assert response.status_code == 201, response.text
    run_id: str = response.json()["run_id"]
    return run_id


async def _two_tenants(live: Live) -> tuple[httpx.AsyncClient, httpx.AsyncClient]:
    return live.client(live.admin_key), live.client(await live.key(Role.ADMIN, "acme"))


async def test_foreign_runs_answer_404_like_missing_ones(live: Live) -> None:
    ours_client, theirs_client = await _two_tenants(live)
    async with ours_client as ours, theirs_client as theirs:
        done = await _start(ours, GREET)
        waiting = await _start(ours, WAIT)
        await wait_status(ours, done, "succeeded")
        await wait_status(ours, waiting, "waiting")

        requests: list[tuple[str, str, dict[str, Any] | None]] = [
            ("GET", "/runs/{}", None),
            ("GET", "/runs/{}/journal", None),
            ("GET", "/runs/{}/checkpoints", None),
            ("GET", "/runs/{}/events", None),
            ("POST", "/runs/{}/cancel", {"reason": "not yours"}),
            ("POST", "/runs/{}/pause", None),
            ("POST", "/runs/{}/resume", None),
            ("POST", "/runs/{}/messages", {"payload": "hijack"}),
            ("POST", "/runs/{}/fork", {"at": 0}),
            ("POST", "/runs/{}/replay", None),
            ("DELETE", "/runs/{}", None),
        ]
        for run_id in (done, waiting):
            for method, template, body in requests:
                foreign = await theirs.request(method, template.format(run_id), json=body)
                missing = await theirs.request(
                    method, template.format("x" * len(run_id)), json=body
                )
                found = assert_problem(foreign, 404, "not_found")
                assert found["detail"] == assert_problem(missing, 404)["detail"].replace(
                    "x" * len(run_id), run_id
                )
        # Nothing happened to them.
        assert (await ours.get(f"/runs/{waiting}")).json()["status"] == "waiting"
        assert (await ours.get(f"/runs/{done}")).json()["superseded_by"] is None
        assert len((await ours.get(f"/runs/{done}/journal")).json()) == 1
        events = (await ours.get(f"/runs/{waiting}/events")).json()
        assert not any(e["kind"].startswith("message") for e in events)


async def test_lists_exports_counts_and_queues_hold_only_the_callers_runs(live: Live) -> None:
    ours_client, theirs_client = await _two_tenants(live)
    async with ours_client as ours, theirs_client as theirs:
        mine = {await _start(ours, WAIT) for _ in range(3)}
        their_run = await _start(theirs, GREET)
        await wait_status(theirs, their_run, "succeeded")
        for run_id in mine:
            await wait_status(ours, run_id, "waiting")

        listed = (await theirs.get("/runs", params={"limit": 500})).json()["items"]
        assert [r["run_id"] for r in listed] == [their_run]
        assert all(r["tenant"] == "acme" for r in listed)
        for run_id in mine:  # searching by id finds nothing either
            assert (await theirs.get("/runs", params={"q": run_id})).json()["items"] == []
        assert {r["run_id"] for r in (await ours.get("/runs")).json()["items"]} == mine

        jsonl = await theirs.get("/runs/export", params={"format": "jsonl"})
        lines = [orjson.loads(line) for line in jsonl.content.splitlines() if line]
        assert [r["run_id"] for r in lines] == [their_run]
        exported = await theirs.get("/runs/export", params={"format": "csv"})
        rows = list(csv.DictReader(io.StringIO(exported.text)))
        assert [r["run_id"] for r in rows] == [their_run]

        count = await theirs.post("/runs/bulk", json={"action": "cancel", "filter": {}})
        assert count.json() == {"action": "cancel", "count": 1}
        bulk = await theirs.post(
            "/runs/bulk",
            json={"action": "cancel", "filter": {"status": "waiting"}, "dry_run": False},
        )
        assert bulk.status_code == 202 and bulk.json()["total"] == 0

        def waiting_in(queues: list[dict[str, Any]]) -> int:
            return sum(q["waiting"] for q in queues)

        assert waiting_in((await ours.get("/queues")).json()) == 3
        assert waiting_in((await theirs.get("/queues")).json()) == 0
        for run_id in mine:  # the foreign bulk cancel touched none of them
            assert (await ours.get(f"/runs/{run_id}")).json()["status"] == "waiting"


async def test_keys_users_bulk_jobs_and_audit_are_per_tenant(live: Live) -> None:
    ours_client, theirs_client = await _two_tenants(live)
    async with ours_client as ours, theirs_client as theirs:
        key = (await ours.post("/keys", json={"name": "ours", "role": "viewer"})).json()["key"]
        user = await ours.post(
            "/users", json={"username": "olga", "password": "long enough password"}
        )
        assert user.status_code == 201
        job = await ours.post("/runs/bulk", json={"action": "replay", "dry_run": False})
        assert job.status_code == 202, job.text
        job_id = job.json()["job_id"]

        foreign = {key["key_id"], "olga", job_id}
        before = (await theirs.get("/audit", params={"limit": 1000})).json()["items"]
        assert not foreign & {r["object_id"] for r in before}
        assert (await theirs.get("/audit", params={"object_id": job_id})).json()["items"] == []

        their_keys = (await theirs.get("/keys")).json()
        assert key["key_id"] not in {k["key_id"] for k in their_keys}
        assert {k["tenant_id"] for k in their_keys} == {"acme"}
        assert_problem(await theirs.post(f"/keys/{key['key_id']}/revoke"), 404, "not_found")
        assert_problem(await theirs.post(f"/keys/{key['key_id']}/rotate"), 404, "not_found")
        assert (await ours.get("/keys")).json()[0]["revoked_at"] is None

        assert "olga" not in {u["username"] for u in (await theirs.get("/users")).json()}
        assert_problem(await theirs.patch("/users/olga", json={"role": "admin"}), 404)
        assert_problem(await theirs.delete("/users/olga"), 404)
        assert_problem(await theirs.delete("/users/admin"), 404)

        assert_problem(await theirs.get(f"/bulk/{job_id}"), 404, "not_found")
        assert job_id not in {j["job_id"] for j in (await theirs.get("/bulk")).json()}

        # acme's own refused attempts are in acme's log (denied), never in ours.
        their_audit = (await theirs.get("/audit", params={"limit": 1000})).json()["items"]
        assert {r["tenant_id"] for r in their_audit} == {"acme"}
        touching = [r for r in their_audit if r["object_id"] in foreign]
        assert touching and {r["outcome"] for r in touching} == {"denied"}
        our_audit = (await ours.get("/audit", params={"limit": 1000})).json()["items"]
        assert {r["tenant_id"] for r in our_audit} == {"default"}
        assert not [
            r for r in our_audit if r["actor"].startswith("key:") and r["outcome"] == "denied"
        ]

        tenants = (await theirs.get("/tenants")).json()
        assert [t["tenant_id"] for t in tenants] == ["acme"]  # not the installation's list


async def test_workers_are_shared_and_reveal_no_runs(live: Live) -> None:
    """Workers belong to the installation, not to a tenant: every tenant sees the same
    registry, and nothing in it names a run (only a count in flight)."""
    ours_client, theirs_client = await _two_tenants(live)
    async with ours_client as ours, theirs_client as theirs:
        waiting = await _start(ours, WAIT)
        await wait_status(ours, waiting, "waiting")
        mine, theirs_list = (
            (await ours.get("/workers")).json(),
            (await theirs.get("/workers")).json(),
        )
        assert [w["worker_id"] for w in mine] == [w["worker_id"] for w in theirs_list]
        assert waiting not in orjson.dumps(theirs_list).decode()


async def _sse(response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    frame: dict[str, str] = {}
    async for line in response.aiter_lines():
        if not line:
            if "data" in frame:
                yield {
                    "id": frame.get("id"),
                    "event": frame.get("event"),
                    **orjson.loads(frame["data"]),
                }
            frame = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            frame[name] = value.removeprefix(" ")


async def test_event_stream_carries_only_the_callers_tenant(live: Live) -> None:
    ours_client, theirs_client = await _two_tenants(live)
    async with ours_client as ours, theirs_client as theirs:
        before = await _start(ours, GREET)
        await wait_status(ours, before, "succeeded")
        async with theirs.stream(
            "GET", "/events", headers={"Last-Event-ID": "0"}, timeout=30
        ) as stream:
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
            during = await _start(ours, GREET)
            mine = await _start(theirs, GREET)
            seen: list[dict[str, Any]] = []
            async for event in _sse(stream):
                seen.append(event)
                if event["run_id"] == mine and event["kind"] == "run.succeeded":
                    break
        # Events arrive in id order: every earlier event of either tenant was
        # considered before the last one arrived, and only acme's came through.
        assert {e["tenant"] for e in seen} == {"acme"}
        assert {e["run_id"] for e in seen} == {mine}
        assert not {before, during} & {e["run_id"] for e in seen}
        ids = [int(e["id"]) for e in seen]
        assert ids == sorted(ids) and len(set(ids)) == len(ids)
