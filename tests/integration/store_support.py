"""Helpers shared by the store conformance tests (tests/integration/test_store*.py)."""

from __future__ import annotations

from typing import Any

from kernos.store import EntryWrite, FinishWrite, NewRun, Store

T0 = 1_000_000.0
WF = ["wf", "a", "b"]


class Clock:
    """A clock the test moves by hand, so leases and timers are exact."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def new_run(run_id: str, **fields: Any) -> NewRun:
    """A run of workflow ``wf`` (unless told) with a small input."""
    fields.setdefault("workflow", "wf")
    return NewRun(run_id=run_id, version="1", input='{"n": 1}', **fields)


def entry(run_id: str, seq: int, **fields: Any) -> EntryWrite:
    """A settled step entry at ``seq`` written under lease epoch 1 (unless told)."""
    fields.setdefault("epoch", 1)
    fields.setdefault("kind", "step")
    fields.setdefault("name", f"step{seq}")
    fields.setdefault("status", "ok")
    fields.setdefault("output", f'"out{seq}"')
    fields.setdefault("started_at", T0)
    return EntryWrite(run_id=run_id, seq=seq, **fields)


def finish(run_id: str, *, epoch: int = 1, output: str = '"done"') -> FinishWrite:
    """A successful finish of ``run_id``."""
    return FinishWrite(run_id=run_id, epoch=epoch, status="succeeded", output=output)


async def kinds(store: Store, run_id: str) -> list[str]:
    """The kinds of a run's events, oldest first."""
    return [event.kind for event in await store.list_events(run_id)]
