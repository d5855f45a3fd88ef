"""Approvals: a durable wait for a person's decision, with timeouts and escalation.

``await kernos.approval(...)`` creates a request (a row in the store whose id
derives from the run and the journal position), writes a pending ``approval``
journal entry and suspends the run without holding a worker. A decision made
anywhere (API, CLI, dashboard) is a compare-and-set on the row that, in the
same transaction, queues a message on the request's own topic: the ordinary
message machinery wakes the run, which re-reads the row and settles its entry
with the decision. A timer wakes it at the current level's deadline, when it
escalates the request (another compare-and-set) or, at the last level,
applies the default. Whichever compare-and-set wins is the outcome.
"""

from __future__ import annotations

import typing
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from kernos import errors
from kernos.records import (
    ApprovalKind,
    ApprovalRequest,
    ApprovalStatus,
    AuditRecord,
    EntryKind,
    EntryStatus,
)
from kernos.runtime import _context
from kernos.runtime._context import JournalEnd, RunContext, Suspend
from kernos.serialization import args_hash, decode, encode
from kernos.store import NewApproval, approval_id_for, approval_topic
from kernos.types import JSON

__all__ = ["ApprovalDecision", "Escalate", "approval"]

Default = Literal["reject", "approve", "fail"]
_DEFAULTS = ("reject", "approve", "fail")
DEFAULT_OPTIONS = ("approve", "reject", "edit")


@dataclass(frozen=True, kw_only=True, slots=True)
class Escalate:
    """One escalation level: who may decide next, and for how long.

    Args:
        to: role names (``operator``, ``admin``) and/or user names; a single
            string is one assignee. Prefix ``role:`` or ``user:`` to be explicit.
        after: seconds this level waits before the next level (or the default);
            None waits for ever.
    """

    to: str | Sequence[str]
    after: float | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class ApprovalDecision:
    """What was decided on an approval request, as :func:`kernos.approval` returns it.

    Attributes:
        approval_id: the request.
        decision: ``"approved"`` or ``"rejected"``.
        value: the edited value when approved with edits, else None.
        edited: whether the approver edited the value.
        comment: the decider's comment, if any.
        decided_by: ``user:<name>``, ``key:<id>`` or ``system`` (a timeout default).
        at: when it was decided (seconds since the epoch, the app's clock).
        by_default: True when no one decided and the last level's default applied.
        level: the escalation level at which it was decided.
    """

    approval_id: str
    decision: str
    value: JSON | None = None
    edited: bool = False
    comment: str | None = None
    decided_by: str = "system"
    at: float = 0.0
    by_default: bool = False
    level: int = 0

    @property
    def approved(self) -> bool:
        """Whether the request was approved (by a person or by default)."""
        return self.decision == ApprovalStatus.APPROVED.value

    @classmethod
    def from_output(cls, output: JSON) -> ApprovalDecision:
        """The decision recorded as an approval entry's output."""
        data = typing.cast(dict[str, Any], output if isinstance(output, dict) else {})
        return cls(
            approval_id=str(data.get("approval_id", "")),
            decision=str(data.get("decision") or ApprovalStatus.REJECTED.value),
            value=data.get("value"),
            edited=bool(data.get("edited")),
            comment=data.get("comment"),
            decided_by=str(data.get("by") or "system"),
            at=float(data.get("at") or 0.0),
            by_default=bool(data.get("by_default")),
            level=int(data.get("level") or 0),
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class _Spec:
    title: str
    details: JSON | None
    options: list[str]
    assignees: list[list[str]]
    timeouts: list[float | None]
    default: str
    kind: ApprovalKind
    args_hash: str | None


def approval(
    title: str,
    details: Any = None,
    *,
    options: Sequence[str] = DEFAULT_OPTIONS,
    assignees: str | Sequence[str] = (),
    timeout: float | None = None,
    escalation: Sequence[Escalate] = (),
    default: Default = "reject",
    kind: ApprovalKind | str = ApprovalKind.GENERIC,
    args_hash: str | None = None,
) -> Awaitable[ApprovalDecision]:
    """Wait durably for a person to approve or reject, and return the decision.

    The run suspends without holding a worker until a decision arrives through
    the API, the CLI or the dashboard, possibly days later and on any process.
    The decision is journaled: recovery and replay return it without asking
    again. In a sync workflow the call blocks.

    Args:
        title: what is being asked, shown to the people who decide.
        details: JSON-serializable context shown with the request; when
            approved with edits, the edited value comes back as ``value``.
        options: what the deciders may do: ``approve``, ``reject`` and, if
            listed, ``edit`` (approve with an edited value).
        assignees: who may decide at the first level: role names and/or user
            names (empty: any operator of the run's tenant).
        timeout: seconds the first level waits (None: for ever).
        escalation: further levels, in order, each with its assignees and duration.
        default: what happens when the last level times out: ``reject``,
            ``approve``, or ``fail`` (the call raises ApprovalExpiredError).
        kind: ``generic``, or ``tool_call`` for a gated tool call (used by agents).
        args_hash: for tool calls, the hash every decision must be bound to.

    Returns:
        The :class:`ApprovalDecision`.

    Raises:
        ApprovalExpiredError: the last level timed out and ``default`` is ``fail``.
        UsageError: an invalid option, timeout or default.
        NotInWorkflowError: outside a workflow.
    """
    spec = _spec(title, details, options, assignees, timeout, escalation, default, kind, args_hash)
    ctx = _context.require("approval")
    result: Awaitable[ApprovalDecision] = ctx.dispatch(_wait(ctx, ctx.take_seq(), spec))
    return result


def _names(value: str | Sequence[str]) -> list[str]:
    return [value] if isinstance(value, str) else [str(name) for name in value]


def _spec(
    title: str,
    details: Any,
    options: Sequence[str],
    assignees: str | Sequence[str],
    timeout: float | None,
    escalation: Sequence[Escalate],
    default: str,
    kind: ApprovalKind | str,
    hash_: str | None,
) -> _Spec:
    if default not in _DEFAULTS:
        raise errors.UsageError(
            f"approval default must be one of {', '.join(_DEFAULTS)}, got {default!r}",
            field="default",
        )
    unknown = [o for o in options if o not in DEFAULT_OPTIONS]
    if unknown or ("approve" not in options and "edit" not in options):
        raise errors.UsageError(
            f"approval options are approve, reject and edit (at least approve or edit), "
            f"got {list(options)!r}",
            field="options",
        )
    timeouts = [timeout, *(level.after for level in escalation)]
    if any(t is not None and t <= 0 for t in timeouts):
        raise errors.UsageError("approval timeouts must be positive seconds", field="timeout")
    if escalation and any(t is None for t in timeouts[:-1]):
        raise errors.UsageError(
            "an escalation level after one that waits for ever is never reached; give "
            "every level but the last a timeout",
            field="escalation",
        )
    text = encode(details, what=f"details of approval {title!r}")
    return _Spec(
        title=str(title),
        details=decode(text),
        options=list(options),
        assignees=[_names(assignees), *(_names(level.to) for level in escalation)],
        timeouts=timeouts,
        default=default,
        kind=ApprovalKind(kind),
        args_hash=hash_,
    )


async def _wait(ctx: RunContext, seq: int, spec: _Spec) -> ApprovalDecision:
    what = f"approval {spec.title!r}"
    key = args_hash((spec.kind.value, spec.details, spec.args_hash), {}, what=what)
    entry = ctx.recorded(seq, EntryKind.APPROVAL, spec.title, key)
    if entry is not None and entry.status is not EntryStatus.PENDING:
        return _outcome(ctx, entry.output)
    if ctx.replaying:
        raise JournalEnd
    engine = ctx.engine
    assert engine is not None
    await ctx.flush()  # what the run wrote so far is durable before anyone is asked
    approval_id = approval_id_for(ctx.run_id, seq)
    request = await engine.store.get_approval(approval_id)
    if request is None:
        request = await engine.store.create_approval(
            NewApproval(
                approval_id=approval_id,
                run_id=ctx.run_id,
                seq=seq,
                kind=spec.kind.value,
                title=spec.title,
                details=spec.details,
                options=spec.options,
                assignees=spec.assignees,
                timeouts=spec.timeouts,
                default=spec.default,
                args_hash=spec.args_hash,
            )
        )
    while True:
        if _timed_out(request, engine.clock()):
            request = await _time_out(ctx, request)
            continue
        write = ctx._entry(
            seq,
            EntryKind.APPROVAL,
            spec.title,
            status=EntryStatus.PENDING.value,
            args_hash=key,
            detail=encode(_detail(request), what=what),
        )
        fence, current = await engine.store.await_approval(write, approval_id)
        ctx.check_fence(fence)
        if current is None:
            raise errors.StoreError(
                f"approval request {approval_id} of run {ctx.run_id!r} vanished from the store",
                approval_id=approval_id,
                run_id=ctx.run_id,
            )
        request = current
        if request.status is not ApprovalStatus.PENDING:
            output: dict[str, Any] = {"approval_id": approval_id, "status": request.status.value}
            if isinstance(request.decision, dict):
                output.update(request.decision)
            return _outcome(ctx, output)
        if _timed_out(request, engine.clock()):
            continue
        raise Suspend(wake_at=request.deadline, topics=[approval_topic(approval_id)])


def _timed_out(request: ApprovalRequest, now: float) -> bool:
    return (
        request.status is ApprovalStatus.PENDING
        and request.deadline is not None
        and now >= request.deadline
    )


def _detail(request: ApprovalRequest) -> dict[str, Any]:
    return {
        "approval_id": request.approval_id,
        "kind": request.kind.value,
        "level": request.level,
        "assignees": request.current_assignees,
        "deadline": request.deadline,
        "escalations": request.history or [],
    }


async def _time_out(ctx: RunContext, request: ApprovalRequest) -> ApprovalRequest:
    """Escalate ``request`` one level, or apply its default at the last level.

    Both are compare-and-sets from the level this run saw: if a decision (or
    another worker) got there first, nothing changes and the row is re-read.
    """
    engine = ctx.engine
    assert engine is not None
    store = engine.store
    now = engine.clock()
    if not request.last_level:
        level = request.level + 1
        after = request.timeouts[level]
        deadline = None if after is None else now + after
        step: dict[str, JSON] = {
            "level": level,
            "at": now,
            "assignees": list(request.assignees[level]),
            "deadline": deadline,
        }
        updated = await store.escalate_approval(
            request.approval_id,
            level=request.level,
            deadline=deadline,
            history=[*(request.history or []), step],
            audit=_audit(request, "approval.escalate", now, {"level": level}),
        )
    else:
        decision = "approved" if request.default == "approve" else "rejected"
        updated = await store.decide_approval(
            request.approval_id,
            level=request.level,
            status=ApprovalStatus.EXPIRED,
            decision={
                "decision": decision,
                "value": None,
                "edited": False,
                "comment": f"no decision in time; the default ({request.default}) applied",
                "by": "system",
                "at": now,
                "by_default": True,
                "default": request.default,
                "level": request.level,
            },
            decided_by="system",
            audit=_audit(request, "approval.expire", now, {"default": request.default}),
        )
    if updated is not None:
        return updated
    current = await store.get_approval(request.approval_id)
    assert current is not None
    return current


def _audit(
    request: ApprovalRequest, action: str, now: float, detail: dict[str, JSON]
) -> AuditRecord:
    return AuditRecord(
        audit_id=0,
        tenant_id=request.tenant_id,
        at=now,
        actor="system",
        action=action,
        object_type="approval",
        object_id=request.approval_id,
        detail={"run_id": request.run_id, **detail},
    )


def _outcome(ctx: RunContext, output: JSON) -> ApprovalDecision:
    data = output if isinstance(output, dict) else {}
    if data.get("by_default") and data.get("default") == "fail":
        approval_id = str(data.get("approval_id"))
        raise errors.ApprovalExpiredError(
            f"approval {approval_id} of run {ctx.run_id!r} got no decision in time and its "
            "default is to fail the run",
            approval_id=approval_id,
            run_id=ctx.run_id,
        )
    return ApprovalDecision.from_output(output)
