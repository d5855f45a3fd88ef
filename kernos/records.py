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
    "AuditRecord",
    "BulkJob",
    "Checkpoint",
    "EntryKind",
    "EntryStatus",
    "Event",
    "JournalEntry",
    "Membership",
    "QueueSpec",
    "QueueStats",
    "Role",
    "Run",
    "RunStatus",
    "Schedule",
    "Session",
    "Tenant",
    "User",
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
