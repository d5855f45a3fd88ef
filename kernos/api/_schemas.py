"""Request and response bodies of the REST API, as they appear in the OpenAPI document."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from kernos.records import Role, RunStatus

__all__ = [
    "AuditOut",
    "AuditPage",
    "BulkDryRun",
    "BulkIn",
    "BulkJobOut",
    "CancelIn",
    "CancelOut",
    "CheckpointOut",
    "EntryOut",
    "EventOut",
    "ForkIn",
    "KeyCreated",
    "KeyIn",
    "KeyOut",
    "LoginIn",
    "LoginOut",
    "MeOut",
    "MemberIn",
    "PasswordIn",
    "Problem",
    "ProblemError",
    "PurgeOut",
    "QueueOut",
    "ReplayOut",
    "RetentionIn",
    "RotateIn",
    "RunFilterIn",
    "RunOut",
    "RunPage",
    "SendIn",
    "StartRunIn",
    "TenantIn",
    "TenantOut",
    "UserIn",
    "UserOut",
    "UserPatch",
    "WorkerOut",
    "WorkflowOut",
]

_NAME = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$"
_QUEUE = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$"
_USERNAME = r"^[a-z0-9][a-z0-9._-]{0,62}$"
# Names, ids and search text: no control characters. PostgreSQL cannot store or
# compare NUL in text, and none of these has a use for the others.
TEXT = r"^[^\x00-\x1f\x7f]*$"
# Free text (reasons, labels): anything but NUL.
PROSE = r"^[^\x00]*$"
MAX_ID = 2**63 - 1  # ids and counters are 64-bit in the store


class ProblemError(BaseModel):
    """Where a request was invalid and why."""

    loc: list[str | int] = Field(description="Path to the bad value, e.g. body.input.name")
    msg: str
    type: str = Field(description="A stable error type, e.g. missing or string_type")


class Problem(BaseModel):
    """An error, as RFC 9457 problem details (``application/problem+json``)."""

    type: str = Field(description="A URI naming the kind of problem; its last segment is a code")
    title: str
    status: int
    detail: str = Field(description="What happened and what to do next")
    errors: list[ProblemError] | None = Field(None, description="Each invalid value")
    request_id: str | None = Field(None, description="Quote it when reporting a server error")


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- runs ----------------------------------------------------------------------


class StartRunIn(_In):
    """Start a run of a registered workflow."""

    workflow: str = Field(pattern=_NAME, description="A registered workflow's name")
    input: dict[str, Any] = Field(
        default_factory=dict, description="The workflow's arguments by name"
    )
    queue: str = Field("default", pattern=_QUEUE)
    priority: int = Field(0, ge=-1000, le=1000, description="Higher runs first")
    delay: float | None = Field(
        None, ge=0, le=366 * 86400, description="Seconds to wait before the run may start"
    )


class RunOut(BaseModel):
    """One execution of a workflow."""

    run_id: str
    tenant: str
    workflow: str
    version: str
    status: RunStatus
    input: Any
    output: Any = None
    error: Any = None
    parent_id: str | None = None
    forked_from: str | None = None
    fork_seq: int | None = None
    superseded_by: str | None = None
    queue: str
    priority: int
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    updated_at: float
    wake_at: float | None = None
    pause_requested: bool
    executions: int
    steps: int


class RunPage(BaseModel):
    """A page of runs, newest first."""

    items: list[RunOut]
    next_cursor: str | None = Field(None, description="Pass as ?cursor= for the next page")


class RunFilterIn(_In):
    """Which runs a bulk action applies to (all fields optional; they combine with AND)."""

    status: RunStatus | None = None
    workflow: str | None = Field(None, max_length=200, pattern=TEXT)
    queue: str | None = Field(None, max_length=100, pattern=TEXT)
    created_after: float | None = Field(None, ge=0)
    created_before: float | None = Field(None, ge=0)
    q: str | None = Field(
        None, max_length=200, pattern=TEXT, description="Substring of id, workflow or error"
    )


class CancelIn(_In):
    """Why a run is cancelled."""

    reason: str = Field("cancelled by request", max_length=500, pattern=PROSE)


class CancelOut(BaseModel):
    """The runs a cancel stopped (the run and its unfinished descendants)."""

    cancelled: list[str]


class SendIn(_In):
    """A message for a run waiting in ``kernos.recv``."""

    payload: Any = None
    topic: str = Field("default", min_length=1, max_length=200, pattern=TEXT)


class ForkIn(_In):
    """Where to fork and, optionally, the result to use at that entry instead."""

    at: (
        Annotated[int, Field(ge=0, le=MAX_ID)]
        | Annotated[str, Field(min_length=1, max_length=200, pattern=TEXT)]
    ) = Field(description="A journal seq (0-based) or a checkpoint name")
    patch: Any = Field(None, description="Replacement result for the entry at `at`")
    patched: bool = Field(
        False, description="Set true to use `patch` (so that null can be a patch too)"
    )


class EntryOut(BaseModel):
    """One journal entry."""

    run_id: str
    seq: int
    kind: str
    name: str
    status: str
    args_hash: str | None = None
    output: Any = None
    error: Any = None
    attempts: Any = None
    detail: Any = None
    started_at: float
    finished_at: float | None = None


class CheckpointOut(BaseModel):
    """A named state snapshot."""

    run_id: str
    seq: int
    name: str
    sha256: str
    state: Any = None
    taken_at: float
    intact: bool


class EventOut(BaseModel):
    """One event of a run."""

    event_id: int
    run_id: str
    kind: str
    at: float
    data: Any = None


class ReplayOut(BaseModel):
    """What replaying a run against its journal found."""

    run_id: str
    identical: bool
    divergence: dict[str, Any] | None = None
    entries_checked: int
    complete: bool


class PurgeOut(BaseModel):
    """Rows deleted per kind."""

    deleted: dict[str, int]


# -- workflows, queues, workers ----------------------------------------------------


class WorkflowOut(BaseModel):
    """A registered workflow and the JSON Schema of its input."""

    name: str
    version: str
    timeout: float | None = None
    input_schema: dict[str, Any]
    doc: str | None = None


class QueueOut(BaseModel):
    """A queue's limits and the caller's tenant's runs in it, per state."""

    name: str
    spec: dict[str, Any] | None = None
    pending: int
    running: int
    waiting: int
    paused: int


class WorkerOut(BaseModel):
    """A worker process in the registry."""

    worker_id: str
    host: str
    pid: int
    started_at: float
    heartbeat_at: float
    state: str
    queues: list[str] | None = None
    concurrency: int | None = None
    in_flight: int


# -- identity and administration -------------------------------------------------------


class LoginIn(_In):
    """Sign in with a username and password."""

    username: str = Field(min_length=1, max_length=63, pattern=TEXT)
    password: str = Field(min_length=1, max_length=1024)
    tenant: str | None = Field(None, max_length=63, pattern=TEXT)
    token: bool = Field(
        False,
        description="true: return a short-lived bearer token for scripts and set no cookie",
    )


class LoginOut(BaseModel):
    """A new session."""

    user: str
    tenant: str
    role: Role
    expires_at: float
    csrf_token: str = Field(description="Send as X-CSRF-Token with cookie-authenticated writes")
    token: str | None = Field(None, description="The bearer token (only when token=true)")


class MeOut(BaseModel):
    """Who the caller is."""

    actor: str
    tenant: str
    role: Role
    user_id: str | None = None
    key_id: str | None = None


class PasswordIn(_In):
    """Change your own password."""

    current: str = Field(min_length=1, max_length=1024)
    new: str = Field(min_length=12, max_length=1024)


class UserIn(_In):
    """A new user of the caller's tenant."""

    username: str = Field(pattern=_USERNAME)
    password: str = Field(min_length=12, max_length=1024)
    role: Role = Role.VIEWER


class UserPatch(_In):
    """Changes to a user; omitted fields stay as they are."""

    role: Role | None = None
    disabled: bool | None = None
    password: str | None = Field(None, min_length=12, max_length=1024)


class UserOut(BaseModel):
    """A user and their role in the caller's tenant."""

    user_id: str
    username: str
    role: Role
    disabled: bool
    created_at: float


class KeyIn(_In):
    """A new API key."""

    name: str = Field(min_length=1, max_length=100, pattern=PROSE)
    role: Role = Role.VIEWER
    expires_in: float | None = Field(None, gt=0, le=10 * 366 * 86400, description="Seconds")


class KeyOut(BaseModel):
    """An API key (never its secret)."""

    key_id: str
    tenant_id: str
    name: str
    role: Role
    created_by: str
    created_at: float
    expires_at: float | None = None
    revoked_at: float | None = None
    last_used_at: float | None = None
    rotated_from: str | None = None


class KeyCreated(BaseModel):
    """A new key and its secret, which is shown this once and never again."""

    key: KeyOut
    secret: str


class RotateIn(_In):
    """How long the old key keeps working after rotation."""

    overlap_s: float = Field(24 * 3600.0, ge=0, le=30 * 86400)


class TenantIn(_In):
    """A new tenant."""

    tenant_id: str = Field(pattern=_USERNAME)
    name: str = Field("", max_length=200, pattern=PROSE)


class TenantOut(BaseModel):
    """A tenant and its retention policy."""

    tenant_id: str
    name: str
    created_at: float
    retention_days: int | None = None
    retention_action: str


class RetentionIn(_In):
    """Delete (or archive, then delete) finished runs older than ``days``; null: keep all."""

    days: int | None = Field(None, ge=1, le=100 * 366)
    action: Literal["delete", "archive"] = "delete"


class MemberIn(_In):
    """Give an existing user a role in a tenant."""

    username: str = Field(pattern=_USERNAME)
    role: Role = Role.VIEWER


class AuditOut(BaseModel):
    """One audit record."""

    audit_id: int
    tenant_id: str
    at: float
    actor: str
    action: str
    object_type: str
    object_id: str | None = None
    ip: str | None = None
    outcome: str
    detail: Any = None


class AuditPage(BaseModel):
    """Audit records, newest first."""

    items: list[AuditOut]
    next_before_id: int | None = Field(None, description="Pass as ?before_id= for the next page")


# -- bulk actions -------------------------------------------------------------------------


class BulkIn(_In):
    """Apply an action to every run matching a filter."""

    action: Literal["cancel", "retry", "replay"]
    filter: RunFilterIn = Field(default_factory=RunFilterIn)
    dry_run: bool = Field(True, description="Only count the runs (the default: look first)")


class BulkDryRun(BaseModel):
    """How many runs a bulk action would touch."""

    action: str
    count: int


class BulkJobOut(BaseModel):
    """A bulk job and its progress."""

    job_id: str
    action: str
    filter: Any
    state: str
    total: int
    done: int
    failed: int
    created_by: str
    created_at: float
    finished_at: float | None = None
    results: Any = None
