"""One webhook delivery attempt over HTTP, and what its outcome makes of the delivery.

The target host is resolved and every address checked before each attempt
(private, loopback and link-local addresses are refused unless allowed); the
request then goes to the checked address itself, with the host name in the
``Host`` header and as the TLS server name, so a DNS answer that changes in
between cannot redirect it. Redirects are never followed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import email.utils
import ipaddress
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from kernos import _netaddr
from kernos.control._webhooks import signed_headers
from kernos.records import DeliveryStatus, Webhook, WebhookDelivery
from kernos.retry import RetryPolicy

__all__ = ["Attempt", "DeliveryPolicy", "Sender", "settle"]

logger = logging.getLogger(__name__)

_DEFAULT_PORTS = {"http": 80, "https": 443}
_RETRYABLE_4XX = frozenset({408, 429})


def _default_retry() -> RetryPolicy:
    # 30 s, 1, 2, 4, 8, 16, 30 min: eight attempts over about an hour.
    return RetryPolicy(
        max_attempts=8, initial_delay=30.0, multiplier=2.0, max_delay=1800.0, jitter=0.2
    )


@dataclass(frozen=True, kw_only=True)
class DeliveryPolicy:
    """How webhook deliveries are attempted and retried.

    Attributes:
        retry: attempts in all and the backoff between them (with jitter).
        timeout: seconds for one attempt (connect, send, answer).
        allow_private: allow private, loopback and link-local targets.
        max_retry_after: the longest ``Retry-After`` honoured, in seconds.
        lease_s: seconds a dispatcher holds a delivery it is sending; one that
            dies mid-send has it retried after this.
    """

    retry: RetryPolicy = field(default_factory=_default_retry)
    timeout: float = 10.0
    allow_private: bool = False
    max_retry_after: float = 3600.0
    lease_s: float = 60.0


@dataclass(frozen=True, kw_only=True, slots=True)
class Attempt:
    """What one attempt got: an HTTP status, or an error (never a secret or the URL)."""

    status: int | None = None
    error: str | None = None
    retry_after: float | None = None
    permanent: bool = False

    @property
    def ok(self) -> bool:
        """Whether the receiver accepted it (2xx)."""
        return self.status is not None and 200 <= self.status < 300


def settle(
    delivery: WebhookDelivery, attempt: Attempt, policy: DeliveryPolicy, now: float
) -> WebhookDelivery:
    """The delivery after ``attempt``: delivered, failed (retry scheduled) or dead."""
    attempts = delivery.attempts + 1
    if attempt.ok:
        status, next_at, delivered = DeliveryStatus.DELIVERED, None, now
    elif attempt.permanent or attempts >= policy.retry.max_attempts:
        status, next_at, delivered = DeliveryStatus.DEAD, None, None
    else:
        wait = max(policy.retry.delay(attempts), attempt.retry_after or 0.0)
        status, next_at, delivered = DeliveryStatus.FAILED, now + wait, None
    return dataclasses.replace(
        delivery,
        attempts=attempts,
        status=status,
        response_status=attempt.status,
        last_error=attempt.error,
        next_attempt_at=next_at,
        delivered_at=delivered,
    )


class Sender:
    """Posts signed deliveries under a :class:`DeliveryPolicy`.

    Args:
        policy: timeouts, retries and whether private targets are allowed.
        resolver: resolves host names (default: the system resolver).
        clock: the unix time used to sign.
    """

    def __init__(
        self,
        policy: DeliveryPolicy | None = None,
        *,
        resolver: _netaddr.Resolver | None = None,
        clock: Any = time.time,
    ) -> None:
        self.policy = policy or DeliveryPolicy()
        self.resolver = resolver or _netaddr.system_resolve
        self.clock = clock

    def client(self) -> httpx.AsyncClient:
        """An HTTP client for :meth:`send` (the caller closes it)."""
        return httpx.AsyncClient(
            trust_env=False,  # a proxy from the environment would bypass the address check
            follow_redirects=False,
            timeout=self.policy.timeout,
            headers={"User-Agent": "kernos-webhooks/1"},
        )

    async def send(
        self, client: httpx.AsyncClient, webhook: Webhook, delivery: WebhookDelivery
    ) -> Attempt:
        """Make one attempt to deliver ``delivery`` to ``webhook``; never raises for
        network trouble (the attempt says what went wrong)."""
        body = delivery.payload.encode()
        headers = signed_headers(webhook.secret, delivery.delivery_id, body, self.clock())
        try:
            url = httpx.URL(webhook.url)
            async with asyncio.timeout(self.policy.timeout):
                address, refused = await self._target(url)
                if refused is not None:
                    return Attempt(error=refused, permanent=True)
                request = _pinned(client, url, address, body, headers)
                # Streamed and closed unread: only the status and headers matter,
                # and a receiver's body could be of any size.
                response = await client.send(request, stream=True)
                await response.aclose()
        except (httpx.InvalidURL, ValueError) as exc:
            return Attempt(error=f"invalid webhook URL ({type(exc).__name__})", permanent=True)
        except (TimeoutError, httpx.TimeoutException) as exc:  # before OSError: a subclass
            return Attempt(
                error=f"no answer within {self.policy.timeout:g} s ({type(exc).__name__})"
            )
        except OSError as exc:  # from the resolver
            return Attempt(error=f"cannot resolve the webhook's host: {exc.strerror or exc}")
        except httpx.HTTPError as exc:
            return Attempt(error=_scrub(f"{type(exc).__name__}: {exc}", webhook.url))
        return self._judge(response)

    async def _target(self, url: httpx.URL) -> tuple[_netaddr.IPAddress, str | None]:
        host = url.host.rstrip(".")
        try:
            addresses = [ipaddress.ip_address(host)]
        except ValueError:
            port = url.port or _DEFAULT_PORTS.get(url.scheme, 0)
            found = await self.resolver(host, port)
            if not found:
                raise OSError(f"{host} has no address") from None
            addresses = [ipaddress.ip_address(text.split("%")[0]) for text in found]
        if not self.policy.allow_private:
            for address in addresses:
                if not _netaddr.is_public(address):
                    return address, (
                        f"the webhook's host resolves to {address}, a private or reserved "
                        "address; refused (the server does not allow private webhooks)"
                    )
        return addresses[0], None

    def _judge(self, response: httpx.Response) -> Attempt:
        code = response.status_code
        if 200 <= code < 300:
            return Attempt(status=code)
        if 300 <= code < 400:
            return Attempt(
                status=code, error=f"HTTP {code}: redirects are not followed", permanent=True
            )
        retry_after = _retry_after(response.headers.get("retry-after"), self.clock())
        if retry_after is not None:
            retry_after = min(retry_after, self.policy.max_retry_after)
        permanent = 400 <= code < 500 and code not in _RETRYABLE_4XX
        return Attempt(
            status=code, error=f"HTTP {code}", retry_after=retry_after, permanent=permanent
        )


def _pinned(
    client: httpx.AsyncClient,
    url: httpx.URL,
    address: _netaddr.IPAddress,
    body: bytes,
    headers: dict[str, str],
) -> httpx.Request:
    extensions: dict[str, Any] = {}
    if url.scheme == "https":
        extensions["sni_hostname"] = url.host
    return client.build_request(
        "POST",
        url.copy_with(host=str(address)),
        content=body,
        headers={**headers, "Host": url.netloc.decode("ascii")},
        extensions=extensions,
    )


def _retry_after(value: str | None, now: float) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


def _scrub(message: str, url: str) -> str:
    # Slack-style webhook URLs carry their credential in the path.
    return message.replace(url, "<webhook url>")[:500]
