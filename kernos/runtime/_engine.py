"""The engine: executes runs in this process, and keeps the leases it holds alive.

One engine per :class:`~kernos.Kernos` app. It executes runs started here and,
when it claims work, runs that any process left runnable: new, woken by a timer
or a message, or abandoned by a worker that died. A run is executed by calling
its workflow function from the top in a :class:`RunContext`; every call already
in the journal returns its recorded outcome, so execution resumes where the
journal ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

from kernos import errors
from kernos.records import Run, RunStatus, Worker
from kernos.runtime._context import RunContext, Suspend, describe_error
from kernos.runtime._definitions import Registry
from kernos.runtime._process import process_start_marker, same_process_alive
from kernos.runtime._queues import queues as declared_queues
from kernos.runtime._scheduler import run_schedules, schedules
from kernos.runtime._writer import JournalWriter
from kernos.serialization import encode
from kernos.store import Fence, FinishWrite, NewRun, Store

__all__ = ["Engine"]

logger = logging.getLogger(__name__)


class Engine:
    """Executes runs; claims runnable ones when ``claim`` is on."""

    def __init__(
        self,
        store: Store,
        registry: Registry,
        *,
        concurrency: int,
        lease_s: float,
        poll_interval: float,
        inline_wait: float,
        threads: int,
        clock: Callable[[], float],
        queues: Sequence[str] | None = None,
    ) -> None:
        self.store = store
        self.registry = registry
        self.concurrency = concurrency
        self.lease_s = lease_s
        self.poll_interval = poll_interval
        self.inline_wait = inline_wait
        self.clock = clock
        self.queues = list(queues) if queues is not None else None
        self.app: Any = None  # the Kernos app, set by it; handles need it
        self.worker_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.writer = JournalWriter(store)
        self.threads = ThreadPoolExecutor(threads, thread_name_prefix="kernos-step")
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._stopping: set[str] = set()
        self._changed: dict[str, asyncio.Event] = {}
        self._wakeup = asyncio.Event()
        self._loops: list[asyncio.Task[None]] = []
        self._queue_of: dict[str, str] = {}
        self._epoch_of: dict[str, int] = {}
        self._relaunch: dict[str, Run] = {}
        self._started = False

    @property
    def started(self) -> bool:
        """Whether this engine registered and may hold runs."""
        return self._started

    # -- life cycle ---------------------------------------------------------------

    async def start(self, *, claim: bool) -> None:
        """Register this worker, take over runs of dead local workers, start loops."""
        if self._started:
            return
        self._started = True
        self.writer.start()
        pid = os.getpid()
        now = self.clock()
        worker = Worker(
            worker_id=self.worker_id,
            host=socket.gethostname(),
            pid=pid,
            started_at=now,
            heartbeat_at=now,
            state="active",
            queues=self.queues,
            concurrency=self.concurrency,
        )
        await self.store.register_worker(worker, process_start_marker(pid))
        await self.retire_dead_local_workers()
        loop = asyncio.get_running_loop()
        self._loops.append(loop.create_task(self._heartbeat_loop(), name="kernos-heartbeat"))
        if claim:

            def wake_from_any_thread(_queue: str) -> None:
                loop.call_soon_threadsafe(self._wakeup.set)

            self.store.listen(wake_from_any_thread)
            self._loops.append(loop.create_task(self._claim_loop(), name="kernos-claim"))
            self._loops.append(loop.create_task(self._watchdog_loop(), name="kernos-watchdog"))
            if schedules:
                self._loops.append(
                    loop.create_task(run_schedules(self, schedules), name="kernos-cron")
                )

    async def stop(self, *, grace: float = 0.0) -> None:
        """Stop claiming; give running runs ``grace`` seconds to finish; then
        interrupt the rest and hand back what this worker still holds.

        Runs interrupted mid-way resume from their journal on the next worker
        (a step that was interrupted runs again there).
        """
        if not self._started:
            return
        # The heartbeat goes on while runs drain: it keeps their leases (else
        # another worker would take them over mid-step) and interrupts runs
        # cancelled meanwhile.
        heartbeat = [task for task in self._loops if task.get_name() == "kernos-heartbeat"]
        claiming = [task for task in self._loops if task not in heartbeat]
        for task in claiming:
            task.cancel()
        await asyncio.gather(*claiming, return_exceptions=True)
        self._loops = heartbeat
        if grace > 0 and self._tasks:
            await self.store.set_worker_state(self.worker_id, "draining")
            logger.info(
                "draining",
                extra={"action": "drain", "runs": len(self._tasks), "grace": grace},
            )
            await asyncio.wait(list(self._tasks.values()), timeout=grace)
        for task in self._loops:
            task.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        self._loops.clear()
        running = list(self._tasks.values())
        self._stopping.update(self._tasks)
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        await self.writer.close()
        try:
            await self.store.retire_worker(self.worker_id, dead=False)
        finally:
            self.threads.shutdown(wait=False, cancel_futures=True)
            self._started = False

    def poke(self) -> None:
        """Wake the claim loop: something may have become runnable."""
        self._wakeup.set()

    # -- executing runs ----------------------------------------------------------

    def launch(self, run: Run) -> None:
        """Execute a run this worker holds, in a task of its own."""
        if run.run_id in self._tasks:
            # Claimed again here while still executing (its lease ran out, e.g. the
            # process stalled): the old execution's epoch can write nothing more, so
            # stop it and execute under the new epoch once it has ended.
            if run.lease_epoch > self._epoch_of.get(run.run_id, run.lease_epoch):
                self._relaunch[run.run_id] = run
                self.stop_local([run.run_id])
            return
        task = asyncio.get_running_loop().create_task(self._execute(run), name=f"run:{run.run_id}")
        self._tasks[run.run_id] = task
        self._queue_of[run.run_id] = run.queue
        self._epoch_of[run.run_id] = run.lease_epoch
        task.add_done_callback(lambda _: self._done(run.run_id))

    def _done(self, run_id: str) -> None:
        self._tasks.pop(run_id, None)
        self._queue_of.pop(run_id, None)
        self._epoch_of.pop(run_id, None)
        self._stopping.discard(run_id)
        again = self._relaunch.pop(run_id, None)
        if again is not None and self._loops:  # not while stopping: the claim is released
            self.launch(again)
            return
        self.notify(run_id)
        self._wakeup.set()

    def notify(self, run_id: str) -> None:
        """Wake whoever waits on ``run_id`` changing."""
        event = self._changed.pop(run_id, None)
        if event is not None:
            event.set()

    async def wait_changed(self, run_id: str, timeout: float) -> None:
        """Wait until a local execution of ``run_id`` ends, or ``timeout``."""
        event = self._changed.setdefault(run_id, asyncio.Event())
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):  # see _claim_loop: not wait_for
                await event.wait()

    def stop_local(self, run_ids: list[str]) -> None:
        """Interrupt local executions of runs that were cancelled or taken away."""
        for run_id in run_ids:
            task = self._tasks.get(run_id)
            if task is not None:
                self._stopping.add(run_id)
                task.cancel()

    def is_local(self, run_id: str) -> bool:
        """Whether ``run_id`` is executing in this process."""
        return run_id in self._tasks

    async def _execute(self, run: Run) -> None:
        workflow = self.registry.get(run.workflow)
        if workflow is None:  # claims filter by name, so only a stale registry gets here
            await self._finish(
                run,
                RunStatus.FAILED,
                error=describe_error(
                    errors.WorkflowNotFoundError(
                        f"workflow {run.workflow!r} is not registered in this process; import "
                        "the module that defines it",
                        workflow=run.workflow,
                    )
                ),
            )
            return
        load = run.executions > 1 or run.forked_from is not None
        while True:
            journal = await self.store.load_journal(run.run_id) if load else []
            ctx = RunContext(
                run=run,
                epoch=run.lease_epoch,
                workflow=workflow,
                journal={entry.seq: entry for entry in journal},
                engine=self,
                loop=asyncio.get_running_loop(),
            )
            if not await self._execute_once(ctx):
                return
            load = True  # woken before suspending: go again with what is now journaled

    async def _execute_once(self, ctx: RunContext) -> bool:
        """Run the workflow once; True means "what it waited for came: run it again"."""
        run = ctx.run
        try:
            output = await self._invoke_with_deadline(ctx)
            if ctx.failure is not None:  # workflow code swallowed a nondeterminism error
                raise ctx.failure
            await ctx.flush()
            text = encode(output, what=f"output of workflow {run.workflow!r}")
        except Suspend as wait:
            return await self._suspend(ctx, wait)
        except errors.Cancelled:
            return False  # the fence refused a write: cancelled, or another worker has it
        except asyncio.CancelledError:
            if run.run_id in self._stopping:
                return False
            raise
        except errors.StoreError as exc:
            logger.error(
                "run abandoned: store failed",
                extra={"action": "run_abandoned", "run_id": run.run_id, "error": str(exc)},
            )
            return False
        except errors.RunTimeoutError as exc:
            await self._finish(run, RunStatus.FAILED, error=describe_error(exc))
            for child in ctx.children:
                await self.store.cancel(child, f"parent {run.run_id} timed out")
            return False
        except Exception as exc:
            failure = ctx.failure or exc
            await self._finish(run, RunStatus.FAILED, error=describe_error(failure))
            return False
        await self._finish(run, RunStatus.SUCCEEDED, output=text)
        return False

    async def _invoke_with_deadline(self, ctx: RunContext) -> object:
        if ctx.run.deadline is None:
            return await ctx.invoke()
        loop = asyncio.get_running_loop()
        deadline = asyncio.timeout_at(loop.time() + (ctx.run.deadline - self.clock()))
        try:
            async with deadline:
                return await ctx.invoke()
        except (TimeoutError, Suspend) as exc:
            # A run woken at its deadline may suspend again before the timeout
            # fires (a long sleep suspends without awaiting): it timed out all the same.
            if not deadline.expired() and (
                isinstance(exc, TimeoutError) or ctx.run.deadline > self.clock()
            ):
                raise
            raise errors.RunTimeoutError(
                f"run {ctx.run_id!r} ran past its {ctx.run.timeout}s timeout",
                run_id=ctx.run_id,
                timeout=ctx.run.timeout,
            ) from exc

    async def _suspend(self, ctx: RunContext, wait: Suspend) -> bool:
        try:
            await ctx.flush()
        except Suspend as pause:
            wait = Suspend.merge([wait, pause])
        except errors.Cancelled:
            return False
        if wait.pause:
            await self.store.pause_at_boundary(ctx.run_id, ctx.epoch)
            return False
        wake_at = wait.wake_at
        deadline = ctx.run.deadline
        if deadline is not None:  # wake at the run timeout at the latest, to enforce it
            wake_at = deadline if wake_at is None else min(wake_at, deadline)
        fence = await self.store.suspend(
            ctx.run_id, ctx.epoch, wake_at=wake_at, topics=wait.topics, children=wait.children
        )
        return fence is Fence.READY

    async def _finish(
        self,
        run: Run,
        status: RunStatus,
        *,
        output: str | None = None,
        error: dict[str, object] | None = None,
    ) -> None:
        fence = await self.writer.submit(
            FinishWrite(
                run_id=run.run_id,
                epoch=run.lease_epoch,
                status=status.value,
                output=output,
                error=encode(error, what="run error") if error is not None else None,
                event_data=encode({"error": error}, what="event") if error is not None else None,
            )
        )
        if fence is Fence.LOST:
            logger.info(
                "run finished elsewhere", extra={"action": "finish_lost", "run_id": run.run_id}
            )
        if run.parent_id is not None:
            self._wakeup.set()

    async def run_child(self, new: NewRun) -> Run | None:
        """Create (once) and execute a child run here; return it if it has ended."""
        created = await self.store.create_run(
            replace(new, owner=self.worker_id, lease_s=self.lease_s)
        )
        if created:
            self.launch(await self.store.get_run(new.run_id))
        task = self._tasks.get(new.run_id)
        if task is not None:
            await asyncio.wait({task})
        child = await self.store.get_run(new.run_id)
        return child if child.status.terminal else None

    # -- background loops -----------------------------------------------------------

    async def _claim_loop(self) -> None:
        while True:
            claimed: list[Run] = []
            free = self.concurrency - len(self._tasks)
            limit = min(free, 64)
            names = self.registry.names()
            if limit > 0 and names:
                try:
                    claimed = await self.store.claim(
                        self.worker_id,
                        limit=limit,
                        lease_s=self.lease_s,
                        workflows=names,
                        queues=self._room_per_queue(limit, await self._serving()),
                    )
                except errors.StoreError as exc:
                    logger.warning(
                        "claim failed", extra={"action": "claim_failed", "error": str(exc)}
                    )
            for run in claimed:
                self.launch(run)
            if claimed and len(claimed) == limit:
                continue
            delay = self.poll_interval
            if not claimed:
                due = await self.store.next_due()
                now = self.clock()
                if due is not None and due > now:
                    delay = min(delay, due - now)
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a
            # cancel that lands as the event is set, and stop() would wait forever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wakeup.wait()
            self._wakeup.clear()

    async def _serving(self) -> list[str] | None:
        """The queues this worker claims from; None for every queue.

        A worker serving every queue names them all (each queue with limits or
        unfinished runs) when a queue declared here caps what one worker runs.
        """
        if self.queues is not None:
            return self.queues
        if any(q.spec.worker_concurrency for q in declared_queues.values()):
            return [stats.name for stats in await self.store.list_queues()]
        return None

    def _room_per_queue(self, limit: int, queues: list[str] | None) -> dict[str, int] | None:
        """How many more runs this worker may take from each of ``queues``."""
        if queues is None:
            return None
        room = {}
        for name in queues:
            queue = declared_queues.get(name)
            cap = queue.spec.worker_concurrency if queue is not None else None
            if cap is None:
                room[name] = limit
            else:
                running = sum(1 for q in self._queue_of.values() if q == name)
                room[name] = max(0, min(limit, cap - running))
        return room

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.lease_s / 3)
            try:
                held = await self.store.heartbeat(self.worker_id, lease_s=self.lease_s)
            except errors.StoreError as exc:
                logger.warning(
                    "heartbeat failed", extra={"action": "heartbeat_failed", "error": str(exc)}
                )
                continue
            lost = [run_id for run_id in self._tasks if run_id not in held]
            if lost:
                # Re-check after a moment: a run finishing or suspending right now
                # is not held either, and needs no interruption.
                await asyncio.sleep(0.05)
                self.stop_local(
                    [
                        run_id
                        for run_id in lost
                        if run_id in self._tasks
                        and (await self.store.get_run(run_id)).owner != self.worker_id
                    ]
                )

    async def _watchdog_loop(self) -> None:
        while True:
            await asyncio.sleep(self.lease_s)
            try:
                await self.store.mark_stale_workers(self.clock() - 2 * self.lease_s)
                await self.retire_dead_local_workers()
            except errors.StoreError as exc:
                logger.warning(
                    "watchdog failed", extra={"action": "watchdog_failed", "error": str(exc)}
                )

    async def retire_dead_local_workers(self) -> list[str]:
        """Hand the runs of workers that died on this host to the next claim, at once."""
        released: list[str] = []
        for worker, marker in await self.store.workers_on_host(socket.gethostname()):
            if worker.worker_id != self.worker_id and not same_process_alive(worker.pid, marker):
                released += await self.store.retire_worker(worker.worker_id, dead=True)
        if released:
            self._wakeup.set()
        return released
