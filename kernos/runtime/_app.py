"""The application object: a store, the registered workflows, and an engine."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, Generic, TypeVar

from kernos import errors
from kernos.records import (
    DEFAULT_TENANT,
    Checkpoint,
    EntryKind,
    EntryStatus,
    Event,
    JournalEntry,
    QueueStats,
    Run,
    RunStatus,
    Worker,
)
from kernos.runtime._context import failure_of
from kernos.runtime._definitions import Registry, Workflow, registry
from kernos.runtime._engine import Engine
from kernos.runtime._queues import queues as declared_queues
from kernos.runtime._replay import ReplayReport, replay
from kernos.serialization import encode, restore
from kernos.store import NewRun, RunFilter, Store, open_store

__all__ = ["Kernos", "RunHandle"]

T = TypeVar("T")

DEFAULT_STORE = "sqlite:///kernos.db"
# Entries whose result a fork may replace: a model's answer (llm), a tool's
# result, a step's result, a received message, a child's result.
_PATCHABLE = frozenset(
    {EntryKind.STEP, EntryKind.LLM, EntryKind.TOOL, EntryKind.RECV, EntryKind.CHILD}
)
LOCAL_RECHECK = 5.0  # seconds; a safety net for local runs, which notify when they end


class RunHandle(Generic[T]):
    """A reference to a run, from :meth:`Kernos.start`, :meth:`Kernos.fork` or
    :meth:`Kernos.handle`."""

    def __init__(self, app: Kernos, run_id: str, workflow: Workflow[Any, Any] | None) -> None:
        self.app = app
        self.run_id = run_id
        self._workflow = workflow

    async def status(self) -> RunStatus:
        """The run's current status."""
        return (await self.app.get_run(self.run_id)).status

    async def result(self, *, timeout: float | None = None, poll: float = 0.2) -> T:
        """Wait for the run to end and return its output.

        Waits on local execution when the run executes in this process, and polls
        the store (every ``poll`` seconds) when it executes elsewhere.

        Raises:
            RunFailedError: the run failed (``error_type`` names what ended it).
            RunCancelledError: the run was cancelled.
            TimeoutError: ``timeout`` seconds passed first.
        """
        loop = asyncio.get_running_loop()
        give_up = None if timeout is None else loop.time() + timeout
        while True:
            run = await self.app.get_run(self.run_id)
            if run.status is RunStatus.SUCCEEDED:
                workflow = self._workflow or registry.get(run.workflow)
                annotation = workflow.return_type if workflow is not None else Any
                result: T = restore(run.output, annotation)
                return result
            if run.status.terminal:
                raise failure_of(run)
            # A run executing here says when it ends: no need to ask the store
            # (polling would compete with the journal writer for the store).
            wait = LOCAL_RECHECK if self.app.engine.is_local(self.run_id) else poll
            if give_up is not None:
                wait = min(wait, give_up - loop.time())
                if wait <= 0:
                    raise TimeoutError(f"run {self.run_id!r} is still {run.status.value}")
            await self.app.engine.wait_changed(self.run_id, wait)

    async def cancel(self, reason: str = "cancelled by request") -> list[str]:
        """Cancel the run and its unfinished children; see :meth:`Kernos.cancel`."""
        return await self.app.cancel(self.run_id, reason)

    def __repr__(self) -> str:
        return f"<RunHandle {self.run_id}>"


class Kernos:
    """A Kernos application: durable runs of the workflows declared in this process.

    Use it as an async context manager, or call :meth:`open` and :meth:`close`::

        async with kernos.Kernos("sqlite:///kernos.db") as app:
            handle = await app.start(brief, "2026-11-22", run_id="brief-2026-11-22")
            print(await handle.result())

    Args:
        store: ``sqlite:///path.db`` (default ``sqlite:///kernos.db``) or
            ``postgresql://...``, or a :class:`~kernos.store.Store`.
        worker: when True (the default) this process also claims and executes
            runnable runs: new ones, ones woken by timers or messages, and ones
            left behind by a worker that died.
        concurrency: runs this process executes at once.
        lease: seconds a claim lasts without a heartbeat; a worker silent for
            longer loses its runs to others.
        poll_interval: seconds between claims when nothing wakes the worker.
        inline_wait: sleeps up to this long wait in place; longer ones suspend.
        threads: threads for sync steps and sync workflows.
        durable: ``False`` trades crash safety for speed (SQLite
            ``synchronous=NORMAL``, PostgreSQL ``synchronous_commit=off``).
        blob_threshold: values longer than this (bytes of JSON) are stored out of line.
        blob_dir: store out-of-line values as files in this directory.
        migrate: apply pending schema migrations when opening.
        queues: the queues this worker claims from (default: every queue).
        clock: the time source (seconds since the epoch); tests may control it.
    """

    _current: Kernos | None = None

    def __init__(
        self,
        store: str | Store = DEFAULT_STORE,
        *,
        worker: bool = True,
        concurrency: int = 100,
        lease: float = 30.0,
        poll_interval: float = 0.5,
        inline_wait: float = 5.0,
        threads: int = 64,
        durable: bool = True,
        blob_threshold: int = 64 * 1024,
        blob_dir: str | None = None,
        migrate: bool = True,
        queues: Sequence[str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if concurrency < 1:
            raise errors.ConfigError(f"concurrency must be at least 1, got {concurrency}")
        if lease <= 0 or poll_interval <= 0:
            raise errors.ConfigError("lease and poll_interval must be positive")
        self.store = (
            open_store(
                store,
                durable=durable,
                blob_threshold=blob_threshold,
                blob_dir=blob_dir,
                clock=clock,
            )
            if isinstance(store, str)
            else store
        )
        self.registry: Registry = registry
        self.claims = worker
        self.migrate_on_open = migrate
        self.clock = clock
        self.engine = Engine(
            self.store,
            self.registry,
            concurrency=concurrency,
            lease_s=lease,
            poll_interval=poll_interval,
            inline_wait=inline_wait,
            threads=threads,
            clock=clock,
            queues=queues,
        )
        self.engine.app = self
        self._open = False
        self._opening: asyncio.Lock | None = None

    # -- life cycle ---------------------------------------------------------------

    async def open(self) -> Kernos:
        """Migrate the schema (unless disabled); with ``worker=True``, start working.

        An app with ``worker=False`` joins the worker registry only once it
        executes something (:meth:`start`), so read-only tools never appear there.
        """
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            if self._open:
                return self
            if self.migrate_on_open:
                await self.store.migrate()
            else:
                applied, needed = await self.store.schema_version()
                if applied < needed:
                    raise errors.MigrationError(
                        f"the store is at schema version {applied}, this code needs {needed}; "
                        "run `kernos db migrate`",
                        applied=applied,
                        needed=needed,
                    )
            for queue in declared_queues.values():
                await self.store.upsert_queue(queue.spec)
            if self.claims:
                await self.engine.start(claim=True)
            self._open = True
            Kernos._current = self
        return self

    @classmethod
    def current(cls) -> Kernos:
        """The app most recently opened in this process (used by ``Queue.enqueue``).

        Raises:
            UsageError: no app is open.
        """
        if cls._current is None:
            raise errors.UsageError(
                "no Kernos app is open in this process; open one first "
                "(`async with kernos.Kernos(store_url) as app:`)"
            )
        return cls._current

    async def close(self, *, grace: float = 0.0) -> None:
        """Stop claiming, let running runs go on for up to ``grace`` seconds, then
        hand back what is unfinished (another worker resumes it from its journal)
        and close the store."""
        if self._open or self.engine.started:
            await self.engine.stop(grace=grace)
        self._open = False
        if Kernos._current is self:
            Kernos._current = None
        await self.store.close()

    async def __aenter__(self) -> Kernos:
        return await self.open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- starting and finding runs --------------------------------------------

    async def start(
        self,
        workflow: Workflow[..., T] | Workflow[..., Any],
        *args: Any,
        run_id: str | None = None,
        timeout: float | None = None,
        tenant: str = DEFAULT_TENANT,
        **kwargs: Any,
    ) -> RunHandle[Any]:
        """Start a run of ``workflow`` and return its handle at once.

        The run is created and begins executing in this process. ``run_id`` is an
        idempotency key: starting an id that exists returns the existing run and
        starts nothing.

        Args:
            workflow: a function decorated with :func:`kernos.workflow`.
            *args, **kwargs: the workflow's arguments (JSON-serializable,
                dataclasses or pydantic models).
            run_id: the run's id (default: a new UUID).
            timeout: seconds the run may take in all (default: the workflow's).
            tenant: the tenant the run belongs to; its children, forks and the
                runs it enqueues belong to it too.

        Raises:
            SerializationError: an argument cannot be stored as JSON.
        """
        if not isinstance(workflow, Workflow):
            raise errors.UsageError(
                f"{workflow!r} is not a workflow; decorate it with @kernos.workflow"
            )
        await self.open()
        await self.engine.start(claim=self.claims)
        new = NewRun(
            run_id=run_id or uuid.uuid4().hex,
            workflow=workflow.name,
            version=workflow.version,
            input=encode(
                {"args": list(args), "kwargs": kwargs}, what=f"input of workflow {workflow.name!r}"
            ),
            owner=self.engine.worker_id,
            lease_s=self.engine.lease_s,
            timeout=timeout if timeout is not None else workflow.timeout,
            tenant=tenant,
        )
        if await self.store.create_run(new):
            self.engine.launch(await self.store.get_run(new.run_id))
        return RunHandle(self, new.run_id, workflow)

    async def enqueue(
        self,
        queue: str,
        workflow: Workflow[..., Any],
        args: Sequence[Any] = (),
        kwargs: dict[str, Any] | None = None,
        *,
        tenant: str = DEFAULT_TENANT,
        **options: Any,
    ) -> RunHandle[Any]:
        """Put a run on ``queue``; the options are those of :meth:`Queue.enqueue`.

        ``tenant`` is the tenant the run belongs to.
        """
        await self.open()
        new = self.new_queued_run(
            queue, workflow, tuple(args), kwargs or {}, tenant=tenant, **options
        )
        enqueued = await self.store.enqueue(new)
        self.engine.poke()
        return RunHandle(self, enqueued.run_id, workflow)

    def new_queued_run(
        self,
        queue: str,
        workflow: Workflow[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        priority: int = 0,
        key: str | None = None,
        depends_on: Sequence[str] = (),
        on_dep_failure: str = "cancel",
        delay: float | None = None,
        dedup_id: str | None = None,
        run_id: str | None = None,
        timeout: float | None = None,
        default_id: str | None = None,
        tenant: str = DEFAULT_TENANT,
    ) -> NewRun:
        """Describe a queued run (validated, input encoded), ready for ``Store.enqueue``."""
        if not isinstance(workflow, Workflow):
            raise errors.UsageError(
                f"{workflow!r} is not a workflow; decorate it with @kernos.workflow"
            )
        if delay is not None and delay < 0:
            raise errors.UsageError(f"delay must be 0 or more seconds, got {delay}")
        return NewRun(
            run_id=run_id or default_id or uuid.uuid4().hex,
            workflow=workflow.name,
            version=workflow.version,
            input=encode(
                {"args": list(args), "kwargs": kwargs}, what=f"input of workflow {workflow.name!r}"
            ),
            queue=queue,
            priority=priority,
            delay=delay or None,
            timeout=timeout if timeout is not None else workflow.timeout,
            concurrency_key=key,
            dedup_id=dedup_id,
            depends_on=tuple(depends_on),
            on_dep_failure=on_dep_failure,
            tenant=tenant,
        )

    async def queues(self, tenant: str | None = None) -> list[QueueStats]:
        """Every queue with limits or unfinished runs: its limits and depth.

        With ``tenant``, the depths count that tenant's runs only.
        """
        return await self.store.list_queues(tenant)

    async def workers(self) -> list[Worker]:
        """The worker registry: id, host, pid, queues, heartbeat, runs in flight, state."""
        return await self.store.list_workers()

    def handle(self, run_id: str) -> RunHandle[Any]:
        """A handle to an existing run."""
        return RunHandle(self, run_id, None)

    async def get_run(self, run_id: str) -> Run:
        """Return a run. Raises RunNotFoundError."""
        return await self.store.get_run(run_id)

    async def list_runs(
        self,
        *,
        status: RunStatus | str | None = None,
        workflow: str | None = None,
        parent_id: str | None = None,
        limit: int = 50,
        before: tuple[float, str] | None = None,
        tenant: str | None = None,
        queue: str | None = None,
        created_after: float | None = None,
        created_before: float | None = None,
        text: str | None = None,
    ) -> list[Run]:
        """List runs, newest first.

        Args:
            status, workflow, parent_id, queue: keep the runs with this value.
            limit: the page size.
            before: the last run's ``(created_at, run_id)`` of the previous page.
            tenant: keep one tenant's runs (default: every tenant's).
            created_after, created_before: creation time bounds (epoch seconds;
                the first inclusive, the second exclusive).
            text: keep runs whose id, workflow or error contains it (any case).
        """
        return await self.store.list_runs(
            self._filter(
                status=status,
                workflow=workflow,
                parent_id=parent_id,
                limit=limit,
                before=before,
                tenant=tenant,
                queue=queue,
                created_after=created_after,
                created_before=created_before,
                text=text,
            )
        )

    async def count_matching(self, query: RunFilter) -> int:
        """How many runs match ``query`` (its ``limit`` and ``before`` are ignored)."""
        return await self.store.count_matching(query)

    @staticmethod
    def _filter(*, status: RunStatus | str | None, **fields: Any) -> RunFilter:
        status_value = RunStatus(status).value if status is not None else None
        return RunFilter(status=status_value, **fields)

    async def journal(self, run_id: str) -> list[JournalEntry]:
        """A run's journal entries in order."""
        await self.store.get_run(run_id)
        return await self.store.load_journal(run_id)

    async def events(
        self, run_id: str | None = None, *, after: int = 0, limit: int = 1000
    ) -> list[Event]:
        """Events (of one run, or all) with ids above ``after``, oldest first."""
        return await self.store.list_events(run_id, after=after, limit=limit)

    def on_events_committed(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` after each journal commit of this process that wrote events.

        It runs in the event loop, right after the commit, and must return at
        once (the API's event hub uses it to poll for the new events without
        waiting for its poll interval). Events the store writes outside the
        journal writer (creating, cancelling runs) do not call it.
        """
        self.engine.writer.on_events_committed.append(callback)

    # -- controlling runs ----------------------------------------------------------

    async def cancel(self, run_id: str, reason: str = "cancelled by request") -> list[str]:
        """Cancel a run, its unfinished children and their pending waits.

        A run executing in this process is interrupted at once; one executing
        elsewhere stops at its next journal write. Cancelling a finished run does
        nothing. Returns the ids cancelled.
        """
        cancelled = await self.store.cancel(run_id, reason)
        self.engine.stop_local(cancelled)
        for cancelled_id in cancelled:
            self.engine.notify(cancelled_id)
        self.engine.poke()
        return cancelled

    async def pause(self, run_id: str) -> Run:
        """Pause a run: at once if idle, at its next step boundary if running."""
        return await self.store.request_pause(run_id)

    async def resume(self, run_id: str) -> Run:
        """Resume a paused run (on any worker that claims it)."""
        run = await self.store.resume(run_id)
        self.engine.poke()
        return run

    async def purge(self, run_id: str) -> dict[str, int]:
        """Delete a finished run's journal, events, messages and the run itself.

        Large values it stored are deleted too unless another run refers to
        them. Its children, forks and dependents are separate runs: they are
        kept (purge them one by one). Returns the rows deleted per kind
        (``journal``, ``events``, ``messages``, ``blobs``, ``runs``).

        Raises:
            RunNotFoundError: no such run.
            RunStateError: the run has not finished (cancel it first).
        """
        return await self.store.purge_run(run_id)

    async def send(self, run_id: str, payload: Any, *, topic: str = "default") -> None:
        """Send a message to a run; it is delivered by :func:`kernos.recv` on ``topic``.

        Messages sent before the run waits are kept, in order, until received.

        Raises:
            RunNotFoundError: no such run.
            RunStateError: the run has already finished.
        """
        await self.store.send(run_id, topic, encode(payload, what=f"message to run {run_id!r}"))
        self.engine.poke()

    # -- time travel -------------------------------------------------------------

    async def fork(
        self,
        run_id: str,
        at: int | str,
        *,
        patch: Any = None,
        patched: bool | None = None,
        new_run_id: str | None = None,
    ) -> RunHandle[Any]:
        """Fork a run: a new run reuses its journal before ``at`` and goes on from there.

        The original is kept and marked superseded by the fork; if it has not
        finished it is cancelled first, so the two never both act. The fork
        belongs to the original's tenant.

        Args:
            run_id: the run to fork.
            at: a journal seq, or the name of a checkpoint (the fork then resumes
                just after it, its state verified first).
            patch: a replacement result for the entry at ``at``: the fork sees
                ``patch`` there instead of re-running it (for an ``llm`` entry, the
                model's edited answer; for a ``tool`` entry, the tool's result).
            patched: set True to patch with ``None`` itself (a ``None`` ``patch``
                otherwise means "no patch").
            new_run_id: the fork's id (default ``<run_id>~<short uuid>``).

        Raises:
            InvalidForkError: ``at`` is not in the journal, or is not patchable.
            ChecksumMismatchError: forking at a checkpoint whose state is corrupt.
        """
        source = await self.store.get_run(run_id)
        journal = await self.store.load_journal(run_id)
        at_seq = await self._fork_position(run_id, at, journal)
        apply_patch = patched if patched is not None else patch is not None
        settled = {e.seq: e for e in journal if e.status is not EntryStatus.PENDING}
        unsettled = [e.seq for e in journal if e.seq < at_seq and e.seq not in settled]
        if unsettled:
            raise errors.InvalidForkError(
                f"run {run_id!r} has an unfinished wait at seq {unsettled[0]}; fork at or "
                f"before seq {unsettled[0]}",
                run_id=run_id,
                at_seq=at_seq,
            )
        if at_seq > len(journal) or (apply_patch and at_seq not in settled):
            raise errors.InvalidForkError(
                f"run {run_id!r} has no settled journal entry at seq {at_seq} (it has "
                f"{len(journal)}); `kernos runs show {run_id}` lists them",
                run_id=run_id,
                at_seq=at_seq,
            )
        if apply_patch and settled[at_seq].kind not in _PATCHABLE:
            raise errors.InvalidForkError(
                f"seq {at_seq} of run {run_id!r} is a {settled[at_seq].kind.value}; only step, "
                "llm, tool, recv and child results can be patched",
                run_id=run_id,
                at_seq=at_seq,
            )
        if not source.status.terminal:
            await self.cancel(run_id, "superseded by a fork")
        fork_id = new_run_id or f"{run_id}~{uuid.uuid4().hex[:8]}"
        new = NewRun(
            run_id=fork_id,
            workflow=source.workflow,
            version=source.version,
            input=encode(source.input, what="input"),
            forked_from=run_id,
            fork_seq=at_seq,
            queue=source.queue,
            priority=source.priority,
            timeout=source.timeout,
            tenant=source.tenant,
        )
        text = encode(patch, what=f"patch for seq {at_seq}") if apply_patch else None
        await self.store.fork(run_id, at_seq, text, new)
        self.engine.poke()
        return RunHandle(self, fork_id, self.registry.get(source.workflow))

    async def _fork_position(self, run_id: str, at: int | str, journal: list[JournalEntry]) -> int:
        if isinstance(at, int):
            if at < 0:
                raise errors.InvalidForkError(f"seq must be 0 or more, got {at}", at_seq=at)
            return at
        checkpoint = await self._verified_checkpoint(run_id, at)
        return checkpoint.seq + 1

    async def replay(self, run_id: str) -> ReplayReport:
        """Re-execute a run's workflow code against its journal, with no side effects.

        Returns a report saying "identical" or naming the first divergence (a
        different step name, order or argument hash, or output).

        Raises:
            WorkflowNotFoundError: the run's workflow is not registered here.
        """
        run = await self.store.get_run(run_id)
        workflow = self.registry.get(run.workflow)
        if workflow is None:
            raise errors.WorkflowNotFoundError(
                f"cannot replay run {run_id!r}: workflow {run.workflow!r} is not registered "
                "in this process; import the module that defines it",
                workflow=run.workflow,
                run_id=run_id,
            )
        return await replay(workflow, run, await self.store.load_journal(run_id))

    # -- checkpoints ---------------------------------------------------------------

    async def checkpoints(self, run_id: str) -> list[Checkpoint]:
        """A run's named checkpoints, in the order taken (each says if it is intact)."""
        await self.store.get_run(run_id)
        return await self.store.list_checkpoints(run_id)

    async def restore(self, run_id: str, name: str) -> Any:
        """The state of a run's latest checkpoint named ``name``, verified.

        Raises:
            ChecksumMismatchError: the stored state does not match its SHA-256.
            InvalidForkError: the run has no checkpoint of that name.
        """
        return (await self._verified_checkpoint(run_id, name)).state

    async def _verified_checkpoint(self, run_id: str, name: str) -> Checkpoint:
        matches = [c for c in await self.checkpoints(run_id) if c.name == name]
        if not matches:
            raise errors.InvalidForkError(
                f"run {run_id!r} has no checkpoint named {name!r}; `kernos checkpoints list "
                f"{run_id}` shows its checkpoints",
                run_id=run_id,
                name=name,
            )
        checkpoint = matches[-1]
        if not checkpoint.intact:
            raise errors.ChecksumMismatchError(
                f"checkpoint {name!r} of run {run_id!r} (seq {checkpoint.seq}) does not match "
                "its SHA-256 checksum: the stored state was altered or corrupted",
                run_id=run_id,
                seq=checkpoint.seq,
                expected=checkpoint.sha256,
            )
        return checkpoint
