"""Who is looking at a page: the session cookie, sign-in, and CSRF on every form."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, quote

from starlette.requests import Request
from starlette.responses import RedirectResponse

from kernos.api._auth import SESSION_COOKIE
from kernos.api._state import server_state
from kernos.control import Credentials, Principal
from kernos.control._secrets import constant_time_equal, new_token
from kernos.errors import AuthenticationError, PermissionDeniedError

__all__ = ["LOGIN_CSRF_COOKIE", "SignInRequired", "form", "login_redirect", "viewer"]

LOGIN_CSRF_COOKIE = "kernos_login_csrf"
MAX_FORM_BYTES = 256 * 1024


class SignInRequired(Exception):
    """The page needs a signed-in user; answered with a redirect to /login."""


async def viewer(request: Request) -> Principal:
    """The signed-in user of this request (session cookie only: pages take no API keys).

    Raises:
        SignInRequired: no session, or it expired or was revoked.
        RateLimitedError: too many requests for this session.
    """
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        raise SignInRequired
    state = server_state(request)
    ip = request.client.host if request.client else None
    try:
        caller = await state.service.auth.authenticate(Credentials(session=token, ip=ip))
    except AuthenticationError as error:
        raise SignInRequired from error
    state.key_limiter.check(caller.actor, "requests for this session")
    return caller


async def form(request: Request, caller: Principal | None = None) -> dict[str, str]:
    """The request's url-encoded form, its CSRF token checked against the session's.

    Without ``caller`` (sign-in), the token is checked against the login cookie.

    Raises:
        PermissionDeniedError: a missing or wrong CSRF token.
    """
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise PermissionDeniedError("form too large")
    fields = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    if caller is not None and caller.session is not None:
        expected: str | None = caller.session.csrf_token
    else:
        expected = request.cookies.get(LOGIN_CSRF_COOKIE)
    sent = fields.get("csrf_token")
    if not expected or not sent or not constant_time_equal(sent, expected):
        raise PermissionDeniedError(
            "missing or wrong CSRF token: reload the page and submit the form again"
        )
    return fields


def new_login_token() -> str:
    """A fresh token for the sign-in form and its cookie."""
    return new_token()


def login_redirect(request: Request) -> RedirectResponse:
    """Send the browser to /login, coming back here afterwards."""
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)


def safe_next(value: Any) -> str:
    """A same-site path to go to after sign-in (anything else becomes /runs)."""
    if (
        isinstance(value, str)
        and value.startswith("/")
        and not value.startswith("//")
        and "\\" not in value
        and all(32 <= ord(c) < 127 for c in value)
    ):
        return value
    return "/runs"
