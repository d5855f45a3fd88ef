"""The FastAPI application: routes under /api/v1, problem details, limits, lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI

from kernos.api._admin_routes import router as admin_router
from kernos.api._approvals_routes import router as approvals_router
from kernos.api._metrics import Metrics
from kernos.api._middleware import LimitsMiddleware, MetricsMiddleware
from kernos.api._policy_routes import router as policy_router
from kernos.api._problems import install_problem_handlers, problem_schemas
from kernos.api._runs_routes import router as runs_router
from kernos.api._settings import ServerSettings
from kernos.api._state import ServerState
from kernos.api._system_routes import health
from kernos.api._system_routes import router as system_router
from kernos.api._webhook_routes import router as webhook_router
from kernos.control import DeliveryPolicy, Notifier, RateLimiter, Service

if TYPE_CHECKING:
    from kernos.api._hub import EventHub

__all__ = ["API_PREFIX", "create_app"]

log = logging.getLogger("kernos.api")

API_PREFIX = "/api/v1"

_DESCRIPTION = """
The Kernos REST API: start, inspect and control durable runs; watch them live;
administer users, API keys and tenants.

**Authentication.** Every route except `/healthz`, `/readyz` and
`/api/v1/auth/login` needs credentials: an API key as `Authorization: Bearer kn_...`
or `X-API-Key: kn_...`, a short-lived token from `/auth/login` with `token: true`,
or the dashboard's session cookie (writes then need the `X-CSRF-Token` header).

**Roles** apply per tenant: `viewer` reads, `operator` also starts, cancels,
forks and replays, `admin` also manages users, keys and retention.

**Errors** are RFC 9457 problem details (`application/problem+json`).
"""


def create_app(
    service: Service,
    settings: ServerSettings | None = None,
    *,
    dashboard: Callable[[FastAPI], None] | None = None,
) -> FastAPI:
    """Build the API application over ``service`` (whose Kernos app must be open).

    ``dashboard`` adds the web dashboard's routes to the app (``kernos.web.mount``);
    the API does not import the dashboard, the program serving both passes it.
    """
    from kernos.api._hub import EventHub
    from kernos.api._streams import router as streams_router

    settings = settings or ServerSettings()
    hub = EventHub(
        service.app.store, poll_interval=settings.stream_poll_s, buffer=settings.stream_buffer
    )
    notifier = _notifier(service, settings, hub)
    metrics = Metrics()
    state = ServerState(
        service=service,
        settings=settings,
        hub=hub,
        metrics=metrics,
        key_limiter=RateLimiter(*settings.key_rate),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        interrupted = await service.app.store.interrupt_bulk_jobs(time.time())
        if interrupted:
            log.warning("%d bulk job(s) were interrupted by the last shutdown", interrupted)
        await hub.start()
        retention = asyncio.create_task(_retention_loop(service, settings.retention_interval_s))
        await notifier.start()
        try:
            yield
        finally:
            await notifier.stop()
            retention.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await retention
            await service.bulk.stop()
            await hub.stop()

    app = FastAPI(
        title="Kernos",
        version=_version(),
        description=_DESCRIPTION,
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=f"{API_PREFIX}/docs",
        swagger_ui_oauth2_redirect_url=f"{API_PREFIX}/docs/oauth2-redirect",
        redoc_url=None,
        lifespan=lifespan,
    )

    def openapi() -> dict[str, Any]:
        document = FastAPI.openapi(app)  # built once, then cached by FastAPI
        document.setdefault("components", {}).setdefault("schemas", {}).update(problem_schemas())
        return document

    app.openapi = openapi  # type: ignore[method-assign]
    app.state.kernos = state
    install_problem_handlers(app)
    app.include_router(runs_router, prefix=API_PREFIX)
    app.include_router(admin_router, prefix=API_PREFIX)
    app.include_router(approvals_router, prefix=API_PREFIX)
    app.include_router(policy_router, prefix=API_PREFIX)
    app.include_router(system_router, prefix=API_PREFIX)
    app.include_router(streams_router, prefix=API_PREFIX)
    app.include_router(webhook_router, prefix=API_PREFIX)
    app.include_router(health)
    if dashboard is not None:
        dashboard(app)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.add_middleware(
        LimitsMiddleware,
        max_body_bytes=settings.max_body_bytes,
        max_header_bytes=settings.max_header_bytes,
    )
    return app


def _notifier(service: Service, settings: ServerSettings, hub: EventHub) -> Notifier:
    policy = DeliveryPolicy(allow_private=settings.allow_private_webhooks)
    if settings.webhook_retry is not None:
        policy = DeliveryPolicy(allow_private=policy.allow_private, retry=settings.webhook_retry)
    service.webhooks.configure(policy)
    return Notifier(
        service.app.store, hub, service.webhooks.sender, base_url=settings.public_url or ""
    )


async def _retention_loop(service: Service, interval: float) -> None:
    while True:
        try:
            purged = await service.retention.sweep()
            if any(purged.values()):
                log.info("retention purged %s", purged)
        except Exception:
            log.exception("retention sweep failed; retrying in %.0f s", interval)
        await asyncio.sleep(interval)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("kernos")
    except PackageNotFoundError:
        return "0"
