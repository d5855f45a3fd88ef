"""Schema migrations: the chain matches schema.sql, re-runs, races and failures are safe."""

from __future__ import annotations

import asyncio
import re
from typing import TYPE_CHECKING, Any

import pytest

from kernos import errors
from kernos.store import _queries, _sql, open_store

if TYPE_CHECKING:
    from tests.conftest import Fetch, MakeStoreUrl

SQLITE_SCHEMA = [
    """
    SELECT m.name, p.cid, p.name, p.type, p."notnull", p.dflt_value, p.pk
    FROM sqlite_master m JOIN pragma_table_info(m.name) p
    WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' AND m.name != 'kernos_schema_version'
    ORDER BY m.name, p.cid
    """,
    """
    SELECT type, name, tbl_name, sql FROM sqlite_master
    WHERE type != 'table' AND name NOT LIKE 'sqlite_%'
    ORDER BY type, name
    """,
]
POSTGRES_SCHEMA = [
    """
    SELECT table_name, column_name, ordinal_position, data_type, is_nullable, column_default
    FROM information_schema.columns
    WHERE table_schema = 'public' AND table_name != 'kernos_schema_version'
    ORDER BY table_name, ordinal_position
    """,
    """
    SELECT tablename, indexname, indexdef FROM pg_indexes
    WHERE schemaname = 'public' AND tablename != 'kernos_schema_version'
    ORDER BY tablename, indexname
    """,
    """
    SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint
    WHERE connamespace = 'public'::regnamespace
      AND conrelid::regclass::text != 'kernos_schema_version'
    ORDER BY 1, 2
    """,
    """
    SELECT sequence_name, data_type FROM information_schema.sequences
    WHERE sequence_schema = 'public' ORDER BY sequence_name
    """,
    """
    SELECT tgrelid::regclass::text, tgname, pg_get_triggerdef(oid) FROM pg_trigger
    WHERE NOT tgisinternal ORDER BY 1, 2
    """,
    """
    SELECT proname, pg_get_functiondef(oid) FROM pg_proc
    WHERE pronamespace = 'public'::regnamespace ORDER BY proname
    """,
]

ALL = [f"{m.version:04d}_{m.name}" for m in _queries.load_migrations("sqlite")]
LATEST = len(ALL)


def _normalise(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return [
        tuple(re.sub(r"\s+", " ", v).strip() if isinstance(v, str) else v for v in row)
        for row in rows
    ]


async def _schema(fetch_rows: Fetch, url: str, backend: str) -> list[list[tuple[Any, ...]]]:
    queries = SQLITE_SCHEMA if backend == "sqlite" else POSTGRES_SCHEMA
    return [_normalise(await fetch_rows(url, query)) for query in queries]


def _apply_schema_file(url: str, backend: str) -> None:
    script = _queries.load_schema(backend)
    if backend == "sqlite":
        import sqlite3

        conn = sqlite3.connect(url[len("sqlite:///") :])
        try:
            for statement in _queries.split_statements(script):
                conn.execute(statement)
            conn.commit()
        finally:
            conn.close()
        return
    import psycopg

    with psycopg.connect(url, autocommit=True) as pg:
        pg.execute(script.encode())  # one call: function bodies hold semicolons


async def test_migration_chain_matches_schema_file(
    backend: str, make_store_url: MakeStoreUrl, fetch_rows: Fetch
) -> None:
    migrated_url = make_store_url(migrated=False)
    store = open_store(migrated_url)
    try:
        assert await store.migrate() == ALL
    finally:
        await store.close()
    schema_url = make_store_url(migrated=False)
    await asyncio.to_thread(_apply_schema_file, schema_url, backend)

    from_chain = await _schema(fetch_rows, migrated_url, backend)
    from_file = await _schema(fetch_rows, schema_url, backend)
    assert all(from_chain)
    assert from_chain == from_file


async def test_migrate_twice_is_a_no_op(make_store_url: MakeStoreUrl) -> None:
    store = open_store(make_store_url(migrated=False))
    try:
        assert await store.schema_version() == (0, LATEST)
        assert await store.migrate() == ALL
        assert await store.migrate() == []
        assert await store.schema_version() == (LATEST, LATEST)
    finally:
        await store.close()


async def test_concurrent_migrations_apply_once(make_store_url: MakeStoreUrl) -> None:
    url = make_store_url(migrated=False)
    stores = [open_store(url) for _ in range(4)]
    try:
        results = await asyncio.gather(*(store.migrate() for store in stores))
        assert sorted(results) == [[], [], [], ALL]
        assert await stores[0].schema_version() == (LATEST, LATEST)
    finally:
        for store in stores:
            await store.close()


async def test_failed_migration_leaves_the_version_unbumped(
    backend: str, make_store_url: MakeStoreUrl, fetch_rows: Fetch, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = make_store_url()
    real = _queries.load_migrations

    def with_broken_step(dialect: str) -> list[_queries.Migration]:
        broken = _queries.Migration(
            LATEST + 1, "broken", "CREATE TABLE kernos_half_done (id INTEGER);\nTHIS IS NOT SQL;\n"
        )
        return [*real(dialect), broken]

    monkeypatch.setattr(_sql, "load_migrations", with_broken_step)
    store = open_store(url)
    try:
        with pytest.raises(errors.MigrationError) as caught:
            await store.migrate()
        assert caught.value.facts["url"] == url
        assert await store.schema_version() == (LATEST, LATEST + 1)
    finally:
        await store.close()
    catalog = "sqlite_master" if backend == "sqlite" else "information_schema.tables"
    column = "name" if backend == "sqlite" else "table_name"
    query = f"SELECT count(*) FROM {catalog} WHERE {column} = 'kernos_half_done'"
    assert await fetch_rows(url, query) == [(0,)]  # the half-done step was rolled back


def test_both_dialects_name_the_same_queries() -> None:
    sqlite = set(_queries.load_queries("sqlite"))
    postgres = set(_queries.load_queries("postgres"))
    assert postgres - sqlite == {"lock_migrations"}  # SQLite's BEGIN IMMEDIATE suffices
    assert sqlite - postgres == set()
