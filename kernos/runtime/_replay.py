"""Replay: re-execute workflow code against a recorded journal, with no side effects."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from kernos.records import EntryStatus, JournalEntry, Run, RunStatus
from kernos.runtime._context import Divergence, DivergenceFound, JournalEnd, RunContext
from kernos.runtime._definitions import Workflow
from kernos.serialization import encode

__all__ = ["ReplayReport", "replay"]


@dataclass(frozen=True, kw_only=True, slots=True)
class ReplayReport:
    """What a replay found.

    Attributes:
        run_id: the replayed run.
        identical: True when the code made the same calls in the same order with
            the same arguments, and (for a finished run) returned the same output.
        divergence: the first difference, when not identical.
        entries_checked: journal entries the replay compared.
        complete: False when the recorded run had not finished; the replay then
            checked the journal as far as it goes.
    """

    run_id: str
    identical: bool
    divergence: Divergence | None
    entries_checked: int
    complete: bool

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "run_id": self.run_id,
            "identical": self.identical,
            "divergence": None
            if self.divergence is None
            else {
                "seq": self.divergence.seq,
                "reason": self.divergence.reason,
                "expected": self.divergence.expected,
                "found": self.divergence.found,
            },
            "entries_checked": self.entries_checked,
            "complete": self.complete,
        }

    def __str__(self) -> str:
        if self.identical:
            return f"identical ({self.entries_checked} entries checked)"
        assert self.divergence is not None
        d = self.divergence
        return f"diverged at seq {d.seq} ({d.reason}): expected {d.expected}, found {d.found}"


async def replay(
    workflow: Workflow[Any, Any], run: Run, journal: list[JournalEntry]
) -> ReplayReport:
    """Replay ``run`` under ``workflow``'s current code; see :class:`ReplayReport`.

    No step function runs, no timer waits and nothing is written: every durable
    call is answered from the journal.
    """
    ctx = RunContext(
        run=run,
        epoch=run.lease_epoch,
        workflow=workflow,
        journal={entry.seq: entry for entry in journal},
        engine=None,
        loop=asyncio.get_running_loop(),
    )
    # A run that did not finish (or was cancelled) has a journal that simply
    # stops: code asking for more is not a divergence, just the end of the record.
    complete = run.status in (RunStatus.SUCCEEDED, RunStatus.FAILED)

    def report(divergence: Divergence | None) -> ReplayReport:
        return ReplayReport(
            run_id=run.run_id,
            identical=divergence is None,
            divergence=divergence,
            entries_checked=len(ctx.visited),
            complete=complete,
        )

    try:
        output = await ctx.invoke()
    except DivergenceFound as found:
        if found.divergence.reason == "extra" and not complete:
            return report(None)
        return report(found.divergence)
    except JournalEnd:
        return report(None)
    except Exception as exc:
        if run.status is RunStatus.FAILED:
            return report(_first_unvisited(ctx))
        return report(
            Divergence(
                seq=ctx.seq,
                reason="error",
                expected="the recorded outcome",
                found=f"{type(exc).__qualname__}: {exc}",
            )
        )
    divergence = _first_unvisited(ctx)
    if divergence is None and run.status is RunStatus.SUCCEEDED:
        recorded = encode(run.output, what="recorded output")
        produced = encode(output, what="replayed output")
        if recorded != produced:
            divergence = Divergence(
                seq=ctx.seq, reason="output", expected=recorded[:200], found=produced[:200]
            )
    elif divergence is None and run.status is RunStatus.FAILED:
        divergence = Divergence(
            seq=ctx.seq,
            reason="output",
            expected="the run failed",
            found="the code returned normally",
        )
    return report(divergence)


def _first_unvisited(ctx: RunContext) -> Divergence | None:
    for seq in sorted(ctx.journal):
        entry = ctx.journal[seq]
        if seq not in ctx.visited and entry.status is not EntryStatus.PENDING:
            return Divergence(
                seq=seq,
                reason="missing",
                expected=f"{entry.kind.value} {entry.name!r}",
                found="the code no longer makes this call",
            )
    return None
