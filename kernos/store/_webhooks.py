"""Webhook subscriptions and their outbox of deliveries, in the SQL stores."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from kernos.records import (
    DeliveryAttempt,
    DeliveryStatus,
    Webhook,
    WebhookDelivery,
    WebhookFormat,
)
from kernos.store._tx import Transacting, Tx

__all__ = ["WebhookOutbox"]

_LAST = (math.inf, "")  # above any (created_at, delivery_id): the first page


class WebhookOutbox(Transacting):
    """The webhook half of :class:`~kernos.store.Store`, for the SQL stores."""

    async def create_webhook(self, webhook: Webhook) -> None:
        """Store a new webhook subscription."""
        params = {
            **webhook.to_dict(),
            "secret": webhook.secret,
            "kinds": orjson.dumps(list(webhook.kinds)).decode(),
            "active": int(webhook.active),
        }
        await self._call(lambda tx: tx.execute("insert_webhook", params))

    async def get_webhook(self, webhook_id: str) -> Webhook | None:
        """Return a webhook, or None."""
        return await self._call(
            lambda tx: _webhook(tx, "get_webhook", {"webhook_id": webhook_id}), write=False
        )

    async def list_webhooks(
        self, tenant_id: str | None, *, active: bool | None = None
    ) -> list[Webhook]:
        """A tenant's webhooks (None: every tenant's), oldest first."""
        params = {"tenant_id": tenant_id, "active": None if active is None else int(active)}
        return await self._call(
            lambda tx: [
                Webhook.from_row(row, tx.decode) for row in tx.all("list_webhooks", params)
            ],
            write=False,
        )

    async def update_webhook(
        self,
        webhook_id: str,
        *,
        url: str | None = None,
        kinds: Sequence[str] | None = None,
        format: WebhookFormat | None = None,
        active: bool | None = None,
        secret: str | None = None,
    ) -> Webhook | None:
        """Change the given fields (None leaves one unchanged); None if no such webhook."""
        params = {
            "webhook_id": webhook_id,
            "url": url,
            "kinds": None if kinds is None else orjson.dumps(list(kinds)).decode(),
            "format": None if format is None else format.value,
            "active": None if active is None else int(active),
            "secret": secret,
        }
        return await self._call(lambda tx: _webhook(tx, "update_webhook", params))

    async def delete_webhook(self, webhook_id: str) -> bool:
        """Delete a webhook and its deliveries; False if there was none."""

        def go(tx: Tx) -> bool:
            tx.execute("delete_webhook_attempts", {"webhook_id": webhook_id})
            tx.execute("delete_webhook_deliveries", {"webhook_id": webhook_id})
            return bool(tx.execute("delete_webhook", {"webhook_id": webhook_id}).rowcount > 0)

        return await self._call(go)

    async def enqueue_deliveries(
        self, deliveries: Sequence[WebhookDelivery], cursors: Mapping[str, int]
    ) -> None:
        """Add deliveries to the outbox and move webhook cursors forward, atomically.

        A delivery for an event its webhook already has is ignored, so handing
        the same events over twice (after a restart, or by two dispatchers)
        queues each notification once.
        """
        rows = [
            {
                "delivery_id": d.delivery_id,
                "webhook_id": d.webhook_id,
                "tenant_id": d.tenant_id,
                "event_id": d.event_id,
                "kind": d.kind,
                "payload": d.payload,
                "next_attempt_at": d.next_attempt_at,
                "created_at": d.created_at,
            }
            for d in deliveries
        ]
        moves = [{"webhook_id": hook, "cursor": cursor} for hook, cursor in cursors.items()]

        def go(tx: Tx) -> None:
            tx.many("insert_delivery", rows)
            tx.many("advance_webhook_cursor", moves)

        if rows or moves:
            await self._call(go)

    async def claim_deliveries(
        self, now: float, *, limit: int, lease_s: float
    ) -> list[WebhookDelivery]:
        """Take up to ``limit`` deliveries due at ``now`` for ``lease_s`` seconds."""
        params = {"now": now, "lease_until": now + lease_s, "limit": limit}
        return await self._call(
            lambda tx: [WebhookDelivery.from_row(row) for row in tx.all("claim_deliveries", params)]
        )

    async def record_delivery_attempt(
        self, delivery: WebhookDelivery, *, at: float
    ) -> WebhookDelivery | None:
        """Store the outcome of attempt number ``delivery.attempts``, made at ``at``:
        the delivery's state and one row in its history."""
        attempt = {
            "delivery_id": delivery.delivery_id,
            "attempt": delivery.attempts,
            "at": at,
            "response_status": delivery.response_status,
            "error": delivery.last_error,
        }
        params = {
            "delivery_id": delivery.delivery_id,
            "attempts": delivery.attempts,
            "status": delivery.status.value,
            "response_status": delivery.response_status,
            "last_error": delivery.last_error,
            "next_attempt_at": delivery.next_attempt_at,
            "delivered_at": delivery.delivered_at,
        }

        def go(tx: Tx) -> WebhookDelivery | None:
            tx.execute("insert_delivery_attempt", attempt)
            return _delivery(tx, "record_delivery_attempt", params)

        return await self._call(go)

    async def postpone_delivery(self, delivery_id: str, until: float) -> None:
        """Make a delivery due again at ``until`` without counting an attempt."""
        params = {"delivery_id": delivery_id, "next_attempt_at": until}
        await self._call(lambda tx: tx.execute("postpone_delivery", params))

    async def list_delivery_attempts(
        self, delivery_ids: Sequence[str]
    ) -> dict[str, list[DeliveryAttempt]]:
        """The attempts of each delivery, in order (deliveries never attempted are absent)."""
        params = {"ids": orjson.dumps(list(delivery_ids)).decode()}

        def go(tx: Tx) -> dict[str, list[DeliveryAttempt]]:
            found: dict[str, list[DeliveryAttempt]] = {}
            for row in tx.all("list_delivery_attempts", params):
                found.setdefault(row["delivery_id"], []).append(DeliveryAttempt.from_row(row))
            return found

        if not delivery_ids:
            return {}
        return await self._call(go, write=False)

    async def get_delivery(self, delivery_id: str) -> WebhookDelivery | None:
        """Return a delivery, or None."""
        return await self._call(
            lambda tx: _delivery(tx, "get_delivery", {"delivery_id": delivery_id}), write=False
        )

    async def list_deliveries(
        self,
        webhook_id: str,
        *,
        status: DeliveryStatus | None = None,
        before: tuple[float, str] | None = None,
        limit: int = 50,
    ) -> list[WebhookDelivery]:
        """A webhook's deliveries, newest first; ``before`` is the last page's last
        ``(created_at, delivery_id)``."""
        before_at, before_id = before or _LAST
        params: dict[str, Any] = {
            "webhook_id": webhook_id,
            "status": None if status is None else status.value,
            "before_at": before_at,
            "before_id": before_id,
            "limit": limit,
        }
        return await self._call(
            lambda tx: [WebhookDelivery.from_row(row) for row in tx.all("list_deliveries", params)],
            write=False,
        )


def _webhook(tx: Tx, query: str, params: dict[str, Any]) -> Webhook | None:
    row = tx.one(query, params)
    return None if row is None else Webhook.from_row(row, tx.decode)


def _delivery(tx: Tx, query: str, params: dict[str, Any]) -> WebhookDelivery | None:
    row = tx.one(query, params)
    return None if row is None else WebhookDelivery.from_row(row)
