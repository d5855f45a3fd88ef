"""The one bridge from CLI commands to the async API: open an app, use it, always close it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from kernos import errors, runtime
from kernos.cli._settings import Settings

__all__ = ["call"]

T = TypeVar("T")


def call(
    settings: Settings,
    use: Callable[[runtime.Kernos], Awaitable[T]],
    *,
    worker: bool = False,
    must_exist: bool = True,
    check_schema: bool = True,
) -> T:
    """Run ``use(app)`` on a fresh event loop and close the app (and its store) after.

    Args:
        settings: the store to open.
        use: the coroutine function to run with the app.
        worker: open the app as a worker that claims and executes runs. Otherwise
            it joins no worker registry and claims nothing.
        must_exist: refuse a SQLite URL whose file does not exist (rather than
            create an empty database there).
        check_schema: open the app, which refuses a store whose schema is behind
            this code (``kernos db`` commands skip this to use ``app.store`` as is).
    """

    async def go() -> T:
        if must_exist:
            _require_sqlite_file(settings.store)
        app = runtime.Kernos(settings.store, worker=worker, migrate=False)
        try:
            if worker or check_schema:
                await app.open()  # never migrates: migrate=False
            return await use(app)
        finally:
            await app.close()

    return asyncio.run(go())


def _require_sqlite_file(url: str) -> None:
    # Reading from a path that does not exist would create an empty database
    # there and then fail on missing tables; name the likely mistake instead.
    prefix = "sqlite:///"
    if not url.startswith(prefix):
        return
    path = Path(url[len(prefix) :])
    if str(path) and str(path) != ":memory:" and not path.exists():
        raise errors.ConfigError(
            f"no Kernos store at {str(path)!r} (from {url}); pass --store or set KERNOS_STORE "
            "to an existing store, or create one with `kernos db migrate`",
            url=url,
        )
