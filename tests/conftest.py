"""Fixtures shared by every test package: store URLs and stores on both backends.

Every test that asks for ``store_url``, ``store``, ``make_store_url`` or
``make_store`` runs once per backend: SQLite always, PostgreSQL when
``KERNOS_TEST_POSTGRES_URL`` names a server it may create databases on (CI
always sets it). Each test gets databases of its own:

- SQLite: a fresh file under the test's ``tmp_path``, copied from a file
  migrated once per session.
- PostgreSQL: like procrastinate, a template database is migrated once per
  session and each database is ``CREATE DATABASE ... TEMPLATE`` of it, dropped
  after the test.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import pytest

from kernos import store as kstore
from kernos.testing import FakeOpenAI

POSTGRES_URL_ENV = "KERNOS_TEST_POSTGRES_URL"

# The CLI's Rich tables size themselves to the terminal; without one (pytest-xdist
# workers, CI) they would fold or cut cells that tests look for. One fixed width for
# every test and every `kernos` process a test starts.
os.environ["COLUMNS"] = "200"
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


class MakeStoreUrl(Protocol):
    """Return the URL of a new database of this test's backend."""

    def __call__(self, *, migrated: bool = True) -> str: ...


class MakeStore(Protocol):
    """Open (and migrate) a store; it is closed when the test ends."""

    def __call__(self, url: str | None = None, **options: Any) -> Awaitable[kstore.Store]: ...


def postgres_admin_url() -> str | None:
    """The server tests may create databases on, or None when not configured."""
    return os.environ.get(POSTGRES_URL_ENV) or None


def with_database(url: str, name: str) -> str:
    """``url`` with its database replaced by ``name``."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def _admin_execute(statement: str) -> None:
    import psycopg

    admin = postgres_admin_url()
    assert admin is not None
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(statement.encode())


def _create_database(name: str, template: str) -> None:
    # Names are generated here from hex digits only, so quoting suffices.
    _admin_execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')


def _drop_database(name: str) -> None:
    _admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _migrate(url: str) -> None:
    store = kstore.open_store(url)
    try:
        await store.migrate()
    finally:
        await store.close()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated once per session; tests get copies."""
    path = tmp_path_factory.mktemp("kernos-template") / "template.db"
    asyncio.run(_migrate(f"sqlite:///{path}"))
    return path


@pytest.fixture(scope="session")
def postgres_template() -> Iterator[str]:
    """The name of a database migrated once per session; tests get copies."""
    admin = postgres_admin_url()
    if admin is None:
        pytest.skip(f"{POSTGRES_URL_ENV} is not set")
    name = f"kernos_tpl_{os.getpid()}_{secrets.token_hex(4)}"
    _create_database(name, "template0")
    try:
        asyncio.run(_migrate(with_database(admin, name)))
        yield name
    finally:
        _drop_database(name)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The backend under test: ``sqlite`` or ``postgres``."""
    name: str = request.param
    if name == "postgres" and postgres_admin_url() is None:
        pytest.skip(f"{POSTGRES_URL_ENV} is not set")
    return name


@pytest.fixture
def make_store_url(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[MakeStoreUrl]:
    """A factory of new databases for this test, migrated unless ``migrated=False``.

    Call it several times for several independent databases; call it once and
    share the URL between stores or processes to work on the same database.
    """
    # Resolve the session templates now: their setup runs an event loop, which
    # is impossible once the test's own loop is running.
    template: Any = request.getfixturevalue(f"{backend}_template")
    created: list[str] = []

    def make(*, migrated: bool = True) -> str:
        if backend == "sqlite":
            path = tmp_path / f"kernos-{len(created)}.db"
            created.append(str(path))
            if migrated:
                shutil.copyfile(template, path)
            return f"sqlite:///{path}"
        admin = postgres_admin_url()
        assert admin is not None
        name = f"kernos_t_{secrets.token_hex(6)}"
        _create_database(name, template if migrated else "template0")
        created.append(name)
        return with_database(admin, name)

    yield make
    if backend == "postgres":
        for name in created:
            _drop_database(name)


@pytest.fixture
def store_url(make_store_url: MakeStoreUrl) -> str:
    """The URL of a migrated database of its own for this test."""
    return make_store_url()


@pytest.fixture
async def make_store(store_url: str) -> AsyncIterator[MakeStore]:
    """A factory of migrated stores (on ``store_url`` unless told), closed after the test."""
    opened: list[kstore.Store] = []

    async def make(url: str | None = None, **options: Any) -> kstore.Store:
        store = kstore.open_store(url or store_url, **options)
        opened.append(store)
        await store.migrate()
        return store

    yield make
    for store in opened:
        await store.close()


@pytest.fixture
async def store(make_store: MakeStore) -> kstore.Store:
    """A migrated, open store on ``store_url``."""
    return await make_store()


Fetch = Callable[[str, str], Awaitable[list[tuple[Any, ...]]]]


@pytest.fixture
def fetch_rows() -> Fetch:
    """Run one read-only SQL statement on a store URL's database, bypassing the store."""

    def blocking(url: str, sql: str) -> list[tuple[Any, ...]]:
        if url.startswith("sqlite:///"):
            import sqlite3

            conn = sqlite3.connect(url[len("sqlite:///") :])
            try:
                return [tuple(row) for row in conn.execute(sql).fetchall()]
            finally:
                conn.close()
        import psycopg

        with psycopg.connect(url) as pg:
            return [tuple(row) for row in pg.execute(sql.encode()).fetchall()]

    async def fetch(url: str, sql: str) -> list[tuple[Any, ...]]:
        return await asyncio.to_thread(blocking, url, sql)

    return fetch


@pytest.fixture(scope="session")
def openai_server() -> Iterator[FakeOpenAI]:
    """The fake OpenAI server (real HTTP on loopback), started once per session."""
    server = FakeOpenAI().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def fake(openai_server: FakeOpenAI) -> Iterator[FakeOpenAI]:
    """The fake OpenAI server with no scripted replies, default or responder, before
    and after the test."""
    openai_server.reset()
    openai_server.default = None
    openai_server.responder = None
    yield openai_server
    openai_server.reset()
    openai_server.default = None
    openai_server.responder = None


_SHELL_MODULES: dict[Path, bool] = {}


def _runs_the_shell(path: Path) -> bool:
    if path not in _SHELL_MODULES:
        _SHELL_MODULES[path] = "sandbox" in path.parts or "ShellTool(" in path.read_text()
    return _SHELL_MODULES[path]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist (``make test`` runs two workers), the modules that run commands
    as the sandbox user share one worker: in the fallback sandbox the process limit
    counts every process of that user, so two of them at once would share it.
    (``make test`` runs tests/sandbox in a pytest of its own, after the rest.)"""
    for item in items:
        if _runs_the_shell(item.path):
            item.add_marker(pytest.mark.xdist_group("sandbox-user"))
