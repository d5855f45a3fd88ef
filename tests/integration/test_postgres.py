"""What only the PostgreSQL backend does: URLs, durability setting, reconnecting."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

import pytest

from kernos import errors
from kernos.store import NewRun, open_store

if TYPE_CHECKING:
    from tests.conftest import Fetch, MakeStore

POSTGRES_URL_ENV = "KERNOS_TEST_POSTGRES_URL"


@pytest.fixture(params=[pytest.param("postgres", marks=pytest.mark.postgres)])
def backend() -> str:
    """Overrides the conftest fixture: these tests run on PostgreSQL alone."""
    if not os.environ.get(POSTGRES_URL_ENV):
        pytest.skip(f"{POSTGRES_URL_ENV} is not set")
    return "postgres"


@pytest.fixture
def pg_url(store_url: str) -> str:
    return store_url


def test_a_missing_driver_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # makes `import psycopg` fail

    with pytest.raises(errors.ConfigError, match=r"pip install 'kernos\[postgres\]'"):
        open_store("postgresql://localhost/kernos")


async def test_both_url_spellings_work(pg_url: str, make_store: MakeStore) -> None:
    assert pg_url.startswith("postgresql://")
    store = await make_store("postgres://" + pg_url[len("postgresql://") :])

    applied, latest = await store.schema_version()
    assert applied == latest > 0


async def _synchronous_commit(store: Any) -> str:
    # Reads the session setting through the store's own connection.
    row = await store._call(lambda tx: tx.conn.execute("SHOW synchronous_commit").fetchone())
    return str(row["synchronous_commit"])


async def test_durability_sets_synchronous_commit(pg_url: str, make_store: MakeStore) -> None:
    assert await _synchronous_commit(await make_store(pg_url)) == "on"
    assert await _synchronous_commit(await make_store(pg_url, durable=False)) == "off"


async def test_reconnects_after_the_server_drops_the_connection(
    pg_url: str, make_store: MakeStore, fetch_rows: Fetch
) -> None:
    store = await make_store(pg_url)
    await store.create_run(NewRun(run_id="r1", workflow="wf", version="1", input="1"))

    killed = await fetch_rows(
        pg_url,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    assert killed == [(True,)]

    assert await store.create_run(NewRun(run_id="r2", workflow="wf", version="1", input="2"))
    assert (await store.get_run("r1")).input == 1
