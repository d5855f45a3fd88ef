"""The SQL implementation of :class:`Store`, shared by SQLite and PostgreSQL.

Each store owns one connection, used from one dedicated thread: the drivers are
blocking, and a single writer path keeps SQLite simple and gives group commit
for free. Dialects override small hooks only (connect, transient errors,
migration lock); the SQL itself lives in ``sql/<dialect>/queries.sql``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar, TypeVar

import orjson

from kernos import errors
from kernos.records import (
    Checkpoint,
    Event,
    JournalEntry,
    QueueSpec,
    Run,
    RunStatus,
    Schedule,
    Worker,
)
from kernos.serialization import checksum, decode
from kernos.store._approvals import ApprovalStore, cancel_run_approvals
from kernos.store._base import Enqueued, NewRun, Store
from kernos.store._blobs import Blobs
from kernos.store._claims import claim
from kernos.store._control import ControlPlane
from kernos.store._listing import Listing
from kernos.store._ops import EntryWrite, EventWrite, Fence, FinishWrite, Write
from kernos.store._policies import PolicyVersions
from kernos.store._purge import purge
from kernos.store._queries import load_migrations, load_queries, split_statements
from kernos.store._runs import enqueue, insert_run, settle_dependents
from kernos.store._tx import Connection
from kernos.store._tx import Tx as _Tx
from kernos.store._url import redact_url
from kernos.store._webhooks import WebhookOutbox

__all__ = ["SqlStore"]

logger = logging.getLogger(__name__)
T = TypeVar("T")


class SqlStore(Listing, ControlPlane, ApprovalStore, WebhookOutbox, PolicyVersions, Store):
    """Store on a DB-API connection; subclasses supply the dialect."""

    dialect: ClassVar[str]
    begin_write: ClassVar[str] = "BEGIN"
    begin_read: ClassVar[str] = "BEGIN"

    def __init__(
        self,
        url: str,
        *,
        durable: bool = True,
        blob_threshold: int = 64 * 1024,
        blob_dir: str | None = None,
        retry_for: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.url = redact_url(url)  # for messages: the dialect keeps what it connects with
        self.durable = durable
        self.queries = load_queries(self.dialect)
        self.blobs = Blobs(blob_threshold, blob_dir)
        self.retry_for = retry_for
        self.clock = clock
        self._conn: Connection | None = None
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"kernos-{self.dialect}")
        self._closed = False

    # -- dialect hooks ----------------------------------------------------------

    def _connect(self) -> Connection:
        raise NotImplementedError

    def _is_transient(self, exc: BaseException) -> bool:
        raise NotImplementedError

    def _lock_migrations(self, tx: _Tx) -> None:
        """Serialize concurrent migrators (the write transaction suffices by default)."""

    def _run_script(self, tx: _Tx, script: str) -> None:
        """Execute a migration script, statement by statement."""
        for statement in split_statements(script):
            tx.conn.execute(statement)

    def _plan_for_values(self, tx: _Tx) -> None:
        """Plan this transaction's statements for their parameter values.

        For queries with optional filters (``:x IS NULL OR ...``), whose best
        index depends on which filters are set.
        """

    def _lock_blobs(self, tx: _Tx) -> None:
        """Keep concurrent writers from adding blob references until this commits.

        A purge checks that no row refers to a blob before deleting it; one
        writer at a time (the default) already makes that check safe.
        """

    def listen(self, wake: Callable[[str], None]) -> None:
        """Without notifications there is nothing to listen to: workers poll."""

    # -- transaction plumbing ------------------------------------------------

    async def _call(self, fn: Callable[[_Tx], T], *, write: bool = True) -> T:
        if self._closed:
            raise errors.StoreError(f"the store {self.url} is closed", url=self.url)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._transact, fn, write)

    def _transact(self, fn: Callable[[_Tx], T], write: bool) -> T:
        delay = 0.005
        give_up = time.monotonic() + self.retry_for
        while True:
            try:
                conn = self._connection()
                conn.execute(self.begin_write if write else self.begin_read)
                try:
                    result = fn(_Tx(self, conn, self.clock()))
                except BaseException:
                    self._rollback(conn)
                    raise
                conn.execute("COMMIT")
                return result
            except errors.KernosError:
                raise
            except Exception as exc:
                if not self._is_transient(exc):
                    raise errors.StoreError(
                        f"{self.dialect} store {self.url} failed: {exc}", url=self.url
                    ) from exc
                self._drop_if_broken(exc)
                if self._closed:  # closing: stop retrying, so close() need not wait it out
                    raise errors.StoreUnavailableError(
                        f"{self.dialect} store {self.url} was closed while unavailable "
                        f"({exc}); nothing was written",
                        url=self.url,
                    ) from exc
                if time.monotonic() >= give_up:
                    raise errors.StoreUnavailableError(
                        f"{self.dialect} store {self.url} stayed unavailable for "
                        f"{self.retry_for:.0f}s ({exc}); nothing was written. Check that "
                        "the database is running and not locked by another program",
                        url=self.url,
                    ) from exc
                logger.warning(
                    "store busy, retrying", extra={"action": "store_retry", "error": str(exc)}
                )
                time.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 1.0)

    def _connection(self) -> Connection:
        if self._conn is None:
            self._conn = self._connect()
        return self._conn

    def _rollback(self, conn: Connection) -> None:
        try:
            conn.execute("ROLLBACK")
        except Exception:  # the connection is unusable: close it, the next call reconnects
            self._conn = None
            with contextlib.suppress(Exception):
                conn.close()

    def _drop_if_broken(self, exc: BaseException) -> None:
        """Forget the connection when the error means it cannot be used again."""

    async def close(self) -> None:
        """Close the connection and stop the store thread."""
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._close_connection)
        self._executor.shutdown(wait=True)

    def _close_connection(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # -- schema -----------------------------------------------------------------

    async def migrate(self) -> list[str]:
        """Apply every migration not yet applied, in one transaction."""

        def go(tx: _Tx) -> list[str]:
            self._lock_migrations(tx)
            tx.execute("create_version_table", {})
            applied = {row["version"] for row in tx.all("applied_versions", {})}
            done = []
            for migration in load_migrations(self.dialect):
                if migration.version in applied:
                    continue
                self._run_script(tx, migration.sql)
                tx.execute(
                    "record_version",
                    {"version": migration.version, "name": migration.name, "now": tx.now},
                )
                done.append(f"{migration.version:04d}_{migration.name}")
            return done

        try:
            return await self._call(go)
        except errors.StoreUnavailableError:
            raise
        except errors.StoreError as exc:
            raise errors.MigrationError(
                f"migrating {self.url} failed, nothing was changed: {exc}", url=self.url
            ) from exc

    async def schema_version(self) -> tuple[int, int]:
        """Return (applied version, latest version this code knows)."""
        latest = len(load_migrations(self.dialect))

        def go(tx: _Tx) -> int:
            self._lock_migrations(tx)
            tx.execute("create_version_table", {})
            rows = tx.all("applied_versions", {})
            return max((row["version"] for row in rows), default=0)

        return await self._call(go), latest

    # -- runs ---------------------------------------------------------------------

    async def create_run(self, run: NewRun) -> bool:
        """Create a run unless its id exists; see :meth:`Store.create_run`."""
        status = RunStatus.RUNNING if run.owner is not None else RunStatus.PENDING
        return await self._call(lambda tx: insert_run(tx, run, status=status))

    async def enqueue(self, run: NewRun) -> Enqueued:
        """Create a pending run in its queue; see :meth:`Store.enqueue`."""
        return await self._call(lambda tx: enqueue(tx, run))

    async def get_run(self, run_id: str) -> Run:
        """Return one run; raises RunNotFoundError."""
        return await self._call(lambda tx: tx.run(run_id), write=False)

    async def purge_run(self, run_id: str) -> dict[str, int]:
        """Delete a finished run's data and the blobs no other run refers to.

        The run's children, forks and dependents are separate runs and are kept.
        Blobs in a blob directory are removed after the transaction commits; a
        run written at that moment with one of the same large values could lose
        its blob, so purge (and retention) is best run where that is unlikely.
        The blob table has no such race (PostgreSQL locks it for the purge).
        """
        counts, deleted = await self._call(lambda tx: purge(tx, run_id))
        if deleted and self.blobs.directory is not None:
            await asyncio.to_thread(self.blobs.remove_files, deleted)
        return counts

    async def claim(
        self,
        owner: str,
        *,
        limit: int,
        lease_s: float,
        workflows: Sequence[str],
        queues: Mapping[str, int] | None = None,
    ) -> list[Run]:
        """Claim runnable runs for ``owner``; see :meth:`Store.claim`."""

        def go(tx: _Tx) -> list[Run]:
            self._claim_needs_no_fsync(tx)
            return claim(
                tx, owner, limit=limit, lease_s=lease_s, workflows=workflows, queues=queues
            )

        return await self._call(go)

    def _claim_needs_no_fsync(self, tx: _Tx) -> None:
        """Let this claim commit without waiting for the disk, where the dialect can.

        Safe because of fencing: a claim lost in a crash leaves the run at its
        old lease epoch, so the claimer's journal writes (which are durable, and
        flush the claim with them) are refused rather than misattributed.
        """

    async def upsert_queue(self, spec: QueueSpec) -> None:
        """Store a queue's limits."""
        params = spec.to_dict()
        await self._call(lambda tx: tx.execute("upsert_queue", {**params, "now": tx.now}))

    async def upsert_schedule(self, schedule: Schedule) -> Schedule:
        """Declare a cron schedule, keeping its last tick."""

        def go(tx: _Tx) -> Schedule:
            params = {
                "name": schedule.name,
                "cron": schedule.cron,
                "workflow": schedule.workflow,
                "queue": schedule.queue,
                "last_tick": schedule.last_tick,
                "now": tx.now,
            }
            tx.execute("upsert_schedule", params)
            return Schedule.from_row(tx.one("get_schedule", {"name": schedule.name}))

        return await self._call(go)

    async def advance_schedule(self, name: str, tick: float, run: NewRun | None) -> bool:
        """Advance a schedule to ``tick`` and enqueue its run, once across schedulers."""

        def go(tx: _Tx) -> bool:
            if tx.one("advance_schedule", {"name": name, "tick": tick, "now": tx.now}) is None:
                return False
            if run is not None:
                enqueue(tx, run)
            return True

        return await self._call(go)

    async def list_schedules(self) -> list[Schedule]:
        """Every declared schedule."""
        return await self._call(
            lambda tx: [Schedule.from_row(row) for row in tx.all("list_schedules", {})],
            write=False,
        )

    async def next_due(self) -> float | None:
        """The earliest time a run becomes claimable, if any run is waiting."""
        row = await self._call(lambda tx: tx.one("next_wake_at", {}), write=False)
        return None if row is None or row["t"] is None else float(row["t"])

    # -- fenced writes ---------------------------------------------------------

    async def apply(self, writes: Sequence[Write]) -> list[Fence | None]:
        """Apply a batch of writes in one transaction (group commit).

        Journal entries go first, each kind of statement sent for the whole batch
        at once (:meth:`_fence_many`, ``executemany``); then events and finishes in
        order. A run's finish therefore always follows its entries.
        """
        return await self._call(lambda tx: self._apply_batch(tx, writes))

    def _apply_batch(self, tx: _Tx, writes: Sequence[Write]) -> list[Fence | None]:
        results: list[Fence | None] = [None] * len(writes)
        entries = [(i, w) for i, w in enumerate(writes) if isinstance(w, EntryWrite)]
        if entries:
            rows = self._write_entries(tx, [w for _, w in entries])
            for (i, _), row in zip(entries, rows, strict=True):
                if row is None:
                    results[i] = Fence.LOST
                else:
                    results[i] = Fence.PAUSE if row["pause_requested"] else Fence.OK
        for i, other in enumerate(writes):
            if not isinstance(other, EntryWrite):
                results[i] = _APPLY[type(other)](tx, other)
        return results

    def _write_entries(self, tx: _Tx, entries: list[EntryWrite]) -> list[Any]:
        """Fence and write ``entries``; return each fence's row (None: lease lost).

        The entry and event statements carry the fence's condition themselves, so
        a dialect may send all three kinds at once (see the PostgreSQL store).
        """
        fences = [tx.one("fence", fence_params(tx, w)) for w in entries]
        tx.many("upsert_entry_fenced", [fenced_entry_params(tx, w) for w in entries])
        tx.many("insert_event_fenced", fenced_event_params(tx, entries))
        return fences

    async def receive(
        self, write: EntryWrite, topic: str, *, timed_out: bool
    ) -> tuple[Fence, bool, str | None]:
        """Settle or begin a receive wait; see :meth:`Store.receive`."""

        def go(tx: _Tx) -> tuple[Fence, bool, str | None]:
            fence = _fence(tx, write)
            if fence is Fence.LOST:
                return fence, False, None
            row = tx.one("take_message", {"run_id": write.run_id, "topic": topic, "seq": write.seq})
            if row is not None:
                payload: str | None = row["payload"]
                status = "ok"
            elif timed_out:
                payload, status = None, "ok"
            else:
                payload, status = None, "pending"
            settled = status == "ok"
            _upsert_entry(
                tx,
                write,
                status=status,
                output=payload,
                finished_at=tx.now if settled else None,
            )
            if settled:
                tx.event(
                    write.run_id,
                    "message.received",
                    {"seq": write.seq, "topic": topic, "timed_out": row is None},
                )
            return fence, settled, payload

        return await self._call(go)

    async def suspend(
        self,
        run_id: str,
        epoch: int,
        *,
        wake_at: float | None,
        topics: Sequence[str],
        children: Sequence[str],
    ) -> Fence:
        """Let a run go until it is woken; see :meth:`Store.suspend`."""

        def go(tx: _Tx) -> Fence:
            # Locks the run row first: a concurrent send or child finish that
            # wakes the run then either commits before the checks below (and they
            # see it) or after the suspension (and it sees the run waiting).
            row = tx.one("fence", {"run_id": run_id, "epoch": epoch, "steps": 0, "now": tx.now})
            if row is None:
                return Fence.LOST
            if row["pause_requested"]:
                tx.execute("pause_run", {"run_id": run_id, "epoch": epoch, "now": tx.now})
                tx.event(run_id, "run.paused")
                return Fence.PAUSE
            topics_json = orjson.dumps(list(topics)).decode()
            if topics and tx.one("count_unread", {"run_id": run_id, "topics": topics_json})["n"]:
                return Fence.READY
            children_json = orjson.dumps(list(children)).decode()
            if children and tx.one("count_finished", {"run_ids": children_json})["n"]:
                return Fence.READY
            tx.execute(
                "suspend_run",
                {
                    "run_id": run_id,
                    "epoch": epoch,
                    "wake_at": wake_at,
                    "topics": topics_json if topics else None,
                    "now": tx.now,
                },
            )
            tx.event(
                run_id,
                "run.waiting",
                {"wake_at": wake_at, "topics": list(topics), "children": list(children)},
            )
            return Fence.OK

        return await self._call(go)

    async def pause_at_boundary(self, run_id: str, epoch: int) -> bool:
        """Pause a running run that stopped at a step boundary."""

        def go(tx: _Tx) -> bool:
            row = tx.one("pause_run", {"run_id": run_id, "epoch": epoch, "now": tx.now})
            if row is not None:
                tx.event(run_id, "run.paused")
            return row is not None

        return await self._call(go)

    async def request_pause(self, run_id: str) -> Run:
        """Pause a run now (idle) or at its next step boundary (running)."""

        def go(tx: _Tx) -> Run:
            params = {"run_id": run_id, "now": tx.now}
            if tx.one("pause_idle", params) is not None:
                tx.event(run_id, "run.paused")
            elif tx.one("request_pause", params) is not None:
                tx.event(run_id, "run.pause_requested")
            run = tx.run(run_id)
            if run.status.terminal:
                raise errors.RunStateError(
                    f"run {run_id!r} has already {run.status.value}; only unfinished runs "
                    "can be paused",
                    run_id=run_id,
                    status=run.status.value,
                )
            return run

        return await self._call(go)

    async def resume(self, run_id: str) -> Run:
        """Make a paused run runnable again; see :meth:`Store.resume`."""

        def go(tx: _Tx) -> Run:
            params = {"run_id": run_id, "now": tx.now}
            if (
                tx.one("resume_run", params) is not None
                or tx.one("clear_pause_request", params) is not None
            ):
                tx.event(run_id, "run.resumed")
            run = tx.run(run_id)
            if run.status.terminal:
                raise errors.RunStateError(
                    f"run {run_id!r} has already {run.status.value}; it cannot be resumed. "
                    "Fork it to run it again from a step",
                    run_id=run_id,
                    status=run.status.value,
                )
            return run

        return await self._call(go)

    async def cancel(self, run_id: str, reason: str) -> list[str]:
        """Cancel a run and its unfinished descendants; see :meth:`Store.cancel`."""
        error = orjson.dumps(
            {"type": "kernos.errors.Cancelled", "code": "cancelled", "message": reason}
        ).decode()

        def go(tx: _Tx) -> list[str]:
            tx.run(run_id)  # raises RunNotFoundError
            rows = tx.all("cancel_tree", {"run_id": run_id, "error": error, "now": tx.now})
            cancelled = {row["run_id"] for row in rows}
            for row in rows:
                tx.event(row["run_id"], "run.cancelled", {"reason": reason})
                cancel_run_approvals(tx, row["run_id"])
                settle_dependents(tx, row["run_id"], succeeded=False)
                parent = row["parent_id"]
                if parent is not None and parent not in cancelled:
                    tx.execute("wake_run", {"run_id": parent, "now": tx.now})
            return sorted(cancelled)

        return await self._call(go)

    async def send(self, run_id: str, topic: str, payload: str) -> None:
        """Queue a message for a run; see :meth:`Store.send`."""

        def go(tx: _Tx) -> None:
            run = tx.run(run_id)
            if run.status.terminal:
                raise errors.RunStateError(
                    f"run {run_id!r} has already {run.status.value}; a message sent to it "
                    "would never be read",
                    run_id=run_id,
                    status=run.status.value,
                )
            params = {"run_id": run_id, "topic": topic, "payload": payload, "now": tx.now}
            tx.execute("insert_message", params)
            tx.event(run_id, "message.sent", {"topic": topic})
            tx.one("wake_for_message", {"run_id": run_id, "topic": topic, "now": tx.now})

        await self._call(go)

    async def fork(self, source: str, at_seq: int, patch: str | None, new: NewRun) -> None:
        """Create a run from another's journal prefix; see :meth:`Store.fork`."""

        def go(tx: _Tx) -> None:
            tx.run(source)
            if not insert_run(tx, new, status=RunStatus.PENDING):
                raise errors.InvalidForkError(
                    f"a run with id {new.run_id!r} already exists; choose another id for the fork",
                    run_id=new.run_id,
                )
            tx.execute(
                "copy_journal", {"new_run_id": new.run_id, "run_id": source, "before_seq": at_seq}
            )
            if patch is not None:
                tx.execute(
                    "insert_patched_entry",
                    {
                        "new_run_id": new.run_id,
                        "run_id": source,
                        "seq": at_seq,
                        "output": tx.put(patch),
                        "now": tx.now,
                    },
                )
            tx.execute("supersede_run", {"run_id": source, "new_run_id": new.run_id, "now": tx.now})
            tx.event(source, "run.superseded", {"by": new.run_id, "at_seq": at_seq})

        await self._call(go)

    # -- journal, events, checkpoints -----------------------------------------

    async def load_journal(self, run_id: str) -> list[JournalEntry]:
        """Return a run's journal in seq order."""
        return await self._call(
            lambda tx: [
                JournalEntry.from_row(row, tx.decode)
                for row in tx.all("load_journal", {"run_id": run_id})
            ],
            write=False,
        )

    async def get_entry(self, run_id: str, seq: int) -> JournalEntry | None:
        """Return one journal entry, or None."""

        def go(tx: _Tx) -> JournalEntry | None:
            row = tx.one("get_entry", {"run_id": run_id, "seq": seq})
            return None if row is None else JournalEntry.from_row(row, tx.decode)

        return await self._call(go, write=False)

    async def list_events(
        self, run_id: str | None = None, *, after: int = 0, limit: int = 1000
    ) -> list[Event]:
        """Return events with id above ``after``, oldest first."""
        params = {"run_id": run_id, "after": after, "limit": limit}
        return await self._call(
            lambda tx: [Event.from_row(row, tx.decode) for row in tx.all("list_events", params)],
            write=False,
        )

    async def list_checkpoints(self, run_id: str) -> list[Checkpoint]:
        """Return a run's named checkpoints in the order taken (unverified)."""

        def go(tx: _Tx) -> list[Checkpoint]:
            found = []
            for row in tx.all("list_checkpoints", {"run_id": run_id}):
                detail = decode(row["detail"])
                recorded = str(detail.get("sha256", "")) if isinstance(detail, dict) else ""
                text = self.blobs.resolve(row["output"], tx.execute)
                found.append(
                    Checkpoint(
                        run_id=row["run_id"],
                        seq=row["seq"],
                        name=row["name"],
                        sha256=recorded,
                        state=decode(text),
                        taken_at=row["started_at"],
                        intact=text is not None and checksum(text) == recorded,
                    )
                )
            return found

        return await self._call(go, write=False)

    # -- workers -------------------------------------------------------------------

    async def register_worker(self, worker: Worker, pid_start: str | None) -> None:
        """Record a worker as active."""
        params = {
            "worker_id": worker.worker_id,
            "host": worker.host,
            "pid": worker.pid,
            "pid_start": pid_start,
            "state": worker.state,
            "queues": ",".join(worker.queues) if worker.queues is not None else None,
            "concurrency": worker.concurrency,
        }
        await self._call(lambda tx: tx.execute("upsert_worker", {**params, "now": tx.now}))

    async def heartbeat(self, worker_id: str, *, lease_s: float) -> set[str]:
        """Record a heartbeat, extend the worker's leases, return the runs it holds."""

        def go(tx: _Tx) -> set[str]:
            tx.execute("heartbeat_worker", {"worker_id": worker_id, "now": tx.now})
            rows = tx.all("renew_leases", {"owner": worker_id, "expires": tx.now + lease_s})
            return {row["run_id"] for row in rows}

        return await self._call(go)

    async def set_worker_state(self, worker_id: str, state: str) -> None:
        """Set a worker's registry state."""
        await self._call(
            lambda tx: tx.execute(
                "set_worker_state", {"worker_id": worker_id, "state": state, "now": tx.now}
            )
        )

    async def list_workers(self) -> list[Worker]:
        """Return the worker registry."""

        def go(tx: _Tx) -> list[Worker]:
            in_flight = {row["owner"]: row["n"] for row in tx.all("runs_in_flight", {})}
            return [
                Worker.from_row(row, in_flight.get(row["worker_id"], 0))
                for row in tx.all("list_workers", {})
            ]

        return await self._call(go, write=False)

    async def workers_on_host(self, host: str) -> list[tuple[Worker, str | None]]:
        """Return live workers on ``host`` with their process start markers."""
        return await self._call(
            lambda tx: [
                (Worker.from_row(row), row["pid_start"])
                for row in tx.all("live_workers_on_host", {"host": host})
            ],
            write=False,
        )

    async def retire_worker(self, worker_id: str, *, dead: bool) -> list[str]:
        """Mark a worker gone and hand back its runs; see :meth:`Store.retire_worker`."""

        def go(tx: _Tx) -> list[str]:
            tx.execute("set_worker_state", {"worker_id": worker_id, "state": "gone", "now": tx.now})
            query = "expire_owner" if dead else "release_owner"
            rows = tx.all(query, {"owner": worker_id, "now": tx.now})
            for row in rows:
                tx.event(row["run_id"], "run.released", {"worker": worker_id, "dead": dead})
            return [row["run_id"] for row in rows]

        return await self._call(go)

    async def mark_stale_workers(self, cutoff: float) -> list[str]:
        """Mark workers silent since ``cutoff`` as stale."""
        return await self._call(
            lambda tx: [row["worker_id"] for row in tx.all("stale_workers", {"cutoff": cutoff})]
        )


def _fence(tx: _Tx, write: EntryWrite) -> Fence:
    row = tx.one("fence", fence_params(tx, write))
    if row is None:
        return Fence.LOST
    return Fence.PAUSE if row["pause_requested"] else Fence.OK


def fence_params(tx: _Tx, write: EntryWrite) -> dict[str, Any]:
    return {"run_id": write.run_id, "epoch": write.epoch, "steps": write.seq + 1, "now": tx.now}


def fenced_entry_params(tx: _Tx, write: EntryWrite) -> dict[str, Any]:
    params = _entry_params(
        tx, write, status=write.status, output=write.output, finished_at=write.finished_at
    )
    params["epoch"] = write.epoch
    return params


def fenced_event_params(tx: _Tx, entries: list[EntryWrite]) -> list[dict[str, Any]]:
    return [
        {
            "run_id": w.run_id,
            "epoch": w.epoch,
            "kind": w.event_kind,
            "now": tx.now,
            "data": w.event_data,
        }
        for w in entries
        if w.event_kind is not None
    ]


def _upsert_entry(
    tx: _Tx, write: EntryWrite, *, status: str, output: str | None, finished_at: float | None
) -> None:
    tx.execute(
        "upsert_entry",
        _entry_params(tx, write, status=status, output=output, finished_at=finished_at),
    )


def _entry_params(
    tx: _Tx, write: EntryWrite, *, status: str, output: str | None, finished_at: float | None
) -> dict[str, Any]:
    return {
        "run_id": write.run_id,
        "seq": write.seq,
        "kind": write.kind,
        "name": write.name,
        "status": status,
        "args_hash": write.args_hash,
        "output": tx.put(output),
        "error": write.error,
        "attempts": write.attempts,
        "detail": write.detail,
        "started_at": write.started_at,
        "finished_at": finished_at,
    }


def _apply_event(tx: _Tx, write: EventWrite) -> None:
    tx.event(write.run_id, write.kind, write.data)


def _apply_finish(tx: _Tx, write: FinishWrite) -> Fence:
    row = tx.one(
        "finish_run",
        {
            "run_id": write.run_id,
            "epoch": write.epoch,
            "status": write.status,
            "output": tx.put(write.output),
            "error": write.error,
            "now": tx.now,
        },
    )
    if row is None:
        return Fence.LOST
    tx.event(write.run_id, f"run.{write.status}", write.event_data)
    settle_dependents(tx, write.run_id, succeeded=write.status == RunStatus.SUCCEEDED.value)
    if row["parent_id"] is not None:
        tx.execute("wake_run", {"run_id": row["parent_id"], "now": tx.now})
    return Fence.OK


_APPLY: dict[type, Callable[[_Tx, Any], Fence | None]] = {
    EventWrite: _apply_event,
    FinishWrite: _apply_finish,
}
