"""ASGI middleware: request size limits, security headers and request metrics.

Written as plain ASGI (not ``BaseHTTPMiddleware``) so streaming responses
(SSE, exports) pass through untouched and cost nothing extra.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kernos.api._metrics import Metrics
from kernos.api._problems import MEDIA_TYPE, problem

__all__ = ["LimitsMiddleware", "MetricsMiddleware"]

_SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cache-control", b"no-store"),
]


async def _send_problem(send: Send, status: int, detail: str) -> None:
    body = orjson.dumps(problem(status, detail))
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", MEDIA_TYPE.encode()),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


_DRAIN_BYTES = 8 * 1024 * 1024  # at most this much of an oversized body is read and dropped


class _BodyTooLarge(Exception):
    pass


class LimitsMiddleware:
    """Refuses oversized headers (431) and bodies (413) before any handler reads them,
    and adds security headers to every HTTP response."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, max_header_bytes: int) -> None:
        self.app = app
        self.max_body = max_body_bytes
        self.max_headers = max_header_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        if sum(len(k) + len(v) + 4 for k, v in headers) > self.max_headers:
            await _send_problem(
                send, 431, f"request headers exceed {self.max_headers} bytes in total"
            )
            return
        for key, value in headers:
            if key == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await _send_problem(send, 400, "Content-Length is not a number")
                    return
                if declared > self.max_body:
                    await _send_problem(
                        send, 413, f"request body of {declared} bytes exceeds {self.max_body}"
                    )
                    return
        received = 0
        started = too_large = False

        async def limited_receive() -> Message:
            nonlocal received, too_large
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    too_large = True
                    if message.get("more_body", False):
                        await self._drain(receive)
                    raise _BodyTooLarge
            return message

        async def secured_send(message: Message) -> None:
            nonlocal started
            if too_large:
                # The handler caught _BodyTooLarge while reading (FastAPI turns
                # any body error into a 400) and answers on its own: answer 413.
                if not started:
                    started = True
                    await _send_problem(send, 413, self._too_large)
                return
            if message["type"] == "http.response.start":
                started = True
                present = {k.lower() for k, _ in message.get("headers", [])}
                message = dict(message)
                message["headers"] = list(message.get("headers", [])) + [
                    (k, v) for k, v in _SECURITY_HEADERS if k not in present
                ]
            await send(message)

        try:
            await self.app(scope, limited_receive, secured_send)
        except _BodyTooLarge:
            if not started:
                await _send_problem(send, 413, self._too_large)

    async def _drain(self, receive: Receive) -> None:
        # Read and drop the rest of a streamed body (up to a bound) before
        # answering: closing a socket with unread data resets the connection,
        # and the client may lose the 413 before it reads it.
        dropped = 0
        while dropped < _DRAIN_BYTES:
            message = await receive()
            if message["type"] != "http.request":
                return
            dropped += len(message.get("body", b""))
            if not message.get("more_body", False):
                return

    @property
    def _too_large(self) -> str:
        return f"request body exceeds {self.max_body} bytes"


class MetricsMiddleware:
    """Counts requests and times them by route template (never by raw path: ids would
    explode the label space)."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def observed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, observed_send)
        finally:
            seconds = time.perf_counter() - started
            self.metrics.observe_request(scope["method"], _template(scope), status, seconds)


def _template(scope: Scope) -> str:
    """The full path template of the route that answered, e.g. ``/api/v1/runs/{run_id}``.

    FastAPI may leave the route of an included router in the scope with its own
    path only (``/runs/{run_id}``): the prefix is what the request path has in
    front of as many segments as the template has.
    """
    route: Any = scope.get("route")
    template = getattr(route, "path_format", None)
    if not isinstance(template, str):
        return "unmatched"
    segments = scope.get("path", "").split("/")
    prefix = "/".join(segments[: max(1, len(segments) - template.count("/"))])
    return prefix + template
