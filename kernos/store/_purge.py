"""Purging a finished run: its rows, and the blobs no other row refers to."""

from __future__ import annotations

from kernos import errors
from kernos.records import RunStatus
from kernos.store._blobs import REFERENCE_LIKE
from kernos.store._tx import Tx, run_not_found

__all__ = ["purge"]

_DELETES = {
    "journal": "delete_run_journal",
    "events": "delete_run_events",
    "messages": "delete_run_messages",
}


def purge(tx: Tx, run_id: str) -> tuple[dict[str, int], list[str]]:
    """Delete a finished run's data; see :meth:`Store.purge_run`.

    Returns the rows deleted per kind and the ids of the blobs deleted (whose
    files, in a blob directory, the caller removes once this commits).
    """
    row = tx.one("get_run", {"run_id": run_id})
    if row is None:
        raise run_not_found(run_id)
    status = RunStatus(row["status"])
    if not status.terminal:
        raise errors.RunStateError(
            f"run {run_id!r} is {status.value}; only finished runs can be purged. Cancel it first",
            run_id=run_id,
            status=status.value,
        )
    blobs = tx.store.blobs
    referenced = {
        blob_id
        for candidate in tx.all("run_blob_candidates", {"run_id": run_id, "prefix": REFERENCE_LIKE})
        for column in ("a", "b", "c", "d")
        if (blob_id := blobs.referenced_id(candidate[column])) is not None
    }
    if referenced:
        tx.store._lock_blobs(tx)
    params = {"run_id": run_id}
    counts = {kind: int(tx.execute(query, params).rowcount) for kind, query in _DELETES.items()}
    tx.execute("delete_run_deps", params)
    tx.execute("delete_run_approvals", params)
    counts["runs"] = int(tx.execute("delete_run", params).rowcount)
    # Blobs are shared by content: keep those another run (a fork, a run with
    # the same large input) still refers to.
    orphans = [
        blob_id
        for blob_id in sorted(referenced)
        if tx.one("blob_referenced", {"ref": blobs.reference(blob_id)}) is None
    ]
    for blob_id in orphans:
        blobs.delete(blob_id, tx.execute)
    counts["blobs"] = len(orphans)
    return counts, orphans
