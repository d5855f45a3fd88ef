"""The records Kernos stores: runs, journal entries, events, checkpoints.

States are enums whose values are what the database stores. Rows become
frozen, keyword-only records through ``from_row``. No I/O happens here.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kernos.types import JSON

__all__ = [
    "ApiKey",
    "ApprovalKind",
    "ApprovalRequest",
    "ApprovalStatus",
    "AuditRecord",
    "BulkJob",
    "Checkpoint",
    "DeliveryAttempt",
    "DeliveryStatus",
    "EntryKind",
    "EntryStatus",
    "Event",
    "JournalEntry",
    "Membership",
    "PolicyVersion",
    "QueueSpec",
    "QueueStats",
    "Role",
    "Run",
    "RunStatus",
    "RunUsage",
    "Schedule",
    "Session",
    "Tenant",
    "User",
    "Webhook",
    "WebhookDelivery",
    "WebhookFormat",
    "Worker",
]

DEFAULT_TENANT = "default"
"""The tenant of runs started without one; its admins administer the installation."""


class RunStatus(enum.StrEnum):
    """Where a run is in its life."""

    PENDING = "pending"  # waiting for a worker to claim it
    RUNNING = "running"  # owned by a worker under a lease
    WAITING = "waiting"  # suspended durably: a timer, message or child will wake it
    PAUSED = "paused"  # stopped at a step boundary until resumed
    SUCCEEDED = "succeeded"  # finished with an output
    FAILED = "failed"  # finished with an error
    CANCELLED = "cancelled"  # stopped on request; will never run again

    @property
    def terminal(self) -> bool:
        """Whether the run can never change status again."""
        return self in _TERMINAL


_TERMINAL = frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED})


class EntryKind(enum.StrEnum):
    """What a journal entry records."""

    STEP = "step"  # a step function's result or final failure
    SLEEP = "sleep"  # a durable timer
    RECV = "recv"  # a message received by the run (or a receive timeout)
    CHILD = "child"  # a child workflow and, once done, its result
    CHECKPOINT = "checkpoint"  # a named state snapshot with its SHA-256 checksum
    ENQUEUE = "enqueue"  # a run this run put on a queue (its id is the output)
    LLM = "llm"  # a model call: the response is the output; usage, cost, latency in detail
    TOOL = "tool"  # a tool call: the tool's result is the output; the policy decision in detail
    APPROVAL = "approval"  # a wait for a person's decision: the decision is the output


class EntryStatus(enum.StrEnum):
    """Whether a journal entry is settled."""

    PENDING = "pending"  # a wait that has begun and not ended (sleep, recv, child)
    OK = "ok"  # settled with an output
    ERROR = "error"  # settled with an error


@dataclass(frozen=True, kw_only=True, slots=True)
class Run:
    """One execution of a workflow."""

    run_id: str
    workflow: str
    version: str
    status: RunStatus
    input: JSON
    output: JSON | None
    error: JSON | None
    parent_id: str | None
    parent_seq: int | None
    forked_from: str | None
    fork_seq: int | None
    superseded_by: str | None
    queue: str
    priority: int
    created_at: float
    started_at: float | None
    finished_at: float | None
    updated_at: float
    owner: str | None
    lease_epoch: int
    lease_expires_at: float | None
    wake_at: float | None
    deadline: float | None
    timeout: float | None
    pause_requested: bool
    executions: int
    steps: int
    concurrency_key: str | None = None
    dedup_id: str | None = None
    deps_pending: int = 0
    tenant: str = DEFAULT_TENANT

    @classmethod
    def from_row(cls, row: Mapping[str, Any], decode: Any) -> Run:
        """Build a run from a database row; ``decode`` parses stored JSON text."""
        return cls(
            run_id=row["run_id"],
            workflow=row["workflow"],
            version=row["version"],
            status=RunStatus(row["status"]),
            input=decode(row["input"]),
            output=decode(row["output"]),
            error=decode(row["error"]),
            parent_id=row["parent_id"],
            parent_seq=row["parent_seq"],
            forked_from=row["forked_from"],
            fork_seq=row["fork_seq"],
            superseded_by=row["superseded_by"],
            queue=row["queue"],
            priority=row["priority"],
            created_at=row["created_at"],
            started_at=row["started_at"],
            finished_at=row["finished_at"],
            updated_at=row["updated_at"],
            owner=row["owner"],
            lease_epoch=row["lease_epoch"],
            lease_expires_at=row["lease_expires_at"],
            wake_at=row["wake_at"],
            deadline=row["deadline"],
            timeout=row["timeout"],
            pause_requested=bool(row["pause_requested"]),
            executions=row["executions"],
            steps=row["steps"],
            concurrency_key=row["concurrency_key"],
            dedup_id=row["dedup_id"],
            deps_pending=row["deps_pending"],
            tenant=row["tenant_id"],
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        data = {name: getattr(self, name) for name in self.__slots__}
        data["status"] = self.status.value
        return data


@dataclass(frozen=True, kw_only=True, slots=True)
class JournalEntry:
    """One durable fact in a run's journal, at position ``seq``."""

    run_id: str
    seq: int
    kind: EntryKind
    name: str
    status: EntryStatus
    args_hash: str | None
    output: JSON | None
    error: JSON | None
    attempts: JSON | None
    detail: JSON | None
    started_at: float
    finished_at: float | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any], decode: Any) -> JournalEntry:
        """Build an entry from a database row; ``decode`` parses stored JSON text."""
        return cls(
            run_id=row["run_id"],
            seq=row["seq"],
            kind=EntryKind(row["kind"]),
            name=row["name"],
            status=EntryStatus(row["status"]),
            args_hash=row["args_hash"],
            output=decode(row["output"]),
            error=decode(row["error"]),
            attempts=decode(row["attempts"]),
            detail=decode(row["detail"]),
            started_at=row["started_at"],
            finished_at=row["finished_at"],
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        data = {name: getattr(self, name) for name in self.__slots__}
        data["kind"] = self.kind.value
        data["status"] = self.status.value
        return data


@dataclass(frozen=True, kw_only=True, slots=True)
class Event:
    """One transition in the append-only event record; ``event_id`` orders them."""

    event_id: int
    run_id: str
    kind: str
    at: float
    data: JSON | None
    tenant: str | None = None  # set by Store.stream_events (joined from the run)
    workflow: str | None = None  # likewise

    @classmethod
    def from_row(cls, row: Mapping[str, Any], decode: Any) -> Event:
        """Build an event from a database row; ``decode`` parses stored JSON text."""
        keys = row.keys()
        return cls(
            event_id=row["event_id"],
            run_id=row["run_id"],
            kind=row["kind"],
            at=row["at"],
            data=decode(row["data"]),
            tenant=row["tenant_id"] if "tenant_id" in keys else None,
            workflow=row["workflow"] if "workflow" in keys else None,
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        return {name: getattr(self, name) for name in self.__slots__}


@dataclass(frozen=True, kw_only=True, slots=True)
class Checkpoint:
    """A named state snapshot taken by a run at journal position ``seq``."""

    run_id: str
    seq: int
    name: str
    sha256: str
    state: JSON
    taken_at: float
    intact: bool  # whether the stored state still matches ``sha256``

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        return {name: getattr(self, name) for name in self.__slots__}


@dataclass(frozen=True, kw_only=True, slots=True)
class Worker:
    """A process that executes runs, as recorded in the worker registry.

    ``state`` is ``active``, ``draining`` (stopping: claims nothing new),
    ``stale`` (silent past its lease; its runs go to others) or ``gone``.
    """

    worker_id: str
    host: str
    pid: int
    started_at: float
    heartbeat_at: float
    state: str
    queues: list[str] | None = None  # None: every queue
    concurrency: int | None = None
    in_flight: int = 0

    @classmethod
    def from_row(cls, row: Mapping[str, Any], in_flight: int = 0) -> Worker:
        """Build a worker from a database row."""
        queues = row["queues"]
        return cls(
            worker_id=row["worker_id"],
            host=row["host"],
            pid=row["pid"],
            started_at=row["started_at"],
            heartbeat_at=row["heartbeat_at"],
            state=row["state"],
            queues=queues.split(",") if queues else None,
            concurrency=row["concurrency"],
            in_flight=in_flight,
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        return {name: getattr(self, name) for name in self.__slots__}


@dataclass(frozen=True, kw_only=True, slots=True)
class QueueSpec:
    """The limits of a named queue, shared by every worker through the store."""

    name: str
    concurrency: int | None = None  # runs executing at once, across all workers
    worker_concurrency: int | None = None  # runs executing at once in one worker
    key_concurrency: int | None = None  # runs executing at once per concurrency key
    rate_limit: int | None = None  # starts allowed per rate_period
    rate_period: float | None = None  # seconds

    @property
    def limited(self) -> bool:
        """Whether claims from this queue must count what runs (a serialized claim)."""
        return (
            self.concurrency is not None
            or self.key_concurrency is not None
            or self.rate_limit is not None
        )

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> QueueSpec:
        """Build a spec from a database row."""
        return cls(
            name=row["name"],
            concurrency=row["concurrency"],
            worker_concurrency=row["worker_concurrency"],
            key_concurrency=row["key_concurrency"],
            rate_limit=row["rate_limit"],
            rate_period=row["rate_period"],
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        return {name: getattr(self, name) for name in self.__slots__}


@dataclass(frozen=True, kw_only=True, slots=True)
class QueueStats:
    """A queue's limits and how many of its runs are in each unfinished state."""

    name: str
    spec: QueueSpec | None
    pending: int = 0
    running: int = 0
    waiting: int = 0
    paused: int = 0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        data = {name: getattr(self, name) for name in self.__slots__}
        data["spec"] = self.spec.to_dict() if self.spec is not None else None
        return data


@dataclass(frozen=True, kw_only=True, slots=True)
class RunUsage:
    """The model calls one run made itself: how many, their tokens and their cost."""

    run_id: str
    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float | None = None  # None: no call had a known price

    @property
    def tokens(self) -> int:
        """Input and output tokens together."""
        return self.input_tokens + self.output_tokens

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> RunUsage:
        """Build a run's usage from a row of the ``usage_of_runs`` query."""
        cost = row["cost"]
        return cls(
            run_id=row["run_id"],
            calls=int(row["calls"]),
            input_tokens=int(row["input_tokens"]),
            output_tokens=int(row["output_tokens"]),
            cost=float(cost) if cost is not None else None,
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field, and ``tokens``."""
        data = {name: getattr(self, name) for name in self.__slots__}
        data["tokens"] = self.tokens
        return data


@dataclass(frozen=True, kw_only=True, slots=True)
class Schedule:
    """A cron schedule as recorded in the store."""

    name: str
    cron: str
    workflow: str
    queue: str
    last_tick: float | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Schedule:
        """Build a schedule from a database row."""
        return cls(
            name=row["name"],
            cron=row["cron"],
            workflow=row["workflow"],
            queue=row["queue"],
            last_tick=row["last_tick"],
        )


class Role(enum.StrEnum):
    """What a user or API key may do within one tenant; each includes the ones below."""

    VIEWER = "viewer"  # read runs, events, queues, workers
    OPERATOR = "operator"  # also start, cancel, pause, resume, send, fork, replay, approve
    ADMIN = "admin"  # also users, keys, retention and settings

    def includes(self, needed: Role) -> bool:
        """Whether this role grants everything ``needed`` grants."""
        return _ROLE_RANK[self] >= _ROLE_RANK[needed]


_ROLE_RANK = {Role.VIEWER: 0, Role.OPERATOR: 1, Role.ADMIN: 2}


@dataclass(frozen=True, kw_only=True, slots=True)
class Tenant:
    """An isolated space of runs, keys and members.

    ``retention_days`` set: finished runs older than that are deleted or, with
    ``retention_action == "archive"``, written to the archive directory first.
    """

    tenant_id: str
    name: str
    created_at: float
    retention_days: int | None = None
    retention_action: str = "delete"  # or "archive"

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Tenant:
        """Build a tenant from a database row."""
        return cls(
            tenant_id=row["tenant_id"],
            name=row["name"],
            created_at=row["created_at"],
            retention_days=row["retention_days"],
            retention_action=row["retention_action"],
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        return {name: getattr(self, name) for name in self.__slots__}


@dataclass(frozen=True, kw_only=True, slots=True)
class User:
    """A person who signs in; ``password_hash`` is an argon2id hash, never the password."""

    user_id: str
    username: str
    password_hash: str
    created_at: float
    disabled: bool = False

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> User:
        """Build a user from a database row."""
        return cls(
            user_id=row["user_id"],
            username=row["username"],
            password_hash=row["password_hash"],
            created_at=row["created_at"],
            disabled=bool(row["disabled"]),
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field except the password hash."""
        return {name: getattr(self, name) for name in self.__slots__ if name != "password_hash"}


@dataclass(frozen=True, kw_only=True, slots=True)
class Membership:
    """A user's role in one tenant."""

    user_id: str
    tenant_id: str
    role: Role
    created_at: float

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Membership:
        """Build a membership from a database row."""
        return cls(
            user_id=row["user_id"],
            tenant_id=row["tenant_id"],
            role=Role(row["role"]),
            created_at=row["created_at"],
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        data = {name: getattr(self, name) for name in self.__slots__}
        data["role"] = self.role.value
        return data


@dataclass(frozen=True, kw_only=True, slots=True)
class ApiKey:
    """An API key of one tenant with one role; only a hash of its secret is kept.

    A key is usable while not revoked and, when ``expires_at`` is set, before
    then. Rotation makes a new key and gives the old one an ``expires_at``
    (the overlap window) instead of revoking it at once.
    """

    key_id: str
    tenant_id: str
    name: str
    role: Role
    secret_hash: str
    created_by: str
    created_at: float
    expires_at: float | None = None
    revoked_at: float | None = None
    last_used_at: float | None = None
    rotated_from: str | None = None

    def usable(self, now: float) -> bool:
        """Whether the key authenticates requests at ``now``."""
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> ApiKey:
        """Build a key from a database row."""
        return cls(
            key_id=row["key_id"],
            tenant_id=row["tenant_id"],
            name=row["name"],
            role=Role(row["role"]),
            secret_hash=row["secret_hash"],
            created_by=row["created_by"],
            created_at=row["created_at"],
            expires_at=row["expires_at"],
            revoked_at=row["revoked_at"],
            last_used_at=row["last_used_at"],
            rotated_from=row["rotated_from"],
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field except the secret's hash."""
        data = {name: getattr(self, name) for name in self.__slots__ if name != "secret_hash"}
        data["role"] = self.role.value
        return data


@dataclass(frozen=True, kw_only=True, slots=True)
class Session:
    """A signed-in user's session in one tenant (dashboard cookie or short-lived token).

    ``token_hash`` is the SHA-256 of the bearer secret; the secret itself is
    only ever in the client's hands.
    """

    token_hash: str
    user_id: str
    tenant_id: str
    csrf_token: str
    created_at: float
    expires_at: float
    ip: str | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Session:
        """Build a session from a database row."""
        return cls(
            token_hash=row["token_hash"],
            user_id=row["user_id"],
            tenant_id=row["tenant_id"],
            csrf_token=row["csrf_token"],
            created_at=row["created_at"],
            expires_at=row["expires_at"],
            ip=row["ip"],
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class AuditRecord:
    """Who did what to which object, when and from where.

    ``audit_id`` is 0 for a record not yet stored (the store assigns it).
    ``outcome`` is ``ok``, ``denied`` or ``error``.
    """

    audit_id: int
    tenant_id: str
    at: float
    actor: str  # "user:<name>", "key:<key id>", "system"
    action: str  # e.g. "run.start", "key.rotate"
    object_type: str
    object_id: str | None
    ip: str | None = None
    outcome: str = "ok"
    detail: JSON | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any], decode: Any) -> AuditRecord:
        """Build an audit record from a database row."""
        return cls(
            audit_id=row["audit_id"],
            tenant_id=row["tenant_id"],
            at=row["at"],
            actor=row["actor"],
            action=row["action"],
            object_type=row["object_type"],
            object_id=row["object_id"],
            ip=row["ip"],
            outcome=row["outcome"],
            detail=decode(row["detail"]),
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        return {name: getattr(self, name) for name in self.__slots__}


@dataclass(frozen=True, kw_only=True, slots=True)
class BulkJob:
    """An action applied to every run matching a filter, with its progress.

    ``state`` is ``running``, ``done``, ``failed`` or ``interrupted`` (the
    server stopped before it finished; ``done``/``failed`` say how far it got).
    """

    job_id: str
    tenant_id: str
    action: str  # cancel | retry | replay
    filter: JSON
    state: str
    total: int
    done: int
    failed: int
    created_by: str
    created_at: float
    finished_at: float | None = None
    results: JSON | None = None  # per-run outcome summaries, capped

    @classmethod
    def from_row(cls, row: Mapping[str, Any], decode: Any) -> BulkJob:
        """Build a job from a database row."""
        return cls(
            job_id=row["job_id"],
            tenant_id=row["tenant_id"],
            action=row["action"],
            filter=decode(row["filter"]),
            state=row["state"],
            total=row["total"],
            done=row["done"],
            failed=row["failed"],
            created_by=row["created_by"],
            created_at=row["created_at"],
            finished_at=row["finished_at"],
            results=decode(row["results"]),
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        return {name: getattr(self, name) for name in self.__slots__}


@dataclass(frozen=True, kw_only=True, slots=True)
class PolicyVersion:
    """One version of a tenant's policy document, as applied (never changed afterwards).

    ``version`` counts up from 1 per tenant; ``sha256`` is the hex SHA-256 of
    ``document`` (UTF-8); ``created_by`` is the audit actor who applied it.
    """

    tenant_id: str
    version: int
    document: str
    sha256: str
    created_by: str
    created_at: float

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> PolicyVersion:
        """Build a version from a database row."""
        return cls(
            tenant_id=row["tenant_id"],
            version=int(row["version"]),
            document=row["document"],
            sha256=row["sha256"],
            created_by=row["created_by"],
            created_at=row["created_at"],
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        return {name: getattr(self, name) for name in self.__slots__}


class ApprovalStatus(enum.StrEnum):
    """Where an approval request is in its life."""

    PENDING = "pending"  # waiting for a decision at its current escalation level
    APPROVED = "approved"  # a person approved it (perhaps with edits)
    REJECTED = "rejected"  # a person rejected it
    EXPIRED = "expired"  # the last level timed out; its default decided
    CANCELLED = "cancelled"  # its run was cancelled first


class ApprovalKind(enum.StrEnum):
    """What an approval request asks about."""

    GENERIC = "generic"  # kernos.approval() in workflow code
    TOOL_CALL = "tool_call"  # a tool call the policy gates; bound to its arguments' hash


@dataclass(frozen=True, kw_only=True, slots=True)
class ApprovalRequest:
    """A request for a person's decision, made by a run at journal position ``seq``.

    ``assignees`` holds, per escalation level, who may decide at that level
    (role names and user names; empty: any operator of the tenant).
    ``timeouts`` holds each level's duration in seconds (None: no deadline),
    ``default`` what happens when the last level times out (``reject``,
    ``approve`` or ``fail``), ``history`` the escalations so far. ``decision``
    is what was decided (``decision``, ``value``, ``edited``, ``comment``,
    ``by``, ``at``, ``by_default``, ``level``).
    """

    approval_id: str
    tenant_id: str
    run_id: str
    workflow: str
    seq: int
    kind: ApprovalKind
    title: str
    details: JSON | None
    options: list[str]
    assignees: list[list[str]]
    timeouts: list[float | None]
    default: str
    level: int
    deadline: float | None
    status: ApprovalStatus
    created_at: float
    decision: JSON | None = None
    decided_by: str | None = None
    decided_at: float | None = None
    args_hash: str | None = None
    history: list[JSON] | None = None

    @property
    def current_assignees(self) -> list[str]:
        """Who may decide at the current level (empty: any operator)."""
        return list(self.assignees[self.level]) if self.level < len(self.assignees) else []

    @property
    def last_level(self) -> bool:
        """Whether a timeout at the current level applies the default."""
        return self.level + 1 >= len(self.timeouts)

    @classmethod
    def from_row(cls, row: Mapping[str, Any], decode: Any) -> ApprovalRequest:
        """Build a request from a database row; ``decode`` parses stored JSON text."""
        return cls(
            approval_id=row["approval_id"],
            tenant_id=row["tenant_id"],
            run_id=row["run_id"],
            workflow=row["workflow"],
            seq=row["seq"],
            kind=ApprovalKind(row["kind"]),
            title=row["title"],
            details=decode(row["details"]),
            options=list(decode(row["options"]) or []),
            assignees=[list(level) for level in decode(row["assignees"]) or []],
            timeouts=list(decode(row["timeouts"]) or []),
            default=row["default_action"],
            level=row["level"],
            deadline=row["deadline"],
            status=ApprovalStatus(row["status"]),
            created_at=row["created_at"],
            decision=decode(row["decision"]),
            decided_by=row["decided_by"],
            decided_at=row["decided_at"],
            args_hash=row["args_hash"],
            history=decode(row["history"]),
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field, with the current level's assignees."""
        data = {name: getattr(self, name) for name in self.__slots__}
        data["kind"] = self.kind.value
        data["status"] = self.status.value
        data["current_assignees"] = self.current_assignees
        return data


class WebhookFormat(enum.StrEnum):
    """The body a webhook receives."""

    JSON = "json"  # Kernos' own JSON envelope: id, type, created_at, tenant, data
    SLACK = "slack"  # a Slack-compatible message (text and blocks) for an incoming webhook


class DeliveryStatus(enum.StrEnum):
    """Where a webhook delivery is."""

    PENDING = "pending"  # queued, not attempted yet
    DELIVERED = "delivered"  # the receiver answered 2xx
    FAILED = "failed"  # the last attempt failed; another is scheduled
    DEAD = "dead"  # given up: a 4xx answer, or out of attempts


@dataclass(frozen=True, kw_only=True, slots=True)
class Webhook:
    """A tenant's subscription: events whose kind matches one of ``kinds`` (globs)
    are signed with ``secret`` and posted to ``url``.

    ``cursor`` is the id of the last event handed to its outbox. The secret is
    kept so the server can sign; :meth:`to_dict` leaves it out.
    """

    webhook_id: str
    tenant_id: str
    url: str
    secret: str
    kinds: tuple[str, ...]
    format: WebhookFormat
    active: bool
    created_by: str
    created_at: float
    cursor: int = 0

    @classmethod
    def from_row(cls, row: Mapping[str, Any], decode: Any) -> Webhook:
        """Build a webhook from a database row; ``decode`` parses stored JSON text."""
        return cls(
            webhook_id=row["webhook_id"],
            tenant_id=row["tenant_id"],
            url=row["url"],
            secret=row["secret"],
            kinds=tuple(decode(row["kinds"])),
            format=WebhookFormat(row["format"]),
            active=bool(row["active"]),
            created_by=row["created_by"],
            created_at=row["created_at"],
            cursor=row["cursor"],
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field except the secret."""
        data = {name: getattr(self, name) for name in self.__slots__ if name != "secret"}
        data["kinds"] = list(self.kinds)
        data["format"] = self.format.value
        return data


@dataclass(frozen=True, kw_only=True, slots=True)
class DeliveryAttempt:
    """One attempt at a webhook delivery: when, and the answer or what went wrong."""

    delivery_id: str
    attempt: int  # 1 for the first
    at: float
    response_status: int | None
    error: str | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> DeliveryAttempt:
        """Build an attempt from a database row."""
        return cls(
            delivery_id=row["delivery_id"],
            attempt=row["attempt"],
            at=row["at"],
            response_status=row["response_status"],
            error=row["error"],
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        return {name: getattr(self, name) for name in self.__slots__}


@dataclass(frozen=True, kw_only=True, slots=True)
class WebhookDelivery:
    """One notification in a webhook's outbox, with the outcome of its last attempt.

    ``event_id`` is None for a test ping. ``payload`` is the JSON body sent
    (signed afresh at each attempt); :meth:`to_dict` leaves it out.
    """

    delivery_id: str
    webhook_id: str
    tenant_id: str
    event_id: int | None
    kind: str
    payload: str
    attempts: int
    status: DeliveryStatus
    response_status: int | None
    last_error: str | None
    next_attempt_at: float | None
    created_at: float
    delivered_at: float | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> WebhookDelivery:
        """Build a delivery from a database row."""
        return cls(
            delivery_id=row["delivery_id"],
            webhook_id=row["webhook_id"],
            tenant_id=row["tenant_id"],
            event_id=row["event_id"],
            kind=row["kind"],
            payload=row["payload"],
            attempts=row["attempts"],
            status=DeliveryStatus(row["status"]),
            response_status=row["response_status"],
            last_error=row["last_error"],
            next_attempt_at=row["next_attempt_at"],
            created_at=row["created_at"],
            delivered_at=row["delivered_at"],
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field except the payload."""
        data = {name: getattr(self, name) for name in self.__slots__ if name != "payload"}
        data["status"] = self.status.value
        return data
