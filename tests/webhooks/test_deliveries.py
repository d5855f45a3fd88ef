"""Webhooks end to end: a live server notifies a verifying receiver on loopback of the
approval events real runs emit, retries, gives up, survives a restart, keeps tenants
apart and never lets a secret out."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
import orjson
import pytest
from api_support import Live, live_server
from routes_support import SQLITE_ONLY, assert_problem, eventually, wait_status
from webhook_support import FAST, Received, Receiver, restarted

from kernos.records import Role

APPROVALS = ["approval.requested", "approval.escalated", "approval.decided"]


async def _subscribe(client: httpx.AsyncClient, receiver: Receiver, **body: Any) -> dict[str, Any]:
    response = await client.post("/webhooks", json={"url": receiver.url, **body})
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    assert created["secret"].startswith("whsec_")
    receiver.secret = created["secret"]
    return created


async def _start(client: httpx.AsyncClient, **input: Any) -> str:
    response = await client.post("/runs", json={"workflow": "wh_approval", "input": input})
    assert response.status_code == 201, response.text
    run_id: str = response.json()["run_id"]
    return run_id


async def _deliveries(client: httpx.AsyncClient, webhook_id: str) -> list[dict[str, Any]]:
    response = await client.get(f"/webhooks/{webhook_id}/deliveries", params={"limit": 500})
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def test_approval_events_of_a_run_reach_the_receiver_signed(
    live: Live, hook_receiver: Receiver
) -> None:
    async with live.client(live.admin_key) as admin:
        created = await _subscribe(admin, hook_receiver)
        hook_id = created["webhook"]["webhook_id"]
        assert created["webhook"]["kinds"] == ["approval.*"]
        run_id = await _start(admin, title="Refund order 7")
        await wait_status(admin, run_id, "succeeded")

        got = _by_event(await eventually(lambda: _n(hook_receiver, 3)))
        assert all(r.verified for r in got), [r.refusal for r in got]
        bodies = [r.json() for r in got]
        assert [b["type"] for b in bodies] == APPROVALS  # no "progress"
        first = bodies[0]
        assert first["tenant"] == "default"
        assert first["data"]["title"] == "Refund order 7"
        assert first["data"]["links"] == {
            "run": f"https://kernos.example.com/runs/{run_id}",
            "approval": f"https://kernos.example.com/approvals/ap_{run_id}",
        }
        assert [r.headers["Kernos-Webhook-Id"] for r in got] == [b["id"] for b in bodies]

        items = await eventually(lambda: _all_delivered(admin, hook_id, 3))
        assert {d["delivery_id"] for d in items} == {b["id"] for b in bodies}
        assert all(d["attempts"] == 1 and d["response_status"] == 200 for d in items)


def _by_event(received: list[Received]) -> list[Received]:
    # Deliveries go out concurrently: receivers order by event_id (or created_at).
    return sorted(received, key=lambda r: int(r.json()["event_id"]))


async def _n(receiver: Receiver, count: int) -> list[Received] | None:
    got = receiver.all()
    assert len(got) <= count, [r.json() for r in got]
    return got if len(got) == count else None


async def _all_delivered(
    client: httpx.AsyncClient, webhook_id: str, count: int
) -> list[dict[str, Any]] | None:
    items = await _deliveries(client, webhook_id)
    done = [d for d in items if d["status"] == "delivered"]
    return items if len(items) == count and len(done) == count else None


@SQLITE_ONLY
async def test_retries_with_backoff_after_500s_then_delivers(
    live: Live, hook_receiver: Receiver
) -> None:
    hook_receiver.answer(500, 503)
    async with live.client(live.admin_key) as admin:
        created = await _subscribe(admin, hook_receiver, kinds=["approval.requested"])
        hook_id = created["webhook"]["webhook_id"]
        await _start(admin)

        async def delivered() -> list[dict[str, Any]] | None:
            items = await _deliveries(admin, hook_id)
            return items if items and items[0]["status"] == "delivered" else None

        (item,) = await eventually(delivered)
        assert item["attempts"] == 3
        assert item["response_status"] == 200 and item["delivered_at"] is not None
        history = item["history"]
        assert [(h["attempt"], h["response_status"]) for h in history] == [
            (1, 500),
            (2, 503),
            (3, 200),
        ]
        assert [h["error"] for h in history] == ["HTTP 500", "HTTP 503", None]
        assert history[0]["at"] < history[1]["at"] < history[2]["at"]
        got = hook_receiver.all()
        assert [r.answered for r in got] == [500, 503, 200]
        assert len({r.headers["Kernos-Webhook-Id"] for r in got}) == 1  # one delivery, retried
        stamps = [int(r.headers["Kernos-Timestamp"]) for r in got]
        assert stamps == sorted(stamps)  # signed afresh at each attempt
        assert all(r.verified for r in got)


@SQLITE_ONLY
async def test_a_4xx_answer_is_dead_at_once_and_429_waits_for_retry_after(
    live: Live, hook_receiver: Receiver
) -> None:
    hook_receiver.answer(404)
    async with live.client(live.admin_key) as admin:
        created = await _subscribe(admin, hook_receiver, kinds=["approval.requested"])
        hook_id = created["webhook"]["webhook_id"]
        await _start(admin)

        async def settled() -> list[dict[str, Any]] | None:
            items = await _deliveries(admin, hook_id)
            return items if items and items[0]["status"] == "dead" else None

        (dead,) = await eventually(settled)
        assert (dead["attempts"], dead["response_status"]) == (1, 404)
        assert dead["last_error"] == "HTTP 404" and dead["next_attempt_at"] is None
        assert [h["response_status"] for h in dead["history"]] == [404]
        assert len(hook_receiver.all()) == 1

        hook_receiver.answer(429, headers={"Retry-After": "3600"})
        await _start(admin)

        async def throttled() -> dict[str, Any] | None:
            items = await _deliveries(admin, hook_id)
            fresh = [d for d in items if d["delivery_id"] != dead["delivery_id"]]
            return fresh[0] if fresh and fresh[0]["attempts"] == 1 else None

        waiting = await eventually(throttled)
        assert waiting["status"] == "failed" and waiting["response_status"] == 429
        # The backoff here is under a second; the receiver asked for an hour.
        assert waiting["next_attempt_at"] >= waiting["created_at"] + 3500
        statuses = [d["status"] for d in await _deliveries(admin, hook_id)]
        assert statuses == ["failed", "dead"]  # newest first


async def test_no_notification_is_lost_or_repeated_across_a_restart(
    store_url: str, hook_receiver: Receiver
) -> None:
    async with live_server(store_url, settings=FAST) as first:
        async with first.client(first.admin_key) as admin:
            created = await _subscribe(admin, hook_receiver)
            hook_id = created["webhook"]["webhook_id"]
            run_id = await _start(admin, wait=True)
            await wait_status(admin, run_id, "waiting")
            await eventually(lambda: _n(hook_receiver, 1))
        admin_key = first.admin_key
    # The run goes on under a new server; its first event was handed over by the
    # old one, maybe without the cursor written (cursors are written lazily).
    async with (
        restarted(store_url) as url,
        httpx.AsyncClient(base_url=url, headers={"X-API-Key": admin_key}) as admin,
    ):
        sent = await admin.post(f"/runs/{run_id}/messages", json={"topic": "go", "payload": 1})
        assert sent.status_code in (200, 202, 204), sent.text
        await wait_status(admin, run_id, "succeeded")
        items = await eventually(lambda: _all_delivered(admin, hook_id, 3))
        got = _by_event(await eventually(lambda: _n(hook_receiver, 3)))
        assert [r.json()["type"] for r in got] == APPROVALS
        assert len({r.json()["event_id"] for r in got}) == 3
        assert {d["delivery_id"] for d in items} == {r.json()["id"] for r in got}


@SQLITE_ONLY
async def test_slack_format_is_a_slack_message(live: Live, hook_receiver: Receiver) -> None:
    async with live.client(live.admin_key) as admin:
        await _subscribe(admin, hook_receiver, format="slack", kinds=["approval.decided"])
        run_id = await _start(admin, title="Deploy <prod>")
        await wait_status(admin, run_id, "succeeded")
        (got,) = await eventually(lambda: _n(hook_receiver, 1))
    assert got.verified
    message = got.json()
    assert set(message) == {"text", "blocks"}
    assert message["text"].startswith("Approval ap_") and "approved by user:bob" in message["text"]
    section, context, actions = message["blocks"]
    assert section["type"] == "section" and section["text"]["type"] == "mrkdwn"
    assert "ok &lt;b&gt;go&lt;/b&gt; &amp; ship" in section["text"]["text"]
    assert context["type"] == "context" and run_id in context["elements"][0]["text"]
    assert actions["type"] == "actions"
    assert [e["url"] for e in actions["elements"]][-1] == (
        f"https://kernos.example.com/runs/{run_id}"
    )


@SQLITE_ONLY
async def test_tenants_see_and_get_only_their_own(live: Live, hook_receiver: Receiver) -> None:
    acme_key = await live.key(Role.ADMIN, "acme")
    operator_key = await live.key(Role.OPERATOR)
    async with live.client(live.admin_key) as admin, live.client(acme_key) as acme:
        created = await _subscribe(acme, hook_receiver)
        acme_hook = created["webhook"]["webhook_id"]
        assert created["webhook"]["tenant_id"] == "acme"
        mine = await admin.post("/webhooks", json={"url": hook_receiver.url + "/default"})
        default_hook = mine.json()["webhook"]["webhook_id"]
        hook_receiver.secret = mine.json()["secret"]  # only this one should be called

        assert [h["webhook_id"] for h in (await acme.get("/webhooks")).json()] == [acme_hook]
        assert [h["webhook_id"] for h in (await admin.get("/webhooks")).json()] == [default_hook]
        for method, path in (
            ("GET", ""),
            ("GET", "/deliveries"),
            ("PATCH", ""),
            ("POST", "/rotate"),
            ("POST", "/test"),
            ("DELETE", ""),
        ):
            json = {"active": False} if method == "PATCH" else None
            answer = await acme.request(method, f"/webhooks/{default_hook}{path}", json=json)
            assert_problem(answer, 404, "not_found")

        # A run of the default tenant notifies the default tenant's webhook only.
        run_id = await _start(admin)
        await wait_status(admin, run_id, "succeeded")
        await eventually(lambda: _all_delivered(admin, default_hook, 3))
        assert await _deliveries(acme, acme_hook) == []
        assert {r.json()["tenant"] for r in hook_receiver.all()} == {"default"}

    async with live.client(operator_key) as operator:
        (seen,) = (await operator.get("/webhooks")).json()
        assert seen["url"] == hook_receiver.url.split("/hooks")[0]  # no path for non-admins
        assert (await operator.get(f"/webhooks/{default_hook}/deliveries")).status_code == 200


@SQLITE_ONLY
async def test_secrets_never_leave_in_audit_events_errors_or_logs(
    live: Live, hook_receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    hook_receiver.answer(500)
    async with live.client(live.admin_key) as admin:
        created = await _subscribe(admin, hook_receiver)
        hook_id = created["webhook"]["webhook_id"]
        rotated = await admin.post(f"/webhooks/{hook_id}/rotate")
        assert rotated.status_code == 200, rotated.text
        secrets = {created["secret"], rotated.json()["secret"]}
        assert len(secrets) == 2
        hook_receiver.secret = rotated.json()["secret"]
        ping = await admin.post(f"/webhooks/{hook_id}/test")
        assert ping.status_code == 200, ping.text
        assert (ping.json()["status"], ping.json()["response_status"]) == ("dead", 500)
        assert (await admin.post(f"/webhooks/{hook_id}/test")).json()["status"] == "delivered"
        assert hook_receiver.all()[-1].verified  # signed with the rotated secret

        run_id = await _start(admin)
        await wait_status(admin, run_id, "succeeded")

        async def settled() -> list[str] | None:
            statuses = sorted(d["status"] for d in await _deliveries(admin, hook_id))
            return statuses if statuses == ["dead"] + ["delivered"] * 4 else None

        await eventually(settled)  # two pings, three approval events
        texts = [
            (await admin.get("/audit", params={"limit": 1000})).text,
            (await admin.get(f"/runs/{run_id}/events")).text,
            (await admin.get("/webhooks")).text,
            (await admin.get(f"/webhooks/{hook_id}")).text,
            (await admin.get(f"/webhooks/{hook_id}/deliveries")).text,
            caplog.text,
        ]
        audit = (await admin.get("/audit", params={"action": "webhook."})).json()["items"]
        assert {a["action"] for a in audit} >= {"webhook.create", "webhook.rotate", "webhook.test"}
    for text in texts:
        for secret in secrets:
            assert secret not in text
    for record in caplog.records:
        assert not any(s in orjson.dumps(record.__dict__, default=str).decode() for s in secrets)


@SQLITE_ONLY
async def test_private_targets_need_the_server_setting(
    store_url: str, hook_receiver: Receiver
) -> None:
    async with live_server(store_url) as live, live.client(live.admin_key) as admin:
        refused = await admin.post("/webhooks", json={"url": hook_receiver.url})
        body = assert_problem(refused, 422)
        assert "private" in body["detail"]
        assert_problem(await admin.post("/webhooks", json={"url": "ftp://example.com/"}), 422)
        assert (await admin.get("/webhooks")).json() == []


@SQLITE_ONLY
async def test_a_paused_webhook_sends_nothing_and_catches_up_when_resumed(
    live: Live, hook_receiver: Receiver
) -> None:
    async with live.client(live.admin_key) as admin:
        created = await _subscribe(admin, hook_receiver)
        hook_id = created["webhook"]["webhook_id"]
        paused = await admin.patch(f"/webhooks/{hook_id}", json={"active": False})
        assert paused.status_code == 200 and paused.json()["active"] is False
        run_id = await _start(admin)
        await wait_status(admin, run_id, "succeeded")
        await asyncio.sleep(2.5)  # the dispatcher re-reads webhooks every second
        assert hook_receiver.all() == []
        resumed = await admin.patch(f"/webhooks/{hook_id}", json={"active": True})
        assert resumed.json()["active"] is True
        got = _by_event(await eventually(lambda: _n(hook_receiver, 3)))
        assert [r.json()["type"] for r in got] == APPROVALS
