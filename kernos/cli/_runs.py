"""`kernos runs ...`: list, show, start, cancel and export runs, and read their events."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from kernos import records
from kernos.cli import _render as render
from kernos.cli._client import Client, call
from kernos.cli._export import export
from kernos.cli._filters import (
    QueueOption,
    SearchOption,
    SinceOption,
    StatusOption,
    UntilOption,
    WorkflowOption,
    run_filter,
)
from kernos.cli._fork import fork
from kernos.cli._replay import replay
from kernos.cli._settings import JsonOption, RunArgument, StoreOption, resolve
from kernos.cli._start import start

__all__ = ["runs"]

runs = typer.Typer(
    name="runs",
    help="List, inspect, start, cancel, fork, replay and export runs.",
    no_args_is_help=True,
)
runs.command("start")(start)
runs.command("export")(export)
runs.command("fork")(fork)  # also `kernos fork`
runs.command("replay")(replay)  # also `kernos replay`

CHILDREN_SHOWN = 20


@runs.command("list")
def list_runs(
    ctx: typer.Context,
    status: StatusOption = None,
    workflow: WorkflowOption = None,
    queue: QueueOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    search: SearchOption = None,
    parent: Annotated[
        str | None,
        typer.Option(
            "--parent", help="Only the child runs of this run (local store).", metavar="RUN"
        ),
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=1, max=500, help="Runs per page.", metavar="N")
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

    Example: kernos runs list --status failed --since 1d
    """
    query = run_filter(
        status=status,
        workflow=workflow,
        queue=queue,
        since=since,
        until=until,
        search=search,
        parent=parent,
    )

    async def use(client: Client) -> tuple[list[records.Run], str | None]:
        return await client.list_runs(query, limit=limit, cursor=before)

    page, next_cursor = call(resolve(ctx, store=store), use)
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
    """Show a run, its journal (each step, wait and checkpoint) and its child runs.

    Example: kernos runs show brief-1
    """

    async def use(
        client: Client,
    ) -> tuple[records.Run, list[records.JournalEntry], list[records.Run]]:
        run = await client.get_run(run_id)
        journal = await client.journal(run_id)
        children = await client.children(run_id, limit=CHILDREN_SHOWN + 1)
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

    Example: kernos runs cancel brief-1 --reason "wrong input"
    """

    async def use(client: Client) -> tuple[list[str], records.Run]:
        cancelled = await client.cancel(run_id, reason)
        return cancelled, await client.get_run(run_id)

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
        int, typer.Option("--limit", "-n", min=1, max=4999, help="Events per page.", metavar="N")
    ] = 1000,
    json: JsonOption = False,
    store: StoreOption = None,
) -> None:
    """Show a run's events (created, started, step completed, ...), oldest first.

    To follow events as they happen, use `kernos events tail --run RUN`.

    Example: kernos runs events brief-1 --after 120
    """

    async def use(client: Client) -> list[records.Event]:
        return await client.run_events(run_id, after=after, limit=limit + 1)

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
