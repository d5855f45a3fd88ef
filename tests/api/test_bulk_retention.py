"""Bulk actions over a filter (cancel, retry from the failed step, replay) with their
progress and audit records; retention policies that delete or archive old finished
runs, per tenant, audited."""

from __future__ import annotations

import gzip
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
from api_support import Live
from routes_support import assert_problem, eventually, wait_status

from kernos.records import Role

WAIT = {"workflow": "api_wait", "input": {}}
GREET = {"workflow": "api_greet", "input": {"name": "bulk"}}
FAIL = {"workflow": "api_fail", "input": {"reason": "flaky"}}


async def _started(client: httpx.AsyncClient, body: dict[str, Any], n: int) -> list[str]:
    ids = []
    for _ in range(n):
        response = await client.post("/runs", json=body)
        assert response.status_code == 201, response.text
        ids.append(response.json()["run_id"])
    return ids


async def _finished_job(client: httpx.AsyncClient, job_id: str) -> tuple[dict[str, Any], list[int]]:
    """Poll a bulk job until it is no longer running; return it and the progress seen."""
    progress: list[int] = []

    async def check() -> dict[str, Any] | None:
        job: dict[str, Any] = (await client.get(f"/bulk/{job_id}")).json()
        progress.append(job["done"] + job["failed"])
        return job if job["state"] != "running" else None

    job: dict[str, Any] = await eventually(check, timeout=60)
    return job, progress


async def test_bulk_cancel_dry_run_then_for_real_with_progress(live: Live) -> None:
    async with live.client(live.admin_key) as client:
        waiting = await _started(client, WAIT, 30)
        done = await _started(client, GREET, 2)
        for run_id in waiting:
            await wait_status(client, run_id, "waiting")
        for run_id in done:
            await wait_status(client, run_id, "succeeded")
        request = {"action": "cancel", "filter": {"workflow": "api_wait"}}

        dry = await client.post("/runs/bulk", json=request)
        assert dry.status_code == 200 and dry.json() == {"action": "cancel", "count": 30}
        assert (await client.get("/runs", params={"status": "cancelled"})).json()["items"] == []

        started = await client.post("/runs/bulk", json={**request, "dry_run": False})
        assert started.status_code == 202, started.text
        job = started.json()
        assert started.headers["location"] == f"/api/v1/bulk/{job['job_id']}"
        assert (job["action"], job["total"], job["filter"]) == ("cancel", 30, request["filter"])

        finished, progress = await _finished_job(client, job["job_id"])
        assert (finished["state"], finished["done"], finished["failed"]) == ("done", 30, 0)
        assert progress == sorted(progress) and progress[-1] == 30
        assert finished["finished_at"] >= finished["created_at"]
        assert {r["run_id"] for r in finished["results"]} == set(waiting)
        assert all(r["ok"] for r in finished["results"])

        cancelled = await client.get("/runs", params={"status": "cancelled", "limit": 500})
        assert {r["run_id"] for r in cancelled.json()["items"]} == set(waiting)
        for run_id in done:  # outside the filter: untouched
            assert (await client.get(f"/runs/{run_id}")).json()["status"] == "succeeded"
        assert job["job_id"] in {j["job_id"] for j in (await client.get("/bulk")).json()}

        audit = (await client.get("/audit", params={"action": "run.cancel", "limit": 1000})).json()
        per_run = [
            r for r in audit["items"] if (r["detail"] or {}).get("bulk_job") == job["job_id"]
        ]
        assert {r["object_id"] for r in per_run} == set(waiting)
        assert {(r["outcome"], r["ip"]) for r in per_run} == {("ok", "127.0.0.1")}
        (started_record,) = (await client.get("/audit", params={"action": "bulk.cancel"})).json()[
            "items"
        ]
        assert started_record["object_id"] == job["job_id"]
        assert started_record["detail"]["total"] == 30


async def test_bulk_retry_forks_from_the_failed_step(live: Live) -> None:
    async with live.client(live.admin_key) as client:
        failed = await _started(client, FAIL, 3)
        for run_id in failed:
            await wait_status(client, run_id, "failed")
        response = await client.post(
            "/runs/bulk",
            json={
                "action": "retry",
                "filter": {"workflow": "api_fail", "status": "failed"},
                "dry_run": False,
            },
        )
        assert response.status_code == 202, response.text
        job, _ = await _finished_job(client, response.json()["job_id"])
        assert (job["state"], job["done"], job["failed"]) == ("done", 3, 0)
        forks = {r["run_id"]: r for r in job["results"]}
        assert set(forks) == set(failed)
        for run_id, result in forks.items():
            assert result["at"] == 0  # the failed step is the first entry
            fork = await wait_status(client, result["fork"], "failed")  # it fails again
            assert (fork["forked_from"], fork["fork_seq"]) == (run_id, 0)
            original = (await client.get(f"/runs/{run_id}")).json()
            assert original["superseded_by"] == result["fork"]
            journal = (await client.get(f"/runs/{result['fork']}/journal")).json()
            assert [e["status"] for e in journal] == ["error"]  # re-executed, not copied


async def test_bulk_replay_reports_each_run(live: Live) -> None:
    async with live.client(live.admin_key) as client:
        greeted = await _started(client, GREET, 3)
        for run_id in greeted:
            await wait_status(client, run_id, "succeeded")
        response = await client.post(
            "/runs/bulk",
            json={"action": "replay", "filter": {"status": "succeeded"}, "dry_run": False},
        )
        job, _ = await _finished_job(client, response.json()["job_id"])
        assert (job["state"], job["done"]) == ("done", 3)
        reports = {r["run_id"]: r for r in job["results"]}
        assert set(reports) == set(greeted)
        assert all(r["identical"] and r["complete"] for r in reports.values())


async def test_bulk_jobs_belong_to_the_tenant_that_started_them(live: Live) -> None:
    async with live.client(await live.key(Role.OPERATOR, "acme")) as acme:
        job = await acme.post("/runs/bulk", json={"action": "cancel", "dry_run": False})
        assert job.status_code == 202 and job.json()["total"] == 0
        finished, _ = await _finished_job(acme, job.json()["job_id"])
        assert finished["state"] == "done"
    async with live.client(live.admin_key) as admin:
        assert_problem(await admin.get(f"/bulk/{job.json()['job_id']}"), 404)


async def test_retention_deletes_old_finished_runs_per_tenant(live: Live) -> None:
    acme_key = await live.key(Role.ADMIN, "acme")
    async with live.client(live.admin_key) as ours, live.client(acme_key) as acme:
        our_done = await _started(ours, GREET, 2)
        their_done = await _started(acme, GREET, 3)
        their_waiting = await _started(acme, WAIT, 1)
        for run_id in our_done:
            await wait_status(ours, run_id, "succeeded")
        for run_id in their_done:
            await wait_status(acme, run_id, "succeeded")
        await wait_status(acme, their_waiting[0], "waiting")
        policy = await acme.put("/tenant/retention", json={"days": 7, "action": "delete"})
        assert policy.status_code == 200, policy.text

        now = time.time()
        assert await live.service.retention.sweep(now=now + 6 * 86400) == {"acme": 0}
        purged = await live.service.retention.sweep(now=now + 8 * 86400)
        assert purged == {"acme": 3}

        remaining = [r["run_id"] for r in (await acme.get("/runs")).json()["items"]]
        assert remaining == their_waiting  # unfinished runs are kept however old
        for run_id in their_done:
            assert_problem(await acme.get(f"/runs/{run_id}"), 404)
        # The default tenant has no policy: nothing of its is touched.
        assert {r["run_id"] for r in (await ours.get("/runs")).json()["items"]} == set(our_done)

        records = (await acme.get("/audit", params={"action": "retention."})).json()["items"]
        assert [(r["action"], r["actor"], r["outcome"]) for r in records] == [
            ("retention.delete", "system", "ok")
        ]
        assert records[0]["detail"]["runs"] == 3
        changed = (await acme.get("/audit", params={"action": "tenant.retention"})).json()
        assert changed["items"][0]["detail"] == {"days": 7, "action": "delete"}


async def test_retention_archives_before_deleting(live: Live, tmp_path: Path) -> None:
    live.service.retention.archive_dir = tmp_path / "archive"
    async with live.client(live.admin_key) as client:
        runs = await _started(client, GREET, 2) + await _started(client, FAIL, 1)
        for run_id in runs:
            await wait_status(client, run_id, "succeeded", "failed")
        assert (
            await client.put("/tenant/retention", json={"days": 1, "action": "archive"})
        ).status_code == 200
        later = time.time() + 2 * 86400
        assert await live.service.retention.sweep(now=later) == {"default": 3}

        day = time.strftime("%Y-%m-%d", time.gmtime(later))
        archive = tmp_path / "archive" / "default" / f"runs-{day}.jsonl.gz"
        with gzip.open(archive, "rb") as lines:
            records = [orjson.loads(line) for line in lines]
        assert {r["run"]["run_id"] for r in records} == set(runs)
        for record in records:
            assert record["journal"] and record["events"]
            assert record["events"][-1]["kind"] in ("run.succeeded", "run.failed")
            assert record["run"]["tenant"] == "default"
        assert (await client.get("/runs")).json()["items"] == []
        (audit,) = (await client.get("/audit", params={"action": "retention."})).json()["items"]
        assert (audit["action"], audit["detail"]["runs"]) == ("retention.archive", 3)
