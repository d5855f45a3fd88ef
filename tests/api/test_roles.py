"""The role policy, route by route: this file's ``POLICY`` table *is* the policy.

Every authenticated route appears in ``POLICY`` with the least a caller needs:

- ``viewer``: reads;
- ``operator``: also starts, cancels, pauses, resumes, messages, forks, replays
  and bulk actions;
- ``admin``: also users, API keys, the tenant's retention, the audit log and
  deleting run data;
- ``installation admin``: an admin of the default tenant (creating tenants,
  adding members across tenants, metrics that span every tenant);
- ``signed-in user``: a user's own session (changing one's password); no API
  key may do it, whatever its role.

The test walks every route with a key of every role and expects either 403
(problem details, ``permission_denied``) or an answer that is not about
permissions (success or a domain error such as 404 or 409), exactly as the table
says. A route missing from the table fails the test: add it with its policy.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from api_support import Live
from routes_support import PUBLIC, assert_problem, fill, http_routes, wait_status

from kernos.records import Role

VIEWER, OPERATOR, ADMIN = "viewer", "operator", "admin"
INSTALLATION = "installation admin"
SIGNED_IN = "signed-in user"

_serial = itertools.count()


def _unique(prefix: str) -> str:
    return f"{prefix}{next(_serial)}"


@dataclass(frozen=True)
class Rule:
    """Who may call a route, and a request that is valid when they may."""

    needs: str
    json: Callable[[], Any] | None = None
    params: dict[str, Any] = field(default_factory=dict)
    stream: bool = False


START = {"workflow": "api_greet", "input": {"name": "roles"}}
HOOK_URL = "https://hooks.example.invalid/kernos"  # .invalid never resolves: nothing is sent

POLICY: dict[tuple[str, str], Rule] = {
    # workflows and runs: reads
    ("GET", "/api/v1/workflows"): Rule(VIEWER),
    ("GET", "/api/v1/workflows/{name}"): Rule(VIEWER),
    ("GET", "/api/v1/runs"): Rule(VIEWER),
    ("GET", "/api/v1/runs/export"): Rule(VIEWER, params={"format": "csv"}, stream=True),
    ("GET", "/api/v1/runs/{run_id}"): Rule(VIEWER),
    ("GET", "/api/v1/runs/{run_id}/journal"): Rule(VIEWER),
    ("GET", "/api/v1/runs/{run_id}/checkpoints"): Rule(VIEWER),
    ("GET", "/api/v1/runs/{run_id}/events"): Rule(VIEWER),
    ("GET", "/api/v1/queues"): Rule(VIEWER),
    ("GET", "/api/v1/workers"): Rule(VIEWER),
    ("GET", "/api/v1/bulk"): Rule(VIEWER),
    ("GET", "/api/v1/bulk/{job_id}"): Rule(VIEWER),
    ("GET", "/api/v1/events"): Rule(VIEWER, stream=True),
    ("GET", "/api/v1/tenants"): Rule(VIEWER),
    ("GET", "/api/v1/tenant"): Rule(VIEWER),
    ("GET", "/api/v1/auth/me"): Rule(VIEWER),
    ("POST", "/api/v1/auth/logout"): Rule(VIEWER),
    # runs: control
    ("POST", "/api/v1/runs"): Rule(OPERATOR, json=lambda: START),
    ("POST", "/api/v1/runs/{run_id}/cancel"): Rule(OPERATOR, json=lambda: {"reason": "roles"}),
    ("POST", "/api/v1/runs/{run_id}/pause"): Rule(OPERATOR),
    ("POST", "/api/v1/runs/{run_id}/resume"): Rule(OPERATOR),
    ("POST", "/api/v1/runs/{run_id}/messages"): Rule(OPERATOR, json=lambda: {"payload": 1}),
    ("POST", "/api/v1/runs/{run_id}/fork"): Rule(OPERATOR, json=lambda: {"at": 0}),
    ("POST", "/api/v1/runs/{run_id}/replay"): Rule(OPERATOR),
    ("POST", "/api/v1/runs/bulk"): Rule(OPERATOR, json=lambda: {"action": "cancel"}),
    # approvals: reading, deciding
    ("GET", "/api/v1/approvals"): Rule(VIEWER),
    ("GET", "/api/v1/approvals/{approval_id}"): Rule(VIEWER),
    ("POST", "/api/v1/approvals/{approval_id}/decision"): Rule(
        OPERATOR, json=lambda: {"decision": "approve"}
    ),
    # policy: members read it, operators check and test documents, admins apply them
    ("GET", "/api/v1/policy"): Rule(VIEWER),
    ("GET", "/api/v1/policy/versions"): Rule(VIEWER),
    ("POST", "/api/v1/policy/check"): Rule(OPERATOR, json=lambda: {"document": "version: 1\n"}),
    ("POST", "/api/v1/policy/test"): Rule(
        OPERATOR, json=lambda: {"document": "version: 1\n", "run_id": "no-such-run"}
    ),
    ("PUT", "/api/v1/policy"): Rule(ADMIN, json=lambda: {"document": "version: 1\n"}),
    # administration of the caller's tenant
    ("DELETE", "/api/v1/runs/{run_id}"): Rule(ADMIN),
    ("GET", "/api/v1/users"): Rule(ADMIN),
    ("POST", "/api/v1/users"): Rule(
        ADMIN, json=lambda: {"username": _unique("u"), "password": "long enough password"}
    ),
    ("PATCH", "/api/v1/users/{username}"): Rule(ADMIN, json=lambda: {"role": "viewer"}),
    ("DELETE", "/api/v1/users/{username}"): Rule(ADMIN),
    ("GET", "/api/v1/keys"): Rule(ADMIN),
    ("POST", "/api/v1/keys"): Rule(ADMIN, json=lambda: {"name": "roles", "role": "viewer"}),
    ("POST", "/api/v1/keys/{key_id}/revoke"): Rule(ADMIN),
    ("POST", "/api/v1/keys/{key_id}/rotate"): Rule(ADMIN),
    ("PUT", "/api/v1/tenant/retention"): Rule(ADMIN, json=lambda: {"days": None}),
    ("GET", "/api/v1/audit"): Rule(ADMIN),
    # webhooks: operators look, admins change
    ("GET", "/api/v1/webhooks"): Rule(OPERATOR),
    ("GET", "/api/v1/webhooks/{webhook_id}"): Rule(OPERATOR),
    ("GET", "/api/v1/webhooks/{webhook_id}/deliveries"): Rule(OPERATOR),
    ("POST", "/api/v1/webhooks"): Rule(ADMIN, json=lambda: {"url": HOOK_URL}),
    ("PATCH", "/api/v1/webhooks/{webhook_id}"): Rule(ADMIN, json=lambda: {"active": False}),
    ("DELETE", "/api/v1/webhooks/{webhook_id}"): Rule(ADMIN),
    ("POST", "/api/v1/webhooks/{webhook_id}/rotate"): Rule(ADMIN),
    ("POST", "/api/v1/webhooks/{webhook_id}/test"): Rule(ADMIN),
    # the installation
    ("POST", "/api/v1/tenants"): Rule(INSTALLATION, json=lambda: {"tenant_id": _unique("t")}),
    ("POST", "/api/v1/tenants/{tenant_id}/members"): Rule(
        INSTALLATION, json=lambda: {"username": "admin", "role": "viewer"}
    ),
    ("GET", "/metrics"): Rule(INSTALLATION),
    # a user's own account
    ("POST", "/api/v1/auth/password"): Rule(
        SIGNED_IN, json=lambda: {"current": "whatever it is", "new": "a new long password"}
    ),
}


@dataclass(frozen=True)
class Caller:
    """A key to call with and what it is."""

    name: str
    role: Role
    tenant: str
    key: str

    def may(self, needs: str) -> bool:
        if needs == SIGNED_IN:
            return False  # API keys never act as a signed-in user
        if needs == INSTALLATION:
            return self.role is Role.ADMIN and self.tenant == "default"
        return self.role.includes(Role(needs))


async def _callers(live: Live) -> list[Caller]:
    callers = [Caller(role.value, role, "default", await live.key(role)) for role in Role]
    callers.append(
        Caller("admin of tenant acme", Role.ADMIN, "acme", await live.key(Role.ADMIN, "acme"))
    )
    return callers


async def _call(client: httpx.AsyncClient, method: str, url: str, rule: Rule) -> httpx.Response:
    kwargs: dict[str, Any] = {"params": rule.params}
    if rule.json is not None:
        kwargs["json"] = rule.json()
    if rule.stream:
        async with client.stream(method, url, **kwargs) as response:
            if response.status_code != 200:
                await response.aread()
            else:  # an endless stream: the status line is the answer
                response._content = b""
            return response
    return await client.request(method, url, **kwargs)


def test_policy_table_is_consistent() -> None:
    assert {rule.needs for rule in POLICY.values()} == {
        VIEWER,
        OPERATOR,
        ADMIN,
        INSTALLATION,
        SIGNED_IN,
    }
    assert not set(POLICY) & PUBLIC


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_every_route_with_every_role(live: Live) -> None:
    routes = {route for route in http_routes(live.server.api) if route not in PUBLIC}
    assert routes == set(POLICY), (
        f"routes without a policy: {sorted(routes - set(POLICY))}; "
        f"policies without a route: {sorted(set(POLICY) - routes)}"
    )
    callers = await _callers(live)
    async with live.client(live.admin_key) as admin:
        started = await admin.post("/runs", json=START)
        run_id = started.json()["run_id"]
        await wait_status(admin, run_id, "succeeded")
    values = {"run_id": run_id, "name": "api_greet"}

    failures: list[str] = []
    for caller in callers:
        async with httpx.AsyncClient(
            base_url=live.url, headers={"X-API-Key": caller.key}, timeout=30
        ) as client:
            for (method, path), rule in sorted(POLICY.items(), key=lambda item: item[0][1]):
                response = await _call(client, method, fill(path, values), rule)
                what = (
                    f"{caller.name} {method} {path}: {response.status_code} {response.text[:200]}"
                )
                try:
                    if caller.may(rule.needs):
                        assert response.status_code not in (401, 403), "refused"
                        assert response.status_code < 500, "server error"
                    else:
                        assert_problem(response, 403, "permission_denied")
                except AssertionError as error:
                    failures.append(f"{what} ({error})")
    assert not failures, "\n".join(failures)


async def test_roles_apply_to_signed_in_users_too(live: Live) -> None:
    async with live.client(live.admin_key) as admin:
        for name, role in (("vera", "viewer"), ("otto", "operator")):
            response = await admin.post(
                "/users", json={"username": name, "password": "long enough password", "role": role}
            )
            assert response.status_code == 201, response.text
        tokens = {}
        for name in ("vera", "otto"):
            login = await admin.post(
                "/auth/login",
                json={"username": name, "password": "long enough password", "token": True},
            )
            tokens[name] = login.json()["token"]
    async with live.client(tokens["vera"]) as vera, live.client(tokens["otto"]) as otto:
        assert (await vera.get("/runs")).status_code == 200
        assert_problem(await vera.post("/runs", json=START), 403, "permission_denied")
        assert (await otto.post("/runs", json=START)).status_code == 201
        assert_problem(await otto.get("/users"), 403, "permission_denied")
        assert_problem(await otto.get("/audit"), 403, "permission_denied")
