"""Server settings, with the defaults a single-machine install wants."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kernos.retry import RetryPolicy

__all__ = ["ServerSettings"]


@dataclass(frozen=True, kw_only=True, slots=True)
class ServerSettings:
    """How the API server behaves; every field has a production-sane default.

    Attributes:
        max_body_bytes: larger request bodies are refused with 413.
        max_header_bytes: requests whose headers total more are refused with 431.
        key_rate: requests allowed per API key or session, as (count, seconds).
        secure_cookies: mark the session cookie ``Secure`` (None: when the
            request came over HTTPS).
        sse_heartbeat_s: idle event streams get a comment this often so proxies
            keep them open.
        stream_buffer: events buffered per stream client before a slow client is
            disconnected (it resumes with Last-Event-ID).
        stream_poll_s: how often the event hub looks for events written by
            other processes (events of this process wake it at once).
        retention_interval_s: how often retention policies are applied.
        archive_dir: where retention archives go (``archive`` action).
        embedded_worker: whether this process also executes runs.
        allow_private_webhooks: let webhooks target private, loopback and
            link-local addresses (refused by default: a webhook URL must not
            reach into the server's own network).
        webhook_retry: attempts and backoff of webhook deliveries (default:
            8 attempts over about an hour, with jitter).
        public_url: the URL people reach this server at (e.g.
            ``https://kernos.example.com``), for links in notifications; without
            it links are paths.
    """

    max_body_bytes: int = 1024 * 1024
    max_header_bytes: int = 16 * 1024
    key_rate: tuple[int, float] = (1200, 60.0)
    secure_cookies: bool | None = None
    sse_heartbeat_s: float = 15.0
    stream_buffer: int = 10_000
    stream_poll_s: float = 0.05
    retention_interval_s: float = 3600.0
    archive_dir: Path | None = None
    embedded_worker: bool = True
    allow_private_webhooks: bool = False
    webhook_retry: RetryPolicy | None = None
    public_url: str | None = None
