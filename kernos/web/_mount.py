"""Adding the dashboard to the server's FastAPI app: pages, forms, static files."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Coroutine
from functools import cache
from typing import Any

from fastapi import FastAPI, Request
from fastapi.routing import APIRoute
from starlette.responses import Response

from kernos.errors import (
    AuthenticationError,
    ConflictError,
    KernosError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    UsageError,
)
from kernos.web._render import HERE, SECURITY_HEADERS, page
from kernos.web._session import SignInRequired, login_redirect

__all__ = ["mount"]

log = logging.getLogger("kernos.web")

_STATUS: list[tuple[type[Exception], int]] = [
    (NotFoundError, 404),
    (PermissionDeniedError, 403),
    (AuthenticationError, 401),
    (RateLimitedError, 429),
    (ConflictError, 409),
    (UsageError, 422),
]
_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}


def _error_page(request: Request, error: Exception) -> Response:
    status = next((code for cls, code in _STATUS if isinstance(error, cls)), None)
    if status is None:
        status = 422 if isinstance(error, ValueError) else 500
    message = str(error) if status != 500 else "something went wrong; see the server log"
    if status == 500:
        log.exception("dashboard page failed", exc_info=error, extra={"action": "page_failed"})
    context = {"status": status, "message": message, "caller": None, "section": ""}
    return page("error.html", context, status=status)


class DashboardRoute(APIRoute):
    """A route whose failures become HTML pages (or a redirect to sign in), not JSON."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """Wrap FastAPI's handler so dashboard errors render as pages."""
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            started = time.perf_counter()
            try:
                response = await handler(request)
            except SignInRequired:
                response = login_redirect(request)
            except (KernosError, ValueError) as error:
                response = _error_page(request, error)
            # Reads and rendering, without the server's middleware: what benchmarks/dashboard.py
            # reports as the page's server time.
            elapsed_ms = (time.perf_counter() - started) * 1000
            response.headers["Server-Timing"] = f"page;dur={elapsed_ms:.2f}"
            return response

        return handle


@cache
def _asset(name: str) -> tuple[bytes, str] | None:
    path = HERE / "static" / name
    if "/" in name or name.startswith(".") or not path.is_file():
        return None
    body = path.read_bytes()
    return body, hashlib.sha256(body).hexdigest()[:16]


async def static(request: Request, name: str) -> Response:
    """The dashboard's CSS and JavaScript (shipped in the package, nothing from the internet)."""
    found = _asset(name) if name[-4:] in _TYPES or name[-3:] in _TYPES else None
    if found is None:
        return Response("not found", status_code=404, media_type="text/plain")
    body, etag = found
    if request.headers.get("if-none-match") == f'"{etag}"':
        return Response(status_code=304)
    media = _TYPES[name[name.rindex(".") :]]
    headers = {**SECURITY_HEADERS, "ETag": f'"{etag}"', "Cache-Control": "no-cache"}
    return Response(body, media_type=media, headers=headers)


def mount(app: FastAPI) -> None:
    """Add the dashboard (``/``, ``/login``, ``/runs``, ... and ``/static/``) to ``app``."""
    from kernos.web._actions import router as actions
    from kernos.web._pages import router as pages

    for router in (pages, actions):
        for route in router.routes:
            assert isinstance(route, APIRoute)
            app.router.routes.append(
                DashboardRoute(
                    route.path,
                    route.endpoint,
                    methods=route.methods,
                    include_in_schema=False,
                    name=route.name,
                )
            )
    app.add_api_route("/static/{name}", static, methods=["GET"], include_in_schema=False)
