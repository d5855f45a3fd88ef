"""Routes for approval requests: list, read, and decide (approve or reject)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from kernos.api._auth import Caller
from kernos.api._problems import problem_responses
from kernos.api._schemas import PROSE, TEXT
from kernos.api._state import server_state
from kernos.control._approvals import ApprovalQuery
from kernos.errors import UsageError
from kernos.records import ApprovalKind, ApprovalRequest, ApprovalStatus

__all__ = ["ApprovalOut", "ApprovalPage", "DecisionIn", "router"]

router = APIRouter()

_ERRORS = problem_responses(401, 403, 404, 422, 429, 503)

ApprovalId = Annotated[
    str,
    Path(min_length=1, max_length=100, pattern=TEXT, description="An approval request's id"),
]


class ApprovalOut(BaseModel):
    """A request for a person's decision, made by a run (or by a gated tool call)."""

    approval_id: str
    tenant_id: str
    run_id: str
    workflow: str
    seq: int = Field(description="The journal position of the run's wait")
    kind: ApprovalKind
    title: str
    details: Any = Field(
        None, description="What the run shows the deciders (a tool call: tool, arguments, reason)"
    )
    options: list[str] = Field(description="What deciders may do: approve, reject, edit")
    assignees: list[list[str]] = Field(description="Who may decide, per escalation level")
    current_assignees: list[str] = Field(description="Who may decide now (empty: any operator)")
    timeouts: list[float | None] = Field(description="Each level's duration in seconds")
    default: str = Field(description="What the last level's timeout does: reject, approve, fail")
    level: int
    deadline: float | None = None
    status: ApprovalStatus
    created_at: float
    decision: Any = None
    decided_by: str | None = None
    decided_at: float | None = None
    args_hash: str | None = Field(
        None, description="A tool call's SHA-256 of {tool, arguments}; decisions are bound to it"
    )
    history: list[Any] | None = Field(None, description="The escalations so far")


class ApprovalPage(BaseModel):
    """One page of approval requests, newest first."""

    items: list[ApprovalOut]
    next_cursor: str | None = Field(None, description="Pass as ?cursor= for the next page")


class DecisionIn(BaseModel):
    """Approve or reject a pending request."""

    model_config = ConfigDict(extra="forbid")

    decision: Literal["approve", "reject"]
    comment: str | None = Field(None, max_length=4000, pattern=PROSE)
    edits: Any = Field(
        None,
        description="Approve with this value instead (a tool call: its edited arguments object)",
    )
    args_hash: str | None = Field(
        None,
        max_length=100,
        pattern=TEXT,
        description="The args_hash you reviewed; a request bound to another answers 409",
    )
    level: int | None = Field(
        None, ge=0, le=1000, description="The level you saw; if it escalated since, 409"
    )


def _out(request: ApprovalRequest) -> ApprovalOut:
    return ApprovalOut.model_validate(request.to_dict())


def _service(request: Request) -> Any:
    return server_state(request).service


def _cursor_problem(error: UsageError) -> UsageError:
    where = {"loc": ["query", "cursor"], "msg": str(error), "type": error.code}
    return UsageError(str(error), errors=[where])


@router.get("/approvals", response_model=ApprovalPage, tags=["approvals"], responses=_ERRORS)
async def list_approvals(
    request: Request,
    caller: Caller,
    status: Annotated[ApprovalStatus | None, Query()] = None,
    run_id: Annotated[str | None, Query(max_length=200, pattern=TEXT)] = None,
    mine: Annotated[
        bool, Query(description="Only pending requests you may decide now (assigned to you)")
    ] = False,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> ApprovalPage:
    """The tenant's approval requests, newest first, a page at a time."""
    query = ApprovalQuery(
        status=status.value if status is not None else None,
        run_id=run_id,
        mine=mine,
        limit=limit,
        cursor=cursor or None,
    )
    try:
        items, next_cursor = await _service(request).approvals.page(caller, query)
    except UsageError as error:
        if getattr(error, "field", None) == "cursor":
            raise _cursor_problem(error) from error
        raise
    return ApprovalPage(items=[_out(r) for r in items], next_cursor=next_cursor)


@router.get(
    "/approvals/{approval_id}", response_model=ApprovalOut, tags=["approvals"], responses=_ERRORS
)
async def get_approval(request: Request, caller: Caller, approval_id: ApprovalId) -> ApprovalOut:
    """One approval request, with its decision once decided."""
    return _out(await _service(request).approvals.get(caller, approval_id))


@router.post(
    "/approvals/{approval_id}/decision",
    response_model=ApprovalOut,
    tags=["approvals"],
    responses={
        **_ERRORS,
        **problem_responses(
            409,
            s409="Not pending (decided, expired, cancelled), escalated past the level seen, "
            "or bound to other arguments",
        ),
    },
)
async def decide_approval(
    request: Request, caller: Caller, approval_id: ApprovalId, body: DecisionIn
) -> ApprovalOut:
    """Approve (optionally with edits) or reject a pending request; exactly one decision wins.

    Needs the operator role, and when the request's current level names
    assignees, to be one of them. Whoever started the run cannot decide it.
    """
    decided = await _service(request).approvals.decide(
        caller,
        approval_id,
        body.decision,
        comment=body.comment,
        edits=body.edits,
        expected_args_hash=body.args_hash,
        level=body.level,
    )
    return _out(decided)
