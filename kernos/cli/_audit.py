"""`kernos audit`: the tenant's audit log, newest first."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from kernos import records
from kernos.cli import _render as render
from kernos.cli._client import AuditQuery, Client, call
from kernos.cli._filters import TIME_HELP, parse_time
from kernos.cli._settings import JsonOption, StoreOption, resolve

__all__ = ["audit"]

OUTCOME_STYLES = {"ok": "green", "denied": "red", "error": "yellow"}


def audit_table(found: Iterable[records.AuditRecord]) -> Table:
    """One line per record."""
    table = Table()
    table.add_column("id", justify="right")
    table.add_column("at", no_wrap=True)
    table.add_column("actor", overflow="fold")
    table.add_column("action", no_wrap=True)
    table.add_column("object", overflow="fold")
    table.add_column("outcome")
    table.add_column("ip", no_wrap=True)
    table.add_column("detail", overflow="fold")
    for record in found:
        target = f"{record.object_type} {record.object_id or ''}".strip()
        table.add_row(
            str(record.audit_id),
            render.timestamp(record.at),
            record.actor,
            record.action,
            target,
            Text(record.outcome, style=OUTCOME_STYLES.get(record.outcome, "")),
            record.ip or "",
            render.preview(record.detail, 80),
        )
    return table


def audit(
    ctx: typer.Context,
    actor: Annotated[
        str | None,
        typer.Option("--actor", help="Only this actor: user:NAME, key:KEY_ID or system."),
    ] = None,
    action: Annotated[
        str | None,
        typer.Option("--action", help="Only actions starting with this, e.g. run. or key.rotate"),
    ] = None,
    object_id: Annotated[
        str | None, typer.Option("--object", help="Only records about this object id.")
    ] = None,
    since: Annotated[
        str | None, typer.Option("--since", help=f"From this time: {TIME_HELP}.", metavar="T")
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", help=f"Before this time: {TIME_HELP}.", metavar="T")
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=1, max=1000, help="Records per page.")
    ] = 100,
    before_id: Annotated[
        int | None,
        typer.Option("--before-id", min=0, metavar="ID", help="Continue after a previous page."),
    ] = None,
    json: JsonOption = False,
    store: StoreOption = None,
) -> None:
    """Show the audit log: who did what to which object, and whether it was allowed (admin).

    Example: kernos audit --action key. --since 7d
    """
    query = AuditQuery(
        actor=actor,
        action=action,
        object_id=object_id,
        since=parse_time(since, "--since") if since else None,
        until=parse_time(until, "--until") if until else None,
        before_id=before_id,
        limit=limit,
    )

    async def use(client: Client) -> tuple[list[records.AuditRecord], int | None]:
        return await client.audit(query)

    found, next_id = call(resolve(ctx, store=store), use)
    if json:
        render.print_json(
            {"records": [record.to_dict() for record in found], "next_before_id": next_id}
        )
        return
    if not found:
        render.console.print("no audit records")
        return
    render.console.print(audit_table(found))
    if next_id is not None:
        render.console.print(f"next page: --before-id {next_id}")
