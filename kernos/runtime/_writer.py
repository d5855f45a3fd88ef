"""The journal writer: group commit for every run in the process.

Steps hand their entries to :meth:`JournalWriter.submit` and await the result.
One task drains what has accumulated into one :meth:`Store.apply` call, one
transaction and one fsync, then resolves each waiter. While a commit is in
flight new writes queue up, so batches grow with concurrency on their own and a
lone writer pays a single commit per step.

After each commit that wrote events, the callbacks in ``on_events_committed``
run (in the writer's task): the API's event hub uses this to poll at once
instead of waiting for its next poll.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable

from kernos.store import EntryWrite, Fence, Store, Write

__all__ = ["JournalWriter"]

logger = logging.getLogger(__name__)


class JournalWriter:
    """Batches fenced writes from all runs into shared transactions."""

    def __init__(self, store: Store, *, max_batch: int = 512) -> None:
        self._store = store
        self._max_batch = max_batch
        self._queue: list[tuple[Write, asyncio.Future[Fence | None]]] = []
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.batches = 0
        self.writes = 0
        self.on_events_committed: list[Callable[[], None]] = []

    def start(self) -> None:
        """Start the draining task on the running loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._drain(), name="kernos-writer")

    def submit(self, write: Write) -> asyncio.Future[Fence | None]:
        """Queue a write; the future resolves once it is durable (or failed)."""
        future: asyncio.Future[Fence | None] = asyncio.get_running_loop().create_future()
        self._queue.append((write, future))
        self._wakeup.set()
        return future

    async def close(self) -> None:
        """Write what is queued, then stop."""
        if self._task is None:
            return
        self._closing = True
        self._wakeup.set()
        await self._task
        self._task = None

    async def _drain(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._queue:
                batch = self._queue[: self._max_batch]
                del self._queue[: self._max_batch]
                try:
                    results = await self._store.apply([write for write, _ in batch])
                except Exception as exc:
                    logger.error(
                        "journal write failed",
                        extra={"action": "writer_failed", "writes": len(batch), "error": str(exc)},
                    )
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                self.batches += 1
                self.writes += len(batch)
                for (_, future), result in zip(batch, results, strict=True):
                    if not future.done():
                        future.set_result(result)
                if self.on_events_committed and _writes_events(write for write, _ in batch):
                    self._notify()
                # Let the runs just resolved take their next step before the next
                # batch is cut, so their writes share it instead of waiting one.
                await asyncio.sleep(0)
            if self._closing:
                return

    def _notify(self) -> None:
        for callback in self.on_events_committed:
            try:
                callback()
            except Exception:
                logger.exception(
                    "events-committed callback failed", extra={"action": "writer_callback_failed"}
                )


def _writes_events(writes: Iterable[Write]) -> bool:
    # Entries write an event only with an event kind; event and finish writes always do.
    return any(not isinstance(w, EntryWrite) or w.event_kind is not None for w in writes)
