"""Routes for the tenant's policy: read, apply, list versions, check and test documents."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from kernos.api._auth import Caller
from kernos.api._problems import problem_responses
from kernos.api._schemas import MAX_ID, TEXT, _In
from kernos.api._state import server_state
from kernos.control import Service
from kernos.control._policies import MAX_DOCUMENT, PolicyTestRow
from kernos.errors import UsageError
from kernos.records import PolicyVersion

__all__ = [
    "PolicyCheckOut",
    "PolicyIn",
    "PolicyOut",
    "PolicyProblemOut",
    "PolicyTestIn",
    "PolicyTestRowOut",
    "PolicyVersionOut",
    "router",
]

router = APIRouter()

_ERRORS = problem_responses(401, 403, 404, 413, 422, 429, 503)
_DOCUMENT = Field(
    min_length=1, max_length=MAX_DOCUMENT, description="The policy document, as YAML text"
)
_SOURCE = "policy.yaml"


class PolicyIn(_In):
    """A policy document sent as JSON."""

    document: str = _DOCUMENT


class PolicyTestIn(_In):
    """A document to decide a recorded run's tool calls with."""

    document: str = _DOCUMENT
    run_id: str = Field(min_length=1, max_length=200, pattern=TEXT)


class PolicyVersionOut(BaseModel):
    """One version of the tenant's policy, without its text."""

    tenant_id: str
    version: int
    sha256: str
    created_by: str = Field(description="Who applied it: user:NAME, key:KEY_ID or system")
    created_at: float


class PolicyOut(PolicyVersionOut):
    """One version of the tenant's policy, with its text."""

    document: str


class PolicyProblemOut(BaseModel):
    """One problem in a document, and where it is."""

    source: str
    line: int = Field(description="1-based")
    column: int = Field(description="1-based")
    path: str = Field(description="Where in the document, e.g. rules[2].action")
    message: str


class PolicyCheckOut(BaseModel):
    """Whether a document is valid, and every problem in it."""

    valid: bool
    problems: list[PolicyProblemOut]


class PolicyTestRowOut(BaseModel):
    """One recorded tool call, what was decided then and what the document decides."""

    seq: int
    tool: str
    arguments: dict[str, Any] | None
    agent: str | None
    recorded: str | None = Field(description="allow, deny, needs_approval or invalid")
    decision: str = Field(description="allow, deny or needs_approval")
    rule: str | None = Field(description="The deciding rule's id or description; null: default")
    line: int | None = Field(description="The deciding rule's line in the document")
    reason: str
    changed: bool


def _service(request: Request) -> Service:
    return server_state(request).service


def _version(found: PolicyVersion) -> PolicyVersionOut:
    data = found.to_dict()
    data.pop("document")
    return PolicyVersionOut.model_validate(data)


def _row(row: PolicyTestRow) -> PolicyTestRowOut:
    return PolicyTestRowOut.model_validate(row.to_dict())


async def _document(request: Request) -> str:
    """The document from a PUT body: YAML text, or JSON ``{"document": "..."}``."""
    raw = await request.body()
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        raise UsageError("the policy document must be UTF-8 text", field="body") from None
    if media == "application/json":
        try:
            body = PolicyIn.model_validate(json.loads(text))
        except ValueError as exc:  # pydantic's ValidationError is a ValueError
            raise UsageError(
                'send {"document": "<YAML text>"} as JSON, or the YAML text itself',
                field="body",
            ) from exc
        return body.document
    if not text.strip() or len(text) > MAX_DOCUMENT:
        raise UsageError(
            f"send the policy document (1 to {MAX_DOCUMENT} characters of YAML)", field="body"
        )
    return text


_PUT_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "The YAML document itself, or JSON {document}",
        "content": {
            "application/yaml": {"schema": {"type": "string"}},
            "text/plain": {"schema": {"type": "string"}},
            "application/json": {"schema": {"$ref": "#/components/schemas/PolicyIn"}},
        },
    }
}


@router.get("/policy", response_model=PolicyOut, tags=["policy"], responses=_ERRORS)
async def get_policy(
    request: Request,
    caller: Caller,
    version: Annotated[
        int | None, Query(ge=1, le=MAX_ID, description="This version instead of the current")
    ] = None,
) -> PolicyOut:
    """The tenant's current policy document, or one version of it (viewer)."""
    policies = _service(request).policies
    found = (
        await policies.current(caller)
        if version is None
        else await policies.version(caller, version)
    )
    return PolicyOut.model_validate(found.to_dict())


@router.put(
    "/policy",
    response_model=PolicyOut,
    tags=["policy"],
    responses=_ERRORS,
    openapi_extra=_PUT_BODY,
)
async def put_policy(request: Request, caller: Caller) -> PolicyOut:
    """Apply a document as the tenant's next policy version (admin; audited).

    An invalid document answers 422 with each problem's line and column in
    ``errors``; nothing is stored. Runs started afterwards use the new version.
    """
    text = await _document(request)
    stored = await _service(request).policies.apply(caller, text, _SOURCE)
    return PolicyOut.model_validate(stored.to_dict())


@router.get(
    "/policy/versions",
    response_model=list[PolicyVersionOut],
    tags=["policy"],
    responses=_ERRORS,
)
async def list_policy_versions(
    request: Request,
    caller: Caller,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[PolicyVersionOut]:
    """The tenant's policy versions, newest first (viewer)."""
    found = await _service(request).policies.versions(caller, limit=limit)
    return [_version(item) for item in found]


@router.post("/policy/check", response_model=PolicyCheckOut, tags=["policy"], responses=_ERRORS)
async def check_policy(request: Request, caller: Caller, body: PolicyIn) -> PolicyCheckOut:
    """Validate a document without storing it (operator; audited): every problem, located."""
    service = _service(request)
    async with service.audit.audited(caller, "policy.check", "policy", None) as note:
        problems = service.policies.check(caller, body.document, _SOURCE)
        note.detail["problems"] = len(problems)
    return PolicyCheckOut(
        valid=not problems,
        problems=[PolicyProblemOut.model_validate(p.to_dict()) for p in problems],
    )


@router.post(
    "/policy/test",
    response_model=list[PolicyTestRowOut],
    tags=["policy"],
    responses=_ERRORS,
)
async def test_policy(
    request: Request, caller: Caller, body: PolicyTestIn
) -> list[PolicyTestRowOut]:
    """What a document would decide on each tool call of a recorded run (operator; audited).

    Each row: the call's position, tool and arguments, the decision recorded
    when it ran, and what this document decides, with the deciding rule.
    """
    service = _service(request)
    async with service.audit.audited(caller, "policy.test", "run", body.run_id):
        rows = await service.policies.test(caller, body.document, body.run_id, _SOURCE)
    return [_row(row) for row in rows]
