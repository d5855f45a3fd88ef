"""The webhook dispatcher the server runs: events into the outbox, the outbox to receivers.

**Hand-over.** For each tenant with active webhooks, one subscription to the
server's event hub (the hub's ordering, gap hold and replay-from-the-store
included: a subscription starts at the lowest cursor of the tenant's webhooks
and replays from the store up to the live position). Each batch of events
becomes one delivery per matching webhook, written in the same transaction
as the webhooks' cursors; the outbox keeps one delivery per webhook and event,
so handing the same events over twice (after a restart, or by two servers on
one database) queues each notification once.

**Sending.** Due deliveries are claimed with a lease (so two servers do not
send the same one), posted, and the outcome recorded: delivered on 2xx, dead
on other 4xx (and refused targets), else failed with the next attempt
scheduled with exponential backoff and jitter (or the receiver's
``Retry-After``, if longer), dead once out of attempts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

import httpx
import orjson

from kernos.control._delivery import Sender, settle
from kernos.control._webhooks import matches, payload
from kernos.records import DeliveryStatus, Event, Webhook, WebhookDelivery
from kernos.store import Store

__all__ = ["EventFeed", "EventSource", "Notifier"]

logger = logging.getLogger(__name__)

_CURSOR_EVERY = 5.0  # seconds between cursor writes while no delivery is queued


class _Carrier(Protocol):
    event: Event


class EventFeed(Protocol):
    """A subscription to one tenant's events in id order (the API's hub gives them)."""

    def receive(
        self, *, max_events: int = ..., timeout: float | None = ...
    ) -> Awaitable[Sequence[_Carrier] | None]:
        """The next events; empty after ``timeout``; None once the feed ended."""

    def close(self) -> None:
        """Stop receiving."""


class EventSource(Protocol):
    """Where feeds come from: ``subscribe(after, tenant=...)``."""

    @property
    def running(self) -> bool:
        """Whether feeds can be had now (the server stops its hub first)."""

    def subscribe(self, after: int | None, *, tenant: str) -> EventFeed:
        """A feed of ``tenant``'s events with ids above ``after``."""


class Notifier:
    """Turns events into webhook deliveries and delivers them.

    Args:
        store: where webhooks, cursors and deliveries live.
        events: the event source (the server's hub).
        sender: posts deliveries under its policy.
        base_url: the server's public URL, for links in payloads ("" for paths).
        refresh_s: how often the set of webhooks is re-read.
        poll_s: how often due deliveries are looked for (new ones wake it at once).
        batch: events per hand-over and deliveries per claim.
        concurrency: deliveries sent at the same time.
        clock: the unix time used for scheduling.
    """

    def __init__(
        self,
        store: Store,
        events: EventSource,
        sender: Sender,
        *,
        base_url: str = "",
        refresh_s: float = 1.0,
        poll_s: float = 1.0,
        batch: int = 100,
        concurrency: int = 8,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.events = events
        self.sender = sender
        self.base_url = base_url.rstrip("/")
        self.refresh_s = refresh_s
        self.poll_s = poll_s
        self.batch = batch
        self.clock = clock
        self._slots = asyncio.Semaphore(concurrency)
        self._hooks: dict[str, dict[str, Webhook]] = {}  # tenant -> id -> webhook
        self._cursors: dict[str, int] = {}  # handed over up to here, per webhook
        self._tenants: dict[str, tuple[frozenset[str], asyncio.Task[None]]] = {}
        self._wakeup = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []  # the supervisor, then the sender
        self._stopping = False

    async def start(self) -> None:
        """Start handing over and sending."""
        if self._tasks:
            return
        self._stopping = False
        self._tasks = [
            asyncio.create_task(self._supervise(), name="kernos-webhooks-handover"),
            asyncio.create_task(self._send_loop(), name="kernos-webhooks-send"),
        ]
        logger.info("webhook dispatcher started", extra={"action": "webhooks_started"})

    async def stop(self) -> None:
        """Stop handing over at once; let attempts in flight finish (up to the policy's
        timeout), so their outcome is recorded; a delivery cut short is retried after
        its lease by the next start."""
        handover = [task for _, task in self._tenants.values()] + self._tasks[:1]
        sending = self._tasks[1:]
        self._tenants.clear()
        self._tasks = []
        self._stopping = True
        self.wake()
        for task in handover:
            task.cancel()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.sender.policy.timeout + 1.0):
                await asyncio.gather(*sending, return_exceptions=True)
        for task in handover + sending:
            task.cancel()
        await asyncio.gather(*handover, *sending, return_exceptions=True)

    def wake(self) -> None:
        """Look for due deliveries now."""
        self._wakeup.set()

    # -- hand-over ----------------------------------------------------------------

    async def _supervise(self) -> None:
        while True:
            try:
                await self._refresh()
            except Exception as exc:
                logger.warning(
                    "reading webhooks failed (%s); retrying",
                    exc,
                    extra={"action": "webhooks_refresh_failed", "error": str(exc)},
                )
            await asyncio.sleep(self.refresh_s)

    async def _refresh(self) -> None:
        by_tenant: dict[str, dict[str, Webhook]] = {}
        for hook in await self.store.list_webhooks(None, active=True):
            by_tenant.setdefault(hook.tenant_id, {})[hook.webhook_id] = hook
            known = self._cursors.get(hook.webhook_id, 0)
            self._cursors[hook.webhook_id] = max(known, hook.cursor)
        self._hooks = by_tenant
        for tenant in set(self._tenants) - set(by_tenant):
            self._tenants.pop(tenant)[1].cancel()
        for tenant, hooks in by_tenant.items():
            ids = frozenset(hooks)
            current = self._tenants.get(tenant)
            if current is not None and current[0] == ids and not current[1].done():
                continue
            if current is not None:  # a webhook came or went: restart from the cursors
                current[1].cancel()
            task = asyncio.create_task(self._follow(tenant), name=f"kernos-webhooks-{tenant}")
            self._tenants[tenant] = (ids, task)

    async def _follow(self, tenant: str) -> None:
        while True:
            hooks = self._hooks.get(tenant, {})
            if not hooks:
                return
            if not self.events.running:  # shutting down, or not started yet
                await asyncio.sleep(self.refresh_s)
                continue
            start = min(self._cursors.get(hook_id, 0) for hook_id in hooks)
            feed: EventFeed | None = None
            last_write = self.clock()
            try:
                feed = self.events.subscribe(start, tenant=tenant)
                while True:
                    batch = await feed.receive(max_events=self.batch, timeout=self.refresh_s)
                    if batch is None:
                        break  # ended (a slow consumer, or shutdown): resubscribe
                    if batch:
                        last_write = await self._hand_over(
                            tenant, [item.event for item in batch], last_write
                        )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning(
                    "handing events to webhooks failed (%s); resuming from the cursors",
                    exc,
                    extra={
                        "action": "webhooks_handover_failed",
                        "tenant": tenant,
                        "error": str(exc),
                    },
                )
                await asyncio.sleep(self.refresh_s)
            finally:
                if feed is not None:
                    feed.close()

    async def _hand_over(self, tenant: str, events: list[Event], last_write: float) -> float:
        now = self.clock()
        deliveries: list[WebhookDelivery] = []
        cursors: dict[str, int] = {}
        for hook in self._hooks.get(tenant, {}).values():
            cursor = self._cursors.get(hook.webhook_id, 0)
            for event in events:
                if event.event_id > cursor and matches(hook.kinds, event.kind):
                    deliveries.append(self._delivery(hook, event, now))
            cursors[hook.webhook_id] = max(cursor, events[-1].event_id)
        if not deliveries and now - last_write < _CURSOR_EVERY:
            self._cursors.update(cursors)  # replaying these after a restart queues nothing
            return last_write
        await self.store.enqueue_deliveries(deliveries, cursors)
        self._cursors.update(cursors)
        if deliveries:
            logger.info(
                "queued %d webhook deliveries",
                len(deliveries),
                extra={"action": "webhooks_queued", "tenant": tenant, "count": len(deliveries)},
            )
            self.wake()
        return now

    def _delivery(self, hook: Webhook, event: Event, now: float) -> WebhookDelivery:
        delivery_id = "whd_" + uuid.uuid4().hex[:24]
        body = payload(event, delivery_id, hook.format, base_url=self.base_url)
        return WebhookDelivery(
            delivery_id=delivery_id,
            webhook_id=hook.webhook_id,
            tenant_id=hook.tenant_id,
            event_id=event.event_id,
            kind=event.kind,
            payload=orjson.dumps(body).decode(),
            attempts=0,
            status=DeliveryStatus.PENDING,
            response_status=None,
            last_error=None,
            next_attempt_at=now,
            created_at=now,
        )

    # -- sending --------------------------------------------------------------------

    async def _send_loop(self) -> None:
        async with self.sender.client() as client:
            while not self._stopping:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.poll_s):
                        await self._wakeup.wait()
                self._wakeup.clear()
                try:
                    while not self._stopping and await self._send_due(client) >= self.batch:
                        pass
                except Exception as exc:
                    logger.warning(
                        "sending webhook deliveries failed (%s); retrying",
                        exc,
                        extra={"action": "webhooks_send_failed", "error": str(exc)},
                    )

    async def _send_due(self, client: httpx.AsyncClient) -> int:
        due = await self.store.claim_deliveries(
            self.clock(), limit=self.batch, lease_s=self.sender.policy.lease_s
        )
        if due:
            await asyncio.gather(*(self._deliver(client, delivery) for delivery in due))
        return len(due)

    async def _deliver(self, client: httpx.AsyncClient, delivery: WebhookDelivery) -> None:
        async with self._slots:
            hook = await self.store.get_webhook(delivery.webhook_id)
            if hook is None:
                return  # deleted with its deliveries meanwhile
            if not hook.active:  # paused: keep it for when the webhook is resumed
                later = self.clock() + self.sender.policy.lease_s
                await self.store.postpone_delivery(delivery.delivery_id, later)
                return
            started = self.clock()
            attempt = await self.sender.send(client, hook, delivery)
            result = settle(delivery, attempt, self.sender.policy, self.clock())
            await self.store.record_delivery_attempt(result, at=started)
            logger.info(
                "webhook delivery %s: %s",
                delivery.delivery_id,
                result.status.value,
                extra={
                    "action": "webhook_attempt",
                    "delivery_id": delivery.delivery_id,
                    "webhook_id": hook.webhook_id,
                    "attempt": result.attempts,
                    "status": result.status.value,
                    "response_status": result.response_status,
                },
            )
