"""Bulk actions: cancel, retry from the failed step, or replay every run matching a filter."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import replace
from typing import Any

from kernos.control._audit import Auditor
from kernos.control._principal import Principal
from kernos.control._runs import RunService
from kernos.errors import KernosError, NotFoundError, UsageError
from kernos.records import AuditRecord, BulkJob, EntryStatus, Role, Run
from kernos.store import RunFilter

__all__ = ["BULK_ACTIONS", "BulkActions"]

log = logging.getLogger("kernos.bulk")

BULK_ACTIONS = ("cancel", "retry", "replay")
_PROGRESS_EVERY = 25  # runs between progress writes
_MAX_RESULTS = 200  # per-run outcomes kept on the job


class BulkActions:
    """Runs bulk jobs as background tasks of the server, recording progress in the store.

    A job that the server did not finish (it stopped) is marked ``interrupted``
    at the next start; its counts say how far it got.
    """

    def __init__(self, runs: RunService, auditor: Auditor) -> None:
        self.runs = runs
        self.store = runs.app.store
        self.audit = auditor
        self._tasks: set[asyncio.Task[None]] = set()

    @staticmethod
    def _check(action: str) -> None:
        if action not in BULK_ACTIONS:
            raise UsageError(
                f"unknown bulk action {action!r}; use one of {', '.join(BULK_ACTIONS)}",
                field="action",
            )

    async def dry_run(self, principal: Principal, action: str, query: RunFilter) -> int:
        """How many runs ``action`` would touch."""
        self._check(action)
        principal.require(Role.OPERATOR, f"bulk {action}")
        return await self.runs.count(principal, query)

    async def start(
        self, principal: Principal, action: str, query: RunFilter, filter_json: dict[str, Any]
    ) -> BulkJob:
        """Start a bulk job in the background and return it (``state="running"``)."""
        self._check(action)
        async with self.audit.audited(principal, f"bulk.{action}", "bulk_job", None) as note:
            principal.require(Role.OPERATOR, f"bulk {action}")
            total = await self.runs.count(principal, query)
            job = BulkJob(
                job_id=uuid.uuid4().hex,
                tenant_id=principal.tenant_id,
                action=action,
                filter=filter_json,
                state="running",
                total=total,
                done=0,
                failed=0,
                created_by=principal.actor,
                created_at=time.time(),
                results=[],
            )
            note.object_id = job.job_id
            note.detail["total"] = total
            await self.store.save_bulk_job(job)
        task = asyncio.create_task(self._run(principal, job, query), name=f"bulk-{job.job_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return job

    async def get(self, principal: Principal, job_id: str) -> BulkJob:
        """A bulk job of the caller's tenant."""
        principal.require(Role.VIEWER, "reading bulk jobs")
        job = await self.store.get_bulk_job(job_id)
        if job is None or job.tenant_id != principal.tenant_id:
            raise NotFoundError(f"no bulk job {job_id!r}", object_type="bulk_job")
        return job

    async def jobs(self, principal: Principal) -> list[BulkJob]:
        """The tenant's bulk jobs, newest first."""
        principal.require(Role.VIEWER, "reading bulk jobs")
        return await self.store.list_bulk_jobs(principal.tenant_id)

    async def wait(self) -> None:
        """Wait for every running job (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def stop(self) -> None:
        """Cancel running jobs; they are marked interrupted at the next start."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _run(self, principal: Principal, job: BulkJob, query: RunFilter) -> None:
        results: list[Any] = []
        done = failed = 0
        # Snapshot the ids first: acting on runs changes what the filter matches.
        ids = [run.run_id async for run in self.runs.iterate(principal, replace(query))]
        job = replace(job, total=len(ids))
        audit: list[AuditRecord] = []
        try:
            for index, run_id in enumerate(ids, 1):
                outcome = await self._one(principal, job.action, run_id)
                if outcome.get("ok"):
                    done += 1
                else:
                    failed += 1
                if len(results) < _MAX_RESULTS:
                    results.append(outcome)
                audit.append(
                    AuditRecord(
                        audit_id=0,
                        tenant_id=principal.tenant_id,
                        at=time.time(),
                        actor=principal.actor,
                        action=f"run.{job.action}",
                        object_type="run",
                        object_id=run_id,
                        ip=principal.ip,
                        outcome="ok" if outcome.get("ok") else "error",
                        detail={"bulk_job": job.job_id},
                    )
                )
                if index % _PROGRESS_EVERY == 0:
                    await self.store.append_audit(audit)
                    audit = []
                    await self.store.save_bulk_job(
                        replace(job, done=done, failed=failed, results=results)
                    )
            state = "done"
        except asyncio.CancelledError:
            state = "interrupted"
            raise
        except Exception:
            log.exception("bulk job %s failed", job.job_id)
            state = "failed"
        finally:
            if audit:
                await self.store.append_audit(audit)
            await self.store.save_bulk_job(
                replace(
                    job,
                    state=state,
                    done=done,
                    failed=failed,
                    results=results,
                    finished_at=time.time(),
                )
            )

    async def _one(self, principal: Principal, action: str, run_id: str) -> dict[str, Any]:
        app = self.runs.app
        try:
            run = await app.get_run(run_id)
            if action == "cancel":
                cancelled = await app.cancel(run_id, f"bulk cancel by {principal.actor}")
                return {"run_id": run_id, "ok": True, "cancelled": len(cancelled)}
            if action == "retry":
                return await self._retry(run)
            report = await app.replay(run_id)
            return {"run_id": run_id, "ok": True, **report.to_dict()}
        except KernosError as error:
            return {"run_id": run_id, "ok": False, "error": error.code, "message": str(error)}

    async def _retry(self, run: Run) -> dict[str, Any]:
        journal = await self.runs.app.store.load_journal(run.run_id)
        failed = [entry.seq for entry in journal if entry.status is EntryStatus.ERROR]
        # Fork just before the first failed entry: that step runs again, the rest is kept.
        at = failed[0] if failed else len(journal)
        handle = await self.runs.app.fork(run.run_id, at)
        return {"run_id": run.run_id, "ok": True, "fork": handle.run_id, "at": at}
