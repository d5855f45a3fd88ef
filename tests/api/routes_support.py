"""The server's routes, enumerated from the application itself, and small HTTP helpers.

Matrix tests (auth, roles, audit) walk :func:`http_routes` so that a route added
later is covered without anyone remembering to list it: a new route either
answers as the policy says or fails those tests.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.routing import BaseRoute, WebSocketRoute

from kernos.records import RunStatus

# For behaviour that does not depend on the store (validation, middleware, limits
# kept in memory): run on SQLite only, to keep the suite fast.
SQLITE_ONLY = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)

# Answer without credentials, by design (documented in the API description).
PUBLIC = frozenset(
    {
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("POST", "/api/v1/auth/login"),
        ("GET", "/api/v1/openapi.json"),
        ("GET", "/api/v1/docs"),
        ("GET", "/api/v1/docs/oauth2-redirect"),
        ("GET", "/docs/oauth2-redirect"),
    }
)

PROBLEM = "application/problem+json"
_PARAM = re.compile(r"\{([^}:]+)(?::[^}]*)?\}")
_LEAKS = ("Traceback", 'File "', '.py", line', "site-packages", "/work/", "kernos/")


def _flat(routes: list[BaseRoute]) -> Iterator[tuple[str, BaseRoute]]:
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # FastAPI before included routers were kept nested
        for route in routes:
            yield getattr(route, "path", ""), route
        return
    for context in iter_route_contexts(routes):
        yield context.path or "", context.original_route


def http_routes(api: FastAPI) -> list[tuple[str, str]]:
    """Every (method, path template) the application serves over HTTP, HEAD aside."""
    found = {
        (method, path)
        for path, route in _flat(api.routes)
        for method in getattr(route, "methods", None) or ()
        if method != "HEAD"
    }
    return sorted(found, key=lambda item: (item[1], item[0]))


def websocket_paths(api: FastAPI) -> list[str]:
    """Every WebSocket path the application serves."""
    return sorted(path for path, route in _flat(api.routes) if isinstance(route, WebSocketRoute))


def fill(path: str, values: dict[str, str] | None = None) -> str:
    """``path`` with each ``{param}`` replaced by ``values[param]`` (default: a made-up id)."""
    values = values or {}
    return _PARAM.sub(lambda m: values.get(m.group(1), f"no-such-{m.group(1)}"), path)


def assert_problem(
    response: httpx.Response, status: int, code: str | None = None
) -> dict[str, Any]:
    """Check ``response`` is an RFC 9457 problem with ``status`` (and ``code``); return it."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith(PROBLEM), response.headers
    body: dict[str, Any] = response.json()
    assert body["status"] == status, body
    assert isinstance(body["title"], str) and isinstance(body["detail"], str), body
    assert body["type"].startswith("https://kernos.dev/problems/"), body
    if code is not None:
        assert body["type"].endswith("/" + code), body
    assert_no_leak(response)
    return body


def assert_no_leak(response: httpx.Response) -> None:
    """No stack trace or source path in a response body."""
    text = response.text
    for marker in _LEAKS:
        assert marker not in text, f"{marker!r} in {response.request.url}: {text[:500]}"


async def eventually(
    check: Callable[[], Awaitable[Any]], *, timeout: float = 20.0, every: float = 0.05
) -> Any:
    """Await ``check()`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s (last: {value!r})")
        await asyncio.sleep(every)


async def wait_status(
    client: httpx.AsyncClient, run_id: str, *statuses: RunStatus | str, timeout: float = 20.0
) -> dict[str, Any]:
    """Poll ``GET /runs/{run_id}`` until the run is in one of ``statuses``; return it."""
    wanted = {str(s) for s in statuses}

    async def check() -> dict[str, Any] | None:
        response = await client.get(f"/runs/{run_id}")
        assert response.status_code == 200, response.text
        run: dict[str, Any] = response.json()
        return run if run["status"] in wanted else None

    result: dict[str, Any] = await eventually(check, timeout=timeout)
    return result
