"""One client interface for every command, over a server (REST) or a store (the Service).

Commands are written once against :class:`Client`. :class:`RemoteClient`
(``_remote.py``) speaks HTTP to ``kernos up``; :class:`LocalClient`
(``_local.py``) calls :class:`kernos.control.Service` in this process as the
installation itself (``Principal.system``), which is how an operator works on
a store with no server, or recovers access to one.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from kernos import errors, records, runtime
from kernos.cli._settings import Local, Remote, Settings
from kernos.store import RunFilter

if TYPE_CHECKING:
    from kernos.control._policies import PolicyTestRow

__all__ = [
    "AuditQuery",
    "Client",
    "EventQuery",
    "Identity",
    "Member",
    "call",
    "connect",
    "run_failure",
]

T = TypeVar("T")


@dataclass(frozen=True, kw_only=True, slots=True)
class Member:
    """A user and their role in the caller's tenant."""

    username: str
    user_id: str
    role: records.Role
    disabled: bool
    created_at: float

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        return {
            "username": self.username,
            "user_id": self.user_id,
            "role": self.role.value,
            "disabled": self.disabled,
            "created_at": self.created_at,
        }


@dataclass(frozen=True, kw_only=True, slots=True)
class Identity:
    """Who the client acts as, in which tenant, with which role, and where."""

    actor: str
    tenant: str
    role: records.Role
    where: str

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        return {
            "actor": self.actor,
            "tenant": self.tenant,
            "role": self.role.value,
            "where": self.where,
        }


@dataclass(frozen=True, kw_only=True, slots=True)
class EventQuery:
    """Which events a tail follows (None: any)."""

    run_id: str | None = None
    workflow: str | None = None
    kinds: tuple[str, ...] | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class AuditQuery:
    """Which audit records to list, newest first."""

    actor: str | None = None
    action: str | None = None  # a prefix, e.g. "run." or "key.rotate"
    object_id: str | None = None
    since: float | None = None
    until: float | None = None
    before_id: int | None = None
    limit: int = 100


class Client(abc.ABC):
    """What the commands can do, wherever the runs are.

    Errors are the typed ones of :mod:`kernos.errors` on both sides: an unknown
    run is a NotFoundError, a missing role a PermissionDeniedError, and so on.
    """

    where: str
    """The server URL or the store URL (password hidden), for messages."""

    remote: bool
    """Whether this client talks to a server."""

    # -- runs -------------------------------------------------------------------

    @abc.abstractmethod
    async def list_runs(
        self, query: RunFilter, *, limit: int, cursor: str | None
    ) -> tuple[list[records.Run], str | None]:
        """One page of runs, newest first, and the cursor of the next page."""

    @abc.abstractmethod
    async def count_runs(self, query: RunFilter) -> int | None:
        """How many runs match, or None when that is not cheaply known here."""

    @abc.abstractmethod
    def export_runs(self, query: RunFilter) -> AsyncGenerator[records.Run, None]:
        """Every matching run, newest first, streamed."""

    @abc.abstractmethod
    async def get_run(self, run_id: str) -> records.Run:
        """One run."""

    @abc.abstractmethod
    async def journal(self, run_id: str) -> list[records.JournalEntry]:
        """A run's journal, in order."""

    @abc.abstractmethod
    async def children(self, run_id: str, *, limit: int) -> list[records.Run]:
        """Up to ``limit`` child runs of a run."""

    @abc.abstractmethod
    async def run_events(self, run_id: str, *, after: int, limit: int) -> list[records.Event]:
        """A run's events with ids above ``after``, oldest first."""

    @abc.abstractmethod
    async def checkpoints(self, run_id: str) -> list[records.Checkpoint]:
        """A run's checkpoints, each verified."""

    @abc.abstractmethod
    async def start_run(
        self,
        workflow: str,
        input: dict[str, Any],
        *,
        queue: str,
        priority: int,
        idempotency_key: str | None,
        delay: float | None,
    ) -> tuple[records.Run, bool]:
        """Start a run; return it and whether it is new (False: idempotent repeat)."""

    @abc.abstractmethod
    async def cancel(self, run_id: str, reason: str) -> list[str]:
        """Cancel a run and its unfinished descendants; return the ids cancelled."""

    @abc.abstractmethod
    async def fork(
        self, run_id: str, at: int | str, *, patch: Any, patched: bool, new_run_id: str | None
    ) -> records.Run:
        """Fork a run at a seq or checkpoint; return the fork."""

    @abc.abstractmethod
    async def replay(self, run_id: str) -> runtime.ReplayReport:
        """Replay a run against its journal."""

    @abc.abstractmethod
    async def wait(self, run_id: str, *, timeout: float | None) -> records.Run:
        """Wait for a run to end and return it.

        Raises:
            RunFailedError, RunCancelledError: it did not succeed.
            TimeoutError: ``timeout`` seconds passed first.
        """

    # -- fleet ------------------------------------------------------------------------

    @abc.abstractmethod
    async def queues(self) -> list[records.QueueStats]:
        """Queues, their limits and depths."""

    @abc.abstractmethod
    async def workers(self) -> list[records.Worker]:
        """The worker registry."""

    # -- events -----------------------------------------------------------------------

    @abc.abstractmethod
    def tail(
        self,
        query: EventQuery,
        *,
        after: int | None,
        on_connected: Callable[[], None] | None = None,
    ) -> AsyncGenerator[records.Event, None]:
        """Follow events (with ids above ``after``; None: from now), forever.

        ``on_connected`` is called once, when the stream is established.
        """

    # -- administration -----------------------------------------------------------------

    @abc.abstractmethod
    async def whoami(self) -> Identity:
        """Who this client acts as."""

    @abc.abstractmethod
    async def keys(self) -> list[records.ApiKey]:
        """The tenant's API keys (never their secrets)."""

    @abc.abstractmethod
    async def create_key(
        self, name: str, role: records.Role, *, expires_in: float | None
    ) -> tuple[records.ApiKey, str]:
        """A new API key and its secret (shown once)."""

    @abc.abstractmethod
    async def revoke_key(self, key_id: str) -> records.ApiKey:
        """Revoke a key now."""

    @abc.abstractmethod
    async def rotate_key(self, key_id: str, *, overlap: float) -> tuple[records.ApiKey, str]:
        """Replace a key; the old one works ``overlap`` seconds more."""

    @abc.abstractmethod
    async def users(self) -> list[Member]:
        """The tenant's users."""

    @abc.abstractmethod
    async def create_user(self, username: str, password: str, role: records.Role) -> Member:
        """Create a user in the tenant."""

    @abc.abstractmethod
    async def update_user(
        self,
        username: str,
        *,
        role: records.Role | None,
        disabled: bool | None,
        password: str | None,
    ) -> Member:
        """Change a user's role, state or password."""

    @abc.abstractmethod
    async def remove_user(self, username: str) -> None:
        """Take a user out of the tenant."""

    @abc.abstractmethod
    async def tenants(self) -> list[records.Tenant]:
        """Every tenant (installation admins) or the caller's own."""

    @abc.abstractmethod
    async def create_tenant(self, tenant_id: str, name: str) -> records.Tenant:
        """Create a tenant."""

    @abc.abstractmethod
    async def add_member(self, tenant_id: str, username: str, role: records.Role) -> None:
        """Give an existing user a role in a tenant."""

    @abc.abstractmethod
    async def audit(self, query: AuditQuery) -> tuple[list[records.AuditRecord], int | None]:
        """Audit records, newest first, and the ``before_id`` of the next page."""

    # -- bulk actions ---------------------------------------------------------------------

    @abc.abstractmethod
    async def bulk_count(self, action: str, query: RunFilter) -> int:
        """How many runs a bulk action would touch."""

    @abc.abstractmethod
    async def bulk_start(self, action: str, query: RunFilter) -> records.BulkJob:
        """Start a bulk job."""

    @abc.abstractmethod
    async def bulk_job(self, job_id: str) -> records.BulkJob:
        """A bulk job's progress."""

    @abc.abstractmethod
    async def bulk_jobs(self) -> list[records.BulkJob]:
        """The tenant's bulk jobs, newest first."""

    # -- webhooks ----------------------------------------------------------------------------

    @abc.abstractmethod
    async def webhooks(self) -> list[records.Webhook]:
        """The tenant's webhooks (their secrets empty)."""

    @abc.abstractmethod
    async def create_webhook(
        self, url: str, *, kinds: list[str], format: records.WebhookFormat
    ) -> tuple[records.Webhook, str]:
        """A new webhook and its signing secret (shown once)."""

    @abc.abstractmethod
    async def delete_webhook(self, webhook_id: str) -> None:
        """Delete a webhook and its deliveries."""

    @abc.abstractmethod
    async def rotate_webhook(self, webhook_id: str) -> tuple[records.Webhook, str]:
        """Give a webhook a new secret (shown once)."""

    @abc.abstractmethod
    async def webhook_deliveries(
        self, webhook_id: str, *, status: records.DeliveryStatus | None, limit: int
    ) -> list[records.WebhookDelivery]:
        """A webhook's latest deliveries, newest first."""

    @abc.abstractmethod
    async def test_webhook(self, webhook_id: str) -> records.WebhookDelivery:
        """Send a ping now; the delivery with its outcome."""

    # -- approvals -------------------------------------------------------------------

    @abc.abstractmethod
    async def approvals(
        self,
        *,
        status: str | None,
        run_id: str | None,
        mine: bool,
        limit: int,
        cursor: str | None,
    ) -> tuple[list[records.ApprovalRequest], str | None]:
        """One page of approval requests, newest first, and the cursor of the next page."""

    @abc.abstractmethod
    async def approval(self, approval_id: str) -> records.ApprovalRequest:
        """One approval request."""

    @abc.abstractmethod
    async def decide(
        self,
        approval_id: str,
        decision: str,
        *,
        comment: str | None,
        edits: Any,
        args_hash: str | None,
        level: int | None,
    ) -> records.ApprovalRequest:
        """Approve or reject a pending request; return it decided."""

    # -- policy -----------------------------------------------------------------------

    @abc.abstractmethod
    async def policy(self, version: int | None) -> records.PolicyVersion:
        """The tenant's current policy, or one version of it."""

    @abc.abstractmethod
    async def policy_versions(self) -> list[records.PolicyVersion]:
        """The tenant's policy versions, newest first (their documents may be empty)."""

    @abc.abstractmethod
    async def apply_policy(self, document: str) -> records.PolicyVersion:
        """Store ``document`` as the tenant's next policy version (admin)."""

    @abc.abstractmethod
    async def test_policy(self, document: str, run_id: str) -> list[PolicyTestRow]:
        """What ``document`` would decide on each tool call of a recorded run."""


def run_failure(run: records.Run) -> errors.RunFailedError:
    """The error for a run that ended without a result (as ``RunHandle.result`` raises it)."""
    info = run.error if isinstance(run.error, dict) else {}
    cls = (
        errors.RunCancelledError
        if run.status is records.RunStatus.CANCELLED
        else errors.RunFailedError
    )
    return cls(
        f"run {run.run_id!r} {run.status.value}: {info.get('type', '?')}: "
        f"{info.get('message', '')}",
        run_id=run.run_id,
        error_type=info.get("type"),
        error_code=info.get("code"),
    )


@asynccontextmanager
async def connect(settings: Settings, *, worker: bool = False) -> AsyncIterator[Client]:
    """Open the client the settings ask for (server or store) and close it after.

    Args:
        settings: the global options (see :mod:`kernos.cli._settings`).
        worker: with a local store, also execute runnable runs of the
            workflows imported in this process (``--app``); ignored for a server.
    """
    target = settings.target()
    if isinstance(target, Remote):
        from kernos.cli._remote import RemoteClient

        async with RemoteClient(target) as remote:
            yield remote
        return
    assert isinstance(target, Local)
    from kernos.cli._local import LocalClient

    async with LocalClient(target, worker=worker) as local:
        yield local


def call(settings: Settings, use: Callable[[Client], Awaitable[T]], *, worker: bool = False) -> T:
    """Run ``use(client)`` on a fresh event loop with the client the settings ask for."""

    async def go() -> T:
        async with connect(settings, worker=worker) as client:
            return await use(client)

    return asyncio.run(go())
