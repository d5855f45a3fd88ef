"""Retention: finished runs older than a tenant's policy are archived and/or deleted."""

from __future__ import annotations

import gzip
import logging
import time
from pathlib import Path
from typing import Any

import orjson

from kernos.control._audit import Auditor
from kernos.control._principal import Principal
from kernos.records import Tenant
from kernos.store import RunFilter, Store

__all__ = ["RetentionSweeper"]

log = logging.getLogger("kernos.retention")

_DAY = 86400.0


class RetentionSweeper:
    """Applies every tenant's retention policy; each purge is audited.

    Archives are gzip JSON Lines files, one per tenant and day of the sweep,
    under ``archive_dir/<tenant>/``: each line holds one run with its journal
    and events, written before the run is deleted.
    """

    def __init__(self, store: Store, auditor: Auditor, archive_dir: Path | None) -> None:
        self.store = store
        self.audit = auditor
        self.archive_dir = archive_dir

    async def sweep(self, now: float | None = None, *, batch: int = 500) -> dict[str, int]:
        """Apply every tenant's policy once; return the number of runs purged per tenant."""
        now = time.time() if now is None else now
        purged: dict[str, int] = {}
        for tenant in await self.store.list_tenants():
            if tenant.retention_days is not None:
                purged[tenant.tenant_id] = await self._tenant(tenant, now, batch)
        return purged

    async def _tenant(self, tenant: Tenant, now: float, batch: int) -> int:
        assert tenant.retention_days is not None
        cutoff = now - tenant.retention_days * _DAY
        query = RunFilter(tenant=tenant.tenant_id, finished_before=cutoff, limit=batch)
        system = Principal.system(tenant.tenant_id)
        total = 0
        while runs := await self.store.list_runs(query):
            ids = [run.run_id for run in runs]
            if tenant.retention_action == "archive":
                await self._archive(tenant.tenant_id, ids, now)
            for run_id in ids:
                await self.store.purge_run(run_id)
            total += len(ids)
            await self.audit.record(
                system,
                f"retention.{tenant.retention_action}",
                "run",
                None,
                detail={"runs": len(ids), "first": ids[0], "cutoff": cutoff},
            )
            if len(runs) < batch:
                break
        return total

    async def _archive(self, tenant_id: str, run_ids: list[str], now: float) -> None:
        if self.archive_dir is None:
            raise RuntimeError("retention action 'archive' needs an archive directory")
        folder = self.archive_dir / tenant_id
        folder.mkdir(parents=True, exist_ok=True)
        day = time.strftime("%Y-%m-%d", time.gmtime(now))
        lines: list[bytes] = []
        for run_id in run_ids:
            record: dict[str, Any] = {
                "run": (await self.store.get_run(run_id)).to_dict(),
                "journal": [e.to_dict() for e in await self.store.load_journal(run_id)],
                "events": [
                    e.to_dict() for e in await self.store.list_events(run_id, limit=1_000_000)
                ],
            }
            lines.append(orjson.dumps(record) + b"\n")
        with gzip.open(folder / f"runs-{day}.jsonl.gz", "ab") as archive:
            archive.writelines(lines)
            archive.flush()
