"""``Agent``: a model, instructions, tools and a budget, run as a durable tool-calling loop."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import Annotated, Any

from pydantic import AfterValidator

from kernos import errors, llm, runtime, tools
from kernos.agents._budget import Budget, StopReason
from kernos.agents._loop import Conversation, spent_in
from kernos.agents._model import ModelCall, ProviderSource
from kernos.agents._policy import PolicyLoader
from kernos.agents._result import AgentResult
from kernos.agents._toolcalls import TenantPolicy, ToolCalls, result_of, tool_args_hash
from kernos.records import DEFAULT_TENANT

__all__ = ["Agent", "AgentHandle"]

logger = logging.getLogger(__name__)

_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,100}$")


class Agent:
    """A model with instructions, tools, capabilities and a budget.

    ``await agent.run(task)`` inside a workflow runs the tool-calling loop in
    that workflow's journal: each model call is an ``llm`` entry, each tool call
    a ``tool`` entry, so a crashed run resumes without repeating a call, a fork
    can edit any answer, and a replay calls no model. Started on its own
    (:meth:`start`, or ``app.start(agent.workflow, task)``), an agent run is a
    workflow named ``agent:<name>``; a worker process that imports the module
    defining the agent can execute it.

    The loop: send the conversation; run every tool call of the answer in
    parallel (each decided by policy first, errors and refusals going back to
    the model as tool errors); repeat until the model answers without tools,
    or the budget stops it. With ``output_type`` the final answer must be JSON
    of that pydantic model: an invalid answer gets one corrective turn, then
    the run stops with ``error``.

    Args:
        name: the agent's name: its workflow is ``agent:<name>``, and entries,
            events and usage are tagged with it. A later agent of the same name
            replaces this one in the process's registry.
        model: ``provider:model``, e.g. ``openai:gpt-4o-mini``; the name of its
            journal entries.
        instructions: the system message.
        tools: the tools the model may call (names must be unique).
        capabilities: the agent's tool policy (default: allow every tool given).
        budget: the run's limits (default: 25 turns, nothing else).
        output_type: a pydantic model class the final answer must match.
        provider: a connected provider, or a function connecting one on first
            use (default: ``kernos.llm.connect(model)``, keys from the environment).
            Nothing about it is journaled.
        tenant_policy: each tenant's tool policy (a mapping or a function of the
            tenant id); a call must pass the tenant's and the agent's.
        stream: stream answers, publishing text as ``llm.delta`` events.
        temperature: sampling temperature.
        max_tokens: a ceiling on each answer's tokens.
        model_retries: retries of a failed model call on top of the provider's own.
        model_timeout: seconds a model call may take in all.
        tool_timeout: seconds a tool call may take; past it the model is told.
        ledger: a usage ledger to record every model call this process makes.
        version: the agent workflow's version; bump it when the loop's shape changes.

    Raises:
        RegistrationError: a bad name, or two tools with one name.
    """

    def __init__(
        self,
        name: str,
        model: str,
        instructions: str = "",
        tools: Iterable[tools.Tool[..., Any]] = (),
        capabilities: tools.ToolPolicy | None = None,
        budget: Budget | None = None,
        *,
        output_type: type[Any] | None = None,
        provider: ProviderSource | None = None,
        tenant_policy: TenantPolicy | None = None,
        stream: bool = False,
        temperature: float | None = None,
        max_tokens: int | None = None,
        model_retries: int | runtime.RetryPolicy = 0,
        model_timeout: float | None = None,
        tool_timeout: float | None = None,
        ledger: llm.UsageLedger | None = None,
        version: str = "1",
    ) -> None:
        if not _NAME.match(name):
            raise errors.RegistrationError(
                f"agent name {name!r} must be 1 to 100 letters, digits, '_', '.' or '-'",
                name=name,
            )
        self.name = name
        self.model = model
        self.instructions = instructions
        self.budget = budget or Budget()
        self.output_type = output_type
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.version = str(version)
        self.model_call = ModelCall(
            agent=name,
            model=model,
            source=provider,
            stream=stream,
            retries=model_retries,
            timeout=model_timeout,
            ledger=ledger,
        )
        self.policy_loader = PolicyLoader(name, model)
        self.tool_calls = ToolCalls(
            agent=name,
            available=tools,
            capabilities=capabilities or _allow_given(name),
            tenant_policy=tenant_policy,
            timeout=tool_timeout,
        )
        self.workflow: runtime.Workflow[[str], Any] = self._register()

    def __repr__(self) -> str:
        return f"<Agent {self.name} {self.model}, {len(self.tool_calls.tools)} tools>"

    # -- running -------------------------------------------------------------------

    async def run(self, task: str, *, output_type: type[Any] | None = None) -> AgentResult:
        """Run the loop on ``task`` and return how it ended.

        Inside a workflow every call is journaled in that workflow's run.
        Outside any workflow the loop runs as plain code (nothing is journaled).

        Args:
            task: the user's request.
            output_type: a pydantic model class for this run's final answer
                (default: the agent's).

        Returns:
            The result; a stop other than ``done`` is a result too, not an error.

        Raises:
            Cancelled: the run was cancelled (never swallowed).
        """
        conversation = Conversation(self, task, output_type or self.output_type)
        result = await conversation.run()
        runtime.emit(
            "agent.usage",
            {
                "agent": self.name,
                "stop_reason": result.stop_reason.value,
                "turns": result.turns,
                "tool_calls": result.tool_calls,
                "usage": result.usage.to_dict(),
                "cost": result.cost,
            },
        )
        return result

    async def start(
        self,
        app: runtime.Kernos,
        task: str,
        *,
        run_id: str | None = None,
        tenant: str = DEFAULT_TENANT,
        timeout: float | None = None,
    ) -> AgentHandle:
        """Start a durable run of this agent on ``task`` and return its handle at once.

        Args:
            app: the Kernos app.
            task: the user's request.
            run_id: the run's id, an idempotency key (default: a new UUID).
            tenant: the tenant the run belongs to (its tool policy applies).
            timeout: seconds the run may take in all (it then fails).
        """
        handle = await app.start(self.workflow, task, run_id=run_id, tenant=tenant, timeout=timeout)
        return AgentHandle(app, handle.run_id, self)

    def handle(self, app: runtime.Kernos, run_id: str) -> AgentHandle:
        """A handle to an existing run of this agent (or a fork of one)."""
        return AgentHandle(app, run_id, self)

    async def aclose(self) -> None:
        """Close the provider connection if the agent opened it."""
        await self.model_call.aclose()

    # -- what the loop and the handle use ---------------------------------------------

    def result_from(self, data: dict[str, Any]) -> AgentResult:
        """Rebuild a result of this agent from its JSON form (the workflow's output)."""
        return AgentResult.from_dict(data, self.output_type)

    async def approve(self, call: llm.ToolCall, outcome: dict[str, Any]) -> tools.ToolResult:
        """Wait durably for a person to decide a call the policies sent for approval.

        Runs in workflow code after the call's ``tool`` entry (which recorded
        ``needs_approval``): a :func:`kernos.approval` of kind ``tool_call``
        shows the exact tool and arguments and is bound to their hash. Approved,
        the call runs in a second ``tool`` entry with the approved (possibly
        edited, then re-checked) arguments; rejected, the model is told so, with
        the decider's comment.

        Args:
            call: the model's call.
            outcome: what the call's first entry returned (its ``approval`` gate).

        Returns:
            The result the model sees.

        Raises:
            ApprovalExpiredError: nobody decided in time and the default is to fail.
        """
        found = outcome.get("approval")
        gate: dict[str, Any] = found if isinstance(found, dict) else {}
        arguments = call.args()
        decision = await runtime.approval(
            f"{self.name} wants to call {call.name}",
            {
                "tool": call.name,
                "arguments": arguments,
                "reason": gate.get("reason"),
                "agent": self.name,
                "call_id": call.id,
            },
            kind="tool_call",
            args_hash=tool_args_hash(call.name, arguments),
            **_approval_options(gate.get("approvers")),
        )
        if not decision.approved:
            why = f": {decision.comment}" if decision.comment else ""
            who = "nobody decided in time" if decision.by_default else "a person rejected it"
            return tools.ToolResult.error(
                f"the call to {call.name!r} was not approved ({who}){why}"
            )
        final = decision.value if decision.edited else arguments
        approval = {
            "approval_id": decision.approval_id,
            "by": decision.decided_by,
            "edited": decision.edited,
            "arguments": final,
            "original": arguments,
        }
        result, _, _ = result_of(
            await self.tool_calls.approved_step(call.name)(call.to_dict(), approval)
        )
        return result

    def _register(self) -> runtime.Workflow[[str], Any]:
        agent = self

        async def run_agent(task: str) -> dict[str, Any]:
            return (await agent.run(task)).to_dict()

        name = f"agent:{self.name}"
        run_agent.__qualname__ = f"Agent[{self.name}].run"
        wf: runtime.Workflow[[str], Any] = runtime.Workflow(
            run_agent, name=name, version=self.version, timeout=None
        )
        # Outputs are stored as JSON and restored as an AgentResult of this agent
        # (its structured output rebuilt as the output type).
        wf.return_type = Annotated[dict[str, Any], AfterValidator(self.result_from)]
        if runtime.registry.get(name) is not None:
            logger.info("agent replaced", extra={"action": "agent_replaced", "agent": self.name})
        runtime.registry.add(wf)
        return wf


class AgentHandle(runtime.RunHandle[AgentResult]):
    """A handle to an agent run; :meth:`result` returns an :class:`AgentResult`."""

    def __init__(self, app: runtime.Kernos, run_id: str, agent: Agent) -> None:
        super().__init__(app, run_id, agent.workflow)
        self.agent = agent

    async def result(self, *, timeout: float | None = None, poll: float = 0.2) -> AgentResult:
        """Wait for the run to end and return how the agent stopped.

        A cancelled run gives ``stop_reason`` ``cancelled``, with what it spent
        until then (read from its journal).

        Raises:
            RunFailedError: the run failed (a crash in a tool's code would not:
                tools' errors go to the model; a store failure or a bug would).
            TimeoutError: ``timeout`` seconds passed first.
        """
        try:
            return await super().result(timeout=timeout, poll=poll)
        except errors.RunCancelledError as exc:
            journal = await self.app.journal(self.run_id)
            spent = spent_in(journal, self.agent.name)
            return AgentResult(
                output=None,
                stop_reason=StopReason.CANCELLED,
                turns=spent.turns,
                tool_calls=spent.tool_calls,
                usage=spent.usage,
                cost=spent.usage.cost,
                wall_time_s=spent.wall_time_s,
                error=str(exc),
            )


def _allow_given(name: str) -> tools.ToolPolicy:
    return tools.ToolPolicy.allow_all(name=f"agent {name}")


def _approval_options(approvers: Any) -> dict[str, Any]:
    """The assignees, timeout, escalation and default of an approval, from a policy's
    ``approvers`` (see :func:`~kernos.agents._toolcalls.approvers_of`); none: any operator."""
    if not isinstance(approvers, dict):
        return {}
    assignees = [f"role:{r}" for r in approvers.get("roles") or ()]
    assignees += [f"user:{u}" for u in approvers.get("users") or ()]
    timeout = approvers.get("timeout")
    escalation = []
    if timeout is not None:  # levels after one that waits for ever are never reached
        for step in approvers.get("escalate") or ():
            to = step.get("to") or {}
            escalation.append(
                runtime.Escalate(
                    to=[f"role:{r}" for r in to.get("roles") or ()]
                    + [f"user:{u}" for u in to.get("users") or ()],
                    after=step.get("after"),
                )
            )
    default = str(approvers.get("default") or "reject")
    return {
        "assignees": assignees,
        "timeout": timeout,
        "escalation": escalation,
        "default": default if default in ("reject", "approve", "fail") else "reject",
    }
