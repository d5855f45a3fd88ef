"""Approval requests in the SQL stores: create once, decide or escalate by compare-and-set.

A request's row is the truth about it. Every change is one ``UPDATE ... WHERE
status = 'pending' AND level = ?``: whoever's update matches wins, the others
change nothing, so concurrent decisions and timeouts are settled by the
database, never by a read followed by a write. A decision also queues a
message for the run on the request's own topic in the same transaction, which
wakes the run through the ordinary message machinery.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from kernos.records import ApprovalRequest, ApprovalStatus, AuditRecord
from kernos.store._ops import EntryWrite, Fence
from kernos.store._tx import Transacting, Tx
from kernos.types import JSON

__all__ = [
    "ApprovalFilter",
    "ApprovalStore",
    "NewApproval",
    "approval_id_for",
    "approval_topic",
    "cancel_run_approvals",
]

_LAST_ID = "\U0010ffff"  # above any approval id: the first page's cursor
_NO_TIME = float("inf")


def approval_id_for(run_id: str, seq: int) -> str:
    """The id of the request a run makes at journal position ``seq``.

    Derived, not random, so that a run recovering on another worker finds the
    request it made before the crash instead of making a second one.
    """
    digest = hashlib.sha256(f"{run_id}\0{seq}".encode()).hexdigest()
    return f"apr_{digest[:32]}"


def approval_topic(approval_id: str) -> str:
    """The message topic on which a decision wakes the run; nothing else uses it."""
    return f"kernos.approval.{approval_id}"


@dataclass(frozen=True, kw_only=True, slots=True)
class NewApproval:
    """A request to create; ``assignees`` and ``timeouts`` hold one item per level."""

    approval_id: str
    run_id: str
    seq: int
    kind: str
    title: str
    details: JSON | None
    options: Sequence[str]
    assignees: Sequence[Sequence[str]]
    timeouts: Sequence[float | None]
    default: str
    args_hash: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class ApprovalFilter:
    """Which requests :meth:`Store.list_approvals` returns, newest first."""

    tenant: str
    status: str | None = None
    run_id: str | None = None
    limit: int = 50
    before: tuple[float, str] | None = None  # (created_at, approval_id) of the last page


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def _request(tx: Tx, approval_id: str) -> ApprovalRequest | None:
    row = tx.one("get_approval", {"approval_id": approval_id})
    return None if row is None else ApprovalRequest.from_row(row, tx.decode)


def _audit(tx: Tx, record: AuditRecord | None) -> None:
    if record is not None:
        from kernos.store._control import audit_params

        tx.execute("insert_audit", audit_params(record))


def cancel_run_approvals(tx: Tx, run_id: str) -> None:
    """Mark a cancelled run's pending requests cancelled (in the cancel's transaction)."""
    for row in tx.all("cancel_run_approvals", {"run_id": run_id, "now": tx.now}):
        tx.event(run_id, "approval.cancelled", {"approval_id": row["approval_id"]})


def _decided_event(request: ApprovalRequest) -> dict[str, Any]:
    decision = request.decision if isinstance(request.decision, dict) else {}
    return {
        "approval_id": request.approval_id,
        "run_id": request.run_id,
        "decision": decision.get("decision"),
        "by": decision.get("by"),
        "comment": decision.get("comment"),
        "edited": bool(decision.get("edited")),
        "by_default": bool(decision.get("by_default")),
    }


class ApprovalStore(Transacting):
    """The approvals half of :class:`~kernos.store.Store`, for the SQL stores."""

    async def create_approval(self, new: NewApproval) -> ApprovalRequest:
        """Create a request unless it exists; return it as stored.

        A request of a run that has already ended is created ``cancelled``.
        ``approval.requested`` is emitted when a pending request is created.
        """

        def go(tx: Tx) -> ApprovalRequest:
            run = tx.run(new.run_id)
            status = ApprovalStatus.CANCELLED if run.status.terminal else ApprovalStatus.PENDING
            first = new.timeouts[0] if new.timeouts else None
            deadline = None if first is None else tx.now + first
            params = {
                "approval_id": new.approval_id,
                "tenant_id": run.tenant,
                "run_id": new.run_id,
                "workflow": run.workflow,
                "seq": new.seq,
                "kind": new.kind,
                "title": new.title,
                "details": None if new.details is None else _json(new.details),
                "options": _json(list(new.options)),
                "assignees": _json([list(level) for level in new.assignees]),
                "timeouts": _json(list(new.timeouts)),
                "default_action": new.default,
                "deadline": deadline,
                "status": status.value,
                "now": tx.now,
                "args_hash": new.args_hash,
            }
            created = tx.one("insert_approval", params) is not None
            request = _request(tx, new.approval_id)
            assert request is not None
            if created and status is ApprovalStatus.PENDING:
                tx.event(
                    new.run_id,
                    "approval.requested",
                    {
                        "approval_id": request.approval_id,
                        "run_id": request.run_id,
                        "workflow": request.workflow,
                        "kind": request.kind.value,
                        "title": request.title,
                        "assignees": request.current_assignees,
                        "level": request.level,
                        "deadline": request.deadline,
                    },
                )
            return request

        return await self._call(go)

    async def get_approval(self, approval_id: str) -> ApprovalRequest | None:
        """Return a request, or None."""
        return await self._call(lambda tx: _request(tx, approval_id), write=False)

    async def list_approvals(self, query: ApprovalFilter) -> list[ApprovalRequest]:
        """A tenant's requests matching ``query``, newest first."""
        before_created, before_id = query.before or (_NO_TIME, _LAST_ID)
        params = {
            "tenant_id": query.tenant,
            "status": query.status,
            "run_id": query.run_id,
            "before_created": before_created,
            "before_id": before_id,
            "limit": query.limit,
        }

        def go(tx: Tx) -> list[ApprovalRequest]:
            tx.store._plan_for_values(tx)
            return [
                ApprovalRequest.from_row(row, tx.decode) for row in tx.all("list_approvals", params)
            ]

        return await self._call(go, write=False)

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
        """Decide a pending request still at ``level`` (and, if given, ``args_hash``).

        On success the decision is stored, the run is woken with a message on
        the request's topic, ``approval.decided`` is emitted and ``audit`` (if
        any) is appended, all in one transaction; the request is returned.
        Returns None, changing nothing, when the request is no longer pending at
        that level: someone else decided, it escalated, expired or was cancelled.
        """

        def go(tx: Tx) -> ApprovalRequest | None:
            row = tx.one(
                "decide_approval",
                {
                    "approval_id": approval_id,
                    "level": level,
                    "status": status.value,
                    "decision": _json(decision),
                    "decided_by": decided_by,
                    "args_hash": args_hash,
                    "now": tx.now,
                },
            )
            if row is None:
                return None
            request = ApprovalRequest.from_row(row, tx.decode)
            topic = approval_topic(approval_id)
            tx.execute(
                "insert_message",
                {"run_id": request.run_id, "topic": topic, "payload": "null", "now": tx.now},
            )
            tx.one("wake_for_message", {"run_id": request.run_id, "topic": topic, "now": tx.now})
            tx.event(request.run_id, "approval.decided", _decided_event(request))
            _audit(tx, audit)
            return request

        return await self._call(go)

    async def escalate_approval(
        self,
        approval_id: str,
        *,
        level: int,
        deadline: float | None,
        history: list[JSON],
        audit: AuditRecord | None = None,
    ) -> ApprovalRequest | None:
        """Move a pending request from ``level`` to the next one, with a new deadline.

        Emits ``approval.escalated`` and appends ``audit`` in the same
        transaction. Returns None, changing nothing, when the request is no
        longer pending at ``level``.
        """

        def go(tx: Tx) -> ApprovalRequest | None:
            params = {
                "approval_id": approval_id,
                "level": level,
                "deadline": deadline,
                "history": _json(history),
            }
            row = tx.one("escalate_approval", params)
            if row is None:
                return None
            request = ApprovalRequest.from_row(row, tx.decode)
            tx.event(
                request.run_id,
                "approval.escalated",
                {
                    "approval_id": request.approval_id,
                    "run_id": request.run_id,
                    "level": request.level,
                    "assignees": request.current_assignees,
                    "deadline": request.deadline,
                },
            )
            _audit(tx, audit)
            return request

        return await self._call(go)

    async def await_approval(
        self, write: EntryWrite, approval_id: str
    ) -> tuple[Fence, ApprovalRequest | None]:
        """Write the run's approval entry at ``write.seq``, settled if the request was decided.

        Fenced like any journal write. If the request is no longer pending, its
        wake-up messages are consumed and the entry settles with the stored
        decision as output (the row, not a message, is the truth: a message on
        the topic cannot forge a decision). Otherwise the entry is written
        pending with ``write.detail``. Messages on the request's topic are
        consumed either way: they only ever wake the run. Returns the fence and
        the request.
        """
        from kernos.store._sql import _fence, _upsert_entry

        def go(tx: Tx) -> tuple[Fence, ApprovalRequest | None]:
            fence = _fence(tx, write)
            if fence is Fence.LOST:
                return fence, None
            # Wake-ups are consumed before the row is read: a decision committed
            # after this leaves its message unread (and the suspension sees it), one
            # committed before is seen by the read below. Consuming them all keeps a
            # stray message on the topic from waking the run again and again.
            tx.execute(
                "consume_topic",
                {"run_id": write.run_id, "topic": approval_topic(approval_id), "seq": write.seq},
            )
            request = _request(tx, approval_id)
            if request is None or request.status is ApprovalStatus.PENDING:
                _upsert_entry(tx, write, status="pending", output=None, finished_at=None)
                return fence, request
            output: dict[str, Any] = {
                "approval_id": approval_id,
                "status": request.status.value,
            }
            if isinstance(request.decision, dict):
                output.update(request.decision)
            _upsert_entry(tx, write, status="ok", output=_json(output), finished_at=tx.now)
            return fence, request

        return await self._call(go)
