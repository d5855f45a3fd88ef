"""What every request handler reaches through ``request.app.state.kernos``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.requests import HTTPConnection

from kernos.api._settings import ServerSettings
from kernos.control import RateLimiter, Service

if TYPE_CHECKING:
    from kernos.api._hub import EventHub
    from kernos.api._metrics import Metrics

__all__ = ["ServerState", "server_state"]


@dataclass(kw_only=True)
class ServerState:
    """The server's long-lived parts, shared by all requests."""

    service: Service
    settings: ServerSettings
    hub: EventHub
    metrics: Metrics
    key_limiter: RateLimiter
    extra: dict[str, Any] = field(default_factory=dict)


def server_state(connection: HTTPConnection) -> ServerState:
    """The state of the server handling ``connection`` (a request or a WebSocket)."""
    state: ServerState = connection.app.state.kernos
    return state
