"""An approval request as the inbox shows it: what exactly is asked, and whether the
person looking may decide it now."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kernos.control import Principal
from kernos.control._approvals import may_decide
from kernos.records import ApprovalKind, ApprovalRequest
from kernos.web._render import pretty

__all__ = ["VERDICTS", "ShownRequest", "shown_request"]

VERDICTS = {"approve": "approved", "reject": "rejected", "edit": "approved with edits"}
"""The inbox's decisions, and how the page reports each once recorded."""


@dataclass(frozen=True, slots=True)
class ShownRequest:
    """A request with the parts the page draws."""

    request: ApprovalRequest
    tool: str | None  # the tool of a gated tool call
    arguments: Any  # its exact arguments (a tool call) or the request's details
    reason: str | None  # why the policy asked
    editable: str  # the JSON a person edits to approve with edits
    can_decide: bool
    can_edit: bool


def shown_request(request: ApprovalRequest, caller: Principal) -> ShownRequest:
    """What the inbox shows of ``request`` to ``caller``."""
    details = request.details
    tool = reason = None
    arguments: Any = details
    if request.kind is ApprovalKind.TOOL_CALL and isinstance(details, dict):
        tool = str(details.get("tool")) if details.get("tool") is not None else None
        arguments = details.get("arguments")
        reason = str(details["reason"]) if details.get("reason") is not None else None
    decide = may_decide(caller, request)
    return ShownRequest(
        request=request,
        tool=tool,
        arguments=arguments,
        reason=reason,
        editable=pretty(arguments),
        can_decide=decide,
        can_edit=decide and "edit" in request.options,
    )
