"""The client over a store in this process: :class:`kernos.control.Service` as the system.

Every call goes through the same tenant-scoped, audited Service the server
uses, as ``Principal.system(tenant)`` (the admin role; the audit log names the
actor ``system``). Whoever can open the store can do anything in it, so this
is also how an operator recovers access: ``kernos keys create rescue --role
admin --store URL`` makes an API key directly in the store.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable
from dataclasses import replace
from types import TracebackType
from typing import Any

from kernos import errors, records, runtime
from kernos.cli._client import AuditQuery, Client, EventQuery, Identity, Member
from kernos.cli._session import _require_sqlite_file
from kernos.cli._settings import Local
from kernos.control import Principal, Service
from kernos.control._policies import PolicyTestRow
from kernos.store import RunFilter, redact_url

__all__ = ["LocalClient"]

TAIL_POLL = 0.2  # seconds between looks for new events in the store


def _member(user: records.User, membership: records.Membership) -> Member:
    return Member(
        username=user.username,
        user_id=user.user_id,
        role=membership.role,
        disabled=user.disabled,
        created_at=user.created_at,
    )


class LocalClient(Client):
    """Runs, keys, users and tenants of a store, through the Service, as the system."""

    remote = False

    def __init__(self, target: Local, *, worker: bool = False) -> None:
        self.target = target
        self.where = redact_url(target.store)
        self.worker = worker
        self.principal = Principal.system(target.tenant)
        self.app = runtime.Kernos(target.store, worker=worker, migrate=False)
        self.service = Service(self.app)

    async def __aenter__(self) -> LocalClient:
        _require_sqlite_file(self.target.store)
        await self.app.open()  # never migrates; refuses a store whose schema is behind
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.service.bulk.stop()
        await self.app.close()

    # -- runs -------------------------------------------------------------------

    async def list_runs(
        self, query: RunFilter, *, limit: int, cursor: str | None
    ) -> tuple[list[records.Run], str | None]:
        from kernos.control._cursor import decode_cursor

        before = decode_cursor(cursor) if cursor else None
        return await self.service.runs.page(
            self.principal, replace(query, limit=limit, before=before)
        )

    async def count_runs(self, query: RunFilter) -> int | None:
        return await self.service.runs.count(self.principal, query)

    async def export_runs(self, query: RunFilter) -> AsyncGenerator[records.Run, None]:
        async for run in self.service.runs.iterate(self.principal, query):
            yield run

    async def get_run(self, run_id: str) -> records.Run:
        return await self.service.runs.get(self.principal, run_id)

    async def journal(self, run_id: str) -> list[records.JournalEntry]:
        return await self.service.runs.journal(self.principal, run_id)

    async def children(self, run_id: str, *, limit: int) -> list[records.Run]:
        runs, _ = await self.service.runs.page(
            self.principal, RunFilter(parent_id=run_id, limit=limit)
        )
        return runs

    async def run_events(self, run_id: str, *, after: int, limit: int) -> list[records.Event]:
        return await self.service.runs.events(self.principal, run_id, after=after, limit=limit)

    async def checkpoints(self, run_id: str) -> list[records.Checkpoint]:
        return await self.service.runs.checkpoints(self.principal, run_id)

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
        if self.app.registry.get(workflow) is None:
            raise errors.ConfigError(
                f"workflow {workflow!r} is not registered in this process; pass --app MODULE "
                "naming the module that defines it (or start it on a server with --url)",
                workflow=workflow,
            )
        return await self.service.runs.start(
            self.principal,
            workflow,
            input,
            queue=queue,
            priority=priority,
            idempotency_key=idempotency_key,
            delay=delay,
        )

    async def cancel(self, run_id: str, reason: str) -> list[str]:
        return await self.service.runs.cancel(self.principal, run_id, reason)

    async def fork(
        self, run_id: str, at: int | str, *, patch: Any, patched: bool, new_run_id: str | None
    ) -> records.Run:
        if new_run_id is None:
            return await self.service.runs.fork(
                self.principal, run_id, at, patch=patch, patched=patched
            )
        # The Service names forks itself; a chosen id goes through the app, audited alike.
        runs = self.service.runs
        async with self.service.audit.audited(self.principal, "run.fork", "run", run_id) as note:
            note.detail.update(at=at, patched=patched)
            await runs.get(self.principal, run_id)
            handle = await self.app.fork(
                run_id, at, patch=patch, patched=patched, new_run_id=new_run_id
            )
            note.detail["fork"] = handle.run_id
            return await self.app.get_run(handle.run_id)

    async def replay(self, run_id: str) -> runtime.ReplayReport:
        return await self.service.runs.replay(self.principal, run_id)

    async def wait(self, run_id: str, *, timeout: float | None) -> records.Run:
        await self.get_run(run_id)  # in this tenant
        await self.app.handle(run_id).result(timeout=timeout)
        return await self.get_run(run_id)

    # -- fleet ------------------------------------------------------------------------

    async def queues(self) -> list[records.QueueStats]:
        return await self.service.runs.queues(self.principal)

    async def workers(self) -> list[records.Worker]:
        return list(await self.service.runs.workers(self.principal))

    # -- events -----------------------------------------------------------------------

    async def tail(
        self,
        query: EventQuery,
        *,
        after: int | None,
        on_connected: Callable[[], None] | None = None,
    ) -> AsyncGenerator[records.Event, None]:
        # The server's event hub, here over this process's own store connection:
        # the same id order and gap handling as a server's stream.
        from kernos.api._hub import EventHub

        hub = EventHub(self.app.store, poll_interval=TAIL_POLL)
        await hub.start()
        try:
            subscription = hub.subscribe(
                after,
                tenant=self.principal.tenant_id,
                run_id=query.run_id,
                workflow=query.workflow,
                kinds=query.kinds,
            )
            if on_connected is not None:
                on_connected()
            async with subscription:
                while True:
                    batch = await subscription.receive()
                    if batch is None:
                        raise errors.RuntimeFailure(
                            f"the event stream ended: {subscription.reason}"
                        )
                    for item in batch:
                        yield item.event
        finally:
            await hub.stop()

    # -- administration -----------------------------------------------------------------

    async def whoami(self) -> Identity:
        await self.service.admin.tenant(self.principal)  # the tenant exists
        return Identity(
            actor=self.principal.actor,
            tenant=self.principal.tenant_id,
            role=self.principal.role,
            where=self.where,
        )

    async def keys(self) -> list[records.ApiKey]:
        return await self.service.admin.keys(self.principal)

    async def create_key(
        self, name: str, role: records.Role, *, expires_in: float | None
    ) -> tuple[records.ApiKey, str]:
        await self.service.admin.tenant(self.principal)  # never a key for no tenant
        return await self.service.admin.create_key(
            self.principal, name, role, expires_in=expires_in
        )

    async def revoke_key(self, key_id: str) -> records.ApiKey:
        return await self.service.admin.revoke_key(self.principal, key_id)

    async def rotate_key(self, key_id: str, *, overlap: float) -> tuple[records.ApiKey, str]:
        return await self.service.admin.rotate_key(self.principal, key_id, overlap=overlap)

    async def users(self) -> list[Member]:
        return [_member(u, m) for u, m in await self.service.admin.members(self.principal)]

    async def create_user(self, username: str, password: str, role: records.Role) -> Member:
        await self.service.admin.tenant(self.principal)
        return _member(
            *await self.service.admin.create_user(self.principal, username, password, role)
        )

    async def update_user(
        self,
        username: str,
        *,
        role: records.Role | None,
        disabled: bool | None,
        password: str | None,
    ) -> Member:
        return _member(
            *await self.service.admin.update_user(
                self.principal, username, role=role, disabled=disabled, password=password
            )
        )

    async def remove_user(self, username: str) -> None:
        await self.service.admin.remove_user(self.principal, username)

    async def tenants(self) -> list[records.Tenant]:
        return await self.service.admin.tenants(self.principal)

    async def create_tenant(self, tenant_id: str, name: str) -> records.Tenant:
        return await self.service.admin.create_tenant(self.principal, tenant_id, name)

    async def add_member(self, tenant_id: str, username: str, role: records.Role) -> None:
        await self.service.admin.add_member(self.principal, tenant_id, username, role)

    async def audit(self, query: AuditQuery) -> tuple[list[records.AuditRecord], int | None]:
        found = await self.service.admin.audit_log(
            self.principal,
            actor=query.actor,
            action=query.action,
            object_id=query.object_id,
            since=query.since,
            until=query.until,
            before_id=query.before_id,
            limit=query.limit,
        )
        return found, found[-1].audit_id if len(found) == query.limit else None

    # -- bulk actions ---------------------------------------------------------------------

    async def bulk_count(self, action: str, query: RunFilter) -> int:
        return await self.service.bulk.dry_run(self.principal, action, query)

    async def bulk_start(self, action: str, query: RunFilter) -> records.BulkJob:
        # The job runs as a task of this process: the command waits for it.
        return await self.service.bulk.start(self.principal, action, query, _filter_json(query))

    async def bulk_job(self, job_id: str) -> records.BulkJob:
        await asyncio.sleep(0)  # let the job's task progress between polls
        return await self.service.bulk.get(self.principal, job_id)

    async def bulk_jobs(self) -> list[records.BulkJob]:
        return await self.service.bulk.jobs(self.principal)

    # -- webhooks ----------------------------------------------------------------------
    # Here they are only stored: the server that shares this store delivers them.

    async def webhooks(self) -> list[records.Webhook]:
        return await self.service.webhooks.webhooks(self.principal)

    async def create_webhook(
        self, url: str, *, kinds: list[str], format: records.WebhookFormat
    ) -> tuple[records.Webhook, str]:
        await self.service.admin.tenant(self.principal)  # never a webhook for no tenant
        return await self.service.webhooks.create(self.principal, url, kinds=kinds, format=format)

    async def delete_webhook(self, webhook_id: str) -> None:
        await self.service.webhooks.delete(self.principal, webhook_id)

    async def rotate_webhook(self, webhook_id: str) -> tuple[records.Webhook, str]:
        return await self.service.webhooks.rotate(self.principal, webhook_id)

    async def webhook_deliveries(
        self, webhook_id: str, *, status: records.DeliveryStatus | None, limit: int
    ) -> list[records.WebhookDelivery]:
        found = await self.service.webhooks.deliveries(
            self.principal, webhook_id, status=status, limit=limit
        )
        return [delivery for delivery, _ in found]

    async def test_webhook(self, webhook_id: str) -> records.WebhookDelivery:
        return await self.service.webhooks.test(self.principal, webhook_id)

    # -- approvals ---------------------------------------------------------------------

    async def approvals(
        self,
        *,
        status: str | None,
        run_id: str | None,
        mine: bool,
        limit: int,
        cursor: str | None,
    ) -> tuple[list[records.ApprovalRequest], str | None]:
        from kernos.control._approvals import ApprovalQuery

        query = ApprovalQuery(status=status, run_id=run_id, mine=mine, limit=limit, cursor=cursor)
        return await self.service.approvals.page(self.principal, query)

    async def approval(self, approval_id: str) -> records.ApprovalRequest:
        return await self.service.approvals.get(self.principal, approval_id)

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
        return await self.service.approvals.decide(
            self.principal,
            approval_id,
            decision,
            comment=comment,
            edits=edits,
            expected_args_hash=args_hash,
            level=level,
        )

    # -- policy -----------------------------------------------------------------------

    async def policy(self, version: int | None) -> records.PolicyVersion:
        policies = self.service.policies
        if version is None:
            return await policies.current(self.principal)
        return await policies.version(self.principal, version)

    async def policy_versions(self) -> list[records.PolicyVersion]:
        return await self.service.policies.versions(self.principal)

    async def apply_policy(self, document: str) -> records.PolicyVersion:
        return await self.service.policies.apply(self.principal, document)

    async def test_policy(self, document: str, run_id: str) -> list[PolicyTestRow]:
        return await self.service.policies.test(self.principal, document, run_id)


def _filter_json(query: RunFilter) -> dict[str, Any]:
    """The filter as the server records it on a job (its query parameter names)."""
    fields = {
        "status": query.status,
        "workflow": query.workflow,
        "queue": query.queue,
        "created_after": query.created_after,
        "created_before": query.created_before,
        "q": query.text,
    }
    return {name: value for name, value in fields.items() if value is not None}
