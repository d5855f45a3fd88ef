"""`kernos events tail`: follow the event stream as it happens."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from typing import Annotated

import orjson
import typer
from rich.text import Text

from kernos import records
from kernos.cli import _render as render
from kernos.cli._client import Client, EventQuery, call
from kernos.cli._settings import StoreOption, resolve

__all__ = ["event_line", "events"]

events = typer.Typer(name="events", help="Follow run events live.", no_args_is_help=True)

KIND_STYLES = {
    "run.succeeded": "green",
    "run.failed": "red",
    "run.cancelled": "magenta",
    "step.failed": "red",
    "step.retrying": "yellow",
}


def event_line(event: records.Event) -> Text:
    """``time  id  kind  run  data`` for one event."""
    line = Text()
    line.append(render.timestamp(event.at), style="dim")
    line.append(f"  {event.event_id:>7}  ")
    line.append(f"{event.kind:<20}", style=KIND_STYLES.get(event.kind, "bold"))
    line.append(f"  {event.run_id}")
    detail = render.preview(event.data, 120)
    if detail:
        line.append(f"  {detail}", style="dim")
    return line


@events.command("tail")
def tail(
    ctx: typer.Context,
    run_id: Annotated[
        str | None, typer.Option("--run", help="Only this run's events.", metavar="RUN")
    ] = None,
    workflow: Annotated[
        str | None,
        typer.Option("--workflow", "-w", help="Only events of this workflow's runs."),
    ] = None,
    kinds: Annotated[
        list[str] | None,
        typer.Option(
            "--kind",
            "-k",
            help="Only events of this kind (run.succeeded, step.failed, ...); repeatable.",
            show_default=False,
        ),
    ] = None,
    from_id: Annotated[
        int | None,
        typer.Option(
            "--from-id",
            min=0,
            metavar="N",
            help="Start after event N (0: from the first) instead of from now.",
            show_default=False,
        ),
    ] = None,
    max_events: Annotated[
        int | None,
        typer.Option("--max-events", min=1, metavar="N", help="Stop after N events."),
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option("--timeout", min=0, metavar="SECONDS", help="Stop after this long."),
    ] = None,
    json: Annotated[
        bool, typer.Option("--json", help="Print each event as one line of JSON (JSON Lines).")
    ] = False,
    store: StoreOption = None,
) -> None:
    """Follow events as they happen, one line each, until Ctrl-C.

    On a server this reads the event stream (Server-Sent Events) and, when the
    connection drops, reconnects with backoff from the last event received, so
    nothing is missed or repeated. With a local store it reads the store.
    --max-events and --timeout end it on their own (exit code 0), for scripts.

    Example: kernos events tail --workflow brief --kind run.failed --json
    """
    query = EventQuery(run_id=run_id, workflow=workflow, kinds=tuple(kinds) if kinds else None)

    async def use(client: Client) -> None:
        def connected() -> None:
            since = f" after event {from_id}" if from_id is not None else ""
            render.note(f"following events at {client.where}{since} (Ctrl-C to stop)")

        count = 0
        stream = client.tail(query, after=from_id, on_connected=connected)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout), contextlib.aclosing(stream):
                async for event in stream:
                    _print(event, json=json)
                    count += 1
                    if max_events is not None and count >= max_events:
                        return

    try:
        call(resolve(ctx, store=store), use)
    except KeyboardInterrupt:
        render.note("stopped")


def _print(event: records.Event, *, json: bool) -> None:
    if json:
        sys.stdout.write(orjson.dumps(event.to_dict()).decode() + "\n")
        sys.stdout.flush()
    else:
        render.console.print(event_line(event), soft_wrap=True)
