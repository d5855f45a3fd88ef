"""Routes for webhook subscriptions and their deliveries (notifications of approvals)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel, Field

from kernos.api._auth import Caller
from kernos.api._problems import problem_responses
from kernos.api._schemas import TEXT, _In
from kernos.api._state import server_state
from kernos.control import Service
from kernos.control._cursor import decode_cursor, encode_cursor
from kernos.control._webhooks import DEFAULT_KINDS, MAX_KINDS, MAX_URL
from kernos.records import (
    DeliveryAttempt,
    DeliveryStatus,
    Webhook,
    WebhookDelivery,
    WebhookFormat,
)

__all__ = [
    "AttemptOut",
    "DeliveryOut",
    "DeliveryPage",
    "WebhookCreated",
    "WebhookIn",
    "WebhookOut",
    "WebhookPatch",
    "router",
]

router = APIRouter()

_ERRORS = problem_responses(401, 403, 404, 409, 422, 429, 503)
_URL_RULES: dict[str, Any] = {
    "min_length": 1,
    "max_length": MAX_URL,
    "pattern": TEXT,
    "description": "http(s) URL to POST to",
}
_KIND = Annotated[str, Field(min_length=1, max_length=200, pattern=TEXT)]


class WebhookIn(_In):
    """A new webhook subscription."""

    url: str = Field(**_URL_RULES)
    kinds: list[_KIND] = Field(
        default_factory=lambda: list(DEFAULT_KINDS),
        max_length=MAX_KINDS,
        description="Event kinds to send, as globs (default approval.*)",
    )
    format: WebhookFormat = Field(
        WebhookFormat.JSON, description="json (Kernos envelope) or slack (incoming webhook)"
    )


class WebhookPatch(_In):
    """Changes to a webhook; omitted fields stay as they are."""

    url: str | None = Field(None, **_URL_RULES)
    kinds: list[_KIND] | None = Field(None, max_length=MAX_KINDS)
    format: WebhookFormat | None = None
    active: bool | None = Field(None, description="false pauses notifications")


class WebhookOut(BaseModel):
    """A webhook subscription (never its secret)."""

    webhook_id: str
    tenant_id: str
    url: str = Field(description="In full for admins; scheme and host only for others")
    kinds: list[str]
    format: WebhookFormat
    active: bool
    created_by: str
    created_at: float
    cursor: int = Field(description="The last event id handed to its outbox")


class WebhookCreated(BaseModel):
    """A webhook and its signing secret, which is shown this once (and on rotate)."""

    webhook: WebhookOut
    secret: str = Field(description="whsec_...: verify Kernos-Signature with it")


class AttemptOut(BaseModel):
    """One attempt at a delivery."""

    attempt: int = Field(description="1 for the first")
    at: float
    response_status: int | None = None
    error: str | None = None


class DeliveryOut(BaseModel):
    """One notification, the outcome of its latest attempt and (in lists) every attempt."""

    delivery_id: str = Field(description="Sent as Kernos-Webhook-Id, the same on every retry")
    webhook_id: str
    tenant_id: str
    event_id: int | None = Field(None, description="None for a test ping")
    kind: str
    attempts: int
    status: DeliveryStatus
    response_status: int | None = None
    last_error: str | None = None
    next_attempt_at: float | None = None
    created_at: float
    delivered_at: float | None = None
    history: list[AttemptOut] | None = Field(
        None, description="Every attempt, oldest first (in delivery lists)"
    )


class DeliveryPage(BaseModel):
    """Deliveries, newest first."""

    items: list[DeliveryOut]
    next_cursor: str | None = Field(None, description="Pass as ?cursor= for the next page")


def _service(request: Request) -> Service:
    return server_state(request).service


def _id() -> Any:
    return Path(min_length=1, max_length=200, pattern=TEXT, description="A webhook's id")


def _out(webhook: Webhook) -> WebhookOut:
    return WebhookOut.model_validate(webhook.to_dict())


def _delivery(
    delivery: WebhookDelivery, history: list[DeliveryAttempt] | None = None
) -> DeliveryOut:
    data = delivery.to_dict()
    if history is not None:
        data["history"] = [attempt.to_dict() for attempt in history]
    return DeliveryOut.model_validate(data)


@router.get("/webhooks", response_model=list[WebhookOut], tags=["webhooks"], responses=_ERRORS)
async def list_webhooks(request: Request, caller: Caller) -> list[WebhookOut]:
    """The tenant's webhooks, oldest first (operator)."""
    return [_out(hook) for hook in await _service(request).webhooks.webhooks(caller)]


@router.post(
    "/webhooks",
    response_model=WebhookCreated,
    status_code=201,
    tags=["webhooks"],
    responses=_ERRORS,
)
async def create_webhook(request: Request, caller: Caller, body: WebhookIn) -> WebhookCreated:
    """Subscribe a URL to the tenant's events (admin); the secret is in this response only."""
    hook, secret = await _service(request).webhooks.create(
        caller, body.url, kinds=body.kinds, format=body.format
    )
    return WebhookCreated(webhook=_out(hook), secret=secret)


@router.get(
    "/webhooks/{webhook_id}", response_model=WebhookOut, tags=["webhooks"], responses=_ERRORS
)
async def get_webhook(
    request: Request, caller: Caller, webhook_id: Annotated[str, _id()]
) -> WebhookOut:
    """One webhook (operator)."""
    return _out(await _service(request).webhooks.get(caller, webhook_id))


@router.patch(
    "/webhooks/{webhook_id}", response_model=WebhookOut, tags=["webhooks"], responses=_ERRORS
)
async def update_webhook(
    request: Request, caller: Caller, webhook_id: Annotated[str, _id()], body: WebhookPatch
) -> WebhookOut:
    """Change a webhook's URL, kinds or format, or pause and resume it (admin)."""
    hook = await _service(request).webhooks.update(
        caller,
        webhook_id,
        url=body.url,
        kinds=body.kinds,
        format=body.format,
        active=body.active,
    )
    return _out(hook)


@router.delete("/webhooks/{webhook_id}", status_code=204, tags=["webhooks"], responses=_ERRORS)
async def delete_webhook(
    request: Request, caller: Caller, webhook_id: Annotated[str, _id()]
) -> Response:
    """Delete a webhook and its deliveries (admin)."""
    await _service(request).webhooks.delete(caller, webhook_id)
    return Response(status_code=204)


@router.post(
    "/webhooks/{webhook_id}/rotate",
    response_model=WebhookCreated,
    tags=["webhooks"],
    responses=_ERRORS,
)
async def rotate_webhook(
    request: Request, caller: Caller, webhook_id: Annotated[str, _id()]
) -> WebhookCreated:
    """Give a webhook a new secret, effective at once (admin); shown in this response only."""
    hook, secret = await _service(request).webhooks.rotate(caller, webhook_id)
    return WebhookCreated(webhook=_out(hook), secret=secret)


@router.get(
    "/webhooks/{webhook_id}/deliveries",
    response_model=DeliveryPage,
    tags=["webhooks"],
    responses=_ERRORS,
)
async def list_deliveries(
    request: Request,
    caller: Caller,
    webhook_id: Annotated[str, _id()],
    status: Annotated[DeliveryStatus | None, Query()] = None,
    cursor: Annotated[str | None, Query(max_length=1000, pattern=TEXT)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> DeliveryPage:
    """A webhook's deliveries, newest first: attempts, last response, next attempt (operator)."""
    found = await _service(request).webhooks.deliveries(
        caller,
        webhook_id,
        status=status,
        before=decode_cursor(cursor) if cursor else None,
        limit=limit,
    )
    last = found[-1][0] if len(found) == limit else None
    return DeliveryPage(
        items=[_delivery(d, history) for d, history in found],
        next_cursor=encode_cursor(last.created_at, last.delivery_id) if last else None,
    )


@router.post(
    "/webhooks/{webhook_id}/test",
    response_model=DeliveryOut,
    tags=["webhooks"],
    responses=_ERRORS,
)
async def test_webhook(
    request: Request, caller: Caller, webhook_id: Annotated[str, _id()]
) -> DeliveryOut:
    """Send a signed ``ping`` now and answer with its outcome (admin); not retried."""
    return _delivery(await _service(request).webhooks.test(caller, webhook_id))
