"""PostgreSQL backend: for several hosts, many workers and row-level claiming."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from kernos.errors import ConfigError
from kernos.store._sql import SqlStore, _Tx

if TYPE_CHECKING:
    import psycopg

__all__ = ["PostgresStore"]

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

    def _lock_migrations(self, tx: _Tx) -> None:
        tx.execute("lock_migrations", {"key": MIGRATION_LOCK_KEY})
