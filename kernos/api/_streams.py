"""Live event streams: ``GET /events`` (Server-Sent Events) and ``/ws`` (WebSocket).

Both read the :class:`~kernos.api._hub.EventHub`: a client names the last event
id it has and gets everything after it, in id order, then live events, never
another tenant's. Events are read from the store, so a client that reconnects
misses nothing. Several ready events go out in one write.

A client that falls behind by more than ``stream_buffer`` events is
disconnected with a reason (an ``event: error`` frame, or WebSocket close code
4000) and resumes with Last-Event-ID; a client that accepts no data at all for
``WRITE_TIMEOUT_S`` seconds is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import orjson
from fastapi import APIRouter, Header, Query, Request, WebSocket
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocketDisconnect

from kernos import errors
from kernos.api._auth import Caller, credentials_of, websocket_principal
from kernos.api._hub import EndReason, StreamEvent, Subscription
from kernos.api._metrics import Metrics
from kernos.api._problems import problem_response, problem_responses
from kernos.api._schemas import MAX_ID, TEXT
from kernos.api._state import ServerState, server_state
from kernos.control import Principal
from kernos.records import Role

__all__ = ["RETRY_MS", "WRITE_TIMEOUT_S", "EventStreamResponse", "router"]

log = logging.getLogger(__name__)

router = APIRouter()

RETRY_MS = 1000  # the reconnection delay SSE clients are told to use
WRITE_TIMEOUT_S = 30.0  # a client that accepts no data for this long is dropped
MAX_BATCH = 500  # events per write
MAX_KINDS = 50
MAX_SOCKET_SUBSCRIPTIONS = 32

# An event kind in a filter: ids and names never hold control characters (and
# PostgreSQL cannot compare text with NUL in it).
_Kind = Annotated[str, Field(min_length=1, max_length=200, pattern=TEXT)]

# WebSocket close codes
CLOSE_POLICY = 1008  # authentication or cross-site handshake refused
CLOSE_TRY_LATER = 1013  # rate limited, or the event hub is not running
CLOSE_GOING_AWAY = 1001  # the server is shutting down
CLOSE_SLOW_CONSUMER = 4000  # the client fell behind; resume with last_event_id

_SSE_EXAMPLE = (
    "retry: 1000\n\n"
    "id: 42\nevent: step.completed\n"
    'data: {"event_id":42,"run_id":"r1","kind":"step.completed","at":1767225600.0,'
    '"data":{"name":"fetch","seq":0},"tenant":"default","workflow":"brief"}\n\n'
    ": keep-alive\n\n"
)


# -- Server-Sent Events -------------------------------------------------------------


class EventStreamResponse(Response):
    """A ``text/event-stream`` response fed by a subscription until it ends or the
    client goes away.

    Three tasks per stream: one writes events, one watches for the client's
    disconnect, and a ticker sends heartbeats while idle and drops the client
    when one write has been stuck for ``WRITE_TIMEOUT_S`` (so waits and writes
    need no timer each: at thousands of events a second, they add up).
    """

    media_type = "text/event-stream"

    def __init__(self, subscription: Subscription, *, heartbeat: float, metrics: Metrics) -> None:
        # Not Response.__init__: it would declare a Content-Length for an empty body.
        self.status_code = 200
        self.background = None
        self.init_headers({"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        self.subscription = subscription
        self.heartbeat = heartbeat
        self.metrics = metrics
        self._writing_since: float | None = None
        self._last_write = time.monotonic()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        sub = self.subscription
        self.metrics.stream_clients.labels(transport="sse").inc()
        stream = asyncio.ensure_future(self._stream(send))
        others = [
            asyncio.ensure_future(_until_disconnect(receive)),
            asyncio.ensure_future(self._tick()),
        ]
        try:
            await asyncio.wait({stream, *others}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (stream, *others):
                task.cancel()
            for task in (stream, *others):
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            sub.close()
            self.metrics.stream_clients.labels(transport="sse").dec()
        failure = None if stream.cancelled() else stream.exception()
        if isinstance(failure, TimeoutError):
            log.warning("event stream client stalled; dropped", extra={"action": "sse_stalled"})
        elif failure is not None:
            raise failure

    async def _stream(self, send: Send) -> None:
        sub = self.subscription
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        await self._write(send, b"retry: %d\n\n" % RETRY_MS)
        while True:
            batch = await sub.receive(max_events=MAX_BATCH)
            if batch is None:
                break
            if batch:
                await self._write(send, b"".join([item.sse() for item in batch]))
                self.metrics.events_delivered.inc(len(batch))
            else:
                await self._write(send, b": keep-alive\n\n")
        if sub.end is EndReason.SLOW_CONSUMER:
            self.metrics.slow_disconnects.inc()
        final = b"event: error\ndata: %s\n\n" % _end_body(sub)
        # A stalled client is dropped here: returning without finishing the
        # response makes the server close the connection.
        async with asyncio.timeout(WRITE_TIMEOUT_S):
            await send({"type": "http.response.body", "body": final, "more_body": False})

    async def _write(self, send: Send, body: bytes) -> None:
        self._writing_since = time.monotonic()
        await send({"type": "http.response.body", "body": body, "more_body": True})
        self._last_write = time.monotonic()
        self._writing_since = None

    async def _tick(self) -> None:
        period = min(self.heartbeat, WRITE_TIMEOUT_S) / 2
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            if self._writing_since is not None:
                if now - self._writing_since > WRITE_TIMEOUT_S:
                    log.warning(
                        "event stream client accepted no data for %.0f s; dropped",
                        WRITE_TIMEOUT_S,
                        extra={"action": "sse_stalled"},
                    )
                    return
            elif now - self._last_write >= self.heartbeat - period / 2:
                self.subscription.nudge()


async def _until_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def _end_body(sub: Subscription) -> bytes:
    return orjson.dumps(
        {
            "code": (sub.end or EndReason.CLOSED).value,
            "detail": sub.reason,
            "last_event_id": sub.position,
        }
    )


_SSE_DESCRIPTION = (
    "An endless `text/event-stream`. Each event is a frame with `id` (the event id), "
    "`event` (its kind) and `data` (the event as JSON: event_id, run_id, kind, at, data, "
    "tenant, workflow). A `retry` hint opens the stream; comment lines (`: keep-alive`) "
    "arrive every `sse_heartbeat_s` seconds while idle. A stream that ends on purpose "
    'sends a last `event: error` frame whose data is `{"code", "detail", "last_event_id"}` '
    "(code `slow_consumer`: the client fell behind; `shutdown`: the server is stopping); "
    "reconnect with `Last-Event-ID`."
)


@router.get(
    "/events",
    tags=["events"],
    summary="Stream events (Server-Sent Events)",
    response_class=EventStreamResponse,
    response_model=None,
    status_code=200,
    response_description=_SSE_DESCRIPTION,
    responses={
        200: {
            "content": {
                "text/event-stream": {"schema": {"type": "string"}, "example": _SSE_EXAMPLE}
            },
        },
        **problem_responses(
            401,
            403,
            422,
            429,
            503,
            s422="Invalid filter or Last-Event-ID",
            s503="The event stream is not running (server starting or stopping)",
        ),
    },
)
async def stream_events(
    request: Request,
    caller: Caller,
    run_id: Annotated[
        str | None, Query(max_length=200, pattern=TEXT, description="Only this run")
    ] = None,
    workflow: Annotated[
        str | None,
        Query(max_length=200, pattern=TEXT, description="Only runs of this workflow"),
    ] = None,
    kind: Annotated[
        list[_Kind] | None,
        Query(
            max_length=MAX_KINDS,
            description="Only these kinds (repeat the parameter for several)",
        ),
    ] = None,
    last_event_id: Annotated[
        int | None,
        Query(
            ge=0,
            le=MAX_ID,
            description="Resume after this event id, for clients that cannot set the "
            "Last-Event-ID header (the header wins when both are sent)",
        ),
    ] = None,
    last_event_id_header: Annotated[
        int | None,
        Header(
            alias="Last-Event-ID",
            ge=0,
            le=MAX_ID,
            description="Resume after this event id (browsers send it when they reconnect)",
        ),
    ] = None,
) -> Response:
    """Every event of the caller's tenant as it happens, optionally narrowed to a run,
    a workflow or some kinds.

    Without `Last-Event-ID` the stream starts now; with it, every event after
    that id is sent first (read from the store, so nothing is lost while the
    client was away), then live events: in id order, without gaps or repeats.
    Events of other tenants never appear.
    """
    caller.require(Role.VIEWER, "streaming events")
    state = server_state(request)
    after = last_event_id_header if last_event_id_header is not None else last_event_id
    try:
        sub = _subscribe(state, caller, after, run_id, workflow, kind)
    except _Refused as refused:
        return problem_response(refused.status, str(refused), code=refused.code)
    return EventStreamResponse(sub, heartbeat=state.settings.sse_heartbeat_s, metrics=state.metrics)


class _Refused(Exception):
    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code


def _subscribe(
    state: ServerState,
    caller: Principal,
    after: int | None,
    run_id: str | None,
    workflow: str | None,
    kinds: list[str] | None,
) -> Subscription:
    if kinds is not None and (len(kinds) > MAX_KINDS or any(len(k) > 200 for k in kinds)):
        raise _Refused(422, "validation_error", f"at most {MAX_KINDS} kinds of 200 characters")
    if not state.hub.running:
        raise _Refused(
            503, "stream_unavailable", "the event stream is not running; retry in a moment"
        )
    return state.hub.subscribe(
        after, tenant=caller.tenant_id, run_id=run_id, workflow=workflow, kinds=kinds
    )


# -- WebSocket ---------------------------------------------------------------------


class SubscribeMessage(BaseModel):
    """``{"type": "subscribe", ...}``: start a subscription on this socket."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["subscribe"]
    id: str = Field(min_length=1, max_length=100)
    last_event_id: int | None = Field(default=None, ge=0, le=MAX_ID)
    run_id: str | None = Field(default=None, max_length=200, pattern=TEXT)
    workflow: str | None = Field(default=None, max_length=200, pattern=TEXT)
    kinds: list[_Kind] | None = Field(default=None, max_length=MAX_KINDS)


class UnsubscribeMessage(BaseModel):
    """``{"type": "unsubscribe", "id": ...}``: end a subscription."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["unsubscribe"]
    id: str = Field(min_length=1, max_length=100)


@router.websocket("/ws", name="event_socket")
async def event_socket(websocket: WebSocket) -> None:
    """Event subscriptions over one WebSocket, as JSON text messages.

    Client to server:
    ``{"type": "subscribe", "id": "<sub id>", "last_event_id": N, "run_id": ...,
    "workflow": ..., "kinds": [...]}`` (all but type and id optional; without
    last_event_id the subscription starts now), ``{"type": "unsubscribe", "id": ...}``,
    ``{"type": "ping"}``.

    Server to client: ``{"type": "subscribed", "subscription": id, "last_event_id": N}``,
    ``{"type": "event", "subscription": id, "event": {...}}`` in id order per
    subscription, ``{"type": "unsubscribed", "subscription": id}``, ``{"type": "pong"}``
    and ``{"type": "error", "subscription": id or null, "code": ..., "detail": ...}``.

    Close codes: 1008 authentication failed (or a cookie-authenticated handshake
    from another site), 1013 rate limited or streams not running, 1001 server
    shutting down, 4000 slow consumer (resubscribe with ``last_event_id``).
    """
    state = server_state(websocket)
    await websocket.accept()
    refusal = await _handshake(websocket, state)
    if isinstance(refusal, tuple):
        await websocket.close(*refusal)
        return
    socket = _EventSocket(websocket, refusal, state)
    state.metrics.stream_clients.labels(transport="ws").inc()
    try:
        await socket.serve()
    finally:
        state.metrics.stream_clients.labels(transport="ws").dec()


async def _handshake(websocket: WebSocket, state: ServerState) -> Principal | tuple[int, str]:
    """The caller, or the (close code, reason) to refuse the socket with."""
    credentials = credentials_of(websocket)
    if credentials.api_key is None and credentials.bearer is None and _cross_site(websocket):
        return CLOSE_POLICY, "cross-site WebSocket handshake refused: Origin does not match Host"
    try:
        caller = await websocket_principal(websocket)
        caller.require(Role.VIEWER, "streaming events")
    except errors.RateLimitedError as exc:
        return CLOSE_TRY_LATER, _short(str(exc))
    except errors.AccessError as exc:
        return CLOSE_POLICY, _short(str(exc))
    if not state.hub.running:
        return CLOSE_TRY_LATER, "the event stream is not running; retry in a moment"
    return caller


def _cross_site(websocket: WebSocket) -> bool:
    # Browsers always send Origin on WebSocket handshakes; a cookie arriving with
    # an Origin of another site is a hijacking attempt. Clients without Origin are
    # not browsers and cannot be made to send someone else's cookie.
    origin = websocket.headers.get("origin")
    if origin is None:
        return False
    host = websocket.headers.get("host", "")
    return urlsplit(origin).netloc.lower() != host.lower()


def _short(reason: str) -> str:
    # A close frame's reason must fit in 123 bytes.
    encoded = reason.encode()
    return reason if len(encoded) <= 123 else encoded[:120].decode(errors="ignore") + "..."


class _EventSocket:
    """One accepted WebSocket: its subscriptions, each pumped by a task of its own."""

    def __init__(self, websocket: WebSocket, caller: Principal, state: ServerState) -> None:
        self.websocket = websocket
        self.caller = caller
        self.state = state
        self.pumps: dict[str, tuple[Subscription, asyncio.Task[None]]] = {}
        self.send_lock = asyncio.Lock()
        self.closed = asyncio.Event()
        self.handlers: dict[str, Callable[[dict[str, Any]], Awaitable[None]]] = {
            "subscribe": self.subscribe,
            "unsubscribe": self.unsubscribe,
            "ping": self.ping,
        }

    async def serve(self) -> None:
        reader = asyncio.ensure_future(self._read())
        closed = asyncio.ensure_future(self.closed.wait())
        try:
            await asyncio.wait({reader, closed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (reader, closed, *(task for _, task in self.pumps.values())):
                task.cancel()
            for sub, _ in self.pumps.values():
                sub.close()
            for task in (reader, closed, *(task for _, task in self.pumps.values())):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _read(self) -> None:
        while True:
            message = await self.websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is None:
                text = message.get("bytes") or b""
            try:
                body = orjson.loads(text)
            except orjson.JSONDecodeError:
                await self.error(None, "bad_message", "a message must be a JSON object")
                continue
            kind = body.get("type") if isinstance(body, dict) else None
            handler = self.handlers.get(kind) if isinstance(kind, str) else None
            if handler is None:
                await self.error(
                    None, "bad_message", "type must be one of: subscribe, unsubscribe, ping"
                )
                continue
            await handler(body)

    # -- message handlers ----------------------------------------------------------

    async def subscribe(self, body: dict[str, Any]) -> None:
        try:
            msg = SubscribeMessage.model_validate(body)
        except ValidationError as exc:
            await self.error(body.get("id"), "bad_message", _first_error(exc))
            return
        if msg.id in self.pumps:
            await self.error(msg.id, "duplicate_subscription", "this id is already subscribed")
            return
        if len(self.pumps) >= MAX_SOCKET_SUBSCRIPTIONS:
            await self.error(
                msg.id,
                "too_many_subscriptions",
                f"at most {MAX_SOCKET_SUBSCRIPTIONS} subscriptions per socket",
            )
            return
        try:
            sub = _subscribe(
                self.state, self.caller, msg.last_event_id, msg.run_id, msg.workflow, msg.kinds
            )
        except _Refused as refused:
            await self.error(msg.id, refused.code, str(refused))
            return
        await self.send(
            {"type": "subscribed", "subscription": msg.id, "last_event_id": sub.position}
        )
        task = asyncio.ensure_future(self._pump(msg.id, sub))
        self.pumps[msg.id] = (sub, task)

    async def unsubscribe(self, body: dict[str, Any]) -> None:
        try:
            msg = UnsubscribeMessage.model_validate(body)
        except ValidationError as exc:
            await self.error(body.get("id"), "bad_message", _first_error(exc))
            return
        entry = self.pumps.pop(msg.id, None)
        if entry is None:
            await self.error(msg.id, "unknown_subscription", "no subscription with this id")
            return
        sub, task = entry
        sub.close()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await self.send({"type": "unsubscribed", "subscription": msg.id})

    async def ping(self, body: dict[str, Any]) -> None:
        await self.send({"type": "pong"})

    # -- sending -----------------------------------------------------------------------

    async def _pump(self, sub_id: str, sub: Subscription) -> None:
        prefix = b'{"type":"event","subscription":%s,"event":' % orjson.dumps(sub_id)
        try:
            while True:
                batch = await sub.receive(max_events=MAX_BATCH)
                if batch is None:
                    break
                await self._send_events(prefix, batch)
            if sub.end is EndReason.SLOW_CONSUMER:
                self.state.metrics.slow_disconnects.inc()
                await self.error(sub_id, sub.end.value, sub.reason or "", sub.position)
                await self.close(CLOSE_SLOW_CONSUMER, sub.reason or "slow consumer")
            elif sub.end is EndReason.SHUTDOWN:
                await self.close(CLOSE_GOING_AWAY, "the server is shutting down")
        except (WebSocketDisconnect, OSError, RuntimeError, TimeoutError):
            self.closed.set()  # gone or stalled: end the socket

    async def _send_events(self, prefix: bytes, batch: list[StreamEvent]) -> None:
        async with self.send_lock, asyncio.timeout(WRITE_TIMEOUT_S):
            for item in batch:
                await self.websocket.send_text((prefix + item.json() + b"}").decode())
        self.state.metrics.events_delivered.inc(len(batch))

    async def send(self, message: dict[str, Any]) -> None:
        async with self.send_lock, asyncio.timeout(WRITE_TIMEOUT_S):
            await self.websocket.send_text(orjson.dumps(message).decode())

    async def error(
        self, sub_id: Any, code: str, detail: str, last_event_id: int | None = None
    ) -> None:
        message: dict[str, Any] = {
            "type": "error",
            "subscription": sub_id if isinstance(sub_id, str) else None,
            "code": code,
            "detail": detail,
        }
        if last_event_id is not None:
            message["last_event_id"] = last_event_id
        await self.send(message)

    async def close(self, code: int, reason: str) -> None:
        try:
            async with self.send_lock, asyncio.timeout(WRITE_TIMEOUT_S):
                await self.websocket.close(code, _short(reason))
        finally:
            self.closed.set()


def _first_error(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first.get("loc", ())) or "message"
    return f"{where}: {first.get('msg', 'invalid')}"
