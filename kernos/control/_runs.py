"""Tenant-scoped operations on runs, workflows, queues and workers."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from typing import Any

from kernos.control._audit import Auditor
from kernos.control._cursor import encode_cursor
from kernos.control._principal import Principal
from kernos.control._workflows import WorkflowInfo
from kernos.errors import ConflictError, NotFoundError, RunNotFoundError, UsageError
from kernos.records import (
    Checkpoint,
    Event,
    JournalEntry,
    QueueStats,
    Role,
    Run,
    RunUsage,
    Worker,
)
from kernos.runtime import Kernos, ReplayReport
from kernos.store import RunFilter

__all__ = ["RunService"]

_IDEMPOTENCY_NAMESPACE = uuid.UUID("6f1c1a52-4d0e-4b8e-9a55-2c7f0e9d4b11")


class RunService:
    """Everything a face does with runs, confined to the caller's tenant and audited."""

    def __init__(self, app: Kernos, auditor: Auditor) -> None:
        self.app = app
        self.audit = auditor
        self._infos: dict[str, WorkflowInfo] = {}

    # -- workflows -------------------------------------------------------------

    def workflows(self, principal: Principal) -> list[WorkflowInfo]:
        """Every workflow registered in this process, by name."""
        principal.require(Role.VIEWER, "listing workflows")
        return [self._info(name) for name in self.app.registry.names()]

    def workflow(self, principal: Principal, name: str) -> WorkflowInfo:
        """One registered workflow. Raises NotFoundError."""
        principal.require(Role.VIEWER, "reading workflows")
        if self.app.registry.get(name) is None:
            raise NotFoundError(
                f"no workflow named {name!r} is registered in this server; start it with "
                "--app pointing at the module that defines it",
                object_type="workflow",
                object_id=name,
            )
        return self._info(name)

    def _info(self, name: str) -> WorkflowInfo:
        info = self._infos.get(name)
        workflow = self.app.registry.get(name)
        if info is None or workflow is not info.workflow:
            assert workflow is not None
            info = self._infos[name] = WorkflowInfo(workflow)
        return info

    # -- starting and reading runs -------------------------------------------------

    async def start(
        self,
        principal: Principal,
        workflow: str,
        input: dict[str, Any],
        *,
        queue: str = "default",
        priority: int = 0,
        idempotency_key: str | None = None,
        delay: float | None = None,
    ) -> tuple[Run, bool]:
        """Put a run of ``workflow`` on ``queue``; return it and whether it is new.

        With ``idempotency_key``, repeating the request returns the first run;
        reusing the key for a different workflow or input is a conflict.

        Raises:
            NotFoundError: the workflow is not registered here.
            UsageError: the input does not match the workflow's parameters (``errors``).
            ConflictError: the idempotency key was used for a different request.
        """
        async with self.audit.audited(principal, "run.start", "run", None) as note:
            principal.require(Role.OPERATOR, "starting runs")
            info = self.workflow(principal, workflow)
            problems = info.validate(input)
            if problems:
                raise UsageError(
                    f"input does not match the parameters of workflow {workflow!r}",
                    errors=problems,
                )
            run_id = None
            if idempotency_key is not None:
                run_id = uuid.uuid5(
                    _IDEMPOTENCY_NAMESPACE, f"{principal.tenant_id}\0{idempotency_key}"
                ).hex
            new = self.app.new_queued_run(
                queue,
                info.workflow,
                (),
                input,
                priority=priority,
                delay=delay,
                run_id=run_id,
                tenant=principal.tenant_id,
            )
            note.object_id = new.run_id
            note.detail.update(workflow=workflow, queue=queue)
            enqueued = await self.app.store.enqueue(new)
            self.app.engine.poke()
            run = await self.app.get_run(enqueued.run_id)
            if not enqueued.created:
                note.detail["idempotent_replay"] = True
                if run.workflow != workflow or run.input != {"args": [], "kwargs": input}:
                    raise ConflictError(
                        "this Idempotency-Key was already used for a different request; "
                        "use a new key for a new run",
                        run_id=run.run_id,
                    )
            return run, enqueued.created

    async def get(self, principal: Principal, run_id: str) -> Run:
        """A run of the caller's tenant. Raises NotFoundError (also for other tenants' runs)."""
        principal.require(Role.VIEWER, "reading runs")
        try:
            run = await self.app.get_run(run_id)
        except RunNotFoundError:
            run = None
        if run is None or run.tenant != principal.tenant_id:
            raise NotFoundError(
                f"no run {run_id!r} in tenant {principal.tenant_id!r}",
                object_type="run",
                object_id=run_id,
            )
        return run

    async def page(self, principal: Principal, query: RunFilter) -> tuple[list[Run], str | None]:
        """One page of the tenant's runs, newest first, and the cursor of the next page."""
        principal.require(Role.VIEWER, "listing runs")
        query = replace(query, tenant=principal.tenant_id)
        runs = await self.app.store.list_runs(replace(query, limit=query.limit + 1))
        more = len(runs) > query.limit
        runs = runs[: query.limit]
        cursor = encode_cursor(runs[-1].created_at, runs[-1].run_id) if more and runs else None
        return runs, cursor

    async def count(self, principal: Principal, query: RunFilter) -> int:
        """How many of the tenant's runs match ``query``."""
        principal.require(Role.VIEWER, "counting runs")
        return await self.app.store.count_matching(replace(query, tenant=principal.tenant_id))

    async def usage(self, principal: Principal, runs: Sequence[Run]) -> dict[str, RunUsage]:
        """Model calls, tokens and cost of each of ``runs`` (the caller's tenant's only).

        Runs that made no model call get an empty usage.
        """
        principal.require(Role.VIEWER, "reading runs")
        mine = [run.run_id for run in runs if run.tenant == principal.tenant_id]
        found = await self.app.store.usage_of_runs(mine)
        return {run_id: found.get(run_id) or RunUsage(run_id=run_id) for run_id in mine}

    async def iterate(
        self, principal: Principal, query: RunFilter, *, page: int = 500
    ) -> AsyncIterator[Run]:
        """Every matching run of the tenant, newest first, fetched page by page."""
        principal.require(Role.VIEWER, "exporting runs")
        query = replace(query, tenant=principal.tenant_id, limit=page)
        while True:
            runs = await self.app.store.list_runs(query)
            for run in runs:
                yield run
            if len(runs) < page:
                return
            query = replace(query, before=(runs[-1].created_at, runs[-1].run_id))

    async def journal(self, principal: Principal, run_id: str) -> list[JournalEntry]:
        """A run's journal entries, in order."""
        await self.get(principal, run_id)
        return await self.app.store.load_journal(run_id)

    async def checkpoints(self, principal: Principal, run_id: str) -> list[Checkpoint]:
        """A run's named checkpoints, each saying whether its state is intact."""
        await self.get(principal, run_id)
        return await self.app.store.list_checkpoints(run_id)

    async def events(
        self, principal: Principal, run_id: str, *, after: int = 0, limit: int = 1000
    ) -> list[Event]:
        """A run's events with ids above ``after``, oldest first."""
        await self.get(principal, run_id)
        return await self.app.store.list_events(run_id, after=after, limit=limit)

    # -- controlling runs ------------------------------------------------------------

    async def cancel(self, principal: Principal, run_id: str, reason: str) -> list[str]:
        """Cancel a run and its unfinished descendants; return the ids cancelled."""
        async with self.audit.audited(principal, "run.cancel", "run", run_id) as note:
            principal.require(Role.OPERATOR, "cancelling runs")
            await self.get(principal, run_id)
            cancelled = await self.app.cancel(run_id, reason)
            note.detail.update(reason=reason, cancelled=len(cancelled))
            return cancelled

    async def pause(self, principal: Principal, run_id: str) -> Run:
        """Pause a run (at its next step boundary if it is executing)."""
        async with self.audit.audited(principal, "run.pause", "run", run_id):
            principal.require(Role.OPERATOR, "pausing runs")
            await self.get(principal, run_id)
            return await self.app.pause(run_id)

    async def resume(self, principal: Principal, run_id: str) -> Run:
        """Resume a paused run."""
        async with self.audit.audited(principal, "run.resume", "run", run_id):
            principal.require(Role.OPERATOR, "resuming runs")
            await self.get(principal, run_id)
            return await self.app.resume(run_id)

    async def send(self, principal: Principal, run_id: str, payload: Any, topic: str) -> None:
        """Send a message to a run on ``topic``."""
        async with self.audit.audited(principal, "run.send", "run", run_id) as note:
            principal.require(Role.OPERATOR, "sending messages to runs")
            note.detail["topic"] = topic
            await self.get(principal, run_id)
            await self.app.send(run_id, payload, topic=topic)

    async def fork(
        self,
        principal: Principal,
        run_id: str,
        at: int | str,
        *,
        patch: Any = None,
        patched: bool = False,
    ) -> Run:
        """Fork a run at a journal seq or checkpoint name, optionally patching that entry."""
        async with self.audit.audited(principal, "run.fork", "run", run_id) as note:
            principal.require(Role.OPERATOR, "forking runs")
            note.detail.update(at=at, patched=patched)
            await self.get(principal, run_id)
            handle = await self.app.fork(run_id, at, patch=patch, patched=patched)
            note.detail["fork"] = handle.run_id
            return await self.app.get_run(handle.run_id)

    async def replay(self, principal: Principal, run_id: str) -> ReplayReport:
        """Replay a run against its journal (no side effects) and report any divergence."""
        async with self.audit.audited(principal, "run.replay", "run", run_id) as note:
            principal.require(Role.OPERATOR, "replaying runs")
            await self.get(principal, run_id)
            report = await self.app.replay(run_id)
            note.detail["identical"] = report.identical
            return report

    async def purge(self, principal: Principal, run_id: str) -> dict[str, int]:
        """Delete a finished run's data (journal, events, messages, blobs) for good."""
        async with self.audit.audited(principal, "run.purge", "run", run_id) as note:
            principal.require(Role.ADMIN, "deleting run data")
            await self.get(principal, run_id)
            counts = await self.app.store.purge_run(run_id)
            note.detail.update(counts)
            return counts

    # -- the fleet ----------------------------------------------------------------

    async def queues(self, principal: Principal) -> list[QueueStats]:
        """Queues with their limits and the tenant's runs in each state."""
        principal.require(Role.VIEWER, "reading queues")
        return await self.app.store.list_queues(principal.tenant_id)

    async def workers(self, principal: Principal) -> Sequence[Worker]:
        """The worker registry (workers are the installation's, shared by every tenant)."""
        principal.require(Role.VIEWER, "reading workers")
        return await self.app.store.list_workers()
