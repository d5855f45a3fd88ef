"""Routes for users, API keys, tenants, retention, the audit log and bulk actions."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response

from kernos.api._auth import Caller
from kernos.api._problems import problem_responses
from kernos.api._runs_routes import run_filter
from kernos.api._schemas import (
    MAX_ID,
    TEXT,
    AuditOut,
    AuditPage,
    BulkDryRun,
    BulkIn,
    BulkJobOut,
    KeyCreated,
    KeyIn,
    KeyOut,
    MemberIn,
    PasswordIn,
    RetentionIn,
    RotateIn,
    TenantIn,
    TenantOut,
    UserIn,
    UserOut,
    UserPatch,
)
from kernos.api._state import server_state
from kernos.control import Service
from kernos.records import ApiKey, Membership, User

__all__ = ["router"]

router = APIRouter()

_ERRORS = problem_responses(401, 403, 404, 409, 422, 429, 503)


def _id(what: str) -> Any:
    return Path(min_length=1, max_length=200, pattern=TEXT, description=what)


def _service(request: Request) -> Service:
    return server_state(request).service


def _user(user: User, membership: Membership) -> UserOut:
    return UserOut(
        user_id=user.user_id,
        username=user.username,
        role=membership.role,
        disabled=user.disabled,
        created_at=user.created_at,
    )


def _key(key: ApiKey) -> KeyOut:
    return KeyOut.model_validate(key.to_dict())


# -- users ----------------------------------------------------------------------------


@router.get("/users", response_model=list[UserOut], tags=["users"], responses=_ERRORS)
async def list_users(request: Request, caller: Caller) -> list[UserOut]:
    """The tenant's users and their roles (admin)."""
    return [_user(u, m) for u, m in await _service(request).admin.members(caller)]


@router.post("/users", response_model=UserOut, status_code=201, tags=["users"], responses=_ERRORS)
async def create_user(request: Request, caller: Caller, body: UserIn) -> UserOut:
    """Create a user in the tenant (admin)."""
    user, membership = await _service(request).admin.create_user(
        caller, body.username, body.password, body.role
    )
    return _user(user, membership)


@router.patch("/users/{username}", response_model=UserOut, tags=["users"], responses=_ERRORS)
async def update_user(
    request: Request,
    caller: Caller,
    username: Annotated[str, _id("A user's name")],
    body: UserPatch,
) -> UserOut:
    """Change a user's role, disable or enable them, or set their password (admin)."""
    user, membership = await _service(request).admin.update_user(
        caller, username, role=body.role, disabled=body.disabled, password=body.password
    )
    return _user(user, membership)


@router.delete("/users/{username}", status_code=204, tags=["users"], responses=_ERRORS)
async def remove_user(
    request: Request, caller: Caller, username: Annotated[str, _id("A user's name")]
) -> Response:
    """Take a user out of the tenant (admin); the account itself stays."""
    await _service(request).admin.remove_user(caller, username)
    return Response(status_code=204)


@router.post("/auth/password", status_code=204, tags=["auth"], responses=_ERRORS)
async def change_password(request: Request, caller: Caller, body: PasswordIn) -> Response:
    """Change your own password (signed-in users)."""
    await _service(request).admin.change_own_password(caller, body.current, body.new)
    return Response(status_code=204)


# -- API keys -----------------------------------------------------------------------------


@router.get("/keys", response_model=list[KeyOut], tags=["keys"], responses=_ERRORS)
async def list_keys(request: Request, caller: Caller) -> list[KeyOut]:
    """The tenant's API keys, newest first, revoked ones included (admin)."""
    return [_key(k) for k in await _service(request).admin.keys(caller)]


@router.post("/keys", response_model=KeyCreated, status_code=201, tags=["keys"], responses=_ERRORS)
async def create_key(request: Request, caller: Caller, body: KeyIn) -> KeyCreated:
    """Create an API key (admin); its secret is in this response only."""
    key, secret = await _service(request).admin.create_key(
        caller, body.name, body.role, expires_in=body.expires_in
    )
    return KeyCreated(key=_key(key), secret=secret)


@router.post("/keys/{key_id}/revoke", response_model=KeyOut, tags=["keys"], responses=_ERRORS)
async def revoke_key(
    request: Request, caller: Caller, key_id: Annotated[str, _id("An API key's id")]
) -> KeyOut:
    """Revoke a key at once (admin)."""
    return _key(await _service(request).admin.revoke_key(caller, key_id))


@router.post(
    "/keys/{key_id}/rotate",
    response_model=KeyCreated,
    status_code=201,
    tags=["keys"],
    responses=_ERRORS,
)
async def rotate_key(
    request: Request,
    caller: Caller,
    key_id: Annotated[str, _id("An API key's id")],
    body: RotateIn | None = None,
) -> KeyCreated:
    """Replace a key: the new one works now, the old one until the overlap ends (admin)."""
    overlap = body.overlap_s if body is not None else RotateIn().overlap_s
    key, secret = await _service(request).admin.rotate_key(caller, key_id, overlap=overlap)
    return KeyCreated(key=_key(key), secret=secret)


# -- tenants ----------------------------------------------------------------------------------


@router.get("/tenants", response_model=list[TenantOut], tags=["tenants"], responses=_ERRORS)
async def list_tenants(request: Request, caller: Caller) -> list[TenantOut]:
    """Every tenant (installation admins), or the caller's own."""
    tenants = await _service(request).admin.tenants(caller)
    return [TenantOut.model_validate(t.to_dict()) for t in tenants]


@router.post(
    "/tenants", response_model=TenantOut, status_code=201, tags=["tenants"], responses=_ERRORS
)
async def create_tenant(request: Request, caller: Caller, body: TenantIn) -> TenantOut:
    """Create a tenant (admins of the default tenant)."""
    tenant = await _service(request).admin.create_tenant(caller, body.tenant_id, body.name)
    return TenantOut.model_validate(tenant.to_dict())


@router.post("/tenants/{tenant_id}/members", status_code=204, tags=["tenants"], responses=_ERRORS)
async def add_member(
    request: Request,
    caller: Caller,
    tenant_id: Annotated[str, _id("A tenant's id")],
    body: MemberIn,
) -> Response:
    """Give an existing user a role in a tenant (admins of the default tenant)."""
    await _service(request).admin.add_member(caller, tenant_id, body.username, body.role)
    return Response(status_code=204)


@router.get("/tenant", response_model=TenantOut, tags=["tenants"], responses=_ERRORS)
async def get_tenant(request: Request, caller: Caller) -> TenantOut:
    """The caller's tenant and its retention policy."""
    return TenantOut.model_validate((await _service(request).admin.tenant(caller)).to_dict())


@router.put("/tenant/retention", response_model=TenantOut, tags=["tenants"], responses=_ERRORS)
async def set_retention(request: Request, caller: Caller, body: RetentionIn) -> TenantOut:
    """Set the tenant's retention policy for finished runs (admin)."""
    tenant = await _service(request).admin.set_retention(caller, body.days, body.action)
    return TenantOut.model_validate(tenant.to_dict())


# -- audit -------------------------------------------------------------------------------------


@router.get("/audit", response_model=AuditPage, tags=["audit"], responses=_ERRORS)
async def audit_log(
    request: Request,
    caller: Caller,
    actor: Annotated[str | None, Query(max_length=200, pattern=TEXT)] = None,
    action: Annotated[
        str | None,
        Query(max_length=100, pattern=TEXT, description="Prefix, e.g. 'run.' or 'key.rotate'"),
    ] = None,
    object_id: Annotated[str | None, Query(max_length=200, pattern=TEXT)] = None,
    since: Annotated[float | None, Query(ge=0)] = None,
    until: Annotated[float | None, Query(ge=0)] = None,
    before_id: Annotated[int | None, Query(ge=0, le=MAX_ID)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> AuditPage:
    """The tenant's audit records, newest first (admin)."""
    records = await _service(request).admin.audit_log(
        caller,
        actor=actor,
        action=action,
        object_id=object_id,
        since=since,
        until=until,
        before_id=before_id,
        limit=limit,
    )
    return AuditPage(
        items=[AuditOut.model_validate(r.to_dict()) for r in records],
        next_before_id=records[-1].audit_id if len(records) == limit else None,
    )


# -- bulk actions --------------------------------------------------------------------------------


@router.post(
    "/runs/bulk",
    response_model=BulkJobOut | BulkDryRun,
    tags=["bulk"],
    responses={
        **_ERRORS,
        200: {"model": BulkDryRun, "description": "Dry run: how many runs would be touched"},
        202: {"model": BulkJobOut, "description": "The job started; poll it for progress"},
    },
)
async def bulk_action(
    request: Request, response: Response, caller: Caller, body: BulkIn
) -> BulkJobOut | BulkDryRun:
    """Cancel, retry from the failed step, or replay every run matching a filter.

    With ``dry_run`` (the default) nothing happens but the count; then send the
    same request with ``dry_run: false`` to start the job.
    """
    f = body.filter
    query = run_filter(f.status, f.workflow, f.queue, f.created_after, f.created_before, f.q)
    bulk = _service(request).bulk
    if body.dry_run:
        return BulkDryRun(action=body.action, count=await bulk.dry_run(caller, body.action, query))
    job = await bulk.start(caller, body.action, query, f.model_dump(mode="json", exclude_none=True))
    response.status_code = 202
    response.headers["Location"] = f"/api/v1/bulk/{job.job_id}"
    return BulkJobOut.model_validate(job.to_dict())


@router.get("/bulk", response_model=list[BulkJobOut], tags=["bulk"], responses=_ERRORS)
async def list_bulk_jobs(request: Request, caller: Caller) -> list[BulkJobOut]:
    """The tenant's bulk jobs, newest first."""
    jobs = await _service(request).bulk.jobs(caller)
    return [BulkJobOut.model_validate(j.to_dict()) for j in jobs]


@router.get("/bulk/{job_id}", response_model=BulkJobOut, tags=["bulk"], responses=_ERRORS)
async def get_bulk_job(
    request: Request, caller: Caller, job_id: Annotated[str, _id("A bulk job's id")]
) -> BulkJobOut:
    """A bulk job's progress: total, done, failed, state and per-run results."""
    return BulkJobOut.model_validate((await _service(request).bulk.get(caller, job_id)).to_dict())
