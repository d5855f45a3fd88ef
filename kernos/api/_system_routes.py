"""Sign-in and sign-out, who-am-I, health, readiness and metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse

from kernos.api._auth import SESSION_COOKIE, Caller
from kernos.api._problems import problem_response, problem_responses
from kernos.api._schemas import LoginIn, LoginOut, MeOut
from kernos.api._state import server_state
from kernos.errors import KernosError

__all__ = ["health", "router"]

router = APIRouter()


@router.post(
    "/auth/login",
    response_model=LoginOut,
    tags=["auth"],
    responses=problem_responses(
        401, 422, 429, s401="Wrong username or password", s429="Too many attempts; see Retry-After"
    ),
)
async def login(request: Request, response: Response, body: LoginIn) -> LoginOut:
    """Sign in. Sets an HTTP-only session cookie (or, with ``token: true``, returns a
    short-lived bearer token instead). Cookie-authenticated writes must send the
    returned ``csrf_token`` in the X-CSRF-Token header."""
    state = server_state(request)
    ip = request.client.host if request.client else None
    session, token, user = await state.service.auth.login(
        body.username, body.password, tenant_id=body.tenant, ip=ip, short_lived=body.token
    )
    role = next(
        m.role
        for m in await state.service.app.store.memberships_of(user.user_id)
        if m.tenant_id == session.tenant_id
    )
    if not body.token:
        secure = state.settings.secure_cookies
        response.set_cookie(
            SESSION_COOKIE,
            token,
            max_age=int(session.expires_at - session.created_at),
            httponly=True,
            samesite="lax",
            secure=request.url.scheme == "https" if secure is None else secure,
            path="/",
        )
    return LoginOut(
        user=user.username,
        tenant=session.tenant_id,
        role=role,
        expires_at=session.expires_at,
        csrf_token=session.csrf_token,
        token=token if body.token else None,
    )


@router.post(
    "/auth/logout", status_code=204, tags=["auth"], responses=problem_responses(401, 403, 429)
)
async def logout(request: Request, caller: Caller) -> Response:
    """End the current session (cookie or token); API keys are revoked under /keys instead."""
    state = server_state(request)
    if caller.session is not None:
        await state.service.auth.logout(caller.session)
        await state.service.audit.record(caller, "auth.logout", "user", caller.actor)
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/auth/me", response_model=MeOut, tags=["auth"], responses=problem_responses(401, 429))
async def me(request: Request, caller: Caller) -> MeOut:
    """Who the credentials belong to, in which tenant, with which role."""
    return MeOut(
        actor=caller.actor,
        tenant=caller.tenant_id,
        role=caller.role,
        user_id=caller.user_id,
        key_id=caller.key_id,
    )


health = APIRouter()


@health.get("/healthz", tags=["health"], responses={200: {"description": "The process is up"}})
async def healthz() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@health.get(
    "/readyz",
    tags=["health"],
    responses={
        200: {"description": "Store reachable and schema current"},
        **problem_responses(503, s503="Not ready; the detail says why"),
    },
)
async def readyz(request: Request) -> JSONResponse:
    """Readiness: the store answers and its schema is at the version this code needs."""
    store = server_state(request).service.app.store
    try:
        applied, needed = await store.schema_version()
    except KernosError as error:
        return problem_response(503, f"store unreachable: {error}", code="not_ready")
    if applied != needed:
        return problem_response(
            503,
            f"schema at version {applied}, this code needs {needed}: run `kernos db migrate`",
            code="not_ready",
        )
    return JSONResponse({"status": "ready", "schema_version": applied})


@health.get(
    "/metrics",
    tags=["health"],
    response_class=PlainTextResponse,
    responses={
        200: {"content": {"text/plain": {}}, "description": "Prometheus exposition"},
        **problem_responses(401, 403, 429),
    },
)
async def metrics(request: Request, caller: Caller) -> PlainTextResponse:
    """Prometheus metrics of this server and its store (installation admins: the admin
    role in the default tenant, because the figures span every tenant)."""
    from kernos.control._admin import AdminService

    AdminService._installation_admin(caller, "reading metrics")
    state = server_state(request)
    store = state.service.app.store
    m = state.metrics
    for status, n in (await store.count_runs()).items():
        m.runs.labels(status=status).set(n)
    for queue in await store.list_queues():
        for status in ("pending", "running", "waiting", "paused"):
            m.queue_depth.labels(queue=queue.name, status=status).set(getattr(queue, status))
    states: dict[str, int] = {}
    for worker in await store.list_workers():
        states[worker.state] = states.get(worker.state, 0) + 1
    for worker_state in ("active", "draining", "stale", "gone"):
        m.workers.labels(state=worker_state).set(states.get(worker_state, 0))
    return PlainTextResponse(m.render(), media_type="text/plain; version=0.0.4; charset=utf-8")
