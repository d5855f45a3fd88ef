"""An agent's tool calls, journaled as ``tool`` entries, each decided by policy first.

A call is a step of kind ``tool`` named by the tool the model called. Inside
it, the policies decide on the call's name and arguments only (the tenant's
and the agent's; the strictest wins), then the tool runs if allowed. The
decision is recorded in the entry's detail and returned with the result, so a
recovered run sees the decision the original made. What a tool returns goes
to the model as data; nothing reaches the policies, which are immutable.

A call the policies send for approval does not run in its entry: the entry
records ``needs_approval`` and who may approve; the agent then waits durably
for a person (:func:`kernos.approval`, bound to :func:`tool_args_hash` of the
exact call) and, once approved, runs the call in a second ``tool`` entry
(:meth:`ToolCalls.approved_step`) with the approved, possibly edited, arguments.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import orjson

from kernos import errors, llm, tools
from kernos.agents._model import own_scope
from kernos.agents._policy import active_policy
from kernos.records import DEFAULT_TENANT, EntryKind
from kernos.retry import RetryPolicy
from kernos.runtime import Step, StepScope, current_step, emit

__all__ = [
    "APPROVED",
    "INVALID",
    "TenantPolicy",
    "ToolCalls",
    "approvers_of",
    "result_of",
    "tool_args_hash",
]

TenantPolicy = Mapping[str, tools.ToolPolicy] | Callable[[str], tools.ToolPolicy | None]
"""The tool policy of each tenant: a mapping, or a function of the tenant's id."""

INVALID = "invalid"
"""The decision recorded for a call no policy could judge: an unknown tool, or
arguments that are not a JSON object."""


APPROVED = "approved"
"""The decision recorded for a call that ran after a person approved it."""


def tool_args_hash(tool: str, arguments: Mapping[str, Any]) -> str:
    """The SHA-256 of the canonical JSON of ``{tool, arguments}`` (sorted keys).

    An approval of a tool call is bound to it: approving one set of arguments
    never releases another.
    """
    text = orjson.dumps({"tool": tool, "arguments": arguments}, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(text).hexdigest()


def approvers_of(decision: tools.Decision) -> dict[str, Any] | None:
    """Who may approve a gated call, as JSON, from the policy's decision (None: anyone)."""
    return None if decision.approvers is None else decision.approvers.to_dict()


def result_of(value: Any) -> tuple[tools.ToolResult, str, float]:
    """The result a journaled ``tool`` entry holds, its decision and latency in ms.

    Accepts what the call journals and what a person patches in when forking:
    a result's JSON (``{"content": ..., "is_error": ...}``) or a plain string.
    """
    if isinstance(value, str):
        return tools.ToolResult(content=value), tools.Action.ALLOW.value, 0.0
    if not isinstance(value, dict):
        raise TypeError(f"a tool entry holds a result object or a text, not {value!r}")
    return (
        tools.ToolResult.from_dict(value),
        str(value.get("decision") or tools.Action.ALLOW.value),
        float(value.get("latency_ms") or 0.0),
    )


class ToolCalls:
    """The tools one agent may call, as journaled steps under its policies.

    Args:
        agent: the agent's name (recorded in each entry's detail).
        available: the tools.
        capabilities: the agent's policy.
        tenant_policy: each tenant's policy; a call needs both to allow it.
        timeout: seconds a tool call may take (default none).

    Raises:
        RegistrationError: two tools share a name.
    """

    def __init__(
        self,
        *,
        agent: str,
        available: Iterable[tools.Tool[..., Any]],
        capabilities: tools.ToolPolicy,
        tenant_policy: TenantPolicy | None,
        timeout: float | None,
    ) -> None:
        self.agent = agent
        self.tools: dict[str, tools.Tool[..., Any]] = {}
        for item in available:
            if item.name in self.tools:
                raise errors.RegistrationError(
                    f"agent {agent!r} has two tools named {item.name!r}", tool=item.name
                )
            self.tools[item.name] = item
        self.capabilities = capabilities
        self.tenant_policy = tenant_policy
        self.timeout = timeout
        self._steps = {name: self._make_step(name) for name in self.tools}

    def specs(self) -> list[llm.ToolSpec]:
        """The tools' definitions for the model."""
        return [item.spec() for item in self.tools.values()]

    def step(self, name: str) -> Step[..., Any]:
        """The journaled call of the tool ``name`` (for an unknown name, one that
        answers that there is no such tool)."""
        found = self._steps.get(name)
        return found if found is not None else self._make_step(name)

    def decide(self, name: str, arguments: Mapping[str, Any], tenant: str) -> tools.Decision:
        """The strictest decision of the tenant's stored policy (the version the run
        loaded), the tenant's policy in code and the agent's; on a tie the first."""
        run_policy = active_policy()
        if run_policy is not None:
            call = run_policy.context(name, arguments, tenant)
        else:
            call = tools.CallContext(
                tool=name, arguments=arguments, agent=self.agent, tenant=tenant
            )
        decisions = []
        stored = run_policy.decide(call) if run_policy is not None else None
        if stored is not None:
            decisions.append(stored)
        policy = self._tenant_policy(tenant)
        if policy is not None:
            decisions.append(policy.decide(call))
        decisions.append(self.capabilities.decide(call))
        return tools.strictest(decisions)

    def _tenant_policy(self, tenant: str) -> tools.ToolPolicy | None:
        source = self.tenant_policy
        if source is None:
            return None
        if isinstance(source, Mapping):
            return source.get(tenant)
        return source(tenant)

    def approved_step(self, name: str) -> Step[..., Any]:
        """The journaled run of an approved call of ``name``: a second ``tool`` entry.

        Its arguments are the approval's (a person may have edited them); edited
        arguments are checked by the policies again, and a denial refuses the
        call. The entry's detail records the approval, both argument sets and
        who approved.
        """

        async def run_approved(call: dict[str, str], approval: dict[str, Any]) -> dict[str, Any]:
            return await self._call(name, call, approval)

        return Step(
            run_approved,
            name=name,
            retry=RetryPolicy.of(0),
            timeout=self.timeout,
            kind=EntryKind.TOOL,
            write_behind=True,
        )

    def _make_step(self, name: str) -> Step[..., Any]:
        async def call(call: dict[str, str]) -> dict[str, Any]:
            return await self._call(name, call)

        # Written behind: the next model call overlaps the commit of the results it
        # reads; the next tool call (a side effect) waits for it.
        return Step(
            call,
            name=name,
            retry=RetryPolicy.of(0),
            timeout=self.timeout,
            kind=EntryKind.TOOL,
            write_behind=True,
        )

    async def _call(
        self, name: str, call: dict[str, str], approval: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        scope = own_scope(current_step(), EntryKind.TOOL, name)
        tenant = _tenant(current_step())
        started = time.perf_counter()
        gate: dict[str, Any] | None = None
        if approval is None:
            result, decision, reason, gate = await self._decide_and_run(name, call, tenant)
        else:
            result, decision, reason = await self._run_approved(name, approval, tenant)
        latency_ms = round((time.perf_counter() - started) * 1000, 3)
        if scope is not None:
            extra: dict[str, Any] = {}
            if gate is not None:
                extra["approvers"] = gate["approvers"]
            if approval is not None:
                extra["approval"] = {
                    "approval_id": approval.get("approval_id"),
                    "by": approval.get("by"),
                    "edited": bool(approval.get("edited")),
                    "arguments": approval.get("arguments"),
                    "original_arguments": approval.get("original"),
                }
            scope.annotate(
                {
                    "agent": self.agent,
                    "run_id": scope.run_id,
                    "tenant": tenant,
                    "call_id": call.get("id"),
                    "decision": decision,
                    "reason": reason,
                    "sandbox": await _sandbox_of(self.tools.get(name)),
                    "latency_ms": latency_ms,
                    **extra,
                },
                event={
                    "agent": self.agent,
                    "decision": decision,
                    "is_error": result.is_error,
                    "latency_ms": latency_ms,
                },
            )
        output = {**result.to_dict(), "decision": decision, "latency_ms": latency_ms}
        if gate is not None:
            output["approval"] = gate
        return output

    async def _decide_and_run(
        self, name: str, call: dict[str, str], tenant: str
    ) -> tuple[tools.ToolResult, str, str, dict[str, Any] | None]:
        tool = self.tools.get(name)
        if tool is None:
            available = ", ".join(self.tools) or "none"
            message = f"there is no tool named {name!r}; available: {available}"
            return tools.ToolResult.error(message), INVALID, message, None
        try:
            arguments = llm.ToolCall.from_dict(call).args()
        except ValueError as exc:
            message = f"the arguments must be a JSON object of parameter names to values ({exc})"
            return tools.ToolResult.error(message), INVALID, message, None
        decision = self.decide(name, arguments, tenant)
        if decision.action is tools.Action.DENY:
            message = f"the call to {name!r} was refused: {decision.reason}"
            return tools.ToolResult.error(message), decision.action.value, decision.reason, None
        if decision.action is tools.Action.NEEDS_APPROVAL:
            # The call waits for a person in workflow code, after this entry (see
            # Agent.approve); the entry records the decision and who may approve.
            message = f"the call to {name!r} waits for a person's approval: {decision.reason}"
            gate = {"reason": decision.reason, "approvers": approvers_of(decision)}
            # From the step, so that it is emitted once, not again on every wake-up.
            emit(
                "agent.approval_required",
                {"agent": self.agent, "tool": name, "call_id": call.get("id")},
            )
            return tools.ToolResult.error(message), decision.action.value, decision.reason, gate
        result = await tool.invoke(arguments)
        return result, decision.action.value, decision.reason, None

    async def _run_approved(
        self, name: str, approval: dict[str, Any], tenant: str
    ) -> tuple[tools.ToolResult, str, str]:
        tool = self.tools.get(name)
        arguments = approval.get("arguments")
        if tool is None or not isinstance(arguments, dict):
            message = f"the approved arguments of {name!r} are not a JSON object"
            return tools.ToolResult.error(message), INVALID, message
        by = approval.get("by") or "a person"
        if approval.get("edited"):
            # A person's edit is a new call: the policies judge it again, and what
            # they deny is refused like any denied call. (Approval they would ask
            # for is the one just given, for exactly these arguments.)
            decision = self.decide(name, arguments, tenant)
            if decision.action is tools.Action.DENY:
                message = f"the edited call to {name!r} was refused: {decision.reason}"
                return tools.ToolResult.error(message), decision.action.value, decision.reason
        # The tool validates the arguments against its schema before it runs.
        return await tool.invoke(arguments), APPROVED, f"approved by {by}"


def _tenant(scope: StepScope | None) -> str:
    # Inside a step body the agent's calls are plain code, but the run's tenant holds.
    return scope.tenant if scope is not None else DEFAULT_TENANT


async def _sandbox_of(tool: tools.Tool[..., Any] | None) -> str | None:
    """The sandbox a tool runs in: for the shell tool, the one it chose here
    (``bubblewrap``, or the weaker ``landlock+seccomp``); else a ``sandbox``
    text attribute of the tool, if it has one."""
    owner = getattr(getattr(tool, "function", None), "__self__", None)
    if isinstance(owner, tools.ShellTool):
        try:
            return await owner.sandbox()  # probed once per process, then remembered
        except errors.SandboxError:
            return None
    sandbox = getattr(tool, "sandbox", None)
    return sandbox if isinstance(sandbox, str) else None
