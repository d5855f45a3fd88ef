"""The dashboard's forms: sign-in and out, run actions, keys and users.

Every POST carries the session's CSRF token as a hidden field; the Service
checks the role, confines the action to the tenant and audits it.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import orjson
from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from kernos.api._auth import SESSION_COOKIE
from kernos.api._state import server_state
from kernos.errors import AuthenticationError, ConflictError, UsageError
from kernos.records import Role
from kernos.web._approvals import VERDICTS
from kernos.web._pages import approvals_context, base_context
from kernos.web._render import page
from kernos.web._session import (
    LOGIN_CSRF_COOKIE,
    form,
    new_login_token,
    safe_next,
    viewer,
)

__all__ = ["router"]

router = APIRouter(include_in_schema=False)


def _secure(request: Request) -> bool:
    configured = server_state(request).settings.secure_cookies
    return request.url.scheme == "https" if configured is None else configured


def _login_page(request: Request, error: str | None, status: int = 200) -> Response:
    token = new_login_token()
    context = {
        "login_csrf": token,
        "next": safe_next(request.query_params.get("next")),
        "error": error,
        "section": "login",
        "caller": None,
    }
    response = page("login.html", context, status=status)
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        max_age=3600,
        httponly=True,
        samesite="strict",
        secure=_secure(request),
        path="/login",
    )
    return response


@router.get("/login")
async def login_form(request: Request) -> Response:
    """The sign-in form."""
    return _login_page(request, None)


@router.post("/login")
async def login(request: Request) -> Response:
    """Sign in with a username and password; the session cookie is set."""
    fields = await form(request)
    state = server_state(request)
    ip = request.client.host if request.client else None
    try:
        session, token, _ = await state.service.auth.login(
            fields.get("username", "")[:200], fields.get("password", "")[:1000], ip=ip
        )
    except AuthenticationError as error:
        return _login_page(request, str(error), status=401)
    response = RedirectResponse(safe_next(fields.get("next")), status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(session.expires_at - session.created_at),
        httponly=True,
        samesite="lax",
        secure=_secure(request),
        path="/",
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    """Sign out: the session ends and the cookie is cleared."""
    caller = await viewer(request)
    await form(request, caller)
    state = server_state(request)
    if caller.session is not None:
        await state.service.auth.logout(caller.session)
        await state.service.audit.record(caller, "auth.logout", "user", caller.actor)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


def _json(text: str, field: str) -> Any:
    try:
        return orjson.loads(text) if text.strip() else None
    except orjson.JSONDecodeError as error:
        raise UsageError(f"{field} is not valid JSON: {error}", field=field) from error


def _back(run_id: str, **query: str) -> RedirectResponse:
    suffix = "&".join(f"{k}={v}" for k, v in query.items())
    return RedirectResponse(f"/runs/{run_id}" + (f"?{suffix}" if suffix else ""), status_code=303)


@router.post("/runs")
async def start_run(request: Request) -> Response:
    """Start a run of a workflow with a JSON input."""
    caller = await viewer(request)
    fields = await form(request, caller)
    data = _json(fields.get("input", ""), "input") or {}
    if not isinstance(data, dict):
        raise UsageError("input must be a JSON object of named arguments", field="input")
    run, _ = await server_state(request).service.runs.start(
        caller,
        fields.get("workflow", "")[:200],
        data,
        queue=fields.get("queue", "")[:200] or "default",
    )
    return _back(run.run_id)


@router.post("/runs/{run_id}/{action}")
async def run_action(request: Request, run_id: str, action: str) -> Response:
    """Cancel, pause, resume, send a message to, fork or replay a run."""
    caller = await viewer(request)
    fields = await form(request, caller)
    runs = server_state(request).service.runs
    run_id = run_id[:200]
    if action == "cancel":
        reason = fields.get("reason", "")[:500] or "cancelled from the dashboard"
        await runs.cancel(caller, run_id, reason)
    elif action == "pause":
        await runs.pause(caller, run_id)
    elif action == "resume":
        await runs.resume(caller, run_id)
    elif action == "send":
        payload = _json(fields.get("payload", ""), "payload")
        await runs.send(caller, run_id, payload, fields.get("topic", "")[:200] or "default")
    elif action == "fork":
        seq = fields.get("seq", "")
        if not seq.isdigit():
            raise UsageError("choose the journal entry to fork at", field="seq")
        edited = "patch" in fields and fields.get("edit") == "on"
        patch = _json(fields["patch"], "patch") if edited else None
        fork = await runs.fork(caller, run_id, int(seq), patch=patch, patched=edited)
        return _back(fork.run_id)
    elif action == "replay":
        report = await runs.replay(caller, run_id)
        run = await runs.get(caller, run_id)
        context = base_context(request, caller, "runs") | {"run": run, "report": report}
        return page("replay.html", context)
    else:
        raise UsageError(f"unknown action {action!r}")
    return _back(run_id)


@router.post("/approvals/{approval_id}/decide")
async def decide_approval(request: Request, approval_id: str) -> Response:
    """Approve, reject, or approve with edited arguments, with a comment.

    The decision is bound to the arguments' hash and the level the person saw;
    when someone else decided first (409), the inbox says so.
    """
    caller = await viewer(request)
    fields = await form(request, caller)
    choice = fields.get("decision", "")
    if choice not in VERDICTS:
        raise UsageError("choose approve, reject or approve with edits", field="decision")
    level = fields.get("level", "")
    approval_id = approval_id[:200]
    try:
        await server_state(request).service.approvals.decide(
            caller,
            approval_id,
            "reject" if choice == "reject" else "approve",
            comment=fields.get("comment", "").strip()[:4000] or None,
            edits=_json(fields.get("edits", ""), "edits") if choice == "edit" else None,
            expected_args_hash=fields.get("args_hash") or None,
            level=int(level) if level.isdigit() else None,
        )
    except ConflictError as error:
        notice = f"Not recorded: someone else decided first or the request changed. {error}"
        context = await approvals_context(request, caller, notice=notice)
        return page("approvals.html", context | {"conflict": True}, status=409)
    done = urlencode({"decided": approval_id, "verdict": choice})
    return RedirectResponse(f"/approvals?{done}", status_code=303)


@router.post("/keys")
async def create_key(request: Request) -> Response:
    """Create an API key; its secret is shown once on the page that follows."""
    caller = await viewer(request)
    fields = await form(request, caller)
    admin = server_state(request).service.admin
    key, secret = await admin.create_key(
        caller, fields.get("name", "")[:100], Role(fields.get("role", "viewer"))
    )
    context = base_context(request, caller, "keys") | {"key": key, "secret": secret}
    return page("key_created.html", context)


@router.post("/keys/{key_id}/revoke")
async def revoke_key(request: Request, key_id: str) -> Response:
    """Revoke an API key."""
    caller = await viewer(request)
    await form(request, caller)
    await server_state(request).service.admin.revoke_key(caller, key_id[:100])
    return RedirectResponse("/keys", status_code=303)


@router.post("/users")
async def create_user(request: Request) -> Response:
    """Create a user in this tenant with a role."""
    caller = await viewer(request)
    fields = await form(request, caller)
    await server_state(request).service.admin.create_user(
        caller,
        fields.get("username", "")[:100],
        fields.get("password", "")[:1000],
        Role(fields.get("role", "viewer")),
    )
    return RedirectResponse("/users", status_code=303)
