"""The audit trail: one record for every state change and every refused attempt."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from kernos.control._principal import Principal
from kernos.errors import AccessError
from kernos.records import AuditRecord
from kernos.store import Store

__all__ = ["AuditNote", "Auditor"]


@dataclass(slots=True)
class AuditNote:
    """What an audited operation adds to its record while it runs."""

    object_id: str | None
    detail: dict[str, Any] = field(default_factory=dict)


class Auditor:
    """Writes audit records; never lets a secret into one (callers pass ids, not keys)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def record(
        self,
        principal: Principal,
        action: str,
        object_type: str,
        object_id: str | None,
        *,
        outcome: str = "ok",
        detail: dict[str, Any] | None = None,
        tenant_id: str | None = None,
    ) -> None:
        """Append one record in ``tenant_id`` (default: the caller's tenant)."""
        await self.store.append_audit(
            [
                AuditRecord(
                    audit_id=0,
                    tenant_id=tenant_id or principal.tenant_id,
                    at=time.time(),
                    actor=principal.actor,
                    action=action,
                    object_type=object_type,
                    object_id=object_id,
                    ip=principal.ip,
                    outcome=outcome,
                    detail=detail or None,
                )
            ]
        )

    @asynccontextmanager
    async def audited(
        self, principal: Principal, action: str, object_type: str, object_id: str | None
    ) -> AsyncIterator[AuditNote]:
        """Record the operation in the block: ``ok``, ``denied`` (an AccessError) or ``error``.

        The block may fill in the note's ``object_id`` (e.g. a new run's id) and
        ``detail``. Errors propagate unchanged after being recorded.
        """
        note = AuditNote(object_id)
        try:
            yield note
        except AccessError as error:
            await self.record(
                principal,
                action,
                object_type,
                note.object_id,
                outcome="denied",
                detail={**note.detail, "reason": error.code},
            )
            raise
        except Exception as error:
            code = getattr(error, "code", type(error).__name__)
            await self.record(
                principal,
                action,
                object_type,
                note.object_id,
                outcome="error",
                detail={**note.detail, "reason": code},
            )
            raise
        await self.record(principal, action, object_type, note.object_id, detail=note.detail)
