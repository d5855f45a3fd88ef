"""Usage and cost per call, run, agent, tenant and model, summed from the journal."""

from __future__ import annotations

from kernos import llm, runtime, store
from kernos.records import EntryKind, EntryStatus, Run

__all__ = ["usage_ledger"]

_PAGE = 200


async def usage_ledger(
    source: runtime.Kernos | store.Store,
    *,
    tenant: str | None = None,
    agent: str | None = None,
    run_id: str | None = None,
    since: float | None = None,
    until: float | None = None,
) -> llm.UsageLedger:
    """Sum the model calls journaled in the store into a usage ledger.

    Every ``llm`` entry records its usage and cost in its detail, with the run,
    agent and tenant that made it. The ledger has the grand total and totals
    ``by("run")``, ``by("agent")``, ``by("tenant")`` and ``by("model")``.

    Each call is counted once, in the run that made it: the entries a fork
    inherits from its original (and an edited answer patched into a fork) are
    not counted again. Failed calls count nothing (their tokens are unknown).

    This reads the journal of every run that matches, page by page: meant for
    reports and tests, not a hot path.

    Args:
        source: an app or a store.
        tenant: only this tenant's runs.
        agent: only this agent's calls.
        run_id: only this run.
        since: only runs created at or after this time (epoch seconds).
        until: only runs created before this time.
    """
    db = source.store if isinstance(source, runtime.Kernos) else source
    ledger = llm.UsageLedger()
    if run_id is not None:
        runs = [await db.get_run(run_id)]
        await _add_runs(db, ledger, runs, tenant, agent)
        return ledger
    before: tuple[float, str] | None = None
    while True:
        page = await db.list_runs(
            store.RunFilter(
                tenant=tenant,
                created_after=since,
                created_before=until,
                limit=_PAGE,
                before=before,
            )
        )
        await _add_runs(db, ledger, page, tenant, agent)
        if len(page) < _PAGE:
            return ledger
        before = (page[-1].created_at, page[-1].run_id)


async def _add_runs(
    db: store.Store,
    ledger: llm.UsageLedger,
    runs: list[Run],
    tenant: str | None,
    agent: str | None,
) -> None:
    for run in runs:
        if tenant is not None and run.tenant != tenant:
            continue
        for entry in await db.load_journal(run.run_id):
            if entry.kind is not EntryKind.LLM or entry.status is not EntryStatus.OK:
                continue
            detail = entry.detail if isinstance(entry.detail, dict) else {}
            # Inherited and patched entries keep the detail of the run that made the call.
            if detail.get("run_id") != run.run_id:
                continue
            if agent is not None and detail.get("agent") != agent:
                continue
            usage = detail.get("usage")
            ledger.record(
                llm.Usage.from_dict(usage if isinstance(usage, dict) else {}),
                run=run.run_id,
                agent=str(detail.get("agent")) if detail.get("agent") is not None else None,
                tenant=run.tenant,
                model=entry.name,
            )
