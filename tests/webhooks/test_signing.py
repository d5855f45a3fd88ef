"""Signatures, payloads and retry decisions, without a server."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from kernos import errors
from kernos.control import verify_webhook
from kernos.control._delivery import Attempt, DeliveryPolicy, Sender, settle
from kernos.control._webhooks import check_url, payload, sign, signed_headers
from kernos.records import DeliveryStatus, Event, Webhook, WebhookDelivery, WebhookFormat
from kernos.retry import RetryPolicy

SECRET = "whsec_test-secret"
BODY = b'{"type":"approval.requested"}'


def _headers(now: float, secret: str = SECRET, body: bytes = BODY) -> dict[str, str]:
    return signed_headers(secret, "whd_1", body, now)


def test_a_signed_request_verifies_in_any_header_case() -> None:
    now = time.time()
    headers = _headers(now)
    assert headers["Kernos-Signature"] == f"v1={sign(SECRET, int(now), BODY)}"
    verify_webhook(SECRET, headers, BODY, now=now)
    verify_webhook(SECRET, {k.lower(): v for k, v in headers.items()}, BODY, now=now)


@pytest.mark.parametrize(
    ("secret", "body", "age", "reason"),
    [
        (SECRET, BODY + b" ", 0, "mismatch"),  # tampered body
        ("whsec_other", BODY, 0, "mismatch"),  # wrong secret
        (SECRET, BODY, 301, "stale"),  # replayed later
        (SECRET, BODY, -301, "stale"),  # from the future
    ],
)
def test_tampering_wrong_secrets_and_stale_timestamps_are_refused(
    secret: str, body: bytes, age: float, reason: str
) -> None:
    now = 1_800_000_000.0
    headers = _headers(now)
    with pytest.raises(errors.AuthenticationError) as caught:
        verify_webhook(secret, headers, body, now=now + age)
    assert getattr(caught.value, "reason", None) == reason
    assert SECRET not in str(caught.value)


def test_missing_or_malformed_headers_are_refused() -> None:
    now = time.time()
    good = _headers(now)
    for drop in ("Kernos-Timestamp", "Kernos-Signature"):
        headers = {k: v for k, v in good.items() if k != drop}
        with pytest.raises(errors.AuthenticationError):
            verify_webhook(SECRET, headers, BODY, now=now)
    with pytest.raises(errors.AuthenticationError):
        verify_webhook(SECRET, {**good, "Kernos-Signature": "v0=abc"}, BODY, now=now)


def _event(kind: str, data: dict[str, object]) -> Event:
    return Event(
        event_id=42, run_id="r1", kind=kind, at=1.5, data=data, tenant="acme", workflow="wf"
    )


def test_json_payload_carries_the_event_and_links() -> None:
    event = _event("approval.requested", {"approval_id": "ap1", "title": "Pay"})
    body = payload(event, "whd_9", WebhookFormat.JSON, base_url="https://k.example/")
    assert body == {
        "id": "whd_9",
        "type": "approval.requested",
        "created_at": 1.5,
        "tenant": "acme",
        "event_id": 42,
        "data": {
            "approval_id": "ap1",
            "title": "Pay",
            "links": {
                "run": "https://k.example/runs/r1",
                "approval": "https://k.example/approvals/ap1",
            },
        },
    }


def test_slack_payload_summarises_and_escapes() -> None:
    event = _event(
        "approval.decided",
        {"approval_id": "ap1", "decision": "rejected", "by": "user:<!channel>", "comment": "a&b"},
    )
    body = payload(event, "whd_9", WebhookFormat.SLACK, base_url="https://k.example")
    assert set(body) == {"text", "blocks"}
    assert "rejected" in body["text"] and "user:<!channel>" in body["text"]
    section = body["blocks"][0]
    assert section["type"] == "section" and section["text"]["type"] == "mrkdwn"
    assert "&lt;!channel&gt;" in section["text"]["text"] and "a&amp;b" in section["text"]["text"]
    assert "<!channel>" not in section["text"]["text"]  # no @channel ping from data
    buttons = body["blocks"][-1]["elements"]
    assert [b["url"] for b in buttons] == [
        "https://k.example/approvals/ap1",
        "https://k.example/runs/r1",
    ]
    orjson.dumps(body)


def _delivery() -> WebhookDelivery:
    return WebhookDelivery(
        delivery_id="whd_1",
        webhook_id="wh_1",
        tenant_id="default",
        event_id=1,
        kind="approval.requested",
        payload="{}",
        attempts=0,
        status=DeliveryStatus.PENDING,
        response_status=None,
        last_error=None,
        next_attempt_at=0.0,
        created_at=0.0,
    )


def test_outcomes_deliver_retry_or_give_up() -> None:
    policy = DeliveryPolicy(retry=RetryPolicy(max_attempts=3, initial_delay=10, jitter=0))
    first = _delivery()
    assert settle(first, Attempt(status=204), policy, 100).status is DeliveryStatus.DELIVERED
    failed = settle(first, Attempt(status=500, error="HTTP 500"), policy, 100)
    assert (failed.status, failed.attempts, failed.next_attempt_at) == (
        DeliveryStatus.FAILED,
        1,
        110,
    )
    later = settle(failed, Attempt(status=503, retry_after=600), policy, 200)
    assert later.next_attempt_at == 800  # Retry-After beats a shorter backoff
    assert settle(later, Attempt(status=500), policy, 900).status is DeliveryStatus.DEAD
    gone = settle(first, Attempt(status=410, permanent=True), policy, 100)
    assert (gone.status, gone.next_attempt_at) == (DeliveryStatus.DEAD, None)


def test_statuses_are_judged_as_documented() -> None:
    sender = Sender(DeliveryPolicy(max_retry_after=60), clock=lambda: 1000.0)

    def judge(status: int, **headers: str) -> Attempt:
        return sender._judge(httpx.Response(status, headers=headers))

    assert judge(200).ok and judge(299).ok
    assert judge(400).permanent and judge(404).permanent and judge(302).permanent
    assert not judge(408).permanent and not judge(429).permanent and not judge(500).permanent
    assert judge(429, **{"Retry-After": "30"}).retry_after == 30
    assert judge(503, **{"Retry-After": "86400"}).retry_after == 60  # capped


def test_urls_must_be_http_and_public_unless_allowed() -> None:
    for url in ("ftp://example.com/x", "example.com/x", "https://user:pw@example.com/x"):
        with pytest.raises(errors.UsageError):
            check_url(url, allow_private=True)
    for url in (
        "http://127.0.0.1:9/x",
        "http://localhost/x",
        "http://10.1.2.3/x",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/x",
        "http://[::ffff:192.168.0.1]/x",
    ):
        with pytest.raises(errors.UsageError):
            check_url(url, allow_private=False)
        assert check_url(url, allow_private=True) == url
    assert check_url("https://hooks.slack.com/services/T/B/x", allow_private=False)


async def test_a_name_resolving_to_a_private_address_is_refused_at_send_time() -> None:
    async def resolve(host: str, port: int) -> list[str]:
        return ["10.0.0.7"]

    sender = Sender(DeliveryPolicy(), resolver=resolve)
    hook = dataclasses.replace(
        _webhook(), url="https://internal.example.com/x", secret="whsec_never_shown"
    )
    async with sender.client() as client:
        attempt = await sender.send(client, hook, _delivery())
    assert attempt.permanent and attempt.status is None
    assert "10.0.0.7" in (attempt.error or "") and "whsec_never_shown" not in (attempt.error or "")


def _webhook() -> Webhook:
    return Webhook(
        webhook_id="wh_1",
        tenant_id="default",
        url="https://example.com/x",
        secret=SECRET,
        kinds=("approval.*",),
        format=WebhookFormat.JSON,
        active=True,
        created_by="system",
        created_at=0.0,
    )


def test_the_readme_receiver_snippet_verifies_what_kernos_signs() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme.split("**Verifying a delivery.**", 1)[1]
    snippet = section.split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict[str, Any] = {}
    exec(snippet, namespace)
    verify = namespace["verify"]
    headers = signed_headers(SECRET, "whd_1", BODY, time.time())
    assert verify(SECRET, headers, BODY)
    assert not verify(SECRET, headers, BODY + b"x")
    assert not verify("whsec_other", headers, BODY)
    stale = signed_headers(SECRET, "whd_1", BODY, time.time() - 301)
    assert not verify(SECRET, stale, BODY)


async def test_a_receiver_that_never_answers_is_a_timeout_to_retry() -> None:
    released = asyncio.Event()
    handlers: list[asyncio.Task[Any]] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.append(task)
        try:
            await reader.read(65536)
            await released.wait()  # holds the connection, never answers
        finally:
            writer.close()  # before the loop ends, or its __del__ warns

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    sender = Sender(DeliveryPolicy(timeout=0.3, allow_private=True))
    hook = dataclasses.replace(_webhook(), url=f"http://127.0.0.1:{port}/slow")
    try:
        async with sender.client() as client:
            attempt = await sender.send(client, hook, _delivery())
    finally:
        released.set()
        await asyncio.gather(*handlers, return_exceptions=True)
        server.close()
        await server.wait_closed()
    assert attempt.status is None and not attempt.permanent
    assert (attempt.error or "").startswith("no answer within 0.3 s")
