"""Administration over HTTP (users, API keys, tenants, retention settings) and the
audit trail: every state-changing route writes who, what, which object, when and
from where, and refused attempts are recorded as ``denied``."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from api_support import Live
from routes_support import (
    PUBLIC,
    SQLITE_ONLY,
    assert_problem,
    eventually,
    http_routes,
    wait_status,
)

import kernos
from kernos.control import parse_api_key
from kernos.records import Role

PASSWORD = "long enough password"


@kernos.workflow(name="api_awaiting_approval")
async def awaiting_approval() -> bool:
    """Wait for a person's decision; return whether it was an approval."""
    return (await kernos.approval("audited?")).approved


UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}


async def _user(admin: httpx.AsyncClient, name: str, role: str = "viewer") -> dict[str, Any]:
    response = await admin.post(
        "/users", json={"username": name, "password": PASSWORD, "role": role}
    )
    assert response.status_code == 201, response.text
    user: dict[str, Any] = response.json()
    return user


async def _token(client: httpx.AsyncClient, name: str, password: str = PASSWORD) -> str:
    response = await client.post(
        "/auth/login", json={"username": name, "password": password, "token": True}
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["token"]
    return token


async def test_users_create_list_update_and_remove(live: Live) -> None:
    async with live.client(live.admin_key) as admin:
        made = await _user(admin, "ann", "operator")
        assert made["username"] == "ann" and made["role"] == "operator"
        assert "password" not in str(made) and "hash" not in str(made)
        assert_problem(
            await admin.post("/users", json={"username": "ann", "password": PASSWORD}), 409
        )
        short = await admin.post("/users", json={"username": "bo", "password": "short"})
        assert assert_problem(short, 422)["errors"][0]["loc"] == ["body", "password"]
        bad_name = await admin.post("/users", json={"username": "Not Valid", "password": PASSWORD})
        assert assert_problem(bad_name, 422)["errors"][0]["loc"] == ["body", "username"]

        listed = {u["username"]: u for u in (await admin.get("/users")).json()}
        assert set(listed) == {"admin", "ann"} and listed["admin"]["role"] == "admin"

        changed = await admin.patch("/users/ann", json={"role": "admin", "disabled": False})
        assert changed.status_code == 200 and changed.json()["role"] == "admin"
        assert (await admin.patch("/users/ann", json={"password": "another long one"})).is_success
        assert (
            await admin.post("/auth/login", json={"username": "ann", "password": PASSWORD})
        ).status_code == 401
        await _token(admin, "ann", "another long one")

        assert (await admin.delete("/users/ann")).status_code == 204
        assert "ann" not in {u["username"] for u in (await admin.get("/users")).json()}
        assert_problem(await admin.delete("/users/ann"), 404)
        assert_problem(await admin.patch("/users/ghost", json={"role": "viewer"}), 404)


@SQLITE_ONLY
async def test_the_last_admin_cannot_be_demoted_disabled_or_removed(live: Live) -> None:
    async with live.client(live.admin_key) as admin:
        for request in (
            admin.patch("/users/admin", json={"role": "viewer"}),
            admin.patch("/users/admin", json={"disabled": True}),
            admin.delete("/users/admin"),
        ):
            body = assert_problem(await request, 409, "conflict")
            assert "last admin" in body["detail"]
        await _user(admin, "second", "admin")
        assert (await admin.patch("/users/admin", json={"role": "operator"})).status_code == 200


@SQLITE_ONLY
async def test_changing_ones_own_password(live: Live) -> None:
    async with live.client(live.admin_key) as admin:
        await _user(admin, "pat")
        token = await _token(admin, "pat")
        # An API key is not a signed-in user.
        assert_problem(
            await admin.post("/auth/password", json={"current": PASSWORD, "new": "x" * 12}), 403
        )
    async with live.client(token) as pat:
        wrong = await pat.post(
            "/auth/password", json={"current": "not my password", "new": "a brand new password"}
        )
        assert_problem(wrong, 403, "permission_denied")
        short = await pat.post("/auth/password", json={"current": PASSWORD, "new": "short"})
        assert_problem(short, 422)
        ok = await pat.post(
            "/auth/password", json={"current": PASSWORD, "new": "a brand new password"}
        )
        assert ok.status_code == 204
        assert (
            await pat.post("/auth/login", json={"username": "pat", "password": PASSWORD})
        ).status_code == 401
        await _token(pat, "pat", "a brand new password")


async def test_keys_create_list_revoke_and_rotate(live: Live) -> None:
    async with live.client(live.admin_key) as admin:
        created = await admin.post(
            "/keys", json={"name": "ci", "role": "operator", "expires_in": 3600}
        )
        assert created.status_code == 201, created.text
        key, secret = created.json()["key"], created.json()["secret"]
        assert parse_api_key(secret)[0] == key["key_id"]
        assert key["role"] == "operator" and key["created_by"].startswith("key:")
        assert 3500 < key["expires_at"] - time.time() <= 3600

        listed = await admin.get("/keys")
        assert secret not in listed.text and "secret" not in listed.text
        assert key["key_id"] in {k["key_id"] for k in listed.json()}

        async with live.client(secret) as ci:
            assert (await ci.get("/auth/me")).json()["role"] == "operator"
            assert (await admin.get("/keys")).json()[0]["last_used_at"] is not None

            rotated = await admin.post(f"/keys/{key['key_id']}/rotate", json={"overlap_s": 600})
            assert rotated.status_code == 201, rotated.text
            new = rotated.json()
            assert new["key"]["rotated_from"] == key["key_id"]
            assert new["key"]["role"] == "operator" and new["key"]["name"] == "ci"
            assert (await ci.get("/auth/me")).status_code == 200  # still within the overlap
            async with live.client(new["secret"]) as replacement:
                assert (await replacement.get("/auth/me")).status_code == 200

            immediate = await admin.post(
                f"/keys/{new['key']['key_id']}/rotate", json={"overlap_s": 0}
            )
            assert immediate.status_code == 201
            async with live.client(new["secret"]) as old:
                assert_problem(await old.get("/auth/me"), 401)

            revoked = await admin.post(f"/keys/{key['key_id']}/revoke")
            assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
            assert_problem(await ci.get("/auth/me"), 401, "unauthenticated")
            # Revoking twice is harmless; rotating a revoked key is a conflict.
            assert (await admin.post(f"/keys/{key['key_id']}/revoke")).status_code == 200
            assert_problem(await admin.post(f"/keys/{key['key_id']}/rotate"), 409)

        for body in ({"name": ""}, {"name": "x", "role": "root"}, {"name": "x", "expires_in": 0}):
            assert_problem(await admin.post("/keys", json=body), 422)


async def test_tenants_members_and_retention_settings(live: Live) -> None:
    async with live.client(live.admin_key) as admin:
        made = await admin.post("/tenants", json={"tenant_id": "acme", "name": "Acme Ltd"})
        assert made.status_code == 201, made.text
        assert made.json()["name"] == "Acme Ltd" and made.json()["retention_days"] is None
        assert_problem(await admin.post("/tenants", json={"tenant_id": "acme"}), 409)
        assert_problem(await admin.post("/tenants", json={"tenant_id": "Not OK"}), 422)
        ids = [t["tenant_id"] for t in (await admin.get("/tenants")).json()]
        assert set(ids) == {"default", "acme"}

        await _user(admin, "ivy")
        added = await admin.post("/tenants/acme/members", json={"username": "ivy", "role": "admin"})
        assert added.status_code == 204
        assert_problem(await admin.post("/tenants/nowhere/members", json={"username": "ivy"}), 404)
        login = await admin.post(
            "/auth/login",
            json={"username": "ivy", "password": PASSWORD, "tenant": "acme", "token": True},
        )
        assert login.status_code == 200 and login.json()["role"] == "admin"
        async with live.client(login.json()["token"]) as ivy:
            assert (await ivy.get("/tenant")).json()["tenant_id"] == "acme"
            kept = await ivy.put("/tenant/retention", json={"days": 30, "action": "archive"})
            assert kept.status_code == 200, kept.text
            assert (kept.json()["retention_days"], kept.json()["retention_action"]) == (
                30,
                "archive",
            )
            # Admin of acme, not of the installation.
            assert_problem(await ivy.post("/tenants", json={"tenant_id": "evil"}), 403)
        default = (await admin.get("/tenant")).json()
        assert default["tenant_id"] == "default" and default["retention_days"] is None
        for body in ({"days": 0}, {"days": 10, "action": "shred"}, {"days": "many"}):
            assert_problem(await admin.put("/tenant/retention", json=body), 422)
        cleared = await admin.put("/tenant/retention", json={"days": None})
        assert cleared.json()["retention_days"] is None


# -- the audit trail ----------------------------------------------------------------


@dataclass
class Context:
    """What the audited requests need: the server, an admin client, objects to act on."""

    live: Live
    admin: httpx.AsyncClient
    run_id: str = ""
    waiting_id: str = ""
    key_id: str = ""
    approval_id: str = ""
    webhook_id: str = ""


Request = Callable[[Context, httpx.AsyncClient], Awaitable[httpx.Response]]


@dataclass(frozen=True)
class Audited:
    """How to exercise a state-changing route and the record it must leave."""

    action: str
    request: Request
    object_id: Callable[[Context, httpx.Response], str | None]


def _run_body(response: httpx.Response) -> str:
    run_id: str = response.json()["run_id"]
    return run_id


AUDITED: dict[tuple[str, str], Audited] = {
    ("POST", "/api/v1/runs"): Audited(
        "run.start",
        lambda c, s: s.post("/runs", json={"workflow": "api_greet", "input": {"name": "a"}}),
        lambda c, r: _run_body(r),
    ),
    ("POST", "/api/v1/runs/{run_id}/pause"): Audited(
        "run.pause", lambda c, s: s.post(f"/runs/{c.waiting_id}/pause"), lambda c, r: c.waiting_id
    ),
    ("POST", "/api/v1/runs/{run_id}/resume"): Audited(
        "run.resume", lambda c, s: s.post(f"/runs/{c.waiting_id}/resume"), lambda c, r: c.waiting_id
    ),
    ("POST", "/api/v1/runs/{run_id}/messages"): Audited(
        "run.send",
        lambda c, s: s.post(f"/runs/{c.waiting_id}/messages", json={"payload": 1, "topic": "x"}),
        lambda c, r: c.waiting_id,
    ),
    ("POST", "/api/v1/runs/{run_id}/cancel"): Audited(
        "run.cancel", lambda c, s: s.post(f"/runs/{c.waiting_id}/cancel"), lambda c, r: c.waiting_id
    ),
    ("POST", "/api/v1/runs/{run_id}/replay"): Audited(
        "run.replay", lambda c, s: s.post(f"/runs/{c.run_id}/replay"), lambda c, r: c.run_id
    ),
    ("POST", "/api/v1/runs/{run_id}/fork"): Audited(
        "run.fork",
        lambda c, s: s.post(f"/runs/{c.run_id}/fork", json={"at": 0}),
        lambda c, r: c.run_id,
    ),
    ("DELETE", "/api/v1/runs/{run_id}"): Audited(
        "run.purge", lambda c, s: s.delete(f"/runs/{c.run_id}"), lambda c, r: c.run_id
    ),
    ("POST", "/api/v1/runs/bulk"): Audited(
        "bulk.replay",
        lambda c, s: s.post("/runs/bulk", json={"action": "replay", "dry_run": False}),
        lambda c, r: r.json()["job_id"],
    ),
    ("POST", "/api/v1/approvals/{approval_id}/decision"): Audited(
        "approval.approve",
        lambda c, s: s.post(f"/approvals/{c.approval_id}/decision", json={"decision": "approve"}),
        lambda c, r: c.approval_id,
    ),
    ("POST", "/api/v1/users"): Audited(
        "user.create",
        lambda c, s: s.post("/users", json={"username": "audrey", "password": PASSWORD}),
        lambda c, r: "audrey",
    ),
    ("PATCH", "/api/v1/users/{username}"): Audited(
        "user.update",
        lambda c, s: s.patch("/users/audrey", json={"role": "operator"}),
        lambda c, r: "audrey",
    ),
    ("DELETE", "/api/v1/users/{username}"): Audited(
        "user.remove", lambda c, s: s.delete("/users/audrey"), lambda c, r: "audrey"
    ),
    ("POST", "/api/v1/keys"): Audited(
        "key.create",
        lambda c, s: s.post("/keys", json={"name": "audited"}),
        lambda c, r: r.json()["key"]["key_id"],
    ),
    ("POST", "/api/v1/keys/{key_id}/rotate"): Audited(
        "key.rotate", lambda c, s: s.post(f"/keys/{c.key_id}/rotate"), lambda c, r: c.key_id
    ),
    ("POST", "/api/v1/keys/{key_id}/revoke"): Audited(
        "key.revoke", lambda c, s: s.post(f"/keys/{c.key_id}/revoke"), lambda c, r: c.key_id
    ),
    ("POST", "/api/v1/tenants"): Audited(
        "tenant.create",
        lambda c, s: s.post("/tenants", json={"tenant_id": "audited"}),
        lambda c, r: "audited",
    ),
    ("POST", "/api/v1/tenants/{tenant_id}/members"): Audited(
        "tenant.member",
        lambda c, s: s.post("/tenants/audited/members", json={"username": "admin"}),
        lambda c, r: "admin",
    ),
    ("PUT", "/api/v1/tenant/retention"): Audited(
        "tenant.retention",
        lambda c, s: s.put("/tenant/retention", json={"days": 7}),
        lambda c, r: "default",
    ),
    ("POST", "/api/v1/webhooks"): Audited(
        "webhook.create",
        lambda c, s: s.post("/webhooks", json={"url": "https://hooks.example.invalid/a"}),
        lambda c, r: r.json()["webhook"]["webhook_id"],
    ),
    ("PATCH", "/api/v1/webhooks/{webhook_id}"): Audited(
        "webhook.update",
        lambda c, s: s.patch(f"/webhooks/{c.webhook_id}", json={"kinds": ["run.*"]}),
        lambda c, r: c.webhook_id,
    ),
    ("POST", "/api/v1/webhooks/{webhook_id}/rotate"): Audited(
        "webhook.rotate",
        lambda c, s: s.post(f"/webhooks/{c.webhook_id}/rotate"),
        lambda c, r: c.webhook_id,
    ),
    ("POST", "/api/v1/webhooks/{webhook_id}/test"): Audited(
        "webhook.test",
        lambda c, s: s.post(f"/webhooks/{c.webhook_id}/test"),
        lambda c, r: c.webhook_id,
    ),
    ("DELETE", "/api/v1/webhooks/{webhook_id}"): Audited(
        "webhook.delete",
        lambda c, s: s.delete(f"/webhooks/{c.webhook_id}"),
        lambda c, r: c.webhook_id,
    ),
    ("PUT", "/api/v1/policy"): Audited(
        "policy.apply",
        lambda c, s: s.put("/policy", json={"document": "version: 1\ndefault: allow\n"}),
        lambda c, r: str(r.json()["version"]),
    ),
    ("POST", "/api/v1/policy/check"): Audited(
        "policy.check",
        lambda c, s: s.post("/policy/check", json={"document": "version: 1\n"}),
        lambda c, r: None,
    ),
    ("POST", "/api/v1/policy/test"): Audited(
        "policy.test",
        lambda c, s: s.post(
            "/policy/test", json={"document": "version: 1\n", "run_id": c.waiting_id}
        ),
        lambda c, r: c.waiting_id,
    ),
}
# Audited with a signed-in user's session (see test_sign_in_out_and_password_are_audited).
SESSION_ROUTES = {
    ("POST", "/api/v1/auth/login"),
    ("POST", "/api/v1/auth/logout"),
    ("POST", "/api/v1/auth/password"),
}


async def _last(admin: httpx.AsyncClient, action: str) -> dict[str, Any]:
    response = await admin.get("/audit", params={"action": action, "limit": 1})
    assert response.status_code == 200, response.text
    items = response.json()["items"]
    assert items, f"no audit record for {action}"
    record: dict[str, Any] = items[0]
    return record


async def _context(live: Live, admin: httpx.AsyncClient) -> Context:
    context = Context(live, admin)
    context.run_id = (
        await admin.post("/runs", json={"workflow": "api_greet", "input": {"name": "x"}})
    ).json()["run_id"]
    context.waiting_id = (await admin.post("/runs", json={"workflow": "api_wait"})).json()["run_id"]
    await wait_status(admin, context.run_id, "succeeded")
    await wait_status(admin, context.waiting_id, "waiting")
    context.key_id = (await admin.post("/keys", json={"name": "to rotate"})).json()["key"]["key_id"]
    # Started in-process, not by the admin key: whoever starts a run cannot decide its requests.
    asking = await live.app.start(awaiting_approval)

    async def pending() -> str | None:
        listed = await admin.get("/approvals", params={"run_id": asking.run_id})
        items = listed.json()["items"]
        return items[0]["approval_id"] if items else None

    context.approval_id = await eventually(pending)
    hook = await admin.post("/webhooks", json={"url": "https://hooks.example.invalid/ctx"})
    context.webhook_id = hook.json()["webhook"]["webhook_id"]
    return context


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_every_state_change_is_audited(live: Live) -> None:
    unsafe = {
        (m, p) for m, p in http_routes(live.server.api) if m in UNSAFE and (m, p) not in PUBLIC
    }
    assert unsafe == set(AUDITED) | (SESSION_ROUTES - PUBLIC), (
        f"unaudited unsafe routes: {sorted(unsafe - set(AUDITED) - SESSION_ROUTES)}"
    )
    actor = f"key:{parse_api_key(live.admin_key)[0]}"
    async with live.client(live.admin_key) as admin:
        context = await _context(live, admin)
        for (method, path), audited in AUDITED.items():
            started = time.time()
            response = await audited.request(context, admin)
            assert response.is_success, (method, path, response.text)
            record = await _last(admin, audited.action)
            expected = {
                "action": audited.action,
                "actor": actor,
                "object_id": audited.object_id(context, response),
                "ip": "127.0.0.1",
                "outcome": "ok",
                "tenant_id": "default",
            }
            assert {k: record[k] for k in expected} == expected, (method, path, record)
            assert started - 1 <= record["at"] <= time.time() + 1


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_refused_state_changes_are_audited_as_denied(live: Live) -> None:
    viewer_key = await live.key(Role.VIEWER)
    actor = f"key:{parse_api_key(viewer_key)[0]}"
    async with live.client(live.admin_key) as admin, live.client(viewer_key) as viewer:
        context = await _context(live, admin)
        for (method, path), audited in AUDITED.items():
            response = await audited.request(context, viewer)
            assert_problem(response, 403, "permission_denied")
            record = await _last(admin, audited.action)
            assert (record["actor"], record["outcome"], record["ip"]) == (
                actor,
                "denied",
                "127.0.0.1",
            ), (
                method,
                path,
                record,
            )
            assert record["detail"]["reason"] == "permission_denied"


async def test_sign_in_out_and_password_are_audited(live: Live) -> None:
    async with live.client(live.admin_key) as admin:
        await _user(admin, "sam")
        token = await _token(admin, "sam")
        login = await _last(admin, "auth.login")
        assert (login["actor"], login["object_id"], login["outcome"]) == ("user:sam", "sam", "ok")
        async with live.client(token) as sam:
            assert (
                await sam.post(
                    "/auth/password", json={"current": PASSWORD, "new": "newer password"}
                )
            ).status_code == 204
            assert (await sam.post("/auth/logout")).status_code == 204
        changed = await _last(admin, "user.password")
        assert (changed["actor"], changed["outcome"]) == ("user:sam", "ok")
        logout = await _last(admin, "auth.logout")
        assert (logout["actor"], logout["ip"]) == ("user:sam", "127.0.0.1")

        failed = await admin.post("/auth/login", json={"username": "sam", "password": "wrong!"})
        assert_problem(failed, 401)
        refused = await _last(admin, "auth.login")
        assert (refused["object_id"], refused["outcome"]) == ("sam", "denied")
        assert "wrong!" not in str(refused)


async def test_audit_log_filters_and_pages(live: Live) -> None:
    async with live.client(live.admin_key) as admin:
        for i in range(5):
            await admin.post("/keys", json={"name": f"k{i}"})
        first = (await admin.get("/audit", params={"action": "key.", "limit": 2})).json()
        assert len(first["items"]) == 2 and first["next_before_id"] is not None
        second = (
            await admin.get(
                "/audit",
                params={"action": "key.", "limit": 10, "before_id": first["next_before_id"]},
            )
        ).json()
        ids = [r["audit_id"] for r in first["items"] + second["items"]]
        assert len(ids) == 5 == len(set(ids)) and ids == sorted(ids, reverse=True)
        assert second["next_before_id"] is None
        actor = first["items"][0]["actor"]
        assert all(
            r["actor"] == actor
            for r in (await admin.get("/audit", params={"actor": actor})).json()["items"]
        )
        future = (await admin.get("/audit", params={"since": time.time() + 60})).json()
        assert future["items"] == []
        assert_problem(await admin.get("/audit", params={"limit": 0}), 422)
