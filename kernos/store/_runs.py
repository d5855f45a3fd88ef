"""Creating runs: plain, enqueued (dedup ids, dependencies, cycles), and the
consequences of a run ending for the runs that depend on it."""

from __future__ import annotations

import orjson

from kernos import errors
from kernos.records import RunStatus
from kernos.store._base import Enqueued, NewRun
from kernos.store._tx import Tx

__all__ = ["enqueue", "insert_run", "settle_dependents"]

_FAILED = frozenset({RunStatus.FAILED.value, RunStatus.CANCELLED.value})


def insert_run(
    tx: Tx,
    run: NewRun,
    *,
    status: RunStatus,
    deps_pending: int = 0,
    error: str | None = None,
) -> bool:
    """Insert ``run``; False when its id (or its dedup id in its queue) is taken."""
    owned = status is RunStatus.RUNNING
    row = tx.one(
        "insert_run",
        {
            "run_id": run.run_id,
            "workflow": run.workflow,
            "version": run.version,
            "status": status.value,
            "input": tx.put(run.input),
            "parent_id": run.parent_id,
            "parent_seq": run.parent_seq,
            "forked_from": run.forked_from,
            "fork_seq": run.fork_seq,
            "queue": run.queue,
            "priority": run.priority,
            "now": tx.now,
            "started_at": tx.now if owned else None,
            "owner": run.owner if owned else None,
            "lease_epoch": 1 if owned else 0,
            "lease_expires_at": tx.now + run.lease_s if owned else None,
            "wake_at": tx.now + run.delay if run.delay else run.wake_at,
            "deadline": tx.now + run.timeout if run.timeout is not None else None,
            "timeout": run.timeout,
            "executions": 1 if owned else 0,
            "concurrency_key": run.concurrency_key,
            "dedup_id": run.dedup_id,
            "deps_pending": deps_pending,
            "on_dep_failure": run.on_dep_failure,
            "error": error,
            "finished_at": tx.now if status.terminal else None,
            "tenant_id": run.tenant,
        },
    )
    if row is None:
        return False
    tx.event(
        run.run_id,
        "run.created",
        {
            "workflow": run.workflow,
            "queue": run.queue,
            "parent_id": run.parent_id,
            "forked_from": run.forked_from,
            "depends_on": list(run.depends_on),
            "tenant": run.tenant,
        },
    )
    if owned:
        tx.event(run.run_id, "run.started", {"owner": run.owner, "epoch": 1})
    return True


def enqueue(tx: Tx, run: NewRun) -> Enqueued:
    """Create ``run`` pending in its queue; see :meth:`Store.enqueue`."""
    if run.on_dep_failure not in ("cancel", "run"):
        raise errors.UsageError(
            f"on_dep_failure must be 'cancel' or 'run', not {run.on_dep_failure!r}"
        )
    deps = list(dict.fromkeys(run.depends_on))
    if not deps:  # the common case: the insert itself tells whether the run exists
        if insert_run(tx, run, status=RunStatus.PENDING):
            return Enqueued(run_id=run.run_id, created=True)
        return Enqueued(run_id=_existing(tx, run) or run.run_id, created=False)
    existing = _existing(tx, run)
    if existing is not None:
        return Enqueued(run_id=existing, created=False)
    cycle = _cycle_through(tx, run.run_id, deps)
    if cycle:
        raise errors.DependencyCycleError(
            f"run {run.run_id!r} cannot depend on {deps}: that makes a cycle "
            f"{' -> '.join(cycle)}; remove one of these dependencies",
            run_id=run.run_id,
            cycle=cycle,
        )
    statuses = {
        row["run_id"]: row["status"]
        for row in tx.all("statuses", {"run_ids": orjson.dumps(deps).decode()})
    }
    failed = [dep for dep in deps if statuses.get(dep) in _FAILED]
    blocking = [
        dep
        for dep in deps
        if statuses.get(dep) != RunStatus.SUCCEEDED.value
        and not (dep in failed and run.on_dep_failure == "run")
    ]
    cancel = bool(failed) and run.on_dep_failure == "cancel"
    error = _dependency_error(failed[0], statuses[failed[0]]) if cancel else None
    status = RunStatus.CANCELLED if cancel else RunStatus.PENDING
    if not insert_run(tx, run, status=status, deps_pending=len(blocking), error=error):
        return Enqueued(run_id=_existing(tx, run) or run.run_id, created=False)
    for dep in deps:
        tx.execute("insert_dep", {"run_id": run.run_id, "depends_on": dep})
    if cancel:
        tx.event(run.run_id, "run.cancelled", {"reason": f"dependency {failed[0]} failed"})
    return Enqueued(run_id=run.run_id, created=True)


def _existing(tx: Tx, run: NewRun) -> str | None:
    if tx.one("get_run", {"run_id": run.run_id}) is not None:
        return run.run_id
    if run.dedup_id is not None:
        row = tx.one("find_dedup", {"queue": run.queue, "dedup_id": run.dedup_id})
        if row is not None:
            return str(row["run_id"])
    return None


def _cycle_through(tx: Tx, run_id: str, deps: list[str]) -> list[str] | None:
    """The path back to ``run_id`` if it is reachable from ``deps``, else None."""
    came_from: dict[str, str] = {}
    frontier = []
    for dep in deps:
        if dep == run_id:
            return [run_id, run_id]
        if dep not in came_from:
            came_from[dep] = run_id
            frontier.append(dep)
    while frontier:
        node = frontier.pop()
        for row in tx.all("upstream_of", {"run_id": node}):
            upstream = str(row["depends_on"])
            if upstream == run_id:
                path = [run_id, node]
                while came_from[path[-1]] != run_id:
                    path.append(came_from[path[-1]])
                return [run_id, *reversed(path[1:]), run_id]
            if upstream not in came_from:
                came_from[upstream] = node
                frontier.append(upstream)
    return None


def _dependency_error(dep: str, status: str) -> str:
    return orjson.dumps(
        {
            "type": "kernos.errors.Cancelled",
            "code": "dependency_failed",
            "message": f"dependency {dep} {status}",
        }
    ).decode()


def settle_dependents(tx: Tx, run_id: str, succeeded: bool) -> None:
    """Unblock, or cancel, the runs waiting for ``run_id``, which just ended.

    A dependent whose dependency failed is cancelled with the reason recorded
    (and its own dependents after it), unless it asked to run anyway.
    """
    ended = [(run_id, succeeded)]
    while ended:
        upstream, ok = ended.pop()
        for row in tx.all("dependents", {"run_id": upstream}):
            if RunStatus(row["status"]).terminal:
                continue
            dependent = str(row["run_id"])
            if ok or row["on_dep_failure"] == "run":
                tx.execute("release_dependency", {"run_id": dependent, "now": tx.now})
                tx.event(dependent, "dependency.done", {"run_id": upstream, "succeeded": ok})
                continue
            error = _dependency_error(upstream, "did not succeed")
            if tx.one("cancel_blocked", {"run_id": dependent, "error": error, "now": tx.now}):
                tx.event(dependent, "run.cancelled", {"reason": f"dependency {upstream} failed"})
                ended.append((dependent, False))
