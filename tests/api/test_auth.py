"""Authentication on every route: each kind of bad credential gets a 401 problem, never
a 500 and never the resource; sessions, CSRF and sign-out work as documented.

The routes are enumerated from the application, so a route added without
authentication fails :func:`test_every_route_refuses_every_bad_credential` unless
it is added to the documented public ones.
"""

from __future__ import annotations

import base64
import time
from typing import Any

import httpx
import pytest
from api_support import Live
from routes_support import (
    PUBLIC,
    SQLITE_ONLY,
    assert_no_leak,
    assert_problem,
    fill,
    http_routes,
    websocket_paths,
)

from kernos.control import Principal, hash_secret, parse_api_key
from kernos.control._secrets import new_token
from kernos.records import Role, Session


async def _expired_session(live: Live) -> str:
    user = await live.app.store.find_user("admin")
    assert user is not None
    token, now = new_token(), time.time()
    await live.app.store.create_session(
        Session(
            token_hash=hash_secret(token),
            user_id=user.user_id,
            tenant_id="default",
            csrf_token=new_token(),
            created_at=now - 7200,
            expires_at=now - 1,
        )
    )
    return token


async def bad_credentials(live: Live) -> dict[str, dict[str, str]]:
    """Headers of every kind of credential that must be refused, by name."""
    admin, system = live.service.admin, Principal.system("default")
    key_id = parse_api_key(live.admin_key)[0]
    expiring, expired_key = await admin.create_key(system, "expiring", Role.ADMIN, expires_in=60)
    await live.app.store.update_api_key(expiring.key_id, expires_at=time.time() - 1)
    revocable, revoked_key = await admin.create_key(system, "revoked", Role.ADMIN)
    await admin.revoke_key(system, revocable.key_id)
    expired_token = await _expired_session(live)
    basic = base64.b64encode(f"admin:{live.admin_password}".encode()).decode()
    return {
        "no credentials": {},
        "malformed key": {"Authorization": "Bearer kn_not-a-key"},
        "malformed X-API-Key": {"X-API-Key": "hunter2"},
        "forged key (right id, wrong secret)": {"Authorization": f"Bearer kn_{key_id}_{'A' * 43}"},
        "expired key": {"X-API-Key": expired_key},
        "revoked key": {"Authorization": f"Bearer {revoked_key}"},
        "expired session token": {"Authorization": f"Bearer {expired_token}"},
        "expired session cookie": {"Cookie": f"kernos_session={expired_token}"},
        "unknown session token": {"Authorization": f"Bearer {new_token()}"},
        "bad scheme": {"Authorization": f"Basic {basic}"},
        "bearer without a value": {"Authorization": "Bearer"},
    }


def _secrets_in(headers: dict[str, str]) -> list[str]:
    return [value.split(" ", 1)[-1].split("=", 1)[-1] for value in headers.values()]


async def test_every_route_refuses_every_bad_credential(live: Live) -> None:
    routes = http_routes(live.server.api)
    protected = [(m, p) for m, p in routes if (m, p) not in PUBLIC]
    assert len(protected) >= 40, protected  # the enumeration found the API
    credentials = await bad_credentials(live)
    failures: list[str] = []
    async with httpx.AsyncClient(base_url=live.url, timeout=30) as client:
        for method, path in protected:
            for name, headers in credentials.items():
                response = await client.request(method, fill(path), headers=headers)
                what = f"{method} {path} with {name}: {response.status_code} {response.text[:200]}"
                try:
                    assert_problem(response, 401, "unauthenticated")
                    assert response.headers["www-authenticate"].startswith("Bearer")
                    for secret in _secrets_in(headers):
                        assert len(secret) < 8 or secret not in response.text
                except (AssertionError, KeyError, ValueError):
                    failures.append(what)
    assert not failures, "\n".join(failures)


@SQLITE_ONLY
async def test_public_routes_answer_without_credentials(live: Live) -> None:
    """The documented public routes are exactly those that need no credentials."""
    served = set(http_routes(live.server.api))
    async with httpx.AsyncClient(base_url=live.url) as client:
        for method, path in sorted(PUBLIC & served):
            if path.endswith("/login"):
                response = await client.post(path, json={"username": "x", "password": "y"})
                assert_problem(response, 401)  # answered: wrong password, not missing credentials
                assert "missing credentials" not in response.json()["detail"]
            else:
                response = await client.request(method, path)
                assert response.status_code == 200, (path, response.text)


@SQLITE_ONLY
async def test_openapi_declares_security_on_every_protected_operation(live: Live) -> None:
    async with httpx.AsyncClient(base_url=live.url) as client:
        document = (await client.get("/api/v1/openapi.json")).json()
    schemes = set(document["components"]["securitySchemes"])
    assert {"HTTPBearer", "APIKeyHeader", "APIKeyCookie"} <= schemes
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if (method.upper(), path) in PUBLIC:
                continue
            assert operation.get("security"), f"{method.upper()} {path} declares no security"


async def test_websocket_refuses_bad_credentials(live: Live) -> None:
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    paths = websocket_paths(live.server.api)
    assert paths == ["/api/v1/ws"]
    credentials = await bad_credentials(live)
    for name, headers in credentials.items():
        url = live.url.replace("http://", "ws://") + paths[0]
        async with connect(url, additional_headers=headers) as socket:
            with pytest.raises(ConnectionClosed) as closed:
                await socket.recv()
        assert closed.value.rcvd is not None, name
        assert closed.value.rcvd.code == 1008, (name, closed.value.rcvd)


@SQLITE_ONLY
async def test_a_valid_key_works_in_either_header(live: Live) -> None:
    async with httpx.AsyncClient(base_url=live.url + "/api/v1") as client:
        for headers in (
            {"Authorization": f"Bearer {live.admin_key}"},
            {"Authorization": f"bearer   {live.admin_key}"},
            {"X-API-Key": live.admin_key},
        ):
            response = await client.get("/auth/me", headers=headers)
            assert response.status_code == 200, response.text
            me = response.json()
            assert me["role"] == "admin" and me["tenant"] == "default"
            assert me["actor"] == f"key:{parse_api_key(live.admin_key)[0]}"


async def test_session_cookie_needs_csrf_for_writes_and_logout_ends_it(live: Live) -> None:
    async with httpx.AsyncClient(base_url=live.url + "/api/v1") as client:
        response = await client.post(
            "/auth/login", json={"username": "admin", "password": live.admin_password}
        )
        assert response.status_code == 200, response.text
        login = response.json()
        assert login["token"] is None and login["role"] == "admin"
        cookie = response.headers["set-cookie"]
        attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
        assert cookie.startswith("kernos_session=")
        assert {"httponly", "path", "max-age"} <= attributes
        assert "samesite=lax" in cookie.lower()
        assert "secure" not in attributes  # plain HTTP on loopback
        token = cookie.split(";")[0].split("=", 1)[1]
        assert token not in response.text  # the secret is only in the cookie

        me = await client.get("/auth/me")
        assert me.status_code == 200 and me.json()["actor"] == "user:admin"

        start: dict[str, Any] = {"workflow": "api_greet", "input": {"name": "csrf"}}
        refused = await client.post("/runs", json=start)
        assert_problem(refused, 403, "permission_denied")
        assert "X-CSRF-Token" in refused.json()["detail"]
        wrong = await client.post("/runs", json=start, headers={"X-CSRF-Token": "nope"})
        assert_problem(wrong, 403, "permission_denied")
        csrf = {"X-CSRF-Token": login["csrf_token"]}
        started = await client.post("/runs", json=start, headers=csrf)
        assert started.status_code == 201, started.text

        assert_problem(await client.post("/auth/logout"), 403)  # logout is a write too
        out = await client.post("/auth/logout", headers=csrf)
        assert out.status_code == 204
        assert 'kernos_session=""' in out.headers["set-cookie"] or "max-age=0" in (
            out.headers["set-cookie"].lower()
        )
        # The old cookie no longer works, even when sent again by hand.
        client.cookies.clear()
        gone = await client.get("/auth/me", headers={"Cookie": f"kernos_session={token}"})
        assert_problem(gone, 401, "unauthenticated")


@SQLITE_ONLY
async def test_token_login_for_scripts_and_logout(live: Live) -> None:
    async with httpx.AsyncClient(base_url=live.url + "/api/v1") as client:
        response = await client.post(
            "/auth/login",
            json={"username": "admin", "password": live.admin_password, "token": True},
        )
        assert response.status_code == 200, response.text
        assert "set-cookie" not in response.headers
        login = response.json()
        assert login["expires_at"] - time.time() <= 3600 + 5
        bearer = {"Authorization": f"Bearer {login['token']}"}
        # Bearer tokens are not sent by browsers on their own: no CSRF token needed.
        started = await client.post(
            "/runs", json={"workflow": "api_greet", "input": {"name": "t"}}, headers=bearer
        )
        assert started.status_code == 201, started.text
        assert (await client.post("/auth/logout", headers=bearer)).status_code == 204
        assert_problem(await client.get("/auth/me", headers=bearer), 401)


@SQLITE_ONLY
async def test_wrong_password_and_unknown_user_answer_alike(live: Live) -> None:
    async with httpx.AsyncClient(base_url=live.url + "/api/v1") as client:
        wrong = await client.post(
            "/auth/login", json={"username": "admin", "password": "not-the-password"}
        )
        unknown = await client.post(
            "/auth/login", json={"username": "nobody", "password": "not-the-password"}
        )
    for response in (wrong, unknown):
        body = assert_problem(response, 401, "unauthenticated")
        assert body["detail"] == "wrong username or password"
        assert "not-the-password" not in response.text
        assert_no_leak(response)


async def test_revoking_a_key_and_disabling_a_user_take_effect_at_once(live: Live) -> None:
    admin = live.client(live.admin_key)
    async with admin:
        created = await admin.post("/keys", json={"name": "short-lived", "role": "viewer"})
        assert created.status_code == 201, created.text
        secret, key_id = created.json()["secret"], created.json()["key"]["key_id"]
        async with live.client(secret) as viewer:
            assert (await viewer.get("/runs")).status_code == 200
            assert (await admin.post(f"/keys/{key_id}/revoke")).status_code == 200
            assert_problem(await viewer.get("/runs"), 401, "unauthenticated")

        made = await admin.post(
            "/users",
            json={"username": "dora", "password": "correct horse battery", "role": "operator"},
        )
        assert made.status_code == 201, made.text
        login = await admin.post(
            "/auth/login",
            json={"username": "dora", "password": "correct horse battery", "token": True},
        )
        token = login.json()["token"]
        async with live.client(token) as dora:
            assert (await dora.get("/auth/me")).json()["role"] == "operator"
            assert (await admin.patch("/users/dora", json={"disabled": True})).status_code == 200
            assert_problem(await dora.get("/auth/me"), 401, "unauthenticated")
