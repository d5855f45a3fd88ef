"""Webhook signatures and bodies: what a receiver gets and how it checks it came from us.

Every delivery is a POST with a JSON body and three headers:

- ``Kernos-Webhook-Id``: the delivery's id, the same on every retry (dedupe on it);
- ``Kernos-Timestamp``: when this attempt was signed, in unix seconds;
- ``Kernos-Signature``: ``v1=<hex HMAC-SHA256(secret, f"{timestamp}.{raw body}")>``.

A receiver recomputes the HMAC over the raw body it read (before parsing it),
compares in constant time and refuses timestamps more than five minutes away
from its clock, so a captured request cannot be replayed later.
:func:`verify_webhook` does all three.
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import ipaddress
import secrets
import time
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote, urlsplit

from kernos import _netaddr
from kernos.errors import AuthenticationError, UsageError
from kernos.records import Event, WebhookFormat

__all__ = [
    "DEFAULT_KINDS",
    "ID_HEADER",
    "MAX_KINDS",
    "MAX_URL",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "check_kinds",
    "check_url",
    "matches",
    "new_secret",
    "payload",
    "ping_payload",
    "sign",
    "signed_headers",
    "verify_webhook",
]

ID_HEADER = "Kernos-Webhook-Id"
TIMESTAMP_HEADER = "Kernos-Timestamp"
SIGNATURE_HEADER = "Kernos-Signature"
DEFAULT_KINDS = ("approval.*",)
SECRET_PREFIX = "whsec_"
MAX_URL = 2000
MAX_KINDS = 50


def new_secret() -> str:
    """A new signing secret, ``whsec_`` and 43 URL-safe characters (256 bits)."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``f"{timestamp}.{body}"`` under ``secret``."""
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signed_headers(secret: str, delivery_id: str, body: bytes, now: float) -> dict[str, str]:
    """The headers of one delivery attempt signed at ``now``."""
    timestamp = int(now)
    return {
        "Content-Type": "application/json",
        ID_HEADER: delivery_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: f"v1={sign(secret, timestamp, body)}",
    }


def verify_webhook(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    tolerance: float = 300,
    now: float | None = None,
) -> None:
    """Check that a request came from Kernos, unchanged and recently.

    Args:
        secret: the webhook's secret (``whsec_...``), shown when it was created or rotated.
        headers: the request's headers (any letter case).
        body: the raw request body, exactly as received.
        tolerance: seconds the timestamp may be away from ``now``.
        now: the current unix time (default: the clock).

    Raises:
        AuthenticationError: a header is missing or malformed, the timestamp is
            too old (or too far ahead), or no signature matches; ``reason``
            says which.
    """
    lowered = {key.lower(): value for key, value in headers.items()}
    stamp = lowered.get(TIMESTAMP_HEADER.lower(), "")
    given = lowered.get(SIGNATURE_HEADER.lower(), "")
    if not stamp.isdigit() or not given:
        raise AuthenticationError(
            f"the {TIMESTAMP_HEADER} or {SIGNATURE_HEADER} header is missing or malformed",
            reason="malformed",
        )
    timestamp = int(stamp)
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise AuthenticationError(
            f"the webhook timestamp is {current - timestamp:.0f} s away from now "
            f"(more than {tolerance:g} s): refused as a possible replay",
            reason="stale",
        )
    expected = sign(secret, timestamp, body)
    offered = [
        part.strip()[3:] for part in given.replace(" ", ",").split(",") if part.startswith("v1=")
    ]
    # Compare with every offered signature, each in constant time.
    if not any(hmac.compare_digest(expected, candidate) for candidate in offered):
        raise AuthenticationError(
            "the webhook signature does not match the body: wrong secret, or the body changed",
            reason="mismatch",
        )


# -- validation ---------------------------------------------------------------------------


def check_url(url: str, *, allow_private: bool) -> str:
    """``url`` if it is an http(s) URL a webhook may target, else a UsageError.

    A literal private, loopback or link-local address (and ``localhost``) is
    refused unless ``allow_private``; host names are resolved and checked
    again at every delivery.
    """
    if len(url) > MAX_URL:
        raise UsageError(f"a webhook URL may be at most {MAX_URL} characters", field="url")
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").rstrip(".")
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise UsageError(f"invalid webhook URL: {exc}", field="url") from exc
    if parts.scheme not in ("http", "https") or not host:
        raise UsageError(
            "a webhook URL must be absolute http:// or https:// with a host", field="url"
        )
    if parts.username or parts.password:
        raise UsageError("a webhook URL must not carry a user name or password", field="url")
    if not allow_private and not _public_host(host):
        raise UsageError(
            f"webhook host {host!r} is a private, loopback or link-local address; refused "
            "(a server started with allow_private_webhooks may target private networks)",
            field="url",
        )
    return url


def _public_host(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return False
    try:
        return _netaddr.is_public(ipaddress.ip_address(host.split("%")[0]))
    except ValueError:
        return True  # a name: checked when resolved, at each delivery


def check_kinds(kinds: Sequence[str]) -> tuple[str, ...]:
    """Event kind globs (``approval.*``), each non-empty; the default when empty."""
    found = tuple(kind.strip() for kind in kinds)
    if len(found) > MAX_KINDS or any(not k or len(k) > 200 for k in found):
        raise UsageError(
            f"give 1 to {MAX_KINDS} event kinds, each 1-200 characters (globs like approval.*)",
            field="kinds",
        )
    return found or DEFAULT_KINDS


def matches(kinds: Sequence[str], kind: str) -> bool:
    """Whether event ``kind`` matches one of the globs in ``kinds``."""
    return any(fnmatch.fnmatchcase(kind, glob) for glob in kinds)


# -- bodies -------------------------------------------------------------------------------


def _links(data: Mapping[str, Any], run_id: str, base_url: str) -> dict[str, str]:
    links = {"run": f"{base_url}/runs/{quote(run_id, safe='')}"}
    approval = data.get("approval_id")
    if isinstance(approval, str) and approval:
        links["approval"] = f"{base_url}/approvals/{quote(approval, safe='')}"
    return links


def payload(
    event: Event, delivery_id: str, fmt: WebhookFormat, *, base_url: str = ""
) -> dict[str, Any]:
    """The body that notifies of ``event`` in format ``fmt``.

    ``json``: ``{id, type, created_at, tenant, event_id, data}`` where ``data``
    is the event's data plus ``links`` (run, and approval when there is one).
    ``slack``: a message for a Slack incoming webhook (``text`` and ``blocks``).
    Links start with ``base_url`` (the server's public URL), or are paths without it.
    """
    data: dict[str, Any] = dict(event.data) if isinstance(event.data, Mapping) else {}
    if event.data is not None and not isinstance(event.data, Mapping):
        data["value"] = event.data
    data["links"] = _links(data, event.run_id, base_url.rstrip("/"))
    if fmt is WebhookFormat.SLACK:
        return slack_message(event.kind, data, event.run_id, event.workflow)
    return {
        "id": delivery_id,
        "type": event.kind,
        "created_at": event.at,
        "tenant": event.tenant,
        "event_id": event.event_id,
        "data": data,
    }


def ping_payload(
    delivery_id: str, webhook_id: str, tenant: str, fmt: WebhookFormat, now: float
) -> dict[str, Any]:
    """The body of a test delivery (``type`` ``ping``)."""
    if fmt is WebhookFormat.SLACK:
        text = f"Kernos test notification for webhook {webhook_id} (tenant {tenant})"
        return {"text": text, "blocks": [_section(_escape(text))]}
    return {
        "id": delivery_id,
        "type": "ping",
        "created_at": now,
        "tenant": tenant,
        "event_id": None,
        "data": {"webhook_id": webhook_id},
    }


def slack_message(
    kind: str, data: Mapping[str, Any], run_id: str, workflow: str | None
) -> dict[str, Any]:
    """A Slack message (``text`` fallback and ``blocks``) summarising an event."""
    summarise = _SUMMARIES.get(kind)
    summary = summarise(data) if summarise is not None else f"Kernos event {kind}"
    where = f"run {run_id}" + (f" of {workflow}" if workflow else "")
    text = f"{summary} ({where})"
    links = data.get("links", {})
    buttons = [
        {"type": "button", "text": {"type": "plain_text", "text": label}, "url": links[name]}
        for name, label in (("approval", "Open request"), ("run", "Open run"))
        if str(links.get(name, "")).startswith(("http://", "https://"))
    ]
    blocks: list[dict[str, Any]] = [
        _section(_escape(summary)),
        {"type": "context", "elements": [{"type": "mrkdwn", "text": _escape(where)}]},
    ]
    if buttons:
        blocks.append({"type": "actions", "elements": buttons})
    return {"text": text, "blocks": blocks}


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text[:2900]}}


def _escape(text: str) -> str:
    # Slack's mrkdwn gives &, < and > meaning (links, mentions): data must not.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _names(value: Any) -> str:
    if isinstance(value, (list, tuple)) and value:
        return ", ".join(str(item) for item in value)
    return str(value) if value else "anyone allowed"


def _deadline(data: Mapping[str, Any]) -> str:
    deadline = data.get("deadline")
    if isinstance(deadline, (int, float)):
        stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(deadline))
        return f"; decide by {stamp}"
    return ""


def _requested(data: Mapping[str, Any]) -> str:
    title = data.get("title") or data.get("approval_id") or "a request"
    return (
        f"Approval requested: {title} — assignees: {_names(data.get('assignees'))}{_deadline(data)}"
    )


def _escalated(data: Mapping[str, Any]) -> str:
    return (
        f"Approval {data.get('approval_id', '')} escalated to level {data.get('level', '?')} — "
        f"assignees: {_names(data.get('assignees'))}{_deadline(data)}"
    )


def _decided(data: Mapping[str, Any]) -> str:
    decision = str(data.get("decision", "decided"))
    who = (
        "by default (no one decided in time)" if data.get("by_default") else f"by {data.get('by')}"
    )
    edited = " with edits" if data.get("edited") else ""
    comment = f': "{data["comment"]}"' if data.get("comment") else ""
    return f"Approval {data.get('approval_id', '')} {decision}{edited} {who}{comment}"


_SUMMARIES = {
    "approval.requested": _requested,
    "approval.escalated": _escalated,
    "approval.decided": _decided,
}
