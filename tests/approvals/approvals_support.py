"""Workflows, a controllable clock and helpers shared by the approval tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx

import kernos
from kernos.api._server import ApiServer
from kernos.control import Principal, Service, ensure_first_admin
from kernos.records import ApprovalRequest, ApprovalStatus, Role, RunStatus


class Clock:
    """Wall time plus an offset the test moves forward (the app's and store's clock)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``."""
        self.offset += seconds


@kernos.step
async def record(text: str) -> str:
    """A step whose result shows the run went on."""
    return text


@kernos.workflow(name="approvals_simple")
async def simple(title: str = "deploy?") -> dict[str, Any]:
    """Ask once, with no deadline; return the decision."""
    decision = await kernos.approval(title, {"plan": "v2"}, assignees=["operator"])
    await record(decision.decision)
    return {
        "decision": decision.decision,
        "by": decision.decided_by,
        "value": decision.value,
        "comment": decision.comment,
        "by_default": decision.by_default,
    }


@kernos.workflow(name="approvals_escalating")
async def escalating(default: str = "reject") -> dict[str, Any]:
    """Ask alice for an hour, then admins for a day, then take ``default``."""
    decision = await kernos.approval(
        "wire the money?",
        {"amount": 100},
        assignees=["alice"],
        timeout=3600,
        escalation=[kernos.Escalate(to=["admin"], after=86400)],
        default=default,  # type: ignore[arg-type]
    )
    await record(decision.decision)
    return {
        "decision": decision.decision,
        "by_default": decision.by_default,
        "level": decision.level,
    }


def new_app(url: str, **options: Any) -> kernos.Kernos:
    """An app with fast test timings; ``options`` go to ``kernos.Kernos``."""
    return kernos.Kernos(url, poll_interval=0.05, inline_wait=0.2, lease=5.0, **options)


async def until(predicate: Callable[[], Any], timeout: float = 15.0) -> Any:
    """Await ``predicate()`` (sync or async) until it is truthy; fail after ``timeout``."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if loop.time() > give_up:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


async def pending_request(app: kernos.Kernos, run_id: str) -> ApprovalRequest:
    """Wait until run ``run_id`` waits on a pending approval request; return it."""

    async def find() -> ApprovalRequest | None:
        run = await app.get_run(run_id)
        if run.status is not RunStatus.WAITING:
            return None
        for entry in await app.journal(run_id):
            if entry.kind is kernos.EntryKind.APPROVAL and isinstance(entry.detail, dict):
                request = await app.store.get_approval(str(entry.detail["approval_id"]))
                if request is not None and request.status is ApprovalStatus.PENDING:
                    return request
        return None

    result: ApprovalRequest = await until(find)
    return result


async def waiting_at_level(app: kernos.Kernos, run_id: str, level: int) -> ApprovalRequest:
    """Wait until the run is suspended on its request at ``level``."""

    async def find() -> ApprovalRequest | None:
        request = await pending_request(app, run_id)
        run = await app.get_run(run_id)
        if request.level == level and run.status is RunStatus.WAITING:
            return request
        return None

    result: ApprovalRequest = await until(find)
    return result


@dataclass
class Server:
    """A live API server on loopback over an app, with the installation's admin key."""

    url: str
    app: kernos.Kernos
    service: Service
    server: ApiServer
    admin_key: str

    def client(self, key: str | None = None) -> httpx.AsyncClient:
        """An HTTP client for /api/v1, sending ``key`` as a bearer token."""
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.AsyncClient(base_url=self.url + "/api/v1", headers=headers, timeout=30.0)

    async def key(self, role: Role, tenant: str = "default", name: str = "test") -> str:
        """A new API key with ``role`` in ``tenant`` (made by the system)."""
        if tenant != "default" and await self.app.store.get_tenant(tenant) is None:
            await self.service.admin.create_tenant(Principal.system("default"), tenant, tenant)
        _, secret = await self.service.admin.create_key(Principal.system(tenant), name, role)
        return secret

    async def user_token(self, username: str, role: Role) -> str:
        """A signed-in user's bearer token (the user is created with ``role``)."""
        password = "long enough password"
        async with self.client(self.admin_key) as admin:
            made = await admin.post(
                "/users", json={"username": username, "password": password, "role": role.value}
            )
            assert made.status_code == 201, made.text
            login = await admin.post(
                "/auth/login", json={"username": username, "password": password, "token": True}
            )
            assert login.status_code == 200, login.text
            token: str = login.json()["token"]
            return token


@asynccontextmanager
async def approval_server(
    store_url: str, *, admin_key: str | None = None, **options: Any
) -> AsyncIterator[Server]:
    """Serve the API over ``store_url`` (an app with ``options``) for the block's duration.

    The first server on a store creates the admin key; pass it to later ones.
    """
    app = new_app(store_url, **options)
    await app.open()
    try:
        bootstrap = await ensure_first_admin(app.store)
        key = bootstrap.api_key if bootstrap is not None else admin_key
        assert key is not None, "pass the admin key of the first server"
        service = Service(app)
        server = ApiServer(service, host="127.0.0.1", port=0, grace=1.0)
        url = await server.start()
        try:
            yield Server(url=url, app=app, service=service, server=server, admin_key=key)
        finally:
            await server.stop()
    finally:
        await app.close()


async def wait_run(
    client: httpx.AsyncClient, run_id: str, *statuses: str, timeout: float = 20.0
) -> dict[str, Any]:
    """Poll ``GET /runs/{run_id}`` until its status is one of ``statuses``; return it."""

    async def check() -> dict[str, Any] | None:
        response = await client.get(f"/runs/{run_id}")
        assert response.status_code == 200, response.text
        run: dict[str, Any] = response.json()
        return run if run["status"] in statuses else None

    found: dict[str, Any] = await until(check, timeout)
    return found


async def pending_over_http(client: httpx.AsyncClient, run_id: str) -> dict[str, Any]:
    """Wait until run ``run_id`` has a pending request and is suspended; return the request."""

    async def check() -> dict[str, Any] | None:
        run = (await client.get(f"/runs/{run_id}")).json()
        listed = await client.get("/approvals", params={"run_id": run_id, "status": "pending"})
        assert listed.status_code == 200, listed.text
        items = listed.json()["items"]
        return items[0] if items and run["status"] == "waiting" else None

    found: dict[str, Any] = await until(check)
    return found
