"""SQLite backend: the embedded default, one file in WAL mode."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from kernos.store._sql import SqlStore

__all__ = ["SqliteStore"]


class SqliteStore(SqlStore):
    """Store in one SQLite file (WAL, ``synchronous=FULL`` unless ``durable=False``)."""

    dialect = "sqlite"
    # IMMEDIATE takes the write lock at BEGIN, so two writers never both read
    # and then fail to upgrade (SQLITE_BUSY with no retry possible).
    begin_write = "BEGIN IMMEDIATE"
    begin_read = "BEGIN"

    def __init__(self, url: str, path: str | Path, **options: Any) -> None:
        super().__init__(url, **options)
        self.path = Path(path)

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        # The busy timeout is short because _transact retries with backoff
        # until retry_for; a long timeout here would hide that from the logs.
        conn.execute("PRAGMA busy_timeout = 1000")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {'FULL' if self.durable else 'NORMAL'}")
        conn.execute("PRAGMA foreign_keys = ON")
        return conn

    def _is_transient(self, exc: BaseException) -> bool:
        return isinstance(exc, sqlite3.OperationalError) and (
            "locked" in str(exc) or "busy" in str(exc)
        )
