"""A real Kernos server on loopback for API tests, and helpers to talk to it.

``live`` (see conftest) opens a Kernos app on the test's own database (SQLite
file or PostgreSQL database), serves the API with uvicorn on a free port in
the test's event loop, and creates the first admin key. Tests talk to it with
httpx over real HTTP.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx

import kernos
from kernos.api import ServerSettings
from kernos.api._server import ApiServer
from kernos.control import Principal, Service, ensure_first_admin
from kernos.records import Role


@kernos.step
async def shout(text: str) -> str:
    """A step: upper-case the text."""
    return text.upper()


@kernos.workflow(name="api_greet")
async def greet(name: str, times: int = 1) -> str:
    """Greet someone, loudly."""
    loud = await shout(name)
    return " ".join([f"hello {loud}"] * times)


@kernos.workflow(name="api_wait")
async def wait_for_message(topic: str = "default") -> object:
    """Wait for one message and return it."""
    return await kernos.recv(topic)


@kernos.step
async def explode(reason: str) -> None:
    """A step that always fails."""
    raise kernos.PermanentError(reason)


@kernos.workflow(name="api_fail")
async def fail(reason: str = "boom") -> None:
    """Fail in a step."""
    await explode(reason)


@dataclass
class Live:
    """A running server and credentials for it."""

    url: str
    app: kernos.Kernos
    service: Service
    server: ApiServer
    admin_key: str
    admin_password: str

    def client(self, key: str | None = None, **kwargs: Any) -> httpx.AsyncClient:
        """An HTTP client for the API; with ``key`` it sends ``Authorization: Bearer``."""
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.AsyncClient(
            base_url=self.url + "/api/v1", headers=headers, timeout=30.0, **kwargs
        )

    async def key(self, role: Role, tenant: str = "default", name: str = "test") -> str:
        """A fresh API key with ``role`` in ``tenant`` (created directly, as the system)."""
        if tenant != "default":
            await self.service.admin.create_tenant(Principal.system("default"), tenant, tenant)
        _, secret = await self.service.admin.create_key(Principal.system(tenant), name, role)
        return secret


@asynccontextmanager
async def live_server(
    store_url: str, *, settings: ServerSettings | None = None, worker: bool = True
) -> AsyncIterator[Live]:
    """Serve the API over ``store_url`` on a free loopback port for the block's duration."""
    app = kernos.Kernos(store_url, worker=worker, poll_interval=0.05)
    await app.open()
    try:
        bootstrap = await ensure_first_admin(app.store)
        assert bootstrap is not None
        service = Service(app)
        server = ApiServer(service, host="127.0.0.1", port=0, settings=settings, grace=1.0)
        url = await server.start()
        try:
            yield Live(
                url=url,
                app=app,
                service=service,
                server=server,
                admin_key=bootstrap.api_key,
                admin_password=bootstrap.password,
            )
        finally:
            await server.stop()
    finally:
        await app.close()
