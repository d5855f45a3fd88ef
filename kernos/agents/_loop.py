"""The tool-calling loop of one agent run, in workflow code.

Deterministic given its journaled calls: every figure it decides on (turns,
usage, latency, tool decisions) comes from the results of ``llm`` and
``tool`` entries, so recovery and replay take the same path as the original.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from kernos import errors, llm, runtime, tools
from kernos.agents._budget import Spent, StopReason
from kernos.agents._model import response_of
from kernos.agents._policy import RunPolicy, using
from kernos.agents._result import AgentResult
from kernos.agents._toolcalls import APPROVED, result_of
from kernos.records import EntryKind, EntryStatus, JournalEntry
from kernos.serialization import checksum, encode

if TYPE_CHECKING:
    from kernos.agents._agent import Agent

__all__ = ["Conversation", "spent_in"]

# Failures of the run itself, not of a call: they end the run, never the loop.
_RUN_FAILURES = (errors.StoreError, errors.NondeterminismError, errors.SerializationError)
_ERROR_PREVIEW = 600


class Conversation:
    """One run of an agent's loop: the messages so far and what they cost."""

    def __init__(self, agent: Agent, task: str, output_type: type[Any] | None) -> None:
        self.agent = agent
        self.output_type = output_type
        self.format = (
            llm.ResponseFormat.from_model(output_type) if output_type is not None else None
        )
        self.messages: list[llm.Message] = []
        if agent.instructions:
            self.messages.append(llm.Message.system(agent.instructions))
        self.messages.append(llm.Message.user(task))
        self.specs = agent.tool_calls.specs()
        self.sent = 0  # messages already in the journal (sent before, or answers)
        # A running digest of what the model is sent: the parameters, then each
        # message once. It identifies each model call on recovery and replay.
        self.digest = checksum(
            encode(
                {
                    "tools": self.specs,
                    "response_format": self.format,
                    "temperature": agent.temperature,
                    "max_tokens": agent.max_tokens,
                },
                what="model call parameters",
            )
        )
        self.hashed = 0
        self.turns = 0
        self.tool_calls = 0
        self.usage = llm.Usage()
        self.wall_time_s = 0.0
        self.corrected = False
        self.text = ""
        self.budget = agent.budget  # narrowed by the tenant's stored policy once loaded
        self.policy: RunPolicy | None = None

    def spent(self) -> Spent:
        """What the conversation has spent so far."""
        return Spent(
            turns=self.turns,
            usage=self.usage,
            wall_time_s=self.wall_time_s,
            tool_calls=self.tool_calls,
        )

    async def run(self) -> AgentResult:
        """Load the tenant's policy, then call the model and its tools until it
        answers, or a limit stops it."""
        self.policy = await self.agent.policy_loader.load()
        self.budget = self.policy.budget(self.agent.budget)
        with using(self.policy):
            return await self._turns()

    async def _turns(self) -> AgentResult:
        while True:
            stop = self._limit()
            if stop is not None:
                return stop
            response = await self._ask()
            if isinstance(response, AgentResult):
                return response
            if not response.tool_calls:
                final = self._final(response)
                if final is not None:
                    return final
                continue  # the corrective turn
            stop = self._limit()
            if stop is not None:
                return stop
            await self._run_tools(response.tool_calls)

    # -- one turn ------------------------------------------------------------------

    async def _ask(self) -> llm.ChatResponse | AgentResult:
        request = llm.ChatRequest(
            messages=self.messages,
            tools=self.specs,
            response_format=self.format,
            temperature=self.agent.temperature,
            max_tokens=self.agent.max_tokens,
        )
        first_new = self.sent
        try:
            value = await self.agent.model_call.step(request, first_new, self._digest())
        except _RUN_FAILURES:
            raise
        except Exception as exc:  # the call failed; its entry records why
            self.turns += 1
            return self._stop(StopReason.ERROR, error=f"the model call failed: {_describe(exc)}")
        response, latency_ms = response_of(value)
        self.turns += 1
        self.usage = self.usage + response.usage
        self.wall_time_s += latency_ms / 1000
        self.text = response.text
        self.messages.append(response.message())
        # The next request's detail starts after this answer: the answer is this entry's output.
        self.sent = len(self.messages)
        return response

    def _digest(self) -> str:
        new = [message.to_dict() for message in self.messages[self.hashed :]]
        self.digest = checksum(self.digest + encode(new, what="messages"))
        self.hashed = len(self.messages)
        return self.digest

    def _final(self, response: llm.ChatResponse) -> AgentResult | None:
        """The result for an answer without tool calls, or None after asking for a correction."""
        if self.output_type is None:
            return self._stop(StopReason.DONE, output=response.text)
        try:
            output = response.parse(self.output_type)
        except ValueError as exc:  # pydantic's ValidationError is a ValueError
            problem = _describe(exc)
            if self.corrected or not self.budget.turns_left(self.spent()):
                return self._stop(
                    StopReason.ERROR,
                    error=f"the answer does not match {self.output_type.__name__}: {problem}",
                )
            self.corrected = True
            self.messages.append(
                llm.Message.user(
                    f"Your answer does not match the required JSON schema "
                    f"({self.output_type.__name__}): {problem}\nAnswer again with only a "
                    "JSON object that matches the schema."
                )
            )
            return None
        return self._stop(StopReason.DONE, output=output)

    async def _run_tools(self, calls: Sequence[llm.ToolCall]) -> None:
        # Each branch is one durable call, taken in order: the journal numbers
        # them deterministically however the calls finish.
        if self.policy is not None:  # what the policy's cost and token conditions see
            self.policy.spent = self.spent()
        outcomes = await runtime.gather(
            *(self.agent.tool_calls.step(call.name)(call.to_dict()) for call in calls),
            return_exceptions=True,
        )
        slowest = 0.0
        for call, outcome in zip(calls, outcomes, strict=True):
            if isinstance(outcome, errors.StepTimeoutError):
                result = tools.ToolResult.error(f"the tool did not finish in time: {outcome}")
            elif isinstance(outcome, BaseException):
                raise outcome
            else:
                result, decision, latency_ms = result_of(outcome)
                slowest = max(slowest, latency_ms)
                if decision == tools.Action.NEEDS_APPROVAL.value:
                    result = await self.agent.approve(call, outcome)
            self.messages.append(result.to_message(call.id, name=call.name))
        self.tool_calls += len(calls)
        self.wall_time_s += slowest / 1000

    # -- stopping -------------------------------------------------------------------

    def _limit(self) -> AgentResult | None:
        budget = self.budget
        spent = self.spent()
        if not budget.turns_left(spent):
            return self._stop(
                StopReason.MAX_TURNS,
                exceeded="turns",
                error=f"the turn budget ({budget.turns} model calls) is used up",
            )
        over = budget.exceeded(spent)
        if over is not None:
            name, why = over
            return self._stop(StopReason.BUDGET, exceeded=name, error=f"budget {name}: {why}")
        return None

    def _stop(
        self,
        reason: StopReason,
        *,
        output: Any = None,
        exceeded: str | None = None,
        error: str | None = None,
    ) -> AgentResult:
        return AgentResult(
            output=output,
            stop_reason=reason,
            turns=self.turns,
            tool_calls=self.tool_calls,
            usage=self.usage,
            cost=self.usage.cost,
            wall_time_s=round(self.wall_time_s, 6),
            exceeded=exceeded,
            error=error,
            text=self.text,
        )


def _describe(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= _ERROR_PREVIEW else text[:_ERROR_PREVIEW] + "..."


def spent_in(journal: Sequence[JournalEntry], agent: str) -> Spent:
    """What an agent's calls in a run's journal spent (its settled llm and tool entries).

    Entries of other agents in the same run are left out; an entry says whose it
    is in its detail (an entry without one, e.g. patched in by hand, counts).
    """
    turns = calls = 0
    usage = llm.Usage()
    wall = 0.0
    for entry in journal:
        detail = entry.detail if isinstance(entry.detail, dict) else {}
        if detail.get("agent", agent) != agent or entry.status is EntryStatus.PENDING:
            continue
        if entry.kind is EntryKind.LLM:
            turns += 1
            if entry.status is EntryStatus.OK:
                response, latency_ms = response_of(entry.output)
                usage = usage + response.usage
                wall += latency_ms / 1000
        elif entry.kind is EntryKind.TOOL and detail.get("decision") != APPROVED:
            calls += 1  # an approved call's second entry is the same call
    return Spent(turns=turns, usage=usage, wall_time_s=wall, tool_calls=calls)
