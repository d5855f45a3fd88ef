"""Webhook subscriptions of a tenant: create, change, rotate, delete, test, and their deliveries.

Admins manage subscriptions; operators may look at them (URLs shown only as
scheme and host, since a Slack-style URL carries its credential in the path)
and at their deliveries. Every change is audited, never with the secret or
the URL's path in the record.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Sequence
from urllib.parse import urlsplit

import orjson

from kernos.control._audit import Auditor
from kernos.control._delivery import DeliveryPolicy, Sender, settle
from kernos.control._principal import Principal
from kernos.control._webhooks import check_kinds, check_url, new_secret, ping_payload
from kernos.errors import NotFoundError
from kernos.records import (
    DeliveryAttempt,
    DeliveryStatus,
    Role,
    Webhook,
    WebhookDelivery,
    WebhookFormat,
)
from kernos.retry import RetryPolicy
from kernos.store import Store

__all__ = ["WebhookService", "url_origin"]


def url_origin(url: str) -> str:
    """``scheme://host[:port]`` of a URL: what may be shown without its credential."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


class WebhookService:
    """A tenant's webhook subscriptions and their outbox, role-checked and audited.

    ``sender`` (and its policy) is replaced by the server with one built from
    its settings (whether private targets are allowed, retry timing).
    """

    def __init__(self, store: Store, auditor: Auditor) -> None:
        self.store = store
        self.audit = auditor
        self.sender = Sender(DeliveryPolicy())

    def configure(self, policy: DeliveryPolicy) -> None:
        """Deliver, and validate URLs, under ``policy`` from now on."""
        self.sender = Sender(policy)

    async def webhooks(self, principal: Principal) -> list[Webhook]:
        """The tenant's webhooks, oldest first (operator; URLs in full for admins only)."""
        principal.require(Role.OPERATOR, "listing webhooks")
        found = await self.store.list_webhooks(principal.tenant_id)
        return [self._shown(principal, hook) for hook in found]

    async def get(self, principal: Principal, webhook_id: str) -> Webhook:
        """One webhook of the tenant (operator).

        Raises:
            NotFoundError: no such webhook in the caller's tenant.
        """
        principal.require(Role.OPERATOR, "reading webhooks")
        return self._shown(principal, await self._find(principal, webhook_id))

    async def create(
        self,
        principal: Principal,
        url: str,
        *,
        kinds: Sequence[str] = (),
        format: WebhookFormat = WebhookFormat.JSON,
    ) -> tuple[Webhook, str]:
        """Subscribe ``url`` to the tenant's events of ``kinds`` (default ``approval.*``).

        Notifications start with events written after this call. Returns the
        webhook and its signing secret, which is shown this once (and on rotate).

        Raises:
            UsageError: a URL that is not http(s), or targets a private address
                the server does not allow; invalid kinds.
        """
        async with self.audit.audited(principal, "webhook.create", "webhook", None) as note:
            principal.require(Role.ADMIN, "creating webhooks")
            note.detail.update(url=url_origin(url), format=format.value)
            check_url(url, allow_private=self.sender.policy.allow_private)
            webhook = Webhook(
                webhook_id="wh_" + uuid.uuid4().hex[:20],
                tenant_id=principal.tenant_id,
                url=url,
                secret=new_secret(),
                kinds=check_kinds(kinds),
                format=format,
                active=True,
                created_by=principal.actor,
                created_at=time.time(),
                cursor=await self.store.last_event_id(),
            )
            note.object_id = webhook.webhook_id
            note.detail["kinds"] = list(webhook.kinds)
            await self.store.create_webhook(webhook)
            return webhook, webhook.secret

    async def update(
        self,
        principal: Principal,
        webhook_id: str,
        *,
        url: str | None = None,
        kinds: Sequence[str] | None = None,
        format: WebhookFormat | None = None,
        active: bool | None = None,
    ) -> Webhook:
        """Change a webhook's URL, kinds, format, or pause (``active=False``) and resume it."""
        async with self.audit.audited(principal, "webhook.update", "webhook", webhook_id) as note:
            principal.require(Role.ADMIN, "changing webhooks")
            await self._find(principal, webhook_id)
            if url is not None:
                note.detail["url"] = url_origin(url)
                check_url(url, allow_private=self.sender.policy.allow_private)
            checked = None if kinds is None else check_kinds(kinds)
            if checked is not None:
                note.detail["kinds"] = list(checked)
            if format is not None:
                note.detail["format"] = format.value
            if active is not None:
                note.detail["active"] = active
            changed = await self.store.update_webhook(
                webhook_id, url=url, kinds=checked, format=format, active=active
            )
            return changed or await self._find(principal, webhook_id)

    async def rotate(self, principal: Principal, webhook_id: str) -> tuple[Webhook, str]:
        """Give a webhook a new secret at once; return it and the secret (shown once)."""
        async with self.audit.audited(principal, "webhook.rotate", "webhook", webhook_id):
            principal.require(Role.ADMIN, "rotating webhook secrets")
            await self._find(principal, webhook_id)
            secret = new_secret()
            changed = await self.store.update_webhook(webhook_id, secret=secret)
            if changed is None:
                raise _not_found(webhook_id)
            return changed, secret

    async def delete(self, principal: Principal, webhook_id: str) -> None:
        """Delete a webhook and its deliveries (pending ones are never sent)."""
        async with self.audit.audited(principal, "webhook.delete", "webhook", webhook_id):
            principal.require(Role.ADMIN, "deleting webhooks")
            await self._find(principal, webhook_id)
            await self.store.delete_webhook(webhook_id)

    async def deliveries(
        self,
        principal: Principal,
        webhook_id: str,
        *,
        status: DeliveryStatus | None = None,
        before: tuple[float, str] | None = None,
        limit: int = 50,
    ) -> list[tuple[WebhookDelivery, list[DeliveryAttempt]]]:
        """A webhook's deliveries, newest first, each with its attempts in order (operator)."""
        principal.require(Role.OPERATOR, "listing webhook deliveries")
        await self._find(principal, webhook_id)
        found = await self.store.list_deliveries(
            webhook_id, status=status, before=before, limit=limit
        )
        history = await self.store.list_delivery_attempts([d.delivery_id for d in found])
        return [(d, history.get(d.delivery_id, [])) for d in found]

    async def test(self, principal: Principal, webhook_id: str) -> WebhookDelivery:
        """Send a ``ping`` to a webhook now, once; return the delivery with its outcome.

        The ping is recorded among the webhook's deliveries; it is not retried.
        """
        async with self.audit.audited(principal, "webhook.test", "webhook", webhook_id) as note:
            principal.require(Role.ADMIN, "testing webhooks")
            webhook = await self._find(principal, webhook_id)
            now = time.time()
            delivery_id = "whd_" + uuid.uuid4().hex[:24]
            body = ping_payload(delivery_id, webhook_id, webhook.tenant_id, webhook.format, now)
            delivery = WebhookDelivery(
                delivery_id=delivery_id,
                webhook_id=webhook_id,
                tenant_id=webhook.tenant_id,
                event_id=None,
                kind="ping",
                payload=orjson.dumps(body).decode(),
                attempts=0,
                status=DeliveryStatus.PENDING,
                response_status=None,
                last_error=None,
                next_attempt_at=None,  # never claimed by the dispatcher
                created_at=now,
            )
            await self.store.enqueue_deliveries([delivery], {})
            started = time.time()
            async with self.sender.client() as client:
                attempt = await self.sender.send(client, webhook, delivery)
            single = DeliveryPolicy(retry=RetryPolicy(max_attempts=1))
            result = settle(delivery, attempt, single, time.time())
            note.detail.update(delivery_id=delivery_id, status=result.status.value)
            return await self.store.record_delivery_attempt(result, at=started) or result

    async def _find(self, principal: Principal, webhook_id: str) -> Webhook:
        webhook = await self.store.get_webhook(webhook_id)
        if webhook is None or webhook.tenant_id != principal.tenant_id:
            raise _not_found(webhook_id)
        return webhook

    @staticmethod
    def _shown(principal: Principal, webhook: Webhook) -> Webhook:
        if principal.role.includes(Role.ADMIN):
            return webhook
        return dataclasses.replace(webhook, url=url_origin(webhook.url))


def _not_found(webhook_id: str) -> NotFoundError:
    return NotFoundError(
        f"no webhook {webhook_id!r} in this tenant; `kernos webhooks list` shows them",
        object_type="webhook",
        object_id=webhook_id,
    )
