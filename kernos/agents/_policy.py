"""The tenant's stored policy in an agent run: loaded once, in a journaled step.

When an agent run starts, a ``policy`` step reads its tenant's current policy
version from the store and journals ``{policy_version, sha256, document}``; a
recovered or replayed run gets the recorded output back, so it decides every
call under the version the original ran under, even after a newer one was
applied. The version is also in the entry's detail and in an ``agent.policy``
event.

The stored policy joins the agent's own policy (and the ``tenant_policy`` given
in code): every tool call takes the strictest of their decisions. Its budgets
(for every run of the tenant, and for this agent by name) bind as well as the
agent's own; the tightest limit of each kind wins.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from kernos import runtime, tools
from kernos.agents._budget import Budget, Spent
from kernos.agents._model import own_scope
from kernos.records import EntryKind
from kernos.retry import RetryPolicy

__all__ = ["POLICY_STEP", "PolicyLoader", "RunPolicy", "active_policy"]

POLICY_STEP = "policy"
"""The name of the journal entry that records the policy version an agent run uses."""

_CACHE_SIZE = 64
_parsed: dict[str, tools.PolicyDocument] = {}  # by sha256: documents are immutable
_active: ContextVar[RunPolicy | None] = ContextVar("kernos_agent_policy", default=None)


@dataclass(slots=True)
class RunPolicy:
    """What one agent run decides its tool calls under, besides the agent's own policy.

    Attributes:
        agent: the agent's name.
        model: the agent's model.
        workflow: the run's workflow (None outside a run).
        tenant: the run's tenant (None outside a run).
        version: the stored policy version (None: the tenant has none).
        sha256: that document's SHA-256.
        document: the parsed document (None: the tenant has none).
        spent: what the run has spent so far (kept current by the loop).
    """

    agent: str
    model: str
    workflow: str | None = None
    tenant: str | None = None
    version: int | None = None
    sha256: str | None = None
    document: tools.PolicyDocument | None = None
    spent: Spent = field(default_factory=Spent)

    def context(
        self, tool: str, arguments: Mapping[str, Any], tenant: str | None
    ) -> tools.CallContext:
        """The context a policy sees for a call of ``tool`` in this run."""
        return tools.CallContext(
            tool=tool,
            arguments=arguments,
            agent=self.agent,
            workflow=self.workflow,
            tenant=tenant if tenant is not None else self.tenant,
            model=self.model,
            cost_usd=self.spent.usage.cost or 0.0,
            tokens=self.spent.usage.total_tokens,
        )

    def decide(self, call: tools.CallContext) -> tools.Decision | None:
        """The stored policy's decision on a call (None: the tenant has no policy)."""
        return self.document.policy.decide(call) if self.document is not None else None

    def budget(self, own: Budget) -> Budget:
        """``own`` narrowed by the stored policy's budgets for this agent."""
        if self.document is None:
            return own
        budget = own
        for limits in self.document.budgets.for_agent(self.agent):
            budget = budget.tighter(
                Budget(
                    tokens=limits.tokens,
                    cost_usd=limits.cost_usd,
                    turns=limits.turns,
                    wall_time_s=limits.wall_time_s,
                )
            )
        return budget

    def record(self) -> dict[str, Any]:
        """What the journal detail and the ``agent.policy`` event say."""
        return {"agent": self.agent, "policy_version": self.version, "sha256": self.sha256}


def active_policy() -> RunPolicy | None:
    """The stored policy of the agent run this code belongs to, if any."""
    return _active.get()


class PolicyLoader:
    """The journaled step that loads the tenant's policy at the start of an agent run.

    Args:
        agent: the agent's name.
        model: the agent's model.
    """

    def __init__(self, agent: str, model: str) -> None:
        self.agent = agent
        self.model = model
        self.step: runtime.Step[[], Any] = runtime.Step(
            self._load,
            name=POLICY_STEP,
            retry=RetryPolicy.of(3),
            timeout=None,
            kind=EntryKind.STEP,
        )

    async def load(self) -> RunPolicy:
        """Load (or, on recovery and replay, re-read from the journal) the run's policy.

        Raises:
            PolicyError: the stored document no longer parses (the run fails
                rather than run without its policy).
        """
        value: dict[str, Any] = await self.step()
        version, sha256 = value.get("policy_version"), value.get("sha256")
        tenant = value.get("tenant")
        document = None
        text = value.get("document")
        if isinstance(text, str) and isinstance(sha256, str):
            document = _parse(text, sha256, f"tenant {tenant} policy v{version}")
        policy = RunPolicy(
            agent=self.agent,
            model=self.model,
            workflow=value.get("workflow"),
            tenant=tenant,
            version=version,
            sha256=sha256,
            document=document,
        )
        runtime.emit("agent.policy", policy.record())
        return policy

    async def _load(self) -> dict[str, Any]:
        scope = runtime.current_step()
        engine = scope.ctx.engine if scope is not None else None
        if scope is None or engine is None:  # outside any run: no store, no stored policy
            return {"policy_version": None, "sha256": None, "document": None}
        found = await engine.store.current_policy(scope.tenant)
        value = {
            "tenant": scope.tenant,
            "workflow": scope.ctx.run.workflow,
            "policy_version": found.version if found is not None else None,
            "sha256": found.sha256 if found is not None else None,
            "document": found.document if found is not None else None,
        }
        own = own_scope(scope, EntryKind.STEP, POLICY_STEP)
        if own is not None:
            record = {
                "agent": self.agent,
                "policy_version": value["policy_version"],
                "sha256": value["sha256"],
            }
            own.annotate(record, event=record)
        return value


@contextmanager
def using(policy: RunPolicy) -> Iterator[None]:
    """Make ``policy`` the one the run's tool calls are decided under, within the block."""
    token = _active.set(policy)
    try:
        yield
    finally:
        _active.reset(token)


def _parse(text: str, sha256: str, name: str) -> tools.PolicyDocument:
    cached = _parsed.get(sha256)
    if cached is not None and cached.policy.name == name:
        return cached
    document = tools.parse_policy(text, source="stored policy", name=name)
    if len(_parsed) >= _CACHE_SIZE:
        _parsed.pop(next(iter(_parsed)))
    _parsed[sha256] = document
    return document
