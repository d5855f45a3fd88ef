"""`kernos db ...`: create or upgrade the store's schema, and report on it."""

from __future__ import annotations

import typer

from kernos import runtime
from kernos.cli import _render as render
from kernos.cli._session import call
from kernos.cli._settings import JsonOption, StoreOption, resolve

__all__ = ["db"]

db = typer.Typer(
    name="db", help="Create, upgrade and inspect the store's schema.", no_args_is_help=True
)


@db.command("migrate")
def migrate(ctx: typer.Context, json: JsonOption = False, store: StoreOption = None) -> None:
    """Apply pending schema migrations (creating the store if needed).

    Safe to run again, and concurrently: migrations already applied are skipped.
    Always works on the store (--store, $KERNOS_STORE), never through a server.

    Example: kernos db migrate --store postgresql://kernos@db/kernos
    """

    async def use(app: runtime.Kernos) -> tuple[list[str], int, int]:
        applied = await app.store.migrate()
        version, needed = await app.store.schema_version()
        return applied, version, needed

    applied, version, needed = call(
        resolve(ctx, store=store), use, must_exist=False, check_schema=False
    )
    if json:
        render.print_json({"applied": applied, "schema_version": version, "latest": needed})
        return
    for name in applied:
        render.console.print(f"applied {name}")
    if not applied:
        render.console.print("nothing to apply")
    render.console.print(f"schema version {version} (latest {needed})")


@db.command("status")
def status(ctx: typer.Context, json: JsonOption = False, store: StoreOption = None) -> None:
    """Show the schema version and, on an up-to-date store, how many runs are in each status.

    Example: kernos db status --json
    """

    async def use(app: runtime.Kernos) -> tuple[int, int, dict[str, int]]:
        version, needed = await app.store.schema_version()
        counts = await app.store.count_runs() if version >= needed else {}
        return version, needed, counts

    version, needed, counts = call(resolve(ctx, store=store), use, check_schema=False)
    pending = max(needed - version, 0)
    if json:
        render.print_json(
            {
                "schema_version": version,
                "latest": needed,
                "pending_migrations": pending,
                "runs": counts,
            }
        )
        return
    if pending:
        render.console.print(
            f"schema version {version} of {needed}: {pending} migration(s) pending; "
            "run `kernos db migrate`",
            soft_wrap=True,
        )
        return
    render.console.print(f"schema version {version} (up to date)")
    total = sum(counts.values())
    parts = ", ".join(f"{count} {name}" for name, count in sorted(counts.items()) if count)
    render.console.print(f"{total} run(s)" + (f": {parts}" if parts else ""))
