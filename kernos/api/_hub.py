"""The event hub: one store poll fans events out to every live stream.

Events are persisted (the engine's journal writer appends them to the store),
never held only in memory, so a stream is a cursor over the store plus a live
tail. The hub keeps one cursor for the whole process and every subscription
reuses it.

**One poll, many subscribers.** A single task reads new events from the store
(every ``poll_interval`` seconds, or at once when :meth:`EventHub.wake` says
this process just committed some) and hands each batch to the subscriptions
in memory. Subscriptions are indexed by tenant, so an event is only looked at
by the streams of its own tenant (the tenant filter is mandatory), then
narrowed per subscription by run, workflow and kind.

**In id order, without skipping.** Event ids come from AUTOINCREMENT (SQLite)
or BIGSERIAL (PostgreSQL). On PostgreSQL, transactions of several processes
can commit ids out of order (id 7 visible before id 6), and a rolled-back
insert leaves a permanent hole, so "everything above the last id seen" would
skip id 6 when it commits late. The hub keeps a *position*: every id up to it
has been delivered or declared a permanent gap. Events seen above a missing id
are held back; each poll looks again for the missing ids (one primary-key range
query per hole). When the missing id appears, the held events follow it in
order; when it has not appeared within ``gap_hold`` seconds (1.5 s: far longer
than any Kernos transaction), it is declared a permanent gap and delivery moves
on. SQLite commits ids in order (one writer) but the same logic applies. At
start the hub looks at the last ``page`` ids for holes, so a transaction in
flight across a restart is waited for too. The cost of a permanent gap is that
delivery pauses for ``gap_hold`` once; an id that commits even later than that
is not delivered live (a client replaying from before it still sees it).

**Replay, then live.** :meth:`EventHub.subscribe` with ``after`` (a client's
Last-Event-ID) first reads the store, in pages and through the same filters,
from ``after`` up to the hub's position, then joins the live fan-out exactly at
that position, without awaiting in between, so nothing is duplicated or skipped.
A subscription catching up pulls pages at its consumer's pace and holds no
buffer. ``after=None`` starts at the hub's position ("from now").

**Slow consumers.** Live events wait in a bounded per-subscription buffer. The
hub never waits for a consumer: when a buffer would exceed ``buffer`` events,
the subscription ends with a reason (``slow consumer: ...; reconnect with
Last-Event-ID``) and its buffer is dropped; the client resumes from the last
event it received, replaying from the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import orjson

from kernos.records import Event
from kernos.store import Store

__all__ = ["EndReason", "EventHub", "StreamEvent", "Subscription"]

logger = logging.getLogger(__name__)

DEFAULT_GAP_HOLD = 1.5
DEFAULT_PAGE = 1000
_MAX_GAP_QUERIES = 8  # holes looked up per poll; more wait for the next poll
_MAX_BACKOFF = 2.0  # seconds between polls while the store fails
_SHUTDOWN_REASON = "the server is shutting down; reconnect with Last-Event-ID"


class EndReason(enum.StrEnum):
    """Why a subscription ended."""

    SLOW_CONSUMER = "slow_consumer"  # its buffer overflowed
    SHUTDOWN = "shutdown"  # the hub stopped (server shutting down)
    CLOSED = "closed"  # its consumer closed it


class StreamEvent:
    """An event as streams send it; its JSON and SSE frame are encoded once and
    shared by every subscriber."""

    __slots__ = ("_json", "_sse", "event")

    def __init__(self, event: Event) -> None:
        self.event = event
        self._json: bytes | None = None
        self._sse: bytes | None = None

    @property
    def event_id(self) -> int:
        """The event's id (the SSE ``id``)."""
        return self.event.event_id

    def json(self) -> bytes:
        """The event as a JSON object."""
        if self._json is None:
            self._json = orjson.dumps(self.event.to_dict())
        return self._json

    def sse(self) -> bytes:
        """The event as one Server-Sent Events frame (``id``, ``event``, ``data``)."""
        if self._sse is None:
            kind = self.event.kind.replace("\r", " ").replace("\n", " ")
            self._sse = b"id: %d\nevent: %s\ndata: %s\n\n" % (
                self.event.event_id,
                kind.encode(),
                self.json(),
            )
        return self._sse


@dataclass(slots=True)
class _Gap:
    lo: int  # first missing id
    hi: int  # last missing id
    since: float  # when the hub first missed it (monotonic)


class Subscription:
    """One consumer's view of the event stream: replay, then live, in id order.

    Made by :meth:`EventHub.subscribe`; read with :meth:`receive` by one task;
    close it (or use ``async with``) when the consumer goes away.

    Attributes:
        tenant, run_id, workflow, kinds: the filters.
        position: the id of the last event handed out (the client's Last-Event-ID).
        end: why the subscription ended, or None while it lasts.
        reason: a sentence for the client saying why it ended and what to do.
    """

    def __init__(
        self,
        hub: EventHub,
        after: int,
        *,
        tenant: str,
        run_id: str | None,
        workflow: str | None,
        kinds: frozenset[str] | None,
        buffer: int,
    ) -> None:
        self.tenant = tenant
        self.run_id = run_id
        self.workflow = workflow
        self.kinds = kinds
        self.position = after
        self.end: EndReason | None = None
        self.reason: str | None = None
        self._hub = hub
        self._cursor = after  # replay progress: the store was read up to here
        self._floor = after  # live events at or below this were (or will be) replayed
        self._live = False
        self._limit = buffer
        self._buffer: deque[StreamEvent] = deque()
        self._ready = asyncio.Event()
        self._nudged = False
        self._plain = run_id is None and workflow is None and kinds is None

    @property
    def live(self) -> bool:
        """Whether the replay is over and events come from the live fan-out."""
        return self._live

    @property
    def buffered(self) -> int:
        """Live events waiting for the consumer."""
        return len(self._buffer)

    async def receive(
        self, *, max_events: int = 1000, timeout: float | None = None
    ) -> list[StreamEvent] | None:
        """The next events, oldest first, at most ``max_events`` of them.

        Args:
            max_events: the largest batch to return.
            timeout: seconds to wait for an event; None waits as long as it takes.

        Returns:
            A batch of events; an empty list when ``timeout`` passed first or
            :meth:`nudge` was called (time for a heartbeat); None once the
            subscription ended (see :attr:`end` and :attr:`reason`).
        """
        while True:
            if self.end is not None:
                return None
            if self._nudged and not self._buffer:
                self._nudged = False
                return []
            if not self._live:
                page = await self._replay(max_events)
                if page:
                    return page
                continue
            if self._buffer:
                count = min(max_events, len(self._buffer))
                batch = [self._buffer.popleft() for _ in range(count)]
                self.position = batch[-1].event_id
                return batch
            self._ready.clear()
            if timeout is None:
                await self._ready.wait()
                continue
            try:
                async with asyncio.timeout(timeout):
                    await self._ready.wait()
            except TimeoutError:
                return [] if self.end is None else None

    def nudge(self) -> None:
        """Make :meth:`receive` return an empty batch now if it has no events.

        A stream can send heartbeats this way from one timer of its own instead
        of arming a timeout for every wait.
        """
        self._nudged = True
        self._ready.set()

    def close(self) -> None:
        """Stop receiving; the hub forgets this subscription."""
        self._finish(EndReason.CLOSED, "closed")

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        self.close()

    # -- hub side ---------------------------------------------------------------

    async def _replay(self, max_events: int) -> list[StreamEvent]:
        if not self._hub.running:  # stopped while this one was catching up
            self._finish(EndReason.SHUTDOWN, _SHUTDOWN_REASON)
            return []
        if self._cursor >= self._hub.position:
            self._go_live()
            return []
        target = self._hub.position
        page = await self._hub.store.stream_events(
            after=self._cursor,
            until=target,
            limit=max_events,
            tenant=self.tenant,
            run_id=self.run_id,
            workflow=self.workflow,
            kinds=sorted(self.kinds) if self.kinds is not None else None,
        )
        self._cursor = page[-1].event_id if len(page) >= max_events else target
        if self.end is not None:
            return []
        batch = [StreamEvent(event) for event in page]
        if batch:
            self.position = batch[-1].event_id
        return batch

    def _go_live(self) -> None:
        # Called with the replay at (or past) the hub's position and no await since
        # reading it: the next fan-out starts right above it.
        self._floor = self._cursor
        self._live = True
        self._hub._attach(self)

    def _offer(self, events: Sequence[StreamEvent]) -> None:
        if events[-1].event_id <= self._floor:
            return
        if events[0].event_id <= self._floor:
            events = [e for e in events if e.event_id > self._floor]
        if not self._plain:
            events = [e for e in events if self._matches(e.event)]
            if not events:
                return
        if len(self._buffer) + len(events) > self._limit:
            self._finish(
                EndReason.SLOW_CONSUMER,
                f"slow consumer: more than {self._limit} events buffered; "
                "reconnect with Last-Event-ID",
            )
            return
        self._buffer.extend(events)
        self._ready.set()

    def _matches(self, event: Event) -> bool:
        return (
            (self.run_id is None or event.run_id == self.run_id)
            and (self.workflow is None or event.workflow == self.workflow)
            and (self.kinds is None or event.kind in self.kinds)
        )

    def _finish(self, end: EndReason, reason: str) -> None:
        if self.end is not None:
            return
        self.end = end
        self.reason = reason
        self._buffer.clear()
        self._hub._detach(self)
        self._ready.set()


class EventHub:
    """Polls the store for new events and fans them out to subscriptions.

    Args:
        store: where events are read; it may be the engine's store or a
            second one on the same database.
        poll_interval: seconds between polls when nothing calls :meth:`wake`
            (events written by other processes are seen this late at most).
        buffer: live events a subscription may hold before it is ended as a
            slow consumer.
        gap_hold: seconds a missing event id holds back delivery before it is
            declared a permanent gap.
        page: events read per store query.
        clock: monotonic time source (tests may control it).
    """

    def __init__(
        self,
        store: Store,
        *,
        poll_interval: float = 0.05,
        buffer: int = 10_000,
        gap_hold: float = DEFAULT_GAP_HOLD,
        page: int = DEFAULT_PAGE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if poll_interval <= 0 or buffer < 1 or gap_hold < 0 or page < 1:
            raise ValueError(
                "poll_interval must be positive, buffer and page at least 1, gap_hold >= 0"
            )
        self.store = store
        self.poll_interval = poll_interval
        self.buffer = buffer
        self.gap_hold = gap_hold
        self.page = page
        self.clock = clock
        self._position = 0  # every id up to here is delivered or a permanent gap
        self._seen = 0  # the highest id read from the store
        self._held: dict[int, StreamEvent] = {}  # read above a gap, not yet delivered
        self._gaps: list[_Gap] = []  # missing ids between position and seen, ascending
        self._by_tenant: dict[str, set[Subscription]] = {}
        self._wakeup = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self.polls = 0
        self.gaps_skipped = 0

    @property
    def position(self) -> int:
        """The id up to which every event has been delivered (or skipped as a gap)."""
        return self._position

    @property
    def running(self) -> bool:
        """Whether :meth:`start` ran and :meth:`stop` did not."""
        return self._task is not None

    @property
    def subscriptions(self) -> int:
        """Subscriptions currently receiving live events."""
        return sum(len(subs) for subs in self._by_tenant.values())

    async def start(self) -> None:
        """Find the current end of the event record and start polling."""
        if self._task is not None:
            return
        self._loop = asyncio.get_running_loop()
        last = await self.store.last_event_id()
        # Start a page below the end so ids still in flight there are waited for.
        self._position = self._seen = max(0, last - self.page)
        self._ingest(await self.store.stream_events(after=self._seen, until=last, limit=self.page))
        if self._seen < last:  # the newest ids are missing too
            self._gaps.append(_Gap(self._seen + 1, last, self.clock()))
            self._seen = last
        self._release()
        self._task = self._loop.create_task(self._run(), name="kernos-event-hub")
        logger.info(
            "event hub started", extra={"action": "hub_started", "position": self._position}
        )

    async def stop(self) -> None:
        """Stop polling and end every subscription (reason: shutdown)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for subs in list(self._by_tenant.values()):
            for sub in list(subs):
                sub._finish(EndReason.SHUTDOWN, _SHUTDOWN_REASON)
        self._by_tenant.clear()

    def wake(self) -> None:
        """Poll now: this process committed events. Safe to call from any thread."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(self._wakeup.set)

    def subscribe(
        self,
        after: int | None,
        *,
        tenant: str,
        run_id: str | None = None,
        workflow: str | None = None,
        kinds: Sequence[str] | None = None,
    ) -> Subscription:
        """Subscribe to one tenant's events with ids above ``after``.

        Args:
            after: the last event id the client has (its Last-Event-ID); None
                for "from now on".
            tenant: whose events; a subscription never sees another tenant's.
            run_id, workflow, kinds: narrow further (None: any).

        Raises:
            RuntimeError: the hub is not running.
            ValueError: ``tenant`` is empty or ``after`` negative.
        """
        if self._task is None:
            raise RuntimeError("the event hub is not running; start() it first")
        if not tenant:
            raise ValueError("a subscription needs a tenant")
        if after is not None and after < 0:
            raise ValueError(f"after must be a non-negative event id, got {after}")
        # "From now" is the newest id read: held events below it are the past.
        sub = Subscription(
            self,
            self._seen if after is None else after,
            tenant=tenant,
            run_id=run_id,
            workflow=workflow,
            kinds=frozenset(kinds) if kinds is not None else None,
            buffer=self.buffer,
        )
        if sub.position >= self._position:
            sub._go_live()  # nothing to replay: join the fan-out now
        return sub

    # -- subscriptions ------------------------------------------------------------

    def _attach(self, sub: Subscription) -> None:
        self._by_tenant.setdefault(sub.tenant, set()).add(sub)

    def _detach(self, sub: Subscription) -> None:
        subs = self._by_tenant.get(sub.tenant)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._by_tenant[sub.tenant]

    def _fan_out(self, events: list[StreamEvent]) -> None:
        if not self._by_tenant:
            return
        by_tenant: dict[str, list[StreamEvent]] = {}
        for item in events:
            tenant = item.event.tenant
            if tenant is not None and tenant in self._by_tenant:
                by_tenant.setdefault(tenant, []).append(item)
        for tenant, batch in by_tenant.items():
            for sub in tuple(self._by_tenant.get(tenant, ())):
                sub._offer(batch)

    # -- polling --------------------------------------------------------------------

    async def _run(self) -> None:
        failures = 0
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._idle_wait(failures)):
                    await self._wakeup.wait()
            self._wakeup.clear()
            try:
                await self._poll()
            except Exception as exc:
                failures += 1
                logger.warning(
                    "event hub poll failed; retrying",
                    extra={"action": "hub_poll_failed", "error": str(exc), "failures": failures},
                )
            else:
                failures = 0

    def _idle_wait(self, failures: int) -> float:
        if failures:
            return min(self.poll_interval * 2.0**failures, _MAX_BACKOFF)
        return self.poll_interval

    async def _poll(self) -> None:
        self.polls += 1
        for lo, hi in [(gap.lo, gap.hi) for gap in self._gaps[:_MAX_GAP_QUERIES]]:
            self._ingest(
                await self.store.stream_events(
                    after=lo - 1, until=hi, limit=min(hi - lo + 1, self.page)
                )
            )
        while True:
            events = await self.store.stream_events(after=self._seen, limit=self.page)
            self._ingest(events)
            self._release()
            if len(events) < self.page:
                return

    def _ingest(self, events: Sequence[Event]) -> None:
        now = self.clock()
        for event in events:
            event_id = event.event_id
            if event_id <= self._position or event_id in self._held:
                continue  # late after being declared a gap, or read twice
            if event_id > self._seen:
                if event_id > self._seen + 1:
                    self._gaps.append(_Gap(self._seen + 1, event_id - 1, now))
                self._seen = event_id
            else:
                self._fill(event_id)
            self._held[event_id] = StreamEvent(event)

    def _fill(self, event_id: int) -> None:
        for index, gap in enumerate(self._gaps):
            if gap.lo <= event_id <= gap.hi:
                pieces = [
                    _Gap(lo, hi, gap.since)
                    for lo, hi in ((gap.lo, event_id - 1), (event_id + 1, gap.hi))
                    if lo <= hi
                ]
                self._gaps[index : index + 1] = pieces
                return

    def _release(self) -> None:
        ready: list[StreamEvent] = []
        now = self.clock()
        while True:
            item = self._held.pop(self._position + 1, None)
            if item is not None:
                ready.append(item)
                self._position += 1
                continue
            gap = self._gaps[0] if self._gaps else None
            if gap is None or gap.lo != self._position + 1 or now - gap.since < self.gap_hold:
                break
            self._gaps.pop(0)
            self._position = gap.hi
            self.gaps_skipped += gap.hi - gap.lo + 1
            logger.info(
                "event ids %d-%d never appeared; skipped as a permanent gap",
                gap.lo,
                gap.hi,
                extra={"action": "hub_gap_skipped", "first": gap.lo, "last": gap.hi},
            )
        # Same step as the position update: a subscription joining in between
        # would otherwise get these events from both its replay and the fan-out.
        if ready:
            self._fan_out(ready)
