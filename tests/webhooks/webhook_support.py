"""A webhook receiver on loopback that verifies every request, and workflows that
emit approval events (as the approvals feature does) for it to be notified of."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson

import kernos
from kernos import errors
from kernos.api import ServerSettings
from kernos.api._server import ApiServer
from kernos.control import Service, verify_webhook
from kernos.retry import RetryPolicy
from kernos.runtime import emit

# Retries a few milliseconds apart, and loopback receivers allowed.
FAST = ServerSettings(
    allow_private_webhooks=True,
    webhook_retry=RetryPolicy(max_attempts=4, initial_delay=0.05, max_delay=0.2, jitter=0.5),
    public_url="https://kernos.example.com",
)


@dataclass
class Received:
    """One request the receiver got, and what verifying it said."""

    headers: dict[str, str]
    body: bytes
    verified: bool
    refusal: str | None
    answered: int

    def json(self) -> Any:
        """The parsed body."""
        return orjson.loads(self.body)


@dataclass
class Receiver:
    """What the receiver got, and the statuses it answers with next (then 200)."""

    url: str = ""
    secret: str = ""
    answers: deque[tuple[int, dict[str, str]]] = field(default_factory=deque)
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, *statuses: int, headers: dict[str, str] | None = None) -> None:
        """Answer the next requests with ``statuses`` (each with ``headers``)."""
        with self.lock:
            self.answers.extend((status, headers or {}) for status in statuses)

    def accepted(self) -> list[Received]:
        """Requests that verified and were answered 2xx."""
        with self.lock:
            return [r for r in self.received if r.verified and 200 <= r.answered < 300]

    def all(self) -> list[Received]:
        """Every request so far."""
        with self.lock:
            return list(self.received)


@contextmanager
def receiver() -> Iterator[Receiver]:
    """A receiver on a free loopback port; set its ``secret`` before deliveries arrive.

    It checks each request with :func:`kernos.control.verify_webhook` (as a
    real receiver would) and answers 401 to one that does not verify.
    """
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            headers = {key: value for key, value in self.headers.items()}
            try:
                verify_webhook(state.secret, headers, body)
                verified, refusal = True, None
            except errors.AuthenticationError as error:
                verified, refusal = False, getattr(error, "reason", "?")
            with state.lock:
                status, extra = state.answers.popleft() if state.answers else (200, {})
                if not verified:
                    status, extra = 401, {}
                state.received.append(Received(headers, body, verified, refusal, status))
            self.send_response(status)
            for key, value in extra.items():
                self.send_header(key, value)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/kernos"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@asynccontextmanager
async def restarted(store_url: str, settings: ServerSettings = FAST) -> AsyncIterator[str]:
    """Serve the API again over a store that already has its admin; yield the API's URL."""
    app = kernos.Kernos(store_url, worker=True, poll_interval=0.05)
    await app.open()
    try:
        server = ApiServer(Service(app), host="127.0.0.1", port=0, settings=settings, grace=1.0)
        url = await server.start()
        try:
            yield url + "/api/v1"
        finally:
            await server.stop()
    finally:
        await app.close()


@kernos.step
async def announce(kind: str, data: dict[str, Any]) -> None:
    """Emit one event from a step: a finished step is not re-run on recovery,
    so the event is not emitted twice."""
    emit(kind, data)


def approval(run_id: str, title: str) -> dict[str, Any]:
    """The data of an ``approval.requested`` event, as the approvals feature emits it."""
    return {
        "approval_id": f"ap_{run_id}",
        "run_id": run_id,
        "workflow": "wh_approval",
        "kind": "tool",
        "title": title,
        "assignees": ["role:admin", "alice"],
        "level": 0,
        "deadline": 1_900_000_000.0,
    }


@kernos.workflow(name="wh_approval")
async def approval_flow(title: str = "Send the invoice", wait: bool = False) -> str:
    """Request an approval, make some noise, and (with ``wait``) escalate and decide
    after a message on ``go``."""
    run_id = kernos.current_run_id()
    await announce("approval.requested", approval(run_id, title))
    await announce("progress", {"note": "not an approval event"})
    if wait:
        await kernos.recv("go")
    await announce(
        "approval.escalated",
        {
            "approval_id": f"ap_{run_id}",
            "run_id": run_id,
            "level": 1,
            "assignees": ["bob"],
            "deadline": None,
        },
    )
    await announce(
        "approval.decided",
        {
            "approval_id": f"ap_{run_id}",
            "run_id": run_id,
            "decision": "approved",
            "by": "user:bob",
            "comment": "ok <b>go</b> & ship",
            "edited": False,
            "by_default": False,
        },
    )
    return "done"
