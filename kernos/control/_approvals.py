"""Deciding approval requests: who may, on which request, and the record of it.

There is no way to decide without a :class:`Principal`: nothing in the
runtime or in an agent's tools reaches this service, so an agent cannot
approve its own request. On top of the role check, a request whose current
level names assignees can only be decided by one of them, and whoever started
the run (its API key or user) can never decide the run's requests. Every
decision and every refused attempt is audited.
"""

from __future__ import annotations

from dataclasses import dataclass

from kernos.control._audit import Auditor
from kernos.control._cursor import decode_cursor, encode_cursor
from kernos.control._principal import Principal
from kernos.errors import (
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    RunNotFoundError,
    UsageError,
)
from kernos.records import ApprovalRequest, ApprovalStatus, Role
from kernos.runtime import Kernos
from kernos.store import ApprovalFilter
from kernos.types import JSON

__all__ = ["ApprovalQuery", "ApprovalService", "matches_assignee"]

_DECISIONS = {"approve": ApprovalStatus.APPROVED, "reject": ApprovalStatus.REJECTED}
_ROLES = {role.value: role for role in Role}
_MINE_SCAN = 20  # pages read at most to fill one page of "assigned to me"


@dataclass(frozen=True, kw_only=True, slots=True)
class ApprovalQuery:
    """Which of the tenant's requests to list, newest first.

    ``mine`` keeps the pending requests the caller may decide at their
    current level; ``cursor`` is the ``next_cursor`` of the previous page.
    """

    status: str | None = None
    run_id: str | None = None
    mine: bool = False
    limit: int = 50
    cursor: str | None = None


def _username(principal: Principal) -> str | None:
    prefix, _, name = principal.actor.partition(":")
    return name if prefix == "user" and name else None


def matches_assignee(principal: Principal, assignee: str) -> bool:
    """Whether ``principal`` is ``assignee``: a role it includes, its user name or its actor.

    ``role:<name>`` and ``user:<name>`` are explicit; a bare role name
    (``viewer``, ``operator``, ``admin``) means the role, anything else a user.
    """
    kind, sep, name = assignee.partition(":")
    if sep and kind == "role" and name in _ROLES:
        return principal.role.includes(_ROLES[name])
    if sep and kind == "user":
        return _username(principal) == name
    if sep and kind == "key":
        return principal.actor == assignee
    if assignee in _ROLES:
        return principal.role.includes(_ROLES[assignee])
    return _username(principal) == assignee


def may_decide(principal: Principal, request: ApprovalRequest) -> bool:
    """Whether ``principal``'s role and identity let it decide ``request`` now.

    (The rule that a run's starter cannot decide its requests needs the store;
    :meth:`ApprovalService.decide` checks it as well.)
    """
    if request.status is not ApprovalStatus.PENDING:
        return False
    if request.tenant_id != principal.tenant_id or not principal.role.includes(Role.OPERATOR):
        return False
    assignees = request.current_assignees
    return not assignees or any(matches_assignee(principal, a) for a in assignees)


class ApprovalService:
    """List, read and decide the approval requests of the caller's tenant."""

    def __init__(self, app: Kernos, auditor: Auditor) -> None:
        self.app = app
        self.audit = auditor

    async def page(
        self, principal: Principal, query: ApprovalQuery
    ) -> tuple[list[ApprovalRequest], str | None]:
        """One page of the tenant's requests, newest first, and the next page's cursor."""
        principal.require(Role.VIEWER, "listing approvals")
        position = decode_cursor(query.cursor) if query.cursor else None
        status = ApprovalStatus.PENDING.value if query.mine else query.status
        found: list[ApprovalRequest] = []
        more = False
        for _ in range(_MINE_SCAN if query.mine else 1):
            batch = await self.app.store.list_approvals(
                ApprovalFilter(
                    tenant=principal.tenant_id,
                    status=status,
                    run_id=query.run_id,
                    limit=query.limit + 1,
                    before=position,
                )
            )
            more = len(batch) > query.limit
            batch = batch[: query.limit]
            for i, request in enumerate(batch):
                position = (request.created_at, request.approval_id)
                if not query.mine or may_decide(principal, request):
                    found.append(request)
                if len(found) == query.limit:
                    more = more or i < len(batch) - 1
                    break
            if len(found) == query.limit or not more:
                break
        cursor = encode_cursor(*position) if more and position is not None else None
        return found, cursor

    async def get(self, principal: Principal, approval_id: str) -> ApprovalRequest:
        """A request of the caller's tenant. Raises NotFoundError (also for other tenants')."""
        principal.require(Role.VIEWER, "reading approvals")
        request = await self.app.store.get_approval(approval_id)
        if request is None or request.tenant_id != principal.tenant_id:
            raise NotFoundError(
                f"no approval request {approval_id!r} in tenant {principal.tenant_id!r}",
                object_type="approval",
                object_id=approval_id,
            )
        return request

    async def decide(
        self,
        principal: Principal,
        approval_id: str,
        decision: str,
        *,
        comment: str | None = None,
        edits: JSON | None = None,
        expected_args_hash: str | None = None,
        level: int | None = None,
    ) -> ApprovalRequest:
        """Approve or reject a pending request; return it decided.

        Exactly one decision wins: the store decides by compare-and-set on the
        request's status and level (and its arguments' hash), so of concurrent
        deciders all but one get ConflictError.

        Args:
            principal: who decides (an operator or admin of the request's tenant).
            approval_id: the request.
            decision: ``approve`` or ``reject``.
            comment: a note for the run and the record.
            edits: approve with this value instead (for tool calls: the arguments).
            expected_args_hash: the arguments' hash the decider saw (tool calls);
                another hash is a conflict.
            level: the escalation level the decider saw; if the request has
                escalated since, the decision is a conflict.

        Raises:
            NotFoundError: no such request in the caller's tenant.
            PermissionDeniedError: the role, the assignees or the run's starter rule refuse it.
            ConflictError: the request is not pending, escalated past ``level``,
                or bound to other arguments.
            UsageError: an unknown decision, or edits the request does not allow.
        """
        action = f"approval.{decision}" if decision in _DECISIONS else "approval.decide"
        async with self.audit.audited(principal, action, "approval", approval_id) as note:
            principal.require(Role.OPERATOR, "deciding approvals")
            status = _DECISIONS.get(decision)
            if status is None:
                raise UsageError(
                    f"a decision is 'approve' or 'reject', not {decision!r}", field="decision"
                )
            request = await self.get(principal, approval_id)
            note.detail.update(run_id=request.run_id, level=request.level, kind=request.kind.value)
            _check_state(request, level, expected_args_hash)
            _check_edits(request, status, edits)
            _check_assignees(principal, request)
            await self._check_not_requester(principal, request)
            now = self.app.clock()
            decided = await self.app.store.decide_approval(
                approval_id,
                level=request.level,
                status=status,
                decision={
                    "decision": status.value,
                    "value": edits,
                    "edited": edits is not None,
                    "comment": comment,
                    "by": principal.actor,
                    "at": now,
                    "by_default": False,
                    "level": request.level,
                },
                decided_by=principal.actor,
                args_hash=expected_args_hash,
            )
            if decided is None:
                current = await self.get(principal, approval_id)
                raise _conflict(current, "someone decided it or it moved on meanwhile")
            self.app.engine.poke()
            note.detail.update(decision=status.value, edited=edits is not None)
            return decided

    async def _check_not_requester(self, principal: Principal, request: ApprovalRequest) -> None:
        """Refuse the caller that started the request's run (or its top-level run)."""
        if principal.actor == "system":
            return  # the installation itself (local CLI): not an agent's credentials
        run_id = request.run_id
        try:
            run = await self.app.store.get_run(run_id)
            while run.parent_id is not None:
                run = await self.app.store.get_run(run.parent_id)
            run_id = run.run_id
        except RunNotFoundError:
            pass
        started = await self.app.store.list_audit(
            request.tenant_id, action="run.start", object_id=run_id, limit=1
        )
        if started and started[0].actor == principal.actor:
            raise PermissionDeniedError(
                f"{principal.actor} started run {run_id!r} and cannot decide its approval "
                f"request {request.approval_id}; another person must",
                action="deciding approvals",
                reason="requester",
            )


def _conflict(request: ApprovalRequest, why: str) -> ConflictError:
    return ConflictError(
        f"approval request {request.approval_id} is {request.status.value} at level "
        f"{request.level}: {why}",
        approval_id=request.approval_id,
        status=request.status.value,
        level=request.level,
    )


def _check_state(request: ApprovalRequest, level: int | None, args_hash: str | None) -> None:
    if request.status is not ApprovalStatus.PENDING:
        raise _conflict(request, "only pending requests can be decided")
    if level is not None and level != request.level:
        raise _conflict(request, f"it escalated since level {level} was seen")
    if args_hash is not None and args_hash != request.args_hash:
        raise _conflict(
            request, "it is bound to other arguments than the ones approved (args_hash differs)"
        )


def _check_edits(request: ApprovalRequest, status: ApprovalStatus, edits: JSON | None) -> None:
    if edits is None:
        if "approve" not in request.options and status is ApprovalStatus.APPROVED:
            raise UsageError(
                f"approval request {request.approval_id} can only be approved with edits",
                field="edits",
            )
        return
    if status is not ApprovalStatus.APPROVED:
        raise UsageError("edits come with an approval, not a rejection", field="edits")
    if "edit" not in request.options:
        raise UsageError(
            f"approval request {request.approval_id} does not allow edits (options: "
            f"{', '.join(request.options)})",
            field="edits",
        )
    if request.kind.value == "tool_call" and not isinstance(edits, dict):
        raise UsageError("edits of a tool call are the call's arguments object", field="edits")


def _check_assignees(principal: Principal, request: ApprovalRequest) -> None:
    assignees = request.current_assignees
    if assignees and not any(matches_assignee(principal, a) for a in assignees):
        raise PermissionDeniedError(
            f"approval request {request.approval_id} is assigned to {', '.join(assignees)} at "
            f"level {request.level}; {principal.actor} is not one of them",
            action="deciding approvals",
            reason="not_assignee",
        )
