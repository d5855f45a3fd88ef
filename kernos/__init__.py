"""Kernos: an operating system for AI agents.

Workflows and their steps are journaled, so runs survive crashes, wait for days
without holding a worker, fork from any step and replay without side effects::

    import kernos

    @kernos.step(retries=3, timeout=30)
    async def fetch(url: str) -> str: ...

    @kernos.workflow(version="1")
    async def brief(day: str) -> dict:
        pages = await kernos.gather(fetch("https://a"), fetch("https://b"))
        kernos.checkpoint("collected", {"pages": len(pages)})
        await kernos.sleep(3600)
        return {"day": day, "pages": len(pages)}

    async with kernos.Kernos("sqlite:///kernos.db") as app:
        handle = await app.start(brief, "2026-11-22", run_id="brief-2026-11-22")
        print(await handle.result())
"""

import typing as _typing

from kernos import errors
from kernos.records import (
    Checkpoint,
    EntryKind,
    EntryStatus,
    Event,
    JournalEntry,
    QueueSpec,
    QueueStats,
    Run,
    RunStatus,
    Schedule,
    Worker,
)
from kernos.runtime import (
    ApprovalDecision,
    Divergence,
    Escalate,
    Kernos,
    Queue,
    ReplayReport,
    RetryPolicy,
    RunHandle,
    Step,
    Workflow,
    approval,
    checkpoint,
    current_run_id,
    emit,
    gather,
    load_queues,
    recv,
    schedule,
    sleep,
    step,
    workflow,
)

if _typing.TYPE_CHECKING:
    from kernos.tools import tool
else:

    def tool(*args, **kwargs):
        """Turn a typed, documented function into a tool a model can call.

        The same as :func:`kernos.tools.tool`, imported on first use so that
        ``import kernos`` stays light (the schema needs pydantic).
        """
        from kernos.tools import tool as make_tool

        return make_tool(*args, **kwargs)


__version__ = "0.1.0"

__all__ = [
    "ApprovalDecision",
    "Checkpoint",
    "Divergence",
    "EntryKind",
    "EntryStatus",
    "Escalate",
    "Event",
    "JournalEntry",
    "Kernos",
    "Queue",
    "QueueSpec",
    "QueueStats",
    "ReplayReport",
    "RetryPolicy",
    "Run",
    "RunHandle",
    "RunStatus",
    "Schedule",
    "Step",
    "Worker",
    "Workflow",
    "__version__",
    "approval",
    "checkpoint",
    "current_run_id",
    "emit",
    "errors",
    "gather",
    "load_queues",
    "recv",
    "schedule",
    "sleep",
    "step",
    "tool",
    "workflow",
]
