"""`kernos runs ...`: list, show, cancel runs and read their events."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from kernos import errors, records, runtime
from kernos.cli import _render as render
from kernos.cli._session import call
from kernos.cli._settings import JsonOption, RunArgument, StoreOption, resolve

__all__ = ["runs"]

runs = typer.Typer(
    name="runs",
    help="List, inspect and cancel runs.",
    no_args_is_help=True,
)

CHILDREN_SHOWN = 20
STATUS_HELP = "Only runs in this status: " + ", ".join(status.value for status in records.RunStatus)


def encode_cursor(run: records.Run) -> str:
    """The ``--before`` value that continues a listing after ``run``."""
    return f"{run.created_at!r}:{run.run_id}"


def decode_cursor(cursor: str) -> tuple[float, str]:
    """Parse a ``--before`` cursor printed by ``kernos runs list``."""
    created, sep, run_id = cursor.partition(":")
    try:
        if not sep or not run_id:
            raise ValueError(cursor)
        return float(created), run_id
    except ValueError:
        raise errors.UsageError(
            f"--before {cursor!r} is not a cursor; pass the value `kernos runs list` printed "
            "after 'next page:'",
            cursor=cursor,
        ) from None


@runs.command("list")
def list_runs(
    ctx: typer.Context,
    status: Annotated[
        records.RunStatus | None,
        typer.Option(
            "--status",
            "-s",
            help=STATUS_HELP,
            case_sensitive=False,
            metavar="STATUS",
        ),
    ] = None,
    workflow: Annotated[
        str | None,
        typer.Option("--workflow", "-w", help="Only runs of this workflow.", metavar="NAME"),
    ] = None,
    parent: Annotated[
        str | None, typer.Option("--parent", help="Only the child runs of this run.", metavar="RUN")
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=1, help="Runs per page.", metavar="N")
    ] = 50,
    before: Annotated[
        str | None,
        typer.Option("--before", metavar="CURSOR", help="Continue after a previous page."),
    ] = None,
    json: JsonOption = False,
    store: StoreOption = None,
) -> None:
    """List runs, newest first, a page at a time.

    Prints a cursor for the next page; pass it back with --before.
    """
    cursor = decode_cursor(before) if before is not None else None

    async def use(app: runtime.Kernos) -> list[records.Run]:
        return await app.list_runs(
            status=status, workflow=workflow, parent_id=parent, limit=limit + 1, before=cursor
        )

    found = call(resolve(ctx, store=store), use)
    page = found[:limit]
    next_cursor = encode_cursor(page[-1]) if len(found) > limit else None
    if json:
        render.print_json({"runs": [run.to_dict() for run in page], "next_cursor": next_cursor})
        return
    if not page:
        render.console.print("no runs")
        return
    render.console.print(render.runs_table(page))
    if next_cursor is not None:
        render.console.print(f"next page: --before {next_cursor}", soft_wrap=True)


@runs.command("show")
def show(
    ctx: typer.Context, run_id: RunArgument, json: JsonOption = False, store: StoreOption = None
) -> None:
    """Show a run, its journal (each step, wait and checkpoint) and its child runs."""

    async def use(
        app: runtime.Kernos,
    ) -> tuple[records.Run, list[records.JournalEntry], list[records.Run]]:
        run = await app.get_run(run_id)
        journal = await app.journal(run_id)
        children = await app.list_runs(parent_id=run_id, limit=CHILDREN_SHOWN + 1)
        return run, journal, children

    run, journal, children = call(resolve(ctx, store=store), use)
    if json:
        render.print_json(
            {
                "run": run.to_dict(),
                "journal": [entry.to_dict() for entry in journal],
                "children": [child.to_dict() for child in children[:CHILDREN_SHOWN]],
            }
        )
        return
    render.console.print(render.run_fields(run))
    if journal:
        render.console.print(render.journal_table(journal))
    else:
        render.console.print("journal: empty")
    if children:
        render.console.print(render.runs_table(children[:CHILDREN_SHOWN], title="children"))
    if len(children) > CHILDREN_SHOWN:
        render.console.print(f"more children: kernos runs list --parent {run_id}", soft_wrap=True)


@runs.command("cancel")
def cancel(
    ctx: typer.Context,
    run_id: RunArgument,
    reason: Annotated[
        str,
        typer.Option("--reason", "-r", help="Recorded as the run's error message.", metavar="TEXT"),
    ] = "cancelled from the command line",
    json: JsonOption = False,
    store: StoreOption = None,
) -> None:
    """Cancel a run and its unfinished child runs.

    A worker executing it stops at its next journal write. Cancelling a run that
    has already finished changes nothing.
    """

    async def use(app: runtime.Kernos) -> tuple[list[str], records.Run]:
        cancelled = await app.cancel(run_id, reason)
        return cancelled, await app.get_run(run_id)

    cancelled, run = call(resolve(ctx, store=store), use)
    if json:
        render.print_json({"cancelled": cancelled, "run": run.to_dict()})
    elif not cancelled:
        render.console.print(f"run {run_id} had already {run.status.value}; nothing to cancel")
    else:
        others = [other for other in cancelled if other != run_id]
        suffix = f" and {len(others)} child run(s): {', '.join(others)}" if others else ""
        render.console.print(f"cancelled {run_id}{suffix}", soft_wrap=True)


@runs.command("events")
def events(
    ctx: typer.Context,
    run_id: RunArgument,
    after: Annotated[
        int, typer.Option("--after", min=0, help="Only events with a higher id.", metavar="ID")
    ] = 0,
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=1, help="Events per page.", metavar="N")
    ] = 1000,
    json: JsonOption = False,
    store: StoreOption = None,
) -> None:
    """Show a run's events (created, started, step completed, ...), oldest first."""

    async def use(app: runtime.Kernos) -> list[records.Event]:
        await app.get_run(run_id)  # an unknown id is an error, not an empty list
        return await app.events(run_id, after=after, limit=limit + 1)

    found = call(resolve(ctx, store=store), use)
    page = found[:limit]
    next_after = page[-1].event_id if len(found) > limit else None
    if json:
        data: dict[str, Any] = {"events": [event.to_dict() for event in page]}
        render.print_json(data | {"next_after": next_after})
        return
    if not page:
        render.console.print(f"run {run_id} has no events")
        return
    render.console.print(render.events_table(page))
    if next_after is not None:
        render.console.print(f"next page: --after {next_after}")
