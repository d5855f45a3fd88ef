"""Workflows, a controllable clock and helpers shared by the approval tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import kernos
from kernos.records import ApprovalRequest, ApprovalStatus, RunStatus


class Clock:
    """Wall time plus an offset the test moves forward (the app's and store's clock)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``."""
        self.offset += seconds


@kernos.step
async def record(text: str) -> str:
    """A step whose result shows the run went on."""
    return text


@kernos.workflow(name="approvals_simple")
async def simple(title: str = "deploy?") -> dict[str, Any]:
    """Ask once, with no deadline; return the decision."""
    decision = await kernos.approval(title, {"plan": "v2"}, assignees=["operator"])
    await record(decision.decision)
    return {
        "decision": decision.decision,
        "by": decision.decided_by,
        "value": decision.value,
        "comment": decision.comment,
        "by_default": decision.by_default,
    }


@kernos.workflow(name="approvals_escalating")
async def escalating(default: str = "reject") -> dict[str, Any]:
    """Ask alice for an hour, then admins for a day, then take ``default``."""
    decision = await kernos.approval(
        "wire the money?",
        {"amount": 100},
        assignees=["alice"],
        timeout=3600,
        escalation=[kernos.Escalate(to=["admin"], after=86400)],
        default=default,  # type: ignore[arg-type]
    )
    await record(decision.decision)
    return {
        "decision": decision.decision,
        "by_default": decision.by_default,
        "level": decision.level,
    }


def new_app(url: str, **options: Any) -> kernos.Kernos:
    """An app with fast test timings; ``options`` go to ``kernos.Kernos``."""
    return kernos.Kernos(url, poll_interval=0.05, inline_wait=0.2, lease=5.0, **options)


async def until(predicate: Callable[[], Any], timeout: float = 15.0) -> Any:
    """Await ``predicate()`` (sync or async) until it is truthy; fail after ``timeout``."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if loop.time() > give_up:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


async def pending_request(app: kernos.Kernos, run_id: str) -> ApprovalRequest:
    """Wait until run ``run_id`` waits on a pending approval request; return it."""

    async def find() -> ApprovalRequest | None:
        run = await app.get_run(run_id)
        if run.status is not RunStatus.WAITING:
            return None
        for entry in await app.journal(run_id):
            if entry.kind is kernos.EntryKind.APPROVAL and isinstance(entry.detail, dict):
                request = await app.store.get_approval(str(entry.detail["approval_id"]))
                if request is not None and request.status is ApprovalStatus.PENDING:
                    return request
        return None

    result: ApprovalRequest = await until(find)
    return result


async def waiting_at_level(app: kernos.Kernos, run_id: str, level: int) -> ApprovalRequest:
    """Wait until the run is suspended on its request at ``level``."""

    async def find() -> ApprovalRequest | None:
        request = await pending_request(app, run_id)
        run = await app.get_run(run_id)
        if request.level == level and run.status is RunStatus.WAITING:
            return request
        return None

    result: ApprovalRequest = await until(find)
    return result
