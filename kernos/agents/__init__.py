"""Durable agents: a model, tools and a budget, run as a journaled tool-calling loop.

::

    from kernos import agents, tools

    @tools.tool
    async def search(query: str) -> str:
        \"\"\"Search the web.

        Args:
            query: what to look for.
        \"\"\"

    researcher = agents.Agent(
        "researcher",
        "openai:gpt-4o-mini",
        instructions="Answer with sources.",
        tools=[search],
        budget=agents.Budget(tokens=50_000, cost_usd=0.50, turns=20, wall_time_s=300),
    )

    async with kernos.Kernos("sqlite:///kernos.db") as app:
        handle = await researcher.start(app, "What changed in Python 3.13?")
        result = await handle.result()        # AgentResult: output, stop_reason, usage, cost

Every model call is an ``llm`` journal entry and every tool call a ``tool``
entry: a crashed run resumes without repeating either, ``app.fork(run, at=seq,
patch={"text": "..."})`` continues from an edited answer, and ``app.replay(run)``
calls no model. Inside your own workflow, ``await researcher.run(task)`` runs
the loop in that workflow's journal.

Not imported by ``import kernos``; ``kernos.Agent`` is loaded on first use.
"""

from kernos.agents._accounting import usage_ledger
from kernos.agents._agent import Agent, AgentHandle
from kernos.agents._budget import DEFAULT_TURNS, Budget, Spent, StopReason
from kernos.agents._loop import spent_in
from kernos.agents._model import DELTA_CHARS, DELTA_INTERVAL, Model, ProviderSource, response_of
from kernos.agents._result import AgentResult
from kernos.agents._toolcalls import INVALID, TenantPolicy, result_of

__all__ = [
    "DEFAULT_TURNS",
    "DELTA_CHARS",
    "DELTA_INTERVAL",
    "INVALID",
    "Agent",
    "AgentHandle",
    "AgentResult",
    "Budget",
    "Model",
    "ProviderSource",
    "Spent",
    "StopReason",
    "TenantPolicy",
    "response_of",
    "result_of",
    "spent_in",
    "usage_ledger",
]
