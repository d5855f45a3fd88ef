"""Running the API under uvicorn, in the caller's event loop."""

from __future__ import annotations

import asyncio
import contextlib
import math
import socket
from collections.abc import Callable, Generator

import uvicorn
from fastapi import FastAPI

from kernos.api._app import create_app
from kernos.api._settings import ServerSettings
from kernos.control import Service
from kernos.errors import ConfigError

__all__ = ["ApiServer"]


class _Server(uvicorn.Server):
    """uvicorn's server without its signal handlers: the program embedding it owns
    SIGTERM and SIGINT (``kernos up`` stops the worker too), and tests run it in a
    loop whose signals are not uvicorn's to take."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class ApiServer:
    """The API served by uvicorn on ``host:port`` (port 0 picks a free one).

    ``start()`` returns once the socket listens; ``stop()`` drains open
    connections for up to ``grace`` seconds. Event streams end at once on
    stop (clients resume with Last-Event-ID).
    """

    def __init__(
        self,
        service: Service,
        *,
        host: str = "127.0.0.1",
        port: int = 8420,
        settings: ServerSettings | None = None,
        log_level: str = "warning",
        grace: float = 5.0,
        dashboard: Callable[[FastAPI], None] | None = None,
    ) -> None:
        self.service = service
        self.settings = settings or ServerSettings()
        self.api = create_app(service, self.settings, dashboard=dashboard)
        self.config = uvicorn.Config(
            self.api,
            host=host,
            port=port,
            log_level=log_level,
            access_log=False,
            lifespan="on",
            proxy_headers=False,
            server_header=False,
            timeout_graceful_shutdown=math.ceil(grace),
            h11_max_incomplete_event_size=self.settings.max_header_bytes,
            ws_max_size=self.settings.max_body_bytes,
        )
        self.server = _Server(self.config)
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:8420``."""
        sockets = [s for server in self.server.servers for s in server.sockets]
        if not sockets:
            raise RuntimeError("the server is not listening yet; await start() first")
        host, port = sockets[0].getsockname()[:2]
        return f"http://{host}:{port}"

    async def start(self) -> str:
        """Start listening; return the base URL.

        Raises:
            ConfigError: the address is taken or cannot be bound.
        """
        self._check_bindable()
        self._task = asyncio.create_task(self.server.serve(), name="kernos-api")
        while not self.server.started:
            if self._task.done():
                self._task.result()
                raise ConfigError(
                    f"the API server could not start on {self.config.host}:{self.config.port}"
                )
            await asyncio.sleep(0.01)
        return self.url

    def _check_bindable(self) -> None:
        if self.config.port == 0:
            return
        family = socket.AF_INET6 if ":" in self.config.host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((self.config.host, self.config.port))
            except OSError as error:
                raise ConfigError(
                    f"cannot listen on {self.config.host}:{self.config.port}: {error.strerror}; "
                    "pass --port to choose another port",
                    host=self.config.host,
                    port=self.config.port,
                ) from error

    async def wait(self) -> None:
        """Wait until the server stops."""
        if self._task is not None:
            await self._task

    async def stop(self) -> None:
        """Stop accepting, let requests finish (up to the grace period), run shutdown."""
        if self._task is None:
            return
        self.server.should_exit = True
        # Open event streams would hold the connections (and the shutdown) for the
        # whole grace period; end them now, clients resume with Last-Event-ID.
        await self.api.state.kernos.hub.stop()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
