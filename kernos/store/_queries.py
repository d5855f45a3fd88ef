"""Loading of named SQL queries and migration files shipped with the package."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

__all__ = ["Migration", "load_migrations", "load_queries", "load_schema", "split_statements"]

_NAME = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)
_MIGRATION = re.compile(r"^(\d{4})_(\w+)\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    """One ordered schema change."""

    version: int
    name: str
    sql: str


def _sql_dir(dialect: str) -> resources.abc.Traversable:
    return resources.files("kernos.store").joinpath("sql", dialect)


def load_queries(dialect: str) -> dict[str, str]:
    """Return ``{name: sql}`` from ``sql/<dialect>/queries.sql``."""
    text = _sql_dir(dialect).joinpath("queries.sql").read_text()
    parts = _NAME.split(text)
    return {
        name: body.strip().rstrip(";") for name, body in zip(parts[1::2], parts[2::2], strict=False)
    }


def load_schema(dialect: str) -> str:
    """Return the canonical schema of the latest version."""
    return _sql_dir(dialect).joinpath("schema.sql").read_text()


def load_migrations(dialect: str) -> list[Migration]:
    """Return the dialect's migrations in version order."""
    found = []
    for entry in _sql_dir(dialect).joinpath("migrations").iterdir():
        match = _MIGRATION.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text()))
    found.sort(key=lambda m: m.version)
    for expected, migration in enumerate(found, start=1):
        if migration.version != expected:
            raise RuntimeError(f"migration {expected:04d} is missing for {dialect}")
    return found


def split_statements(script: str) -> list[str]:
    """Split a migration script on semicolons that end a line; comments dropped."""
    lines = [line for line in script.splitlines() if not line.lstrip().startswith("--")]
    return [
        stmt.strip()
        for stmt in re.split(r";\s*$", "\n".join(lines), flags=re.MULTILINE)
        if stmt.strip()
    ]
