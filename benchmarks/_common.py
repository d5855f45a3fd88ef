"""Helpers shared by the benchmarks: scratch stores, the raw commit floor, percentiles.

Nothing here imports kernos, so ``recovery.py`` can time ``import kernos`` itself.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
FLOOR_COMMITS = 1000
# ~100 bytes of JSON, like the step results.
FLOOR_VALUE = json.dumps({"i": 0, "note": "x" * 60, "ok": True, "tags": ["a", "b", "c"]})


def emit(obj: dict[str, Any]) -> None:
    """Print one JSON object as one line on stdout."""
    sys.stdout.write(json.dumps(obj, sort_keys=False) + "\n")
    sys.stdout.flush()


def log(message: str) -> None:
    """Progress notes go to stderr; stdout is reserved for JSON."""
    print(message, file=sys.stderr, flush=True)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` percentile (0..100) of ``values`` by the nearest-rank method."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass
class Floor:
    """The raw commit floor: one small INSERT per transaction, straight through the driver."""

    commits: int
    seconds: float
    us_p50: float
    us_p99: float

    @property
    def commits_per_s(self) -> float:
        return self.commits / self.seconds

    def as_dict(self) -> dict[str, Any]:
        return {
            "floor_commits": self.commits,
            "floor_commit_us_p50": round(self.us_p50, 1),
            "floor_commit_us_p99": round(self.us_p99, 1),
            "floor_commits_per_s": round(self.commits_per_s, 1),
        }


def _floor_from(latencies: list[float], seconds: float) -> Floor:
    return Floor(
        commits=len(latencies),
        seconds=seconds,
        us_p50=percentile(latencies, 50) * 1e6,
        us_p99=percentile(latencies, 99) * 1e6,
    )


def sqlite_floor(path: Path, *, durable: bool, commits: int = FLOOR_COMMITS) -> Floor:
    """BEGIN IMMEDIATE; INSERT; COMMIT ``commits`` times on a fresh WAL file.

    Same driver (sqlite3) and pragmas as the Kernos SQLite store: WAL, and
    ``synchronous=FULL`` (durable) or ``NORMAL`` (fast).
    """
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {'FULL' if durable else 'NORMAL'}")
        conn.execute("CREATE TABLE floor (id INTEGER PRIMARY KEY, at REAL, data TEXT)")
        latencies: list[float] = []
        started = time.perf_counter()
        for _ in range(commits):
            t = time.perf_counter()
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO floor (at, data) VALUES (?, ?)", (time.time(), FLOOR_VALUE))
            conn.execute("COMMIT")
            latencies.append(time.perf_counter() - t)
        return _floor_from(latencies, time.perf_counter() - started)
    finally:
        conn.close()


def postgres_floor(url: str, *, durable: bool, commits: int = FLOOR_COMMITS) -> Floor:
    """BEGIN; INSERT; COMMIT ``commits`` times through psycopg, as the Kernos store does
    (autocommit connection, explicit BEGIN/COMMIT, ``synchronous_commit`` on or off)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"SET synchronous_commit = {'on' if durable else 'off'}")
        conn.execute(
            "CREATE TABLE bench_floor (id bigserial PRIMARY KEY, at double precision, data text)"
        )
        latencies: list[float] = []
        started = time.perf_counter()
        for _ in range(commits):
            t = time.perf_counter()
            conn.execute("BEGIN")
            conn.execute(
                "INSERT INTO bench_floor (at, data) VALUES (%s, %s)", (time.time(), FLOOR_VALUE)
            )
            conn.execute("COMMIT")
            latencies.append(time.perf_counter() - t)
        elapsed = time.perf_counter() - started
        conn.execute("DROP TABLE bench_floor")
    return _floor_from(latencies, elapsed)


def with_database(url: str, dbname: str) -> str:
    """``url`` pointing at database ``dbname`` instead."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + dbname, parts.query, parts.fragment))


@contextlib.contextmanager
def scratch_postgres(admin_url: str, dbname: str) -> Iterator[str]:
    """Create database ``dbname`` (dropping a leftover first), yield its URL, drop it."""
    import psycopg
    from psycopg import sql

    def drop(conn: psycopg.Connection[Any]) -> None:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname))
        )

    with psycopg.connect(admin_url, autocommit=True) as conn:
        drop(conn)
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    try:
        yield with_database(admin_url, dbname)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            drop(conn)


@contextlib.contextmanager
def scratch_dir(parent: str | None) -> Iterator[Path]:
    """A fresh directory (under ``parent``, default the system temp dir), removed after."""
    path = Path(tempfile.mkdtemp(prefix=f"kernos-bench-{os.getpid()}-", dir=parent))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
