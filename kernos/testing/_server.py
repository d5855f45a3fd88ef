"""The machinery every fake provider shares: a real HTTP server on loopback, in a thread.

The server is uvicorn serving a small ASGI app on ``127.0.0.1`` at an ephemeral
port, in a background thread with its own event loop, so synchronous and async
tests (and the official SDKs, with their own connection pools) talk to it over
real TCP, exactly as they would to the provider.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, ClassVar, Self

import uvicorn

from kernos.testing._replies import FakeToolCall, RecordedRequest, Reply

__all__ = ["FakeServer", "Rendered"]

Responder = Callable[[RecordedRequest], Reply]


@dataclass(slots=True)
class Rendered:
    """An HTTP answer: status, headers and the body as the chunks to write."""

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    chunks: Sequence[bytes] = ()
    pace: float = 0.0  # seconds between chunks

    @classmethod
    def json(cls, status: int, body: Any, headers: dict[str, str] | None = None) -> Rendered:
        """A JSON answer written in one piece."""
        data = json.dumps(body, separators=(",", ":")).encode()
        pairs = [("content-type", "application/json"), ("content-length", str(len(data)))]
        pairs += list((headers or {}).items())
        return cls(status=status, headers=pairs, chunks=[data])

    @classmethod
    def stream(cls, content_type: str, chunks: Sequence[bytes]) -> Rendered:
        """A streamed answer: each chunk is written (and flushed) on its own."""
        headers = [("content-type", content_type), ("cache-control", "no-cache")]
        return cls(status=200, headers=headers, chunks=chunks)


class _Uvicorn(uvicorn.Server):
    """uvicorn, telling the starting thread when it listens."""

    def __init__(self, config: uvicorn.Config, ready: threading.Event) -> None:
        super().__init__(config)
        self._ready = ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self._ready.set()


class FakeServer(ABC):
    """A fake provider: scripted replies over real HTTP, every request recorded.

    Use it as a context manager (sync or async); ``url`` is what to give the SDK
    or ``kernos.llm.connect(..., base_url=...)``::

        with FakeOpenAI() as fake:
            fake.reply("Hello!")
            fake.reply(tool_calls=[FakeToolCall(name="weather", arguments={"city": "Paris"})])
            fake.fail(429, retry_after=1)
            ...
            assert len(fake.requests) == 3

    Replies are served in order. When none is left, ``responder`` (if set) makes
    one from the request, else ``default`` is used, else the request fails with
    a 400 error saying the script ran out.

    Args:
        latency: seconds to wait before every answer (default none).
        api_key: when set, requests without this key get a 401 in the provider's format.
        models: when set, requests for other models get the provider's 404.
        default: the reply used when the script is empty.
    """

    provider: ClassVar[str] = "fake"
    url_path: ClassVar[str] = ""
    """Appended to the server's root to make :attr:`url` (``/v1`` for OpenAI)."""
    routes: ClassVar[frozenset[tuple[str, str]]] = frozenset()

    def __init__(
        self,
        *,
        latency: float = 0.0,
        api_key: str | None = None,
        models: Iterable[str] | None = None,
        default: Reply | None = None,
    ) -> None:
        self.latency = latency
        self.api_key = api_key
        self.models = frozenset(models) if models is not None else None
        self.default = default
        self.responder: Responder | None = None
        self.requests: list[RecordedRequest] = []
        self._replies: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._server: _Uvicorn | None = None
        self._thread: threading.Thread | None = None
        self._port = 0
        self._counter = 0

    # -- the script --------------------------------------------------------------

    def reply(
        self, text: str = "", *, tool_calls: Iterable[FakeToolCall] = (), **fields: Any
    ) -> Reply:
        """Queue a model answer (text and/or tool calls; any :class:`Reply` field)."""
        return self.add(Reply(text=text, tool_calls=tuple(tool_calls), **fields))

    def fail(
        self,
        status: int,
        message: str | None = None,
        *,
        retry_after: float | str | None = None,
        **fields: Any,
    ) -> Reply:
        """Queue an error answer (``429`` with ``retry_after``, ``500``, ``401``, ...)."""
        reply = Reply.error(status, message, retry_after=retry_after)
        if fields:
            reply = Reply(**{**_fields(reply), **fields})
        return self.add(reply)

    def add(self, *replies: Reply) -> Reply:
        """Queue replies; returns the last."""
        with self._lock:
            self._replies.extend(replies)
        return replies[-1]

    @property
    def pending(self) -> int:
        """Replies queued and not yet served."""
        return len(self._replies)

    def reset(self) -> None:
        """Forget queued replies and recorded requests."""
        with self._lock:
            self._replies.clear()
            self.requests.clear()

    def next_id(self) -> int:
        """A number unique within this server (for response and tool-call ids)."""
        with self._lock:
            self._counter += 1
            return self._counter

    def _next_reply(self, request: RecordedRequest) -> Reply | None:
        with self._lock:
            if self._replies:
                return self._replies.popleft()
        if self.responder is not None:
            return self.responder(request)
        return self.default

    # -- lifecycle ---------------------------------------------------------------

    @property
    def root(self) -> str:
        """``http://127.0.0.1:<port>``."""
        if not self._port:
            raise RuntimeError(f"{type(self).__name__} is not running: use it in a with block")
        return f"http://127.0.0.1:{self._port}"

    @property
    def url(self) -> str:
        """The base URL to give the SDK."""
        return self.root + self.url_path

    def start(self) -> Self:
        """Start serving (idempotent); returns once the server listens."""
        if self._server is not None:
            return self
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self._port = sock.getsockname()[1]
        config = uvicorn.Config(
            self,
            interface="asgi3",
            lifespan="off",
            ws="none",
            log_config=None,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=1,
        )
        ready = threading.Event()
        self._server = _Uvicorn(config, ready)
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [sock]},
            name=f"{type(self).__name__}:{self._port}",
            daemon=True,
        )
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError(f"{type(self).__name__} did not start within 10 s")
        return self

    def stop(self) -> None:
        """Stop serving and wait for the thread."""
        if self._server is None:
            return
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
        self._server = None
        self._thread = None
        self._port = 0

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        return await asyncio.to_thread(self.start)

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await asyncio.to_thread(self.stop)

    def __repr__(self) -> str:
        where = self.url if self._port else "stopped"
        return f"<{type(self).__name__} {where}, {self.pending} replies queued>"

    # -- HTTP --------------------------------------------------------------------

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """The ASGI app."""
        if scope["type"] != "http":
            return
        body = bytearray()
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        request = RecordedRequest(
            method=scope["method"],
            path=scope["path"],
            headers={k.decode().lower(): v.decode() for k, v in scope["headers"]},
            body=bytes(body),
            json=_json(bytes(body)),
            time=time.monotonic(),
        )
        self.requests.append(request)
        rendered, delay = self._answer(request)
        if delay > 0:
            await asyncio.sleep(delay)
        await send(
            {
                "type": "http.response.start",
                "status": rendered.status,
                "headers": [(k.encode(), v.encode()) for k, v in rendered.headers],
            }
        )
        for i, chunk in enumerate(rendered.chunks):
            if i and rendered.pace > 0:
                await asyncio.sleep(rendered.pace)
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    def _answer(self, request: RecordedRequest) -> tuple[Rendered, float]:
        if (request.method, request.path) not in self.routes:
            return self.render_error(404, f"no route {request.method} {request.path}", None), 0.0
        if self.api_key is not None and not self.authorized(request):
            return self.render_error(401, "Invalid API key", None), self.latency
        if self.models is not None and request.model not in self.models:
            return self.model_not_found(request.model or ""), self.latency
        reply = self._next_reply(request)
        if reply is None:
            message = (
                f"{type(self).__name__} has no scripted reply left for {request.method} "
                f"{request.path}; queue one with .reply(...) or set .default or .responder"
            )
            return self.render_error(400, message, None), self.latency
        delay = self.latency + reply.delay
        if reply.is_error:
            rendered = self.render_error(reply.status, reply.error_message(), reply.error_type)
            rendered.headers += list(reply.response_headers().items())
            return rendered, delay
        rendered = self.render(request, reply)
        rendered.headers += list(reply.response_headers().items())
        rendered.pace = reply.chunk_delay
        return rendered, delay

    # -- what each provider renders ------------------------------------------------

    @abstractmethod
    def authorized(self, request: RecordedRequest) -> bool:
        """Whether the request carries :attr:`api_key` the provider's way."""

    @abstractmethod
    def render(self, request: RecordedRequest, reply: Reply) -> Rendered:
        """A model answer in the provider's format (streamed if the request asks)."""

    @abstractmethod
    def render_error(self, status: int, message: str, error_type: str | None) -> Rendered:
        """An error answer in the provider's format."""

    @abstractmethod
    def model_not_found(self, model: str) -> Rendered:
        """The provider's answer for an unknown model."""


def _json(body: bytes) -> Any:
    if not body:
        return None
    try:
        return json.loads(body)
    except ValueError:
        return None


def _fields(reply: Reply) -> dict[str, Any]:
    return {name: getattr(reply, name) for name in reply.__dataclass_fields__}
