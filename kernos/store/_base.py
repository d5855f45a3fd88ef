"""The one storage interface every backend implements."""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from kernos.records import (
    DEFAULT_TENANT,
    ApiKey,
    ApprovalRequest,
    ApprovalStatus,
    AuditRecord,
    BulkJob,
    Checkpoint,
    DeliveryAttempt,
    DeliveryStatus,
    Event,
    JournalEntry,
    Membership,
    PolicyVersion,
    QueueSpec,
    QueueStats,
    Run,
    RunUsage,
    Schedule,
    Session,
    Tenant,
    User,
    Webhook,
    WebhookDelivery,
    WebhookFormat,
    Worker,
)
from kernos.store._approvals import ApprovalFilter, NewApproval
from kernos.store._ops import EntryWrite, Fence, Write
from kernos.types import JSON

__all__ = ["Enqueued", "NewRun", "RunFilter", "Store"]


@dataclass(frozen=True, kw_only=True, slots=True)
class NewRun:
    """A run to create. ``owner`` set means the creating process executes it at once."""

    run_id: str
    workflow: str
    version: str
    input: str
    queue: str = "default"
    priority: int = 0
    parent_id: str | None = None
    parent_seq: int | None = None
    forked_from: str | None = None
    fork_seq: int | None = None
    owner: str | None = None
    lease_s: float = 30.0
    wake_at: float | None = None
    delay: float | None = None  # seconds after creation (store time) before it may start
    timeout: float | None = None
    concurrency_key: str | None = None
    dedup_id: str | None = None
    depends_on: tuple[str, ...] = ()
    on_dep_failure: str = "cancel"  # or "run": run anyway when a dependency fails
    tenant: str = DEFAULT_TENANT


@dataclass(frozen=True, kw_only=True, slots=True)
class Enqueued:
    """What :meth:`Store.enqueue` did: the run that stands for the request."""

    run_id: str
    created: bool  # False: the id, or the dedup id within the queue, already existed


@dataclass(frozen=True, kw_only=True, slots=True)
class RunFilter:
    """Which runs :meth:`Store.list_runs` returns, newest first."""

    status: str | None = None
    workflow: str | None = None
    parent_id: str | None = None
    forked_from: str | None = None  # the forks of this run
    limit: int = 50
    before: tuple[float, str] | None = None  # (created_at, run_id) cursor of the last page
    tenant: str | None = None  # None: every tenant (in-process and CLI use only)
    queue: str | None = None
    created_after: float | None = None  # inclusive, epoch seconds
    created_before: float | None = None  # exclusive, epoch seconds
    text: str | None = None  # case-insensitive substring of run id, workflow or error
    finished_before: float | None = None  # terminal runs that finished before (retention)


class Store(abc.ABC):
    """Durable home of runs, journals, events, messages and the worker registry.

    Every method is a coroutine and every mutation is one transaction. Backends
    retry transient failures (locked, disconnected) with backoff and raise
    :class:`~kernos.errors.StoreUnavailableError` after their retry limit, having
    written nothing. Writes that belong to a running run are *fenced*: they carry
    the lease epoch under which the writer claimed the run and are refused (see
    :class:`Fence`) once another claim, a cancel or a finish has replaced it.
    """

    url: str

    @abc.abstractmethod
    async def migrate(self) -> list[str]:
        """Apply pending schema migrations; return the names of those applied."""

    @abc.abstractmethod
    async def schema_version(self) -> tuple[int, int]:
        """Return (applied version, version this code needs)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Close connections; the store cannot be used afterwards."""

    # -- runs ---------------------------------------------------------------

    @abc.abstractmethod
    async def create_run(self, run: NewRun) -> bool:
        """Create a run; return False (changing nothing) if its id already exists."""

    @abc.abstractmethod
    async def get_run(self, run_id: str) -> Run:
        """Return a run. Raises RunNotFoundError."""

    @abc.abstractmethod
    async def list_runs(self, query: RunFilter) -> list[Run]:
        """Return runs matching ``query``, newest first."""

    @abc.abstractmethod
    async def count_runs(self, tenant: str | None = None) -> dict[str, int]:
        """Return the number of runs per status (of one tenant, or of all)."""

    @abc.abstractmethod
    async def count_matching(self, query: RunFilter) -> int:
        """Return how many runs match ``query`` (its ``limit`` and ``before`` ignored)."""

    @abc.abstractmethod
    async def purge_run(self, run_id: str) -> dict[str, int]:
        """Delete a finished run's data: journal, events, messages, dependencies, the run.

        Blobs the run referenced are deleted unless another run still refers to
        them. Returns the number of rows deleted per kind. Raises RunNotFoundError,
        or RunStateError for a run that has not finished.
        """

    @abc.abstractmethod
    async def claim(
        self,
        owner: str,
        *,
        limit: int,
        lease_s: float,
        workflows: Sequence[str],
        queues: Mapping[str, int] | None = None,
    ) -> list[Run]:
        """Claim up to ``limit`` runnable runs of ``workflows``.

        Runnable means pending with its dependencies met and its delay over,
        waiting with a wake-up time that has passed, or running under a lease
        that expired. Each claim bumps the run's lease epoch. Queue limits stored
        with :meth:`upsert_queue` (concurrency, per-key concurrency, rate) are
        never exceeded, whoever claims.

        Args:
            queues: the queues to claim from, each with the number of runs this
                worker may still take from it; None for every queue.
        """

    @abc.abstractmethod
    async def enqueue(self, run: NewRun) -> Enqueued:
        """Create a pending run in its queue, honouring dedup ids and dependencies.

        A run with an existing id, or with a dedup id that an unfinished run of
        the same queue holds, is not created: that run is returned instead. A
        run whose dependency already failed is created cancelled (unless
        ``on_dep_failure="run"``).

        Raises:
            DependencyCycleError: the dependencies would form a cycle.
        """

    @abc.abstractmethod
    async def upsert_queue(self, spec: QueueSpec) -> None:
        """Store a queue's limits for every worker to obey."""

    @abc.abstractmethod
    async def list_queues(self, tenant: str | None = None) -> list[QueueStats]:
        """Every queue that has limits or unfinished runs, with its counts.

        With ``tenant``, the counts are of that tenant's runs only.
        """

    @abc.abstractmethod
    async def usage_of_runs(self, run_ids: Sequence[str]) -> dict[str, RunUsage]:
        """Model calls, tokens and cost of each run, summed from its ``llm.completed`` events.

        Runs that made no call are absent. A fork's inherited calls count in its original.
        """

    @abc.abstractmethod
    async def run_activity(
        self, tenant: str, since: float, bucket: float
    ) -> list[tuple[float, str, int]]:
        """``(bucket start, status, runs)`` of the tenant's runs created since ``since``."""

    @abc.abstractmethod
    async def run_durations(
        self, tenant: str, since: float, bucket: float
    ) -> list[tuple[float, float]]:
        """``(bucket start, seconds)`` of each finished tenant run created since ``since``."""

    @abc.abstractmethod
    async def usage_over_time(
        self, tenant: str, since: float, bucket: float
    ) -> list[tuple[float, int, float | None]]:
        """``(bucket start, tokens, cost)`` of model calls in the tenant's runs created since
        ``since``, bucketed by the time of the call."""

    @abc.abstractmethod
    async def queue_throughput(
        self, tenant: str, since: float, bucket: float
    ) -> list[tuple[str, float, int]]:
        """``(queue, bucket start, runs)`` of the tenant's runs that finished since ``since``."""

    @abc.abstractmethod
    async def upsert_schedule(self, schedule: Schedule) -> Schedule:
        """Declare a cron schedule (keeping its last tick); return it as stored."""

    @abc.abstractmethod
    async def advance_schedule(self, name: str, tick: float, run: NewRun | None) -> bool:
        """Move a schedule's last tick to ``tick`` and enqueue ``run`` for it, atomically.

        Returns False, doing nothing, when another scheduler already advanced it
        to ``tick`` or beyond: each tick starts exactly one run.
        """

    @abc.abstractmethod
    async def list_schedules(self) -> list[Schedule]:
        """Every declared schedule."""

    @abc.abstractmethod
    def listen(self, wake: Callable[[str], None]) -> None:
        """Call ``wake(queue)`` (from any thread) when a run becomes claimable.

        Backends without notifications do nothing; workers then poll.
        """

    @abc.abstractmethod
    async def apply(self, writes: Sequence[Write]) -> list[Fence | None]:
        """Apply writes in order in one transaction; one result per write.

        Entry and finish writes answer a :class:`Fence`; event writes answer None.
        """

    @abc.abstractmethod
    async def receive(
        self, write: EntryWrite, topic: str, *, timed_out: bool
    ) -> tuple[Fence, bool, str | None]:
        """Settle a receive wait at ``write.seq``, atomically with taking the message.

        If an unread message on ``topic`` exists it is marked read and becomes the
        entry's output. Otherwise, with ``timed_out`` the entry settles with output
        null; without, it is written pending.

        Returns:
            (fence, settled, output): ``settled`` says whether the entry is final.
        """

    @abc.abstractmethod
    async def suspend(
        self,
        run_id: str,
        epoch: int,
        *,
        wake_at: float | None,
        topics: Sequence[str],
        children: Sequence[str],
    ) -> Fence:
        """Let go of a running run until ``wake_at``, a message or a child's end.

        Returns ``Fence.OK`` once suspended; ``Fence.READY``, leaving the run
        running, if what it waits for already happened (an unread message on one
        of ``topics``, one of ``children`` finished), so the caller carries on;
        ``Fence.PAUSE`` if it was paused instead; ``Fence.LOST`` without the lease.
        """

    @abc.abstractmethod
    async def pause_at_boundary(self, run_id: str, epoch: int) -> bool:
        """Move a run that reached a step boundary with a pause request to paused."""

    @abc.abstractmethod
    async def request_pause(self, run_id: str) -> Run:
        """Pause a run: at once when idle, at its next step boundary when running."""

    @abc.abstractmethod
    async def resume(self, run_id: str) -> Run:
        """Make a paused run runnable again (or withdraw a pending pause request)."""

    @abc.abstractmethod
    async def cancel(self, run_id: str, reason: str) -> list[str]:
        """Cancel a run and its unfinished descendants; return the ids cancelled."""

    @abc.abstractmethod
    async def send(self, run_id: str, topic: str, payload: str) -> None:
        """Queue a message for a run and wake it if it waits on ``topic``."""

    @abc.abstractmethod
    async def fork(self, source: str, at_seq: int, patch: str | None, new: NewRun) -> None:
        """Create ``new`` from ``source``'s journal before ``at_seq``.

        With ``patch``, the entry at ``at_seq`` is copied too, with ``patch`` as its
        output. ``source`` is kept, marked superseded by the new run.
        """

    @abc.abstractmethod
    async def next_due(self) -> float | None:
        """The earliest time at which some run becomes claimable, if any."""

    # -- journal, events, checkpoints ----------------------------------------

    @abc.abstractmethod
    async def load_journal(self, run_id: str) -> list[JournalEntry]:
        """Return a run's journal in seq order."""

    @abc.abstractmethod
    async def get_entry(self, run_id: str, seq: int) -> JournalEntry | None:
        """Return one journal entry, or None."""

    @abc.abstractmethod
    async def list_events(
        self, run_id: str | None = None, *, after: int = 0, limit: int = 1000
    ) -> list[Event]:
        """Return events with id above ``after``, oldest first."""

    @abc.abstractmethod
    async def stream_events(
        self,
        *,
        after: int,
        limit: int = 1000,
        until: int | None = None,
        tenant: str | None = None,
        run_id: str | None = None,
        workflow: str | None = None,
        kinds: Sequence[str] | None = None,
    ) -> list[Event]:
        """Return events with ``after < event_id <= until``, oldest first, with tenant and workflow.

        Each event carries its run's tenant and workflow. The filters narrow by
        tenant, run, workflow and kind; ``until`` None means no upper bound.
        """

    @abc.abstractmethod
    async def last_event_id(self) -> int:
        """The highest event id written so far (0 when there is none)."""

    @abc.abstractmethod
    async def list_checkpoints(self, run_id: str) -> list[Checkpoint]:
        """Return a run's named checkpoints, in the order taken (unverified)."""

    # -- workers --------------------------------------------------------------

    @abc.abstractmethod
    async def register_worker(self, worker: Worker, pid_start: str | None) -> None:
        """Record a worker as active (or refresh it)."""

    @abc.abstractmethod
    async def heartbeat(self, worker_id: str, *, lease_s: float) -> set[str]:
        """Record that a worker lives, extend its leases, return the runs it still holds."""

    @abc.abstractmethod
    async def set_worker_state(self, worker_id: str, state: str) -> None:
        """Set a worker's state (active, draining, stale, gone)."""

    @abc.abstractmethod
    async def list_workers(self) -> list[Worker]:
        """Return the worker registry."""

    @abc.abstractmethod
    async def workers_on_host(self, host: str) -> list[tuple[Worker, str | None]]:
        """Return live workers on ``host`` with their process start markers."""

    @abc.abstractmethod
    async def retire_worker(self, worker_id: str, *, dead: bool) -> list[str]:
        """Mark a worker gone and hand back its runs.

        A worker that stops cleanly (``dead=False``) makes its runs pending; a dead
        one's leases are expired so the next claim resumes them. Returns their ids.
        """

    @abc.abstractmethod
    async def mark_stale_workers(self, cutoff: float) -> list[str]:
        """Mark workers whose last heartbeat is older than ``cutoff`` stale."""

    # -- control plane: tenants, users, keys, sessions, audit, bulk jobs ------

    @abc.abstractmethod
    async def create_tenant(self, tenant: Tenant) -> bool:
        """Create a tenant; False (changing nothing) if its id exists."""

    @abc.abstractmethod
    async def get_tenant(self, tenant_id: str) -> Tenant | None:
        """Return a tenant, or None."""

    @abc.abstractmethod
    async def list_tenants(self) -> list[Tenant]:
        """Every tenant, by id."""

    @abc.abstractmethod
    async def set_retention(self, tenant_id: str, days: int | None, action: str) -> Tenant | None:
        """Set a tenant's retention policy; return it, or None if it does not exist."""

    @abc.abstractmethod
    async def create_user(self, user: User) -> bool:
        """Create a user; False (changing nothing) if the username is taken."""

    @abc.abstractmethod
    async def get_user(self, user_id: str) -> User | None:
        """Return a user by id, or None."""

    @abc.abstractmethod
    async def find_user(self, username: str) -> User | None:
        """Return a user by username, or None."""

    @abc.abstractmethod
    async def count_users(self) -> int:
        """How many users exist (first start creates the first admin)."""

    @abc.abstractmethod
    async def update_user(
        self, user_id: str, *, password_hash: str | None = None, disabled: bool | None = None
    ) -> User | None:
        """Change a user's password hash and/or disabled flag; None if no such user."""

    @abc.abstractmethod
    async def set_membership(self, membership: Membership) -> None:
        """Give a user a role in a tenant (replacing any role they had there)."""

    @abc.abstractmethod
    async def remove_membership(self, user_id: str, tenant_id: str) -> bool:
        """Take a user out of a tenant; False if they were not a member."""

    @abc.abstractmethod
    async def memberships_of(self, user_id: str) -> list[Membership]:
        """Every tenant a user belongs to, with the role."""

    @abc.abstractmethod
    async def members_of(self, tenant_id: str) -> list[tuple[User, Membership]]:
        """Every user of a tenant, by username."""

    @abc.abstractmethod
    async def create_api_key(self, key: ApiKey) -> None:
        """Store a new API key (its secret's hash only)."""

    @abc.abstractmethod
    async def get_api_key(self, key_id: str) -> ApiKey | None:
        """Return a key by id, or None."""

    @abc.abstractmethod
    async def list_api_keys(self, tenant_id: str) -> list[ApiKey]:
        """Every key of a tenant, newest first, revoked ones included."""

    @abc.abstractmethod
    async def update_api_key(
        self,
        key_id: str,
        *,
        revoked_at: float | None = None,
        expires_at: float | None = None,
        last_used_at: float | None = None,
    ) -> ApiKey | None:
        """Set the given timestamps on a key (None leaves one unchanged); None if no such key.

        ``expires_at`` only ever moves earlier: an existing earlier expiry stays.
        """

    @abc.abstractmethod
    async def create_session(self, session: Session) -> None:
        """Store a new session."""

    @abc.abstractmethod
    async def get_session(self, token_hash: str) -> Session | None:
        """Return a session by its token's hash, or None."""

    @abc.abstractmethod
    async def delete_session(self, token_hash: str) -> None:
        """End a session (sign out)."""

    @abc.abstractmethod
    async def delete_expired_sessions(self, now: float) -> int:
        """Delete sessions that expired before ``now``; return how many."""

    @abc.abstractmethod
    async def append_audit(self, records: Sequence[AuditRecord]) -> None:
        """Append audit records (their ``audit_id`` is ignored; the store assigns it)."""

    @abc.abstractmethod
    async def list_audit(
        self,
        tenant_id: str,
        *,
        actor: str | None = None,
        action: str | None = None,
        object_id: str | None = None,
        since: float | None = None,
        until: float | None = None,
        before_id: int | None = None,
        limit: int = 100,
    ) -> list[AuditRecord]:
        """A tenant's audit records, newest first; ``action`` matches a prefix ("run." ...)."""

    @abc.abstractmethod
    async def save_bulk_job(self, job: BulkJob) -> None:
        """Insert or replace a bulk job's record."""

    @abc.abstractmethod
    async def get_bulk_job(self, job_id: str) -> BulkJob | None:
        """Return a bulk job, or None."""

    @abc.abstractmethod
    async def list_bulk_jobs(self, tenant_id: str, *, limit: int = 50) -> list[BulkJob]:
        """A tenant's bulk jobs, newest first."""

    @abc.abstractmethod
    async def interrupt_bulk_jobs(self, now: float) -> int:
        """Mark jobs still ``running`` as ``interrupted`` (at server start); return how many."""

    # -- webhooks and their outbox --------------------------------------------

    @abc.abstractmethod
    async def create_webhook(self, webhook: Webhook) -> None:
        """Store a new webhook subscription."""

    @abc.abstractmethod
    async def get_webhook(self, webhook_id: str) -> Webhook | None:
        """Return a webhook, or None."""

    @abc.abstractmethod
    async def list_webhooks(
        self, tenant_id: str | None, *, active: bool | None = None
    ) -> list[Webhook]:
        """A tenant's webhooks (None: every tenant's), oldest first."""

    @abc.abstractmethod
    async def update_webhook(
        self,
        webhook_id: str,
        *,
        url: str | None = None,
        kinds: Sequence[str] | None = None,
        format: WebhookFormat | None = None,
        active: bool | None = None,
        secret: str | None = None,
    ) -> Webhook | None:
        """Change the given fields (None leaves one unchanged); None if no such webhook."""

    @abc.abstractmethod
    async def delete_webhook(self, webhook_id: str) -> bool:
        """Delete a webhook and its deliveries; False if there was none."""

    @abc.abstractmethod
    async def enqueue_deliveries(
        self, deliveries: Sequence[WebhookDelivery], cursors: Mapping[str, int]
    ) -> None:
        """Add deliveries to the outbox and move webhook cursors forward, atomically.

        A delivery whose webhook already has one for the same event is ignored.
        """

    @abc.abstractmethod
    async def claim_deliveries(
        self, now: float, *, limit: int, lease_s: float
    ) -> list[WebhookDelivery]:
        """Take up to ``limit`` pending or failed deliveries due at ``now`` for ``lease_s``."""

    @abc.abstractmethod
    async def record_delivery_attempt(
        self, delivery: WebhookDelivery, *, at: float
    ) -> WebhookDelivery | None:
        """Store the outcome of attempt ``delivery.attempts`` made at ``at`` (the
        delivery's state and a row of its history); None if the delivery is gone."""

    @abc.abstractmethod
    async def postpone_delivery(self, delivery_id: str, until: float) -> None:
        """Make a delivery due again at ``until`` without counting an attempt."""

    @abc.abstractmethod
    async def list_delivery_attempts(
        self, delivery_ids: Sequence[str]
    ) -> dict[str, list[DeliveryAttempt]]:
        """The attempts of each delivery, in order; deliveries never attempted are absent."""

    @abc.abstractmethod
    async def get_delivery(self, delivery_id: str) -> WebhookDelivery | None:
        """Return a delivery, or None."""

    @abc.abstractmethod
    async def list_deliveries(
        self,
        webhook_id: str,
        *,
        status: DeliveryStatus | None = None,
        before: tuple[float, str] | None = None,
        limit: int = 50,
    ) -> list[WebhookDelivery]:
        """A webhook's deliveries, newest first, after the ``(created_at, id)`` cursor."""

    # -- approvals -------------------------------------------------------------

    @abc.abstractmethod
    async def create_approval(self, new: NewApproval) -> ApprovalRequest:
        """Create an approval request unless its id exists; return it as stored.

        Emits ``approval.requested`` when a pending request is created; a
        request of a run that has ended is created ``cancelled``.
        """

    @abc.abstractmethod
    async def get_approval(self, approval_id: str) -> ApprovalRequest | None:
        """Return an approval request, or None."""

    @abc.abstractmethod
    async def list_approvals(self, query: ApprovalFilter) -> list[ApprovalRequest]:
        """A tenant's approval requests matching ``query``, newest first."""

    @abc.abstractmethod
    async def decide_approval(
        self,
        approval_id: str,
        *,
        level: int,
        status: ApprovalStatus,
        decision: dict[str, JSON],
        decided_by: str,
        args_hash: str | None = None,
        audit: AuditRecord | None = None,
    ) -> ApprovalRequest | None:
        """Decide a request by compare-and-set on (pending, ``level``, ``args_hash``).

        The winner's transaction stores the decision, wakes the run (a message on
        the request's topic), emits ``approval.decided`` and appends ``audit``.
        Returns the decided request, or None (nothing changed) for every loser.
        """

    @abc.abstractmethod
    async def escalate_approval(
        self,
        approval_id: str,
        *,
        level: int,
        deadline: float | None,
        history: list[JSON],
        audit: AuditRecord | None = None,
    ) -> ApprovalRequest | None:
        """Move a pending request from ``level`` up one level by compare-and-set.

        Emits ``approval.escalated`` and appends ``audit`` with it. Returns the
        request, or None when it is no longer pending at ``level``.
        """

    @abc.abstractmethod
    async def await_approval(
        self, write: EntryWrite, approval_id: str
    ) -> tuple[Fence, ApprovalRequest | None]:
        """Write a run's approval entry: settled with the decision if there is one.

        Fenced like every journal write; see the SQL store for the details.
        """

    # -- policy documents ---------------------------------------------------------

    @abc.abstractmethod
    async def put_policy(
        self, tenant_id: str, document: str, sha256: str, created_by: str
    ) -> PolicyVersion:
        """Store a new version of a tenant's policy (the next number, from 1); return it."""

    @abc.abstractmethod
    async def current_policy(self, tenant_id: str) -> PolicyVersion | None:
        """The tenant's newest policy version, or None if it has none."""

    @abc.abstractmethod
    async def get_policy(self, tenant_id: str, version: int) -> PolicyVersion | None:
        """One version of the tenant's policy, or None."""

    @abc.abstractmethod
    async def list_policies(self, tenant_id: str, *, limit: int = 100) -> list[PolicyVersion]:
        """The tenant's policy versions, newest first."""
