"""Limits and hygiene: rate limits (sign-in per address and per user, requests per
credential), body and header size limits, precise 422s for malformed input in the
one problem shape, no stack traces in answers, and secrets never in logs, events,
audit records or error messages."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
from api_support import Live, live_server
from routes_support import SQLITE_ONLY, assert_no_leak, assert_problem

from kernos.api import ServerSettings
from kernos.control import Authenticator, parse_api_key
from kernos.records import Role


def _from(live: Live, ip: str) -> httpx.AsyncClient:
    """An in-process client of the live app whose requests come from ``ip``."""
    transport = httpx.ASGITransport(app=live.server.api, client=(ip, 50000))
    return httpx.AsyncClient(transport=transport, base_url="http://kernos.test/api/v1")


async def _login(client: httpx.AsyncClient, username: str, password: str) -> httpx.Response:
    return await client.post("/auth/login", json={"username": username, "password": password})


def _strict_sign_in(live: Live) -> None:
    """Allow 3 sign-in attempts a minute (not 10): each refused one costs a password hash."""
    service = live.service
    service.auth = Authenticator(service.app.store, auditor=service.audit, login_limit=(3, 60.0))


@SQLITE_ONLY
async def test_sign_in_is_rate_limited_per_address(live: Live) -> None:
    _strict_sign_in(live)
    async with _from(live, "10.0.0.1") as attacker, _from(live, "10.0.0.2") as bystander:
        for i in range(3):  # a different user each time: the address is what counts
            assert_problem(await _login(attacker, f"user{i}", "guess"), 401)
        limited = await _login(attacker, "admin", live.admin_password)
        body = assert_problem(limited, 429, "rate_limited")
        assert int(limited.headers["retry-after"]) >= 1
        assert "address" in body["detail"]
        # Another address is unaffected, and the right password still works there.
        assert (await _login(bystander, "admin", live.admin_password)).status_code == 200


@SQLITE_ONLY
async def test_sign_in_is_rate_limited_per_user(live: Live) -> None:
    _strict_sign_in(live)
    for i in range(3):
        async with _from(live, f"10.1.0.{i}") as client:
            assert_problem(await _login(client, "admin", "guess"), 401)
    async with _from(live, "10.1.0.99") as client:
        limited = await _login(client, "Admin", live.admin_password)  # names fold case
        assert_problem(limited, 429, "rate_limited")
        assert "this user" in limited.json()["detail"]
        assert int(limited.headers["retry-after"]) >= 1
        assert (await _login(client, "someone-else", "guess")).status_code == 401


@SQLITE_ONLY
async def test_requests_are_rate_limited_per_credential(store_url: str) -> None:
    settings = ServerSettings(key_rate=(5, 60.0))
    async with live_server(store_url, settings=settings) as live:
        other = await live.key(Role.VIEWER)
        async with live.client(live.admin_key) as admin, live.client(other) as viewer:
            for _ in range(5):
                assert (await admin.get("/runs")).status_code == 200
            limited = await admin.get("/runs")
            assert_problem(limited, 429, "rate_limited")
            assert 1 <= int(limited.headers["retry-after"]) <= 12
            assert_problem(await admin.post("/runs", json={"workflow": "api_greet"}), 429)
            # Per credential: another key has its own budget.
            assert (await viewer.get("/runs")).status_code == 200
        # A bad credential is refused before it costs anyone's budget.
        async with live.client("kn_not-a-key") as stranger:
            assert_problem(await stranger.get("/runs"), 401)


@pytest.fixture
async def small_limits(store_url: str) -> AsyncIterator[Live]:
    """A server that accepts bodies up to 4 KiB and headers up to 2 KiB."""
    settings = ServerSettings(max_body_bytes=4096, max_header_bytes=2048)
    async with live_server(store_url, settings=settings) as live:
        yield live


def _start_body(size: int) -> bytes:
    """A valid start request of exactly ``size`` bytes."""
    head, tail = b'{"workflow": "api_greet", "input": {"name": "', b'"}}'
    return head + b"x" * (size - len(head) - len(tail)) + tail


@SQLITE_ONLY
async def test_oversized_bodies_get_413_declared_or_streamed(small_limits: Live) -> None:
    live = small_limits
    json = {"Content-Type": "application/json"}
    async with live.client(live.admin_key) as client:
        at_limit = await client.post("/runs", content=_start_body(4096), headers=json)
        assert at_limit.status_code == 201, at_limit.text

        declared = await client.post("/runs", content=_start_body(4097), headers=json)
        assert_problem(declared, 413)
        assert "4096" in declared.json()["detail"]

        async def chunks() -> AsyncIterator[bytes]:
            body = _start_body(20_000)
            for i in range(0, len(body), 1000):
                yield body[i : i + 1000]

        streamed = await client.post("/runs", content=chunks(), headers=json)
        assert "content-length" not in streamed.request.headers  # sent chunked
        assert_problem(streamed, 413)

        # A route that reads no body is refused all the same when one is declared.
        assert_problem(await client.post("/runs/x/pause", content=b"x" * 5000), 413)
        listed = (await client.get("/runs")).json()["items"]
        assert len(listed) == 1  # only the request within the limit did anything


@SQLITE_ONLY
async def test_oversized_headers_get_431(small_limits: Live) -> None:
    live = small_limits
    async with live.client(live.admin_key) as client:
        assert (await client.get("/runs", headers={"X-Note": "x" * 500})).status_code == 200
        big = await client.get("/runs", headers={"X-Note": "x" * 3000})
        assert_problem(big, 431)
        many = {f"X-Note-{i}": "y" * 40 for i in range(60)}
        assert_problem(await client.get("/runs", headers=many), 431)
    async with httpx.AsyncClient(base_url=live.url) as client:
        assert_problem(await client.get("/healthz", headers={"X-Note": "x" * 3000}), 431)


@SQLITE_ONLY
async def test_default_limits(live: Live) -> None:
    # Declare 2 MiB and send none of it: the answer must not wait for the body.
    host, port = live.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        b"POST /api/v1/runs HTTP/1.1\r\nHost: kernos\r\nContent-Type: application/json\r\n"
        + f"Authorization: Bearer {live.admin_key}\r\n".encode()
        + f"Content-Length: {2 * 1024 * 1024}\r\n\r\n".encode()
    )
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    writer.close()
    await writer.wait_closed()
    assert head.startswith(b"HTTP/1.1 413 "), head
    assert b"content-type: application/problem+json" in head.lower()
    async with live.client(live.admin_key) as client:
        assert_problem(await client.get("/runs", headers={"X-Note": "x" * 20_000}), 431)


JSON = {"Content-Type": "application/json"}
NUL = "a\x00b"

# (method, path, request options, the location the problem must name)
MALFORMED: list[tuple[str, str, dict[str, Any], list[Any] | None]] = [
    ("POST", "/runs", {"content": b'{"workflow":', "headers": JSON}, ["body", 12]),
    ("POST", "/runs", {"content": b'{"workflow": "\xff\xfe"}', "headers": JSON}, ["body"]),
    ("POST", "/runs", {"content": b"[" * 50_000 + b"]" * 50_000, "headers": JSON}, ["body"]),
    (
        "POST",
        "/runs",
        {"content": b'{"priority": ' + b"9" * 5000 + b"}", "headers": JSON},
        ["body"],
    ),
    ("POST", "/runs", {"content": b"not json at all", "headers": JSON}, ["body", 0]),
    ("POST", "/runs", {"content": b"[1, 2]", "headers": JSON}, ["body"]),
    (
        "POST",
        "/runs",
        {"content": b"workflow=api_greet", "headers": {"Content-Type": "text/plain"}},
        ["body"],
    ),
    (
        "POST",
        "/runs",
        {"json": {"workflow": "api_greet", "input": {"name": "x"}, "extra": 1}},
        ["body", "extra"],
    ),
    (
        "POST",
        "/runs",
        {"json": {"workflow": "api_greet", "priority": "high"}},
        ["body", "priority"],
    ),
    ("POST", "/runs", {"content": b'{"workflow": "w", "priority": 1e400}', "headers": JSON}, None),
    ("POST", "/runs", {"json": {"workflow": NUL}}, ["body", "workflow"]),
    ("GET", "/runs", {"params": {"limit": "ten"}}, ["query", "limit"]),
    ("GET", "/runs", {"params": {"limit": 10**30}}, ["query", "limit"]),
    ("GET", "/runs", {"params": {"created_after": "nan"}}, ["query", "created_after"]),
    ("GET", "/runs", {"params": {"q": NUL}}, ["query", "q"]),
    ("GET", "/runs", {"params": {"workflow": NUL}}, ["query", "workflow"]),
    ("GET", "/runs", {"params": {"queue": "\x7f"}}, ["query", "queue"]),
    ("GET", "/runs", {"params": {"cursor": "WzEuMCwiYQBiIl0"}}, None),  # [1.0, "a\0b"]
    ("GET", "/runs/export", {"params": {"q": NUL}}, ["query", "q"]),
    ("GET", "/runs/a%00b", {}, ["path", "run_id"]),
    ("GET", "/runs/a%00b/journal", {}, ["path", "run_id"]),
    ("POST", "/runs/a%00b/cancel", {}, ["path", "run_id"]),
    ("GET", "/runs/x/events", {"params": {"after": 10**30}}, ["query", "after"]),
    ("POST", "/runs/x/fork", {"json": {"at": 10**30}}, None),
    ("POST", "/runs/x/fork", {"json": {"at": -1}}, None),
    ("POST", "/runs/x/fork", {"json": {"at": NUL}}, None),
    ("POST", "/runs/x/messages", {"json": {"topic": NUL}}, ["body", "topic"]),
    ("POST", "/runs/x/cancel", {"json": {"reason": NUL}}, ["body", "reason"]),
    ("GET", "/workflows/a%00b", {}, ["path", "name"]),
    ("PATCH", "/users/a%00b", {"json": {"role": "viewer"}}, ["path", "username"]),
    ("PATCH", "/users/admin", {"json": {"role": "root"}}, ["body", "role"]),
    ("POST", "/keys", {"json": {"name": NUL}}, ["body", "name"]),
    ("POST", "/keys/a%00b/revoke", {}, ["path", "key_id"]),
    ("GET", "/bulk/a%00b", {}, ["path", "job_id"]),
    (
        "POST",
        "/runs/bulk",
        {"json": {"action": "cancel", "filter": {"q": NUL}}},
        ["body", "filter", "q"],
    ),
    ("POST", "/runs/bulk", {"json": {"action": "explode"}}, ["body", "action"]),
    ("POST", "/tenants", {"json": {"tenant_id": "t", "name": NUL}}, ["body", "name"]),
    ("GET", "/audit", {"params": {"actor": NUL}}, ["query", "actor"]),
    ("GET", "/audit", {"params": {"before_id": 10**30}}, ["query", "before_id"]),
    ("POST", "/auth/login", {"json": {"username": NUL, "password": "x"}}, ["body", "username"]),
    ("POST", "/auth/login", {"json": {"username": "admin"}}, ["body", "password"]),
    ("GET", "/events", {"params": {"last_event_id": "soon"}}, ["query", "last_event_id"]),
    ("GET", "/events", {"params": {"run_id": NUL}}, None),
    ("GET", "/events", {"params": {"kind": NUL}}, None),
    ("GET", "/events", {"params": {"last_event_id": 10**30}}, None),
]


async def test_malformed_input_gets_a_precise_422(live: Live) -> None:
    failures = []
    async with live.client(live.admin_key) as client:
        for method, path, options, loc in MALFORMED:
            response = await client.request(method, path, **options)
            try:
                body = assert_problem(response, 422)
                assert body["errors"], body
                for error in body["errors"]:
                    assert set(error) == {"loc", "msg", "type"}, error
                if loc is not None:
                    assert loc in [e["loc"] for e in body["errors"]], body["errors"]
            except (AssertionError, KeyError, ValueError) as error:
                failures.append(f"{method} {path} {str(options)[:60]}: {error}")
        assert (await client.get("/runs")).json()["items"] == []  # none of it did anything
    assert not failures, "\n".join(failures)


@SQLITE_ONLY
async def test_an_unexpected_error_answers_500_without_internals(
    live: Live, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("disk on fire in /srv/kernos/secret_module.py")

    monkeypatch.setattr(live.service.runs, "get", broken)
    async with live.client(live.admin_key) as client:
        with caplog.at_level(logging.ERROR, logger="kernos.api"):
            response = await client.get("/runs/anything")
    body = assert_problem(response, 500, "internal_error")
    assert "disk on fire" not in response.text and "secret_module" not in response.text
    assert body["request_id"] in body["detail"]
    logged = [r for r in caplog.records if body["request_id"] in r.getMessage()]
    assert logged and logged[0].exc_info is not None  # the trace went to the log


async def test_secrets_never_appear_in_logs_events_audit_or_errors(
    live: Live, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secrets = {live.admin_key, live.admin_password}
    bodies: list[str] = []

    def seen(response: httpx.Response) -> httpx.Response:
        bodies.append(response.text)
        return response

    async with live.client(live.admin_key) as admin:
        created = await admin.post("/keys", json={"name": "ops", "role": "operator"})
        key = created.json()["secret"]
        secrets.add(key)
        secrets.add(parse_api_key(key)[1])
        user_password = "a password nobody may see"
        secrets.add(user_password)
        seen(await admin.post("/users", json={"username": "uma", "password": user_password}))
        login = await admin.post(
            "/auth/login", json={"username": "uma", "password": user_password, "token": True}
        )
        token = login.json()["token"]
        secrets.add(token)
        seen(await admin.patch("/users/uma", json={"password": "another secret pw"}))
        secrets.add("another secret pw")
        rotated = await admin.post(f"/keys/{parse_api_key(key)[0]}/rotate")
        secrets.add(rotated.json()["secret"])
        forged = f"kn_{parse_api_key(key)[0]}_{'B' * 43}"
        secrets.add(forged)
        seen(await admin.get("/auth/me", headers={"Authorization": f"Bearer {forged}"}))
        seen(await admin.post("/auth/login", json={"username": "admin", "password": forged}))
        async with live.client(key) as ops:
            started = seen(await ops.post("/runs", json={"workflow": "api_wait"}))
            run_id = started.json()["run_id"]
            seen(await ops.post(f"/runs/{run_id}/cancel"))
            seen(await ops.get(f"/runs/{run_id}"))
        async with live.client(token) as uma:
            seen(await uma.post("/auth/logout"))
            seen(await uma.get("/auth/me"))  # a signed-out token: the 401 must not echo it
        seen(await admin.get("/audit", params={"limit": 1000}))
        seen(await admin.get("/keys"))
        seen(await admin.get("/users"))
    events = await live.app.store.stream_events(after=0, limit=100_000, tenant="default")
    assert events, "no events to look through"
    texts = {
        "logs": caplog.text,
        "events": orjson.dumps([e.to_dict() for e in events]).decode(),
        "responses": "\n".join(bodies),
    }
    assert caplog.records, "no logs captured"
    for where, text in texts.items():
        for secret in secrets:
            assert secret not in text, f"a secret leaked into {where}"
    for body in bodies:
        assert "Traceback" not in body


@SQLITE_ONLY
async def test_problem_shape_is_the_same_everywhere(live: Live) -> None:
    """401, 403, 404, 405, 409, 413, 422, 429 and a route that does not exist."""
    viewer = await live.key(Role.VIEWER)
    async with live.client(live.admin_key) as admin, live.client(viewer) as reader:
        responses = [
            await reader.get("/nowhere"),
            await admin.put("/runs"),
            await reader.post("/runs", json={"workflow": "api_greet"}),
            await admin.get("/runs/nope"),
            await admin.delete("/users/admin"),
            await admin.post("/runs", json={}),
        ]
    async with httpx.AsyncClient(base_url=live.url) as anonymous:
        responses.append(await anonymous.get("/api/v1/runs"))
    statuses = []
    for response in responses:
        assert_no_leak(response)
        statuses.append(assert_problem(response, response.status_code)["status"])
    assert statuses == [404, 405, 403, 404, 409, 422, 401]


@SQLITE_ONLY
async def test_metrics_label_requests_by_full_route_template(live: Live) -> None:
    async with live.client(live.admin_key) as client:
        assert (await client.get("/runs/some-run")).status_code == 404
        assert (await client.get("/nowhere")).status_code == 404
        text = (await client.get(live.url + "/metrics")).text
    assert (
        'kernos_http_requests_total{method="GET",route="/api/v1/runs/{run_id}",status="404"} 1.0'
        in text
    )
    assert 'route="unmatched",status="404"' in text
    assert "some-run" not in text  # ids never become labels
