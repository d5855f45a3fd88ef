"""A transaction in progress, as the store's SQL helpers see it."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import orjson

from kernos import errors
from kernos.records import Run
from kernos.serialization import decode

if TYPE_CHECKING:
    from kernos.store._sql import SqlStore

__all__ = ["Connection", "Transacting", "Tx", "run_not_found"]

Connection = Any  # sqlite3.Connection or psycopg.Connection
T = TypeVar("T")


class Tx:
    """A transaction in progress: runs named queries and resolves blobs."""

    __slots__ = ("conn", "now", "queries", "store")

    def __init__(self, store: SqlStore, conn: Connection, now: float) -> None:
        self.store = store
        self.conn = conn
        self.queries = store.queries
        self.now = now

    def execute(self, name: str, params: dict[str, Any]) -> Any:
        return self.conn.execute(self.queries[name], params)

    def many(self, name: str, params: list[dict[str, Any]]) -> None:
        """Execute a named statement once per parameter set, in one driver call."""
        if params:
            self.conn.cursor().executemany(self.queries[name], params)

    def one(self, name: str, params: dict[str, Any]) -> Any:
        return self.execute(name, params).fetchone()

    def all(self, name: str, params: dict[str, Any]) -> list[Any]:
        return list(self.execute(name, params).fetchall())

    def decode(self, text: str | None) -> Any:
        return decode(self.store.blobs.resolve(text, self.execute))

    def put(self, text: str | None) -> str | None:
        return self.store.blobs.externalize(text, self.execute, self.now)

    def event(self, run_id: str, kind: str, data: dict[str, Any] | str | None = None) -> None:
        if isinstance(data, dict):
            data = orjson.dumps(data).decode()
        self.execute(
            "insert_event", {"run_id": run_id, "kind": kind, "now": self.now, "data": data}
        )

    def run(self, run_id: str) -> Run:
        row = self.one("get_run", {"run_id": run_id})
        if row is None:
            raise run_not_found(run_id)
        return Run.from_row(row, self.decode)


def run_not_found(run_id: str) -> errors.RunNotFoundError:
    """The error for a run id the store does not hold."""
    return errors.RunNotFoundError(
        f"no run with id {run_id!r}; `kernos runs list` shows the runs in this store",
        run_id=run_id,
    )


class Transacting:
    """Base of the store's mixins: they run functions of a :class:`Tx` through ``_call``."""

    async def _call(self, fn: Callable[[Tx], T], *, write: bool = True) -> T:
        """Run ``fn`` in one transaction (a write transaction unless ``write`` is False)."""
        raise NotImplementedError
