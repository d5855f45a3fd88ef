"""Storage: one :class:`Store` interface, SQLite and PostgreSQL backends.

``open_store(url)`` picks the backend from the URL:

- ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db``
- ``postgresql://user@host:5432/dbname`` (needs ``pip install 'kernos[postgres]'``)
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from kernos.errors import ConfigError
from kernos.store._approvals import ApprovalFilter, NewApproval, approval_id_for, approval_topic
from kernos.store._base import Enqueued, NewRun, RunFilter, Store
from kernos.store._ops import EntryWrite, EventWrite, Fence, FinishWrite, Write
from kernos.store._url import redact_url

__all__ = [
    "ApprovalFilter",
    "Enqueued",
    "EntryWrite",
    "EventWrite",
    "Fence",
    "FinishWrite",
    "NewApproval",
    "NewRun",
    "RunFilter",
    "Store",
    "Write",
    "approval_id_for",
    "approval_topic",
    "open_store",
    "redact_url",
]


def open_store(url: str, **options: Any) -> Store:
    """Return the store for ``url`` (not yet connected; connections open on first use).

    Args:
        url: ``sqlite:///path.db`` or ``postgresql://...``.
        **options: ``durable`` (default True), ``blob_threshold`` (bytes, default
            65536), ``blob_dir`` (store large values as files there),
            ``retry_for`` (seconds to retry an unavailable store), ``clock``.

    Raises:
        ConfigError: the URL names no supported backend.
    """
    scheme = urlsplit(url).scheme
    if scheme == "sqlite":
        from kernos.store._sqlite import SqliteStore

        path = url[len("sqlite:///") :] if url.startswith("sqlite:///") else ""
        if not path or path == ":memory:":
            raise ConfigError(
                f"store URL {url!r} names no file; use sqlite:///kernos.db (relative) or "
                "sqlite:////abs/path/kernos.db (absolute). In-memory SQLite cannot be "
                "shared by workers or survive a crash",
                url=url,
            )
        return SqliteStore(url, path, **options)
    if scheme in ("postgresql", "postgres"):
        from kernos.store._postgres import PostgresStore

        return PostgresStore(url, **options)
    raise ConfigError(
        f"unsupported store URL {redact_url(url)!r}: use sqlite:///path.db or "
        "postgresql://user@host/db",
        url=redact_url(url),
    )
