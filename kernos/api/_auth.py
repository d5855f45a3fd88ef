"""Authentication for every route: API keys, bearer tokens and session cookies.

Session-cookie callers must send the session's CSRF token in ``X-CSRF-Token``
on every unsafe request (anything but GET, HEAD and OPTIONS); API keys and
bearer tokens are not sent automatically by browsers, so they need none.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, WebSocket
from fastapi.security import APIKeyCookie, APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import HTTPConnection

from kernos.api._state import server_state
from kernos.control import Credentials, Principal
from kernos.control._secrets import constant_time_equal
from kernos.errors import PermissionDeniedError

__all__ = [
    "CSRF_HEADER",
    "SESSION_COOKIE",
    "Caller",
    "authenticate_connection",
    "principal",
]

SESSION_COOKIE = "kernos_session"
CSRF_HEADER = "X-CSRF-Token"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

# Declared for the OpenAPI document (the security schemes); the checks are below.
_bearer = HTTPBearer(auto_error=False, description="An API key (kn_...) or a session token")
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="An API key (kn_...)")
_cookie = APIKeyCookie(name=SESSION_COOKIE, auto_error=False, description="Dashboard session")


def credentials_of(connection: HTTPConnection) -> Credentials:
    """Read the credentials a request or WebSocket handshake carries."""
    header = connection.headers.get("authorization")
    bearer = None
    if header is not None:
        scheme, _, value = header.partition(" ")
        bearer = value.strip() if scheme.lower() == "bearer" and value.strip() else ""
    return Credentials(
        api_key=connection.headers.get("x-api-key"),
        bearer=bearer,
        session=connection.cookies.get(SESSION_COOKIE),
        ip=connection.client.host if connection.client else None,
    )


async def authenticate_connection(connection: HTTPConnection) -> Principal:
    """Authenticate a request or WebSocket handshake and apply the per-caller rate limit.

    Raises:
        AuthenticationError, RateLimitedError, PermissionDeniedError (CSRF).
    """
    state = server_state(connection)
    credentials = credentials_of(connection)
    if credentials.bearer == "":
        from kernos.errors import AuthenticationError

        raise AuthenticationError("malformed Authorization header: use 'Bearer <key or token>'")
    caller = await state.service.auth.authenticate(credentials)
    uses_cookie = credentials.api_key is None and credentials.bearer is None
    if uses_cookie and caller.session is not None and isinstance(connection, Request):
        try:
            _check_csrf(connection, caller.session.csrf_token)
        except PermissionDeniedError as error:
            await state.service.audit.record(
                caller,
                "auth.csrf",
                "request",
                f"{connection.method} {connection.url.path}"[:200],
                outcome="denied",
                detail={"reason": error.code},
            )
            raise
    state.key_limiter.check(caller.actor, "requests for this credential")
    connection.state.principal = caller
    return caller


def _check_csrf(request: Request, expected: str) -> None:
    if request.method in _SAFE_METHODS:
        return
    sent = request.headers.get(CSRF_HEADER)
    if sent is None or not constant_time_equal(sent, expected):
        raise PermissionDeniedError(
            f"missing or wrong {CSRF_HEADER} header: requests signed in with the session "
            "cookie must echo the csrf_token returned at sign-in"
        )


async def principal(
    request: Request,
    _bearer_credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    _api_key_header: Annotated[str | None, Depends(_api_key)],
    _session_cookie: Annotated[str | None, Depends(_cookie)],
) -> Principal:
    """FastAPI dependency: the authenticated caller of this request."""
    return await authenticate_connection(request)


async def websocket_principal(websocket: WebSocket) -> Principal:
    """The authenticated caller of a WebSocket handshake (header or session cookie)."""
    return await authenticate_connection(websocket)


Caller = Annotated[Principal, Depends(principal)]
"""Annotate a route parameter with this to require authentication."""
