"""PostgreSQL backend: for several hosts, many workers and row-level claiming."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kernos.errors import ConfigError
from kernos.store._ops import EntryWrite
from kernos.store._sql import SqlStore, fence_params, fenced_entry_params, fenced_event_params
from kernos.store._tx import Tx as _Tx

if TYPE_CHECKING:
    import psycopg

__all__ = ["PostgresStore"]

logger = logging.getLogger(__name__)
CHANNEL = "kernos_runs"  # the trigger in migration 0002 notifies it with the queue name

# The advisory lock key migrators queue on: a fixed bigint derived from a
# Kernos-prefixed name, so Kernos can share a database with other lock users.
MIGRATION_LOCK_KEY = int.from_bytes(
    hashlib.sha256(b"kernos_migrations").digest()[:8], "big", signed=True
)

# SQLSTATEs worth retrying: the transaction lost a race, not a logic error.
_TRANSIENT_STATES = frozenset(
    {
        "40001",  # serialization_failure
        "40P01",  # deadlock_detected
        "55P03",  # lock_not_available
    }
)


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError as exc:
        raise ConfigError(
            "the PostgreSQL store needs psycopg 3: pip install 'kernos[postgres]'",
            package="psycopg",
        ) from exc
    return psycopg


class PostgresStore(SqlStore):
    """Store in a PostgreSQL database (``synchronous_commit`` off unless ``durable``)."""

    dialect = "postgres"

    def __init__(self, url: str, **options: Any) -> None:
        super().__init__(url, **options)
        self._psycopg = _psycopg()
        # libpq reads both spellings; normalise so the URL Kernos shows is one form.
        if url.startswith("postgres://"):
            url = "postgresql://" + url[len("postgres://") :]
        self._conninfo = url
        self._listener: threading.Thread | None = None
        self._listening = threading.Event()

    def listen(self, wake: Callable[[str], None]) -> None:
        """Call ``wake(queue)`` whenever a run becomes claimable (LISTEN/NOTIFY).

        A daemon thread holds a dedicated connection; it reconnects with backoff
        if the connection drops (claims fall back to polling meanwhile).
        """
        if self._listener is not None:
            return
        self._listening.set()
        self._listener = threading.Thread(
            target=self._listen_forever, args=(wake,), name="kernos-listen", daemon=True
        )
        self._listener.start()

    def _listen_forever(self, wake: Callable[[str], None]) -> None:
        delay = 0.1
        while self._listening.is_set():
            try:
                with self._psycopg.connect(self._conninfo, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    delay = 0.1
                    wake("")  # anything enqueued while we were not listening
                    while self._listening.is_set():
                        for note in conn.notifies(timeout=0.5):
                            wake(note.payload)
            except Exception as exc:
                if not self._listening.is_set():
                    return
                logger.warning(
                    "notification listener lost its connection",
                    extra={"action": "listen_retry", "error": str(exc)},
                )
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def close(self) -> None:
        """Stop listening, then close like any SQL store."""
        # The listener notices within its poll timeout and closes its own
        # connection; waiting for it here would only slow every close down.
        self._listening.clear()
        self._listener = None
        await super().close()

    def _connect(self) -> psycopg.Connection[Any]:
        from psycopg.rows import dict_row

        # The shared code issues BEGIN and COMMIT itself, hence autocommit.
        conn: psycopg.Connection[Any] = self._psycopg.connect(
            self._conninfo,
            autocommit=True,
            row_factory=dict_row,
            connect_timeout=max(1, min(10, round(self.retry_for))),
        )
        try:
            conn.execute(f"SET synchronous_commit = {'on' if self.durable else 'off'}")
        except BaseException:
            conn.close()
            raise
        return conn

    def _is_transient(self, exc: BaseException) -> bool:
        pg = self._psycopg
        if getattr(exc, "sqlstate", None) in _TRANSIENT_STATES:
            return True
        if isinstance(exc, pg.OperationalError):
            # Connection refused, server restarted or gone, admin shutdown, ...
            return True
        # A connection closed under us (e.g. by a failed rollback) is worth a reconnect.
        return isinstance(exc, pg.InterfaceError) and self._connection_unusable()

    def _drop_if_broken(self, exc: BaseException) -> None:
        """Close and forget a connection that cannot run another transaction."""
        if self._conn is not None and self._connection_unusable():
            try:
                self._conn.close()
            finally:
                self._conn = None

    def _connection_unusable(self) -> bool:
        conn = self._conn
        return conn is None or bool(conn.closed) or bool(conn.broken)

    def _run_script(self, tx: _Tx, script: str) -> None:
        # One simple-protocol call runs the whole script, function bodies included.
        tx.conn.execute(script)

    def _write_entries(self, tx: _Tx, entries: list[EntryWrite]) -> list[Any]:
        # One pipeline, one round trip: every fence, then every fenced entry and
        # event (which check the lease themselves), answers read at the sync.
        conn = tx.conn
        with conn.pipeline():
            cursors = [conn.execute(tx.queries["fence"], fence_params(tx, w)) for w in entries]
            tx.many("upsert_entry_fenced", [fenced_entry_params(tx, w) for w in entries])
            tx.many("insert_event_fenced", fenced_event_params(tx, entries))
        return [cursor.fetchone() for cursor in cursors]

    def _claim_needs_no_fsync(self, tx: _Tx) -> None:
        tx.conn.execute("SET LOCAL synchronous_commit = off")

    def _plan_for_values(self, tx: _Tx) -> None:
        # psycopg prepares a statement once it has run a few times, and the
        # server may then settle on one generic plan for all parameter values:
        # for a listing with optional filters that plan scans the wrong index
        # (e.g. by creation time for one small tenant).
        tx.conn.execute("SET LOCAL plan_cache_mode = force_custom_plan")

    def _lock_blobs(self, tx: _Tx) -> None:
        # Conflicts with the lock every INSERT takes: waits for writers that may
        # have just reused a blob to commit (so their rows are seen), and holds
        # new ones off until the purge commits (their put_blob then re-inserts).
        tx.conn.execute("LOCK TABLE kernos_blobs IN SHARE ROW EXCLUSIVE MODE")

    def _lock_migrations(self, tx: _Tx) -> None:
        tx.execute("lock_migrations", {"key": MIGRATION_LOCK_KEY})
