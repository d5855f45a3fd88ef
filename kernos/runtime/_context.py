"""One execution of a run: its journal position, its recorded entries and the
durable primitives (step, sleep, recv, child, checkpoint) that read and write them.

The same context serves live execution and replay. Live, an entry missing from
the journal is produced (the step runs, the timer is set) and written before the
workflow goes on. In replay, nothing is produced: every call must find its
entry, and the first one that does not is reported as a divergence.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import threading
import typing
from collections.abc import Coroutine, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from kernos import errors
from kernos.records import EntryKind, EntryStatus, JournalEntry, Run, RunStatus
from kernos.serialization import args_hash, checksum, decode, encode, restore
from kernos.store import EntryWrite, EventWrite, Fence, NewRun
from kernos.types import JSON

if TYPE_CHECKING:
    from kernos.runtime._definitions import Step, Workflow
    from kernos.runtime._engine import Engine

__all__ = ["Divergence", "RunContext", "StepScope", "Suspend", "active", "current_step", "require"]

T = TypeVar("T")

_current: ContextVar[RunContext | None] = ContextVar("kernos_run", default=None)
_in_step: ContextVar[bool] = ContextVar("kernos_in_step", default=False)
_scope: ContextVar[StepScope | None] = ContextVar("kernos_step_scope", default=None)
_PLAIN_RESULTS = (str, int, float, bool, type(None))


def active() -> RunContext | None:
    """The run executing in this task or thread, unless we are inside a step body."""
    ctx = _current.get()
    if ctx is None or _in_step.get():
        return None
    return ctx


def current_step() -> StepScope | None:
    """The entry the running step body is producing; ``None`` outside a step body."""
    return _scope.get()


def require(primitive: str) -> RunContext:
    """The active run; raises NotInWorkflowError naming ``primitive`` otherwise."""
    ctx = active()
    if ctx is None:
        where = "inside a step" if _in_step.get() else "outside a workflow"
        raise errors.NotInWorkflowError(
            f"kernos.{primitive}() was called {where}; durable primitives belong in "
            "workflow code (a step body is plain code: use asyncio there)",
            primitive=primitive,
        )
    return ctx


class Suspend(BaseException):
    """Unwinds a workflow that must wait; the engine lets the run go until woken.

    A ``BaseException`` so workflow code's ``except Exception`` cannot swallow it.
    """

    def __init__(
        self,
        *,
        wake_at: float | None = None,
        topics: Sequence[str] = (),
        children: Sequence[str] = (),
        pause: bool = False,
    ) -> None:
        super().__init__("run suspended")
        self.wake_at = wake_at
        self.topics = list(topics)
        self.children = list(children)
        self.pause = pause

    @classmethod
    def merge(cls, waits: Sequence[Suspend]) -> Suspend:
        """One suspension that wakes for whichever of ``waits`` comes first."""
        times = [w.wake_at for w in waits if w.wake_at is not None]
        return cls(
            wake_at=min(times) if times else None,
            topics=sorted({t for w in waits for t in w.topics}),
            children=sorted({c for w in waits for c in w.children}),
            pause=any(w.pause for w in waits),
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class Divergence:
    """Where replayed code first differed from the journal."""

    seq: int
    reason: str  # "name", "args", "kind", "order", "extra", "missing", "checksum", "output"
    expected: str
    found: str


@dataclass(slots=True, eq=False)
class StepScope:
    """The journal entry a step body is producing, seen from inside the body.

    Get it with :func:`kernos.runtime.current_step`. A body may add fields to
    its entry's ``detail`` and to its completion event (``annotate``), and
    append events to the run's event record while it works (``emit``), e.g. the
    deltas of a streaming model call. Each attempt gets a fresh scope, so the
    detail of a failed attempt does not leak into the next one.

    Attributes:
        run_id: the run the step belongs to.
        tenant: that run's tenant.
        seq: the journal position of the entry.
        name: the entry's name.
        kind: the entry's kind (``step``, ``llm`` or ``tool``).
        attempt: 1 for the first attempt, 2 for the first retry, ...
        detail: what ``annotate`` added for the entry's ``detail`` (JSON values).
        event: what ``annotate`` added for the completion or failure event.
    """

    run_id: str
    tenant: str
    seq: int
    name: str
    kind: EntryKind
    attempt: int
    ctx: RunContext = field(repr=False)
    detail: dict[str, Any] = field(default_factory=dict)
    event: dict[str, Any] = field(default_factory=dict)

    def annotate(
        self, detail: Mapping[str, Any] | None = None, *, event: Mapping[str, Any] | None = None
    ) -> None:
        """Add fields to the entry's ``detail`` and to its completion (or failure) event.

        Never put secrets here: both are stored as they are.
        """
        if detail:
            self.detail.update(detail)
        if event:
            self.event.update(event)

    def emit(self, kind: str, data: Any = None) -> None:
        """Append an event to the run's event record now, without waiting for it.

        Events are observability only: they are not journaled and not replayed.
        Safe to call from a sync step's thread.
        """
        self.ctx.emit(kind, data)


class DivergenceFound(BaseException):
    """Raised inside a replay at the first divergence; ends the replay."""

    def __init__(self, divergence: Divergence) -> None:
        super().__init__(f"diverged at seq {divergence.seq}: {divergence.reason}")
        self.divergence = divergence


class JournalEnd(BaseException):
    """Raised inside a replay when the code reaches a wait the run never finished."""


@dataclass
class RunContext:
    """State of one execution of one run."""

    run: Run
    epoch: int
    workflow: Workflow[Any, Any]
    journal: dict[int, JournalEntry]
    engine: Engine | None  # None while replaying: nothing may be written
    loop: asyncio.AbstractEventLoop
    seq: int = 0
    visited: set[int] = field(default_factory=set)
    failure: BaseException | None = None
    children: list[str] = field(default_factory=list)
    _unawaited: list[asyncio.Future[Fence | None]] = field(default_factory=list)
    _loop_thread: int = field(default_factory=threading.get_ident)

    @property
    def run_id(self) -> str:
        """The id of the run being executed."""
        return self.run.run_id

    @property
    def replaying(self) -> bool:
        """Whether this is a side-effect-free replay."""
        return self.engine is None

    def _live(self) -> Engine:
        assert self.engine is not None
        return self.engine

    # -- plumbing -----------------------------------------------------------

    def take_seq(self) -> int:
        """The next journal position; taken when a primitive is called, not awaited,
        so that fan-out numbers its branches in call order."""
        seq = self.seq
        self.seq += 1
        return seq

    def dispatch(self, coro: Coroutine[Any, Any, T]) -> Any:
        """Return ``coro`` to await on the loop, or run it to completion from a sync
        workflow's thread and return its result."""
        if threading.get_ident() == self._loop_thread:
            return coro
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def recorded(
        self, seq: int, kind: EntryKind, name: str, arg_hash: str | None
    ) -> JournalEntry | None:
        """The journal entry at ``seq`` if it matches what the code asks for.

        Raises:
            NondeterminismError: live, when the entry is of another kind, name or
                argument hash.
            DivergenceFound: in replay, on any mismatch or a missing entry.
        """
        self.visited.add(seq)
        entry = self.journal.get(seq)
        found = f"{kind.value} {name!r}" + (f" args {arg_hash}" if arg_hash else "")
        if entry is None:
            if self.replaying:
                raise DivergenceFound(
                    Divergence(seq=seq, reason="extra", expected="end of journal", found=found)
                )
            return None
        expected = f"{entry.kind.value} {entry.name!r}" + (
            f" args {entry.args_hash}" if entry.args_hash else ""
        )
        reason = (
            "kind"
            if entry.kind is not kind
            else "name"
            if entry.name != name
            else "args"
            if arg_hash and entry.args_hash and entry.args_hash != arg_hash
            else None
        )
        if reason is None:
            return entry
        if self.replaying:
            raise DivergenceFound(
                Divergence(seq=seq, reason=reason, expected=expected, found=found)
            )
        self.failure = errors.NondeterminismError(
            f"run {self.run_id!r} diverged from its journal at seq {seq}: the journal has "
            f"{expected}, the code now asks for {found}. The workflow changed since the run "
            f"began (it recorded version {self.run.version!r}, this code is version "
            f"{self.workflow.version!r}); run the old code to finish it, or fork it at seq "
            f"{seq} to continue under the new code",
            run_id=self.run_id,
            seq=seq,
            expected=expected,
            found=found,
        )
        raise self.failure

    async def write(self, write: EntryWrite) -> None:
        """Write an entry through the group-committing writer and obey the fence."""
        fence = await self._live().writer.submit(write)
        self.check_fence(fence)
        self._check_unawaited()

    def check_fence(self, fence: Fence | None) -> None:
        """Stop the workflow if the store says the lease is gone or a pause is due."""
        if fence is Fence.LOST:
            raise errors.Cancelled(self.run_id, "the run was cancelled or its lease was lost")
        if fence is Fence.PAUSE:
            raise Suspend(pause=True)

    def _check_unawaited(self) -> None:
        while self._unawaited and self._unawaited[0].done():
            self.check_fence(self._unawaited.pop(0).result())

    async def flush(self) -> None:
        """Wait until writes made without awaiting (checkpoints) are durable."""
        while self._unawaited:
            self.check_fence(await self._unawaited.pop(0))

    def emit(self, kind: str, data: Any = None) -> None:
        """Queue an event for the run without waiting (nothing happens in replay)."""
        if self.engine is None:
            return
        text = None if data is None else encode(data, what=f"data of event {kind!r}")
        write = EventWrite(run_id=self.run_id, kind=kind, data=text)
        if threading.get_ident() == self._loop_thread:
            _submit_event(self.engine, write)
        else:
            self.loop.call_soon_threadsafe(_submit_event, self.engine, write)

    def _entry(self, seq: int, kind: EntryKind, name: str, **fields: Any) -> EntryWrite:
        now = self._live().clock()
        fields.setdefault("started_at", now)
        return EntryWrite(
            run_id=self.run_id, epoch=self.epoch, seq=seq, kind=kind.value, name=name, **fields
        )

    # -- steps ------------------------------------------------------------------

    def call_step(
        self, step: Step[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Coroutine[Any, Any, Any]:
        """Begin a step call at the next journal position."""
        return self._step(self.take_seq(), step, args, kwargs)

    async def _step(
        self, seq: int, step: Step[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        kind = step.kind
        what = f"{kind.value} {step.name!r}"
        if step.key is None:
            arg_hash = args_hash(args, kwargs, what=what)
        else:
            arg_hash = args_hash((step.key(*args, **kwargs),), {}, what=what)
        entry = self.recorded(seq, kind, step.name, arg_hash)
        if entry is not None:
            return settled_value(entry, step.return_type)
        engine = self._live()
        # What was written without waiting (checkpoints, write-behind steps) must be
        # durable before side effects. A model call is not one: repeating it after a
        # crash costs tokens, nothing else, so it may overlap those commits.
        if self._unawaited and kind is not EntryKind.LLM:
            await self.flush()
        attempts: list[dict[str, Any]] = []
        started = engine.clock()
        while True:
            attempt_started = engine.clock()
            scope = StepScope(
                run_id=self.run_id,
                tenant=self.run.tenant,
                seq=seq,
                name=step.name,
                kind=kind,
                attempt=len(attempts) + 1,
                ctx=self,
            )
            try:
                value = await self._attempt(step, scope, args, kwargs)
                text = encode(value, what=f"result of {kind.value} {step.name!r}")
                break
            except Exception as exc:
                attempt = len(attempts) + 1
                attempts.append(
                    {
                        "attempt": attempt,
                        "error": describe_error(exc),
                        "started_at": attempt_started,
                        "duration": engine.clock() - attempt_started,
                    }
                )
                if not step.retry.should_retry(exc, attempt):
                    await self.write(
                        self._entry(
                            seq,
                            kind,
                            step.name,
                            status=EntryStatus.ERROR.value,
                            args_hash=arg_hash,
                            error=encode(describe_error(exc), what=f"{kind.value} error"),
                            attempts=encode(attempts, what="attempts"),
                            detail=_detail_text(scope),
                            started_at=started,
                            finished_at=engine.clock(),
                            event_kind=f"{kind.value}.failed",
                            event_data=encode(
                                {
                                    "seq": seq,
                                    "name": step.name,
                                    "attempts": attempt,
                                    "error": str(exc),
                                    **scope.event,
                                },
                                what="event",
                            ),
                        )
                    )
                    raise
                delay = step.retry.delay(attempt)
                engine.writer.submit(
                    EventWrite(
                        run_id=self.run_id,
                        kind=f"{kind.value}.retrying",
                        data=encode(
                            {
                                "seq": seq,
                                "name": step.name,
                                "attempt": attempt,
                                "delay": delay,
                                "error": str(exc),
                            },
                            what="event",
                        ),
                    )
                )
                await asyncio.sleep(delay)
        finished = engine.clock()
        if kind is EntryKind.STEP and not scope.event:
            event_data = f'{{"seq":{seq},"duration":{finished - started:.6f}}}'
        else:
            event_data = encode(
                {
                    "seq": seq,
                    "name": step.name,
                    "duration": round(finished - started, 6),
                    **scope.event,
                },
                what="event",
            )
        write = self._entry(
            seq,
            kind,
            step.name,
            status=EntryStatus.OK.value,
            args_hash=arg_hash,
            output=text,
            attempts=encode(attempts, what="attempts") if attempts else None,
            detail=_detail_text(scope),
            started_at=started,
            finished_at=finished,
            event_kind=f"{kind.value}.completed",
            event_data=event_data,
        )
        if step.write_behind:
            self._unawaited.append(engine.writer.submit(write))
        else:
            await self.write(write)
        if type(value) in _PLAIN_RESULTS:
            return value
        return restore(decode(text), step.return_type)

    async def _attempt(
        self,
        step: Step[Any, Any],
        scope: StepScope,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        token = _in_step.set(True)
        scope_token = _scope.set(scope)
        try:
            if step.is_async:
                call = step.fn(*args, **kwargs)
            else:
                run_in_context = contextvars.copy_context().run
                call = self.loop.run_in_executor(
                    self._live().threads,
                    functools.partial(run_in_context, step.fn, *args, **kwargs),
                )
            if step.timeout is None:
                return await call
            timeout = asyncio.timeout(step.timeout)
            try:
                async with timeout:
                    return await call
            except TimeoutError as exc:
                if not timeout.expired():
                    raise
                raise errors.StepTimeoutError(
                    f"{step.kind.value} {step.name!r} ran past its {step.timeout}s timeout",
                    step=step.name,
                    timeout=step.timeout,
                ) from exc
        finally:
            _scope.reset(scope_token)
            _in_step.reset(token)

    # -- sleep, recv ----------------------------------------------------------

    async def sleep(self, seq: int, seconds: float) -> None:
        """A durable timer at ``seq``."""
        entry = self.recorded(seq, EntryKind.SLEEP, "sleep", None)
        if entry is not None and entry.status is not EntryStatus.PENDING:
            return
        if self.replaying:
            raise JournalEnd
        engine = self._live()
        if entry is None:
            wake_at = engine.clock() + max(0.0, seconds)
            detail = encode({"wake_at": wake_at, "seconds": seconds}, what="sleep")
            await self.write(
                self._entry(
                    seq, EntryKind.SLEEP, "sleep", status=EntryStatus.PENDING.value, detail=detail
                )
            )
        else:
            wake_at = float(typing.cast(dict[str, Any], entry.detail)["wake_at"])
            detail = encode(entry.detail, what="sleep")
        remaining = wake_at - engine.clock()
        if remaining > engine.inline_wait:
            raise Suspend(wake_at=wake_at)
        if remaining > 0:
            await asyncio.sleep(remaining)
        await self.write(
            self._entry(
                seq,
                EntryKind.SLEEP,
                "sleep",
                status=EntryStatus.OK.value,
                detail=detail,
                finished_at=engine.clock(),
                event_kind="sleep.done",
                event_data=f'{{"seq":{seq}}}',
            )
        )

    async def recv(self, seq: int, topic: str, timeout: float | None) -> JSON:
        """A durable wait at ``seq`` for the next message on ``topic``."""
        entry = self.recorded(seq, EntryKind.RECV, topic, None)
        if entry is not None and entry.status is not EntryStatus.PENDING:
            return entry.output
        if self.replaying:
            raise JournalEnd
        engine = self._live()
        now = engine.clock()
        if entry is None:
            deadline = now + timeout if timeout is not None else None
        else:
            deadline = typing.cast(dict[str, Any], entry.detail).get("deadline")
        write = self._entry(
            seq,
            EntryKind.RECV,
            topic,
            status=EntryStatus.PENDING.value,
            detail=encode({"topic": topic, "deadline": deadline}, what="recv"),
        )
        timed_out = deadline is not None and now >= deadline
        fence, settled, payload = await engine.store.receive(write, topic, timed_out=timed_out)
        self.check_fence(fence)
        if settled:
            return decode(payload)
        raise Suspend(wake_at=deadline, topics=[topic])

    # -- children ---------------------------------------------------------------

    def call_child(
        self, wf: Workflow[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Coroutine[Any, Any, Any]:
        """Begin a child workflow call at the next journal position."""
        return self._child(self.take_seq(), wf, args, kwargs)

    async def _child(
        self, seq: int, wf: Workflow[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        arg_hash = args_hash(args, kwargs, what=f"child workflow {wf.name!r}")
        entry = self.recorded(seq, EntryKind.CHILD, wf.name, arg_hash)
        if entry is not None and entry.status is not EntryStatus.PENDING:
            return settled_value(entry, wf.return_type)
        if self.replaying:
            raise JournalEnd
        engine = self._live()
        child_id = f"{self.run_id}.{seq}"
        self.children.append(child_id)
        if entry is None:
            await self.write(
                self._entry(
                    seq,
                    EntryKind.CHILD,
                    wf.name,
                    status=EntryStatus.PENDING.value,
                    args_hash=arg_hash,
                    detail=encode({"child_id": child_id}, what="child"),
                )
            )
        new = NewRun(
            run_id=child_id,
            workflow=wf.name,
            version=wf.version,
            input=encode(
                {"args": list(args), "kwargs": kwargs}, what=f"input of child workflow {wf.name!r}"
            ),
            parent_id=self.run_id,
            parent_seq=seq,
            timeout=wf.timeout,
            queue=self.run.queue,
            tenant=self.run.tenant,
        )
        child = await engine.run_child(new)
        if child is None:
            raise Suspend(children=[child_id])
        ok = child.status is RunStatus.SUCCEEDED
        await self.write(
            self._entry(
                seq,
                EntryKind.CHILD,
                wf.name,
                args_hash=arg_hash,
                status=(EntryStatus.OK if ok else EntryStatus.ERROR).value,
                output=encode(child.output, what="child output") if ok else None,
                error=None if ok else encode(child_error(child), what="child error"),
                detail=encode({"child_id": child_id}, what="child"),
                finished_at=engine.clock(),
                event_kind="child.done",
                event_data=encode(
                    {"seq": seq, "child_id": child_id, "status": child.status.value}, what="event"
                ),
            )
        )
        if not ok:
            raise failure_of(child)
        return restore(child.output, wf.return_type)

    # -- enqueueing ---------------------------------------------------------------

    async def call_enqueue(
        self,
        queue: str,
        wf: Workflow[Any, Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        options: dict[str, Any],
    ) -> str:
        """Enqueue a run from workflow code, journaled so recovery does not repeat it.

        The run belongs to this run's tenant unless ``options`` names another.
        """
        seq = self.take_seq()
        what = f"enqueue of {wf.name!r} on {queue!r}"
        arg_hash = args_hash((*args, options), kwargs, what=what)
        entry = self.recorded(seq, EntryKind.ENQUEUE, f"{queue}:{wf.name}", arg_hash)
        if entry is not None:
            return str(entry.output)
        engine = self._live()
        new = engine.app.new_queued_run(
            queue,
            wf,
            args,
            kwargs,
            default_id=f"{self.run_id}.{seq}",
            **{"tenant": self.run.tenant, **options},
        )
        enqueued = await engine.store.enqueue(new)
        engine.poke()
        await self.write(
            self._entry(
                seq,
                EntryKind.ENQUEUE,
                f"{queue}:{wf.name}",
                status=EntryStatus.OK.value,
                args_hash=arg_hash,
                output=encode(enqueued.run_id, what=what),
                finished_at=engine.clock(),
                event_kind="run.enqueued",
                event_data=encode(
                    {"seq": seq, "run_id": enqueued.run_id, "queue": queue}, what="event"
                ),
            )
        )
        return enqueued.run_id

    # -- checkpoints -------------------------------------------------------------

    def checkpoint(self, name: str, state: Any) -> None:
        """Record a named snapshot of ``state`` with its SHA-256 at the next position."""
        seq = self.take_seq()
        text = encode(state, what=f"state of checkpoint {name!r}")
        digest = checksum(text)
        entry = self.recorded(seq, EntryKind.CHECKPOINT, name, None)
        if entry is not None:
            self._verify_checkpoint(entry, digest)
            return
        write = self._entry(
            seq,
            EntryKind.CHECKPOINT,
            name,
            status=EntryStatus.OK.value,
            output=text,
            detail=encode({"sha256": digest}, what="checkpoint"),
            finished_at=self._live().clock(),
            event_kind="checkpoint",
            event_data=encode({"seq": seq, "name": name, "sha256": digest}, what="event"),
        )
        if threading.get_ident() == self._loop_thread:
            self._unawaited.append(self._live().writer.submit(write))
        else:
            self.dispatch(self.write(write))

    def _verify_checkpoint(self, entry: JournalEntry, digest: str) -> None:
        recorded = typing.cast(dict[str, Any], entry.detail or {}).get("sha256")
        actual = checksum(encode(entry.output, what="checkpoint"))
        if actual != recorded:
            if self.replaying:
                raise DivergenceFound(
                    Divergence(
                        seq=entry.seq, reason="checksum", expected=str(recorded), found=actual
                    )
                )
            raise errors.ChecksumMismatchError(
                f"checkpoint {entry.name!r} of run {self.run_id!r} (seq {entry.seq}) does not "
                f"match its SHA-256: the stored state was altered or corrupted",
                run_id=self.run_id,
                seq=entry.seq,
                expected=recorded,
                found=actual,
            )
        if recorded != digest:
            if self.replaying:
                raise DivergenceFound(
                    Divergence(
                        seq=entry.seq, reason="checkpoint", expected=str(recorded), found=digest
                    )
                )
            self.failure = errors.NondeterminismError(
                f"run {self.run_id!r} diverged at seq {entry.seq}: checkpoint {entry.name!r} "
                "now holds a different state than the journal recorded",
                run_id=self.run_id,
                seq=entry.seq,
                expected=recorded,
                found=digest,
            )
            raise self.failure

    # -- the workflow itself ---------------------------------------------------

    async def invoke(self) -> Any:
        """Call the workflow function with the run's recorded input."""
        wf = self.workflow
        data = typing.cast(dict[str, Any], self.run.input)
        raw_args: list[Any] = data.get("args", [])
        raw_kwargs: dict[str, Any] = data.get("kwargs", {})
        args = [
            restore(value, wf.positional_types[i] if i < len(wf.positional_types) else Any)
            for i, value in enumerate(raw_args)
        ]
        kwargs = {k: restore(v, wf.parameter_types.get(k, Any)) for k, v in raw_kwargs.items()}
        token = _current.set(self)
        try:
            if wf.is_async:
                return await wf.fn(*args, **kwargs)
            run_in_context = contextvars.copy_context().run
            executor = self.engine.threads if self.engine is not None else None
            return await self.loop.run_in_executor(
                executor, functools.partial(run_in_context, wf.fn, *args, **kwargs)
            )
        finally:
            _current.reset(token)


def _detail_text(scope: StepScope) -> str | None:
    if not scope.detail:
        return None
    return encode(scope.detail, what=f"detail of {scope.kind.value} {scope.name!r}")


def _submit_event(engine: Engine, write: EventWrite) -> None:
    # Nobody awaits an event: fetch a failure so asyncio does not report it as lost
    # (the writer has logged it already).
    engine.writer.submit(write).add_done_callback(_ignore_outcome)


def _ignore_outcome(future: asyncio.Future[Fence | None]) -> None:
    if not future.cancelled():
        future.exception()


def settled_value(entry: JournalEntry, annotation: Any) -> Any:
    """The recorded outcome of a settled entry: its value, or its error raised again."""
    if entry.status is EntryStatus.ERROR:
        raise rebuild_error(typing.cast(dict[str, Any], entry.error or {}))
    return restore(entry.output, annotation)


def describe_error(exc: BaseException) -> dict[str, Any]:
    """A JSON description of an error, enough to raise it again on replay."""
    cls = type(exc)
    info: dict[str, Any] = {
        "type": f"{cls.__module__}.{cls.__qualname__}",
        "message": str(exc),
        "code": getattr(exc, "code", None),
    }
    if isinstance(exc, errors.KernosError):
        info["facts"] = _json_or_repr(exc.facts)
    else:
        info["args"] = _json_or_repr(list(exc.args))
    cause = exc.__cause__ or exc.__context__
    if cause is not None and cause is not exc:
        info["cause"] = {
            "type": f"{type(cause).__module__}.{type(cause).__qualname__}",
            "message": str(cause),
        }
    return info


def _json_or_repr(value: Any) -> Any:
    try:
        return decode(encode(value, what="error facts"))
    except errors.SerializationError:
        return repr(value)


def rebuild_error(info: dict[str, Any]) -> BaseException:
    """Raise again, as faithfully as possible, an error recorded by :func:`describe_error`."""
    module_name, _, qualname = str(info.get("type", "")).rpartition(".")
    message = str(info.get("message", ""))
    cls: Any = None
    try:
        import importlib

        cls = importlib.import_module(module_name)
        for part in qualname.split("."):
            cls = getattr(cls, part)
    except (ImportError, AttributeError, ValueError):
        cls = None
    if isinstance(cls, type) and issubclass(cls, errors.KernosError):
        facts = info.get("facts")
        return cls(message, **facts) if isinstance(facts, dict) else cls(message)
    if isinstance(cls, type) and issubclass(cls, Exception):
        args = info.get("args")
        try:
            return cls(*args) if isinstance(args, list) else cls(message)
        except Exception:  # constructors with other signatures: fall through
            pass
    return errors.StepError(
        f"{info.get('type')}: {message}", error_type=info.get("type"), error_message=message
    )


def child_error(child: Run) -> dict[str, Any]:
    """The error a parent records for a child that did not succeed."""
    if isinstance(child.error, dict):
        return dict(child.error)
    return {"type": "kernos.errors.RunFailedError", "message": f"child {child.status.value}"}


def failure_of(run: Run) -> errors.RunFailedError:
    """The error to raise for a run that ended without a result."""
    info = run.error if isinstance(run.error, dict) else {}
    cls = errors.RunCancelledError if run.status is RunStatus.CANCELLED else errors.RunFailedError
    return cls(
        f"run {run.run_id!r} {run.status.value}: {info.get('type', '?')}: "
        f"{info.get('message', '')}",
        run_id=run.run_id,
        error_type=info.get("type"),
        error_code=info.get("code"),
    )
