"""The runs API end to end over HTTP, on each backend: workflows, starting (idempotent,
validated), reading, listing and exporting, controlling, forking, replaying,
journals, checkpoints, events, queues, workers and deleting run data."""

from __future__ import annotations

import csv
import io
import time
from typing import Any

import httpx
import orjson
from api_support import Live, greet
from routes_support import SQLITE_ONLY, assert_problem, wait_status

import kernos
from kernos.records import Role


@kernos.step
async def api_half(n: int) -> int:
    """Half of n."""
    return n // 2


@kernos.workflow(name="api_checkpointed")
async def checkpointed(n: int) -> dict[str, int]:
    """Halve twice, with a checkpoint between."""
    half = await api_half(n)
    kernos.checkpoint("halfway", {"half": half})
    quarter = await api_half(half)
    return {"half": half, "quarter": quarter}


GREET = {"workflow": "api_greet", "input": {"name": "ada"}}
WAIT = {"workflow": "api_wait", "input": {}}


async def _start(client: httpx.AsyncClient, body: dict[str, Any], **headers: str) -> dict[str, Any]:
    response = await client.post("/runs", json=body, headers=headers)
    assert response.status_code == 201, response.text
    run: dict[str, Any] = response.json()
    return run


@SQLITE_ONLY
async def test_workflows_are_listed_with_their_input_schemas(live: Live) -> None:
    async with live.client(live.admin_key) as client:
        listed = (await client.get("/workflows")).json()
        names = {w["name"] for w in listed}
        assert {"api_greet", "api_wait", "api_fail", "api_checkpointed"} <= names

        greet = (await client.get("/workflows/api_greet")).json()
        assert greet["doc"] == "Greet someone, loudly."
        schema = greet["input_schema"]
        assert schema["type"] == "object" and schema["required"] == ["name"]
        assert schema["properties"]["name"]["type"] == "string"
        assert schema["properties"]["times"]["type"] == "integer"
        assert schema["additionalProperties"] is False
        assert_problem(await client.get("/workflows/nope"), 404, "not_found")


async def test_start_is_idempotent_per_key_and_tenant(live: Live) -> None:
    async with live.client(live.admin_key) as client:
        response = await client.post("/runs", json=GREET, headers={"Idempotency-Key": "k1"})
        assert response.status_code == 201, response.text
        first = response.json()
        assert response.headers["location"] == f"/api/v1/runs/{first['run_id']}"
        assert first["workflow"] == "api_greet" and first["tenant"] == "default"
        assert first["input"] == {"args": [], "kwargs": {"name": "ada"}}

        again = await client.post("/runs", json=GREET, headers={"Idempotency-Key": "k1"})
        assert again.status_code == 200 and again.json()["run_id"] == first["run_id"]

        other = {"workflow": "api_greet", "input": {"name": "bob"}}
        conflict = await client.post("/runs", json=other, headers={"Idempotency-Key": "k1"})
        assert_problem(conflict, 409, "conflict")
        other_workflow = await client.post("/runs", json=WAIT, headers={"Idempotency-Key": "k1"})
        assert_problem(other_workflow, 409, "conflict")

        unkeyed = [await _start(client, GREET) for _ in range(2)]
        assert unkeyed[0]["run_id"] != unkeyed[1]["run_id"]
        listed = (await client.get("/runs", params={"limit": 500})).json()["items"]
        assert len(listed) == 3  # the repeats and conflicts made nothing

    async with live.client(await live.key(Role.OPERATOR, "acme")) as acme:
        theirs = await acme.post("/runs", json=GREET, headers={"Idempotency-Key": "k1"})
        assert theirs.status_code == 201 and theirs.json()["run_id"] != first["run_id"]


@SQLITE_ONLY
async def test_start_validates_input_against_the_workflow_signature(live: Live) -> None:
    cases: list[tuple[dict[str, Any], list[Any], str]] = [
        ({"workflow": "api_greet", "input": {}}, ["body", "input", "name"], "missing"),
        ({"workflow": "api_greet", "input": {"name": 5}}, ["body", "input", "name"], "string_type"),
        (
            {"workflow": "api_greet", "input": {"name": "x", "times": "many"}},
            ["body", "input", "times"],
            "int_parsing",
        ),
        (
            {"workflow": "api_greet", "input": {"name": "x", "colour": "red"}},
            ["body", "input", "colour"],
            "extra_forbidden",
        ),
        ({"workflow": "api_greet", "input": [1, 2]}, ["body", "input"], "dict_type"),
        (
            {"workflow": "api_greet", "input": {"name": "x"}, "priority": 10**6},
            ["body", "priority"],
            "less_than_equal",
        ),
        (
            {"workflow": "api_greet", "queue": "no spaces"},
            ["body", "queue"],
            "string_pattern_mismatch",
        ),
        (
            {"workflow": "api_greet", "input": {"name": "x"}, "when": 1},
            ["body", "when"],
            "extra_forbidden",
        ),
        ({"input": {"name": "x"}}, ["body", "workflow"], "missing"),
    ]
    async with live.client(live.admin_key) as client:
        for body, loc, kind in cases:
            response = await client.post("/runs", json=body)
            problem = assert_problem(response, 422)
            assert {"loc": loc, "type": kind} in [
                {"loc": e["loc"], "type": e["type"]} for e in problem["errors"]
            ], (body, problem)
            assert all(isinstance(e["msg"], str) and e["msg"] for e in problem["errors"])
        assert_problem(
            await client.post("/runs", json={"workflow": "nope", "input": {}}), 404, "not_found"
        )
        assert (await client.get("/runs")).json()["items"] == []


async def test_get_and_list_with_every_filter(live: Live) -> None:
    async with live.client(live.admin_key) as client:
        greets = [await _start(client, GREET) for _ in range(2)]
        t_between = time.time()
        waits = [await _start(client, {**WAIT, "queue": "inbox"}) for _ in range(2)]
        for run in greets:
            await wait_status(client, run["run_id"], "succeeded")
        for run in waits:
            await wait_status(client, run["run_id"], "waiting")

        got = (await client.get(f"/runs/{greets[0]['run_id']}")).json()
        assert got["status"] == "succeeded" and got["output"] == "hello ADA"
        assert got["steps"] == 1 and got["finished_at"] >= got["created_at"]
        assert_problem(await client.get("/runs/nope"), 404, "not_found")

        async def ids(**params: Any) -> list[str]:
            response = await client.get("/runs", params=params)
            assert response.status_code == 200, response.text
            return [r["run_id"] for r in response.json()["items"]]

        newest_first = [r["run_id"] for r in reversed(greets + waits)]
        assert await ids() == newest_first
        assert await ids(status="succeeded") == newest_first[2:]
        assert await ids(status="waiting") == newest_first[:2]
        assert await ids(workflow="api_wait") == newest_first[:2]
        assert await ids(queue="inbox") == newest_first[:2]
        assert await ids(queue="default") == newest_first[2:]
        assert await ids(created_after=t_between) == newest_first[:2]
        assert await ids(created_before=t_between) == newest_first[2:]
        assert await ids(q=greets[0]["run_id"][3:12]) == [greets[0]["run_id"]]
        assert await ids(q="API_WA") == newest_first[:2]  # workflow, case-insensitive
        assert await ids(status="failed") == []
        assert_problem(await client.get("/runs", params={"status": "lost"}), 422)
        assert_problem(await client.get("/runs", params={"limit": 0}), 422)
        assert_problem(await client.get("/runs", params={"cursor": "not-a-cursor"}), 422)


async def test_cursor_pagination_neither_repeats_nor_skips(live: Live) -> None:
    async with live.client(live.admin_key) as client:
        # Delayed runs stay pending: nothing changes while we page.
        made = [(await _start(client, {**GREET, "delay": 3600}))["run_id"] for _ in range(23)]
        seen: list[str] = []
        cursor = None
        pages = 0
        while True:
            params: dict[str, Any] = {"limit": 5}
            if cursor:
                params["cursor"] = cursor
            page = (await client.get("/runs", params=params)).json()
            seen += [r["run_id"] for r in page["items"]]
            pages += 1
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert pages == 5
        assert seen == list(reversed(made))
        # A cursor combines with filters.
        first = (await client.get("/runs", params={"limit": 2, "workflow": "api_greet"})).json()
        rest = await client.get(
            "/runs", params={"limit": 500, "workflow": "api_greet", "cursor": first["next_cursor"]}
        )
        assert [r["run_id"] for r in rest.json()["items"]] == list(reversed(made))[2:]


async def test_export_streams_csv_and_jsonl(live: Live) -> None:
    async with live.client(live.admin_key) as client:
        # More than one 200-row chunk; delayed runs stay pending.
        made = []
        for _ in range(205):
            new = live.app.new_queued_run("default", greet, (), {"name": "ada"}, delay=3600)
            made.append((await live.app.store.enqueue(new)).run_id)
        async with client.stream("GET", "/runs/export", params={"format": "csv"}) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/csv")
            assert "content-length" not in response.headers  # streamed, not buffered
            assert 'filename="runs.csv"' in response.headers["content-disposition"]
            chunks = [chunk async for chunk in response.aiter_raw()]
        rows = list(csv.DictReader(io.StringIO(b"".join(chunks).decode())))
        assert [r["run_id"] for r in rows] == list(reversed(made))
        assert rows[0]["status"] == "pending" and rows[0]["workflow"] == "api_greet"
        assert set(rows[0]) >= {"run_id", "workflow", "status", "queue", "created_at", "error"}

        async with client.stream(
            "GET", "/runs/export", params={"format": "jsonl", "status": "pending"}
        ) as response:
            assert response.headers["content-type"].startswith("application/x-ndjson")
            assert "content-length" not in response.headers
            lines = [line async for line in response.aiter_lines() if line]
        runs = [orjson.loads(line) for line in lines]
        assert [r["run_id"] for r in runs] == list(reversed(made))
        assert runs[0]["input"] == {"args": [], "kwargs": {"name": "ada"}}
        empty = await client.get("/runs/export", params={"status": "failed"})
        assert empty.status_code == 200 and empty.content == b""
        assert_problem(await client.get("/runs/export", params={"format": "xml"}), 422)


async def test_cancel_pause_resume_and_messages(live: Live) -> None:
    async with live.client(live.admin_key) as client:
        run_id = (await _start(client, WAIT))["run_id"]
        await wait_status(client, run_id, "waiting")

        paused = await client.post(f"/runs/{run_id}/pause")
        assert paused.status_code == 200, paused.text
        await wait_status(client, run_id, "paused")
        sent = await client.post(f"/runs/{run_id}/messages", json={"payload": {"go": True}})
        assert sent.status_code == 202 and sent.content == b""
        resumed = await client.post(f"/runs/{run_id}/resume")
        assert resumed.status_code == 200, resumed.text
        done = await wait_status(client, run_id, "succeeded")
        assert done["output"] == {"go": True}
        assert_problem(await client.post(f"/runs/{run_id}/messages", json={"payload": 1}), 409)
        assert_problem(await client.post(f"/runs/{run_id}/resume"), 409)

        topic = (await _start(client, {"workflow": "api_wait", "input": {"topic": "t"}}))["run_id"]
        await wait_status(client, topic, "waiting")
        wrong = await client.post(f"/runs/{topic}/messages", json={"payload": 1, "topic": "u"})
        assert wrong.status_code == 202
        cancelled = await client.post(f"/runs/{topic}/cancel", json={"reason": "changed my mind"})
        assert cancelled.status_code == 200 and cancelled.json() == {"cancelled": [topic]}
        run = await wait_status(client, topic, "cancelled")
        assert "changed my mind" in orjson.dumps(run["error"]).decode()
        # Cancelling a finished run changes nothing; without a body is fine too.
        again = await client.post(f"/runs/{topic}/cancel")
        assert again.status_code == 200 and again.json() == {"cancelled": []}
        assert_problem(await client.post("/runs/nope/cancel"), 404)


async def test_fork_with_a_patched_result_replay_and_journal(live: Live) -> None:
    async with live.client(live.admin_key) as client:
        run_id = (
            await _start(client, {"workflow": "api_greet", "input": {"name": "ada", "times": 2}})
        )["run_id"]
        await wait_status(client, run_id, "succeeded")
        journal = (await client.get(f"/runs/{run_id}/journal")).json()
        assert [(e["seq"], e["kind"], e["status"]) for e in journal] == [(0, "step", "ok")]
        assert journal[0]["output"] == "ADA" and journal[0]["name"].endswith("shout")

        response = await client.post(
            f"/runs/{run_id}/fork", json={"at": 0, "patch": "GRACE", "patched": True}
        )
        assert response.status_code == 201, response.text
        fork = response.json()
        assert fork["forked_from"] == run_id and fork["fork_seq"] == 0
        done = await wait_status(client, fork["run_id"], "succeeded")
        assert done["output"] == "hello GRACE hello GRACE"
        assert (await client.get(f"/runs/{run_id}")).json()["superseded_by"] == fork["run_id"]

        report = (await client.post(f"/runs/{run_id}/replay")).json()
        assert report["run_id"] == run_id and report["identical"] is True
        assert report["divergence"] is None and report["complete"] is True
        assert report["entries_checked"] == 1

        assert_problem(await client.post(f"/runs/{run_id}/fork", json={"at": 7}), 422)
        assert_problem(await client.post(f"/runs/{run_id}/fork", json={"at": "nowhere"}), 422)
        assert_problem(await client.post(f"/runs/{run_id}/fork", json={}), 422)


async def test_checkpoints_and_forking_at_one(live: Live) -> None:
    async with live.client(live.admin_key) as client:
        run_id = (await _start(client, {"workflow": "api_checkpointed", "input": {"n": 20}}))[
            "run_id"
        ]
        await wait_status(client, run_id, "succeeded")
        checkpoints = (await client.get(f"/runs/{run_id}/checkpoints")).json()
        assert [(c["name"], c["state"], c["intact"]) for c in checkpoints] == [
            ("halfway", {"half": 10}, True)
        ]
        assert len(checkpoints[0]["sha256"]) == 64
        fork = (await client.post(f"/runs/{run_id}/fork", json={"at": "halfway"})).json()
        done = await wait_status(client, fork["run_id"], "succeeded")
        assert done["output"] == {"half": 10, "quarter": 5}
        assert fork["fork_seq"] == checkpoints[0]["seq"] + 1


async def test_run_events_in_order_with_after_and_limit(live: Live) -> None:
    async with live.client(live.admin_key) as client:
        run_id = (await _start(client, GREET))["run_id"]
        await wait_status(client, run_id, "succeeded")
        events = (await client.get(f"/runs/{run_id}/events")).json()
        kinds = [e["kind"] for e in events]
        assert kinds[-1] == "run.succeeded" and "step.completed" in kinds
        assert kinds.index("step.completed") < kinds.index("run.succeeded")
        ids = [e["event_id"] for e in events]
        assert ids == sorted(ids) and all(e["run_id"] == run_id for e in events)
        later = (await client.get(f"/runs/{run_id}/events", params={"after": ids[0]})).json()
        assert [e["event_id"] for e in later] == ids[1:]
        one = (await client.get(f"/runs/{run_id}/events", params={"limit": 1})).json()
        assert [e["event_id"] for e in one] == ids[:1]
        assert_problem(await client.get(f"/runs/{run_id}/events", params={"after": -1}), 422)


async def test_queues_and_workers(live: Live) -> None:
    async with live.client(live.admin_key) as client:
        for _ in range(2):
            await _start(client, {**GREET, "queue": "later", "delay": 3600})
        waiting = (await _start(client, WAIT))["run_id"]
        await wait_status(client, waiting, "waiting")
        queues = {q["name"]: q for q in (await client.get("/queues")).json()}
        assert queues["later"]["pending"] == 2 and queues["later"]["running"] == 0
        assert queues["default"]["waiting"] == 1

        workers = (await client.get("/workers")).json()
        assert len(workers) == 1
        (worker,) = workers
        assert worker["state"] == "active" and worker["heartbeat_at"] <= time.time() + 1
        assert worker["pid"] > 0 and worker["host"]


async def test_delete_purges_a_finished_run_and_refuses_an_unfinished_one(live: Live) -> None:
    async with live.client(live.admin_key) as client:
        done = (await _start(client, GREET))["run_id"]
        waiting = (await _start(client, WAIT))["run_id"]
        await wait_status(client, done, "succeeded")
        await wait_status(client, waiting, "waiting")

        response = await client.delete(f"/runs/{done}")
        assert response.status_code == 200, response.text
        deleted = response.json()["deleted"]
        assert deleted["runs"] == 1 and deleted["journal"] == 1 and deleted["events"] >= 3
        assert_problem(await client.get(f"/runs/{done}"), 404)
        assert_problem(await client.get(f"/runs/{done}/events"), 404)
        assert_problem(await client.delete(f"/runs/{done}"), 404)

        refused = assert_problem(await client.delete(f"/runs/{waiting}"), 409)
        assert "cancel it first" in refused["detail"].lower()
        assert (await client.get(f"/runs/{waiting}")).json()["status"] == "waiting"
