"""The root `kernos` command: global options, the command groups, and error handling."""

from __future__ import annotations

from typing import Annotated

import typer

from kernos import errors
from kernos.cli import _render as render
from kernos.cli._checkpoints import checkpoints
from kernos.cli._db import db
from kernos.cli._fleet import queues, workers
from kernos.cli._fork import fork
from kernos.cli._replay import replay
from kernos.cli._runs import runs
from kernos.cli._settings import APP_HELP, DEFAULT_STORE, STORE_HELP, Settings, split_apps
from kernos.cli._up import up
from kernos.cli._worker import worker

__all__ = ["app", "main"]

app = typer.Typer(
    name="kernos",
    help=(
        "Kernos: durable runs of AI-agent workflows. Run workers; inspect, cancel, fork "
        "and replay runs; inspect queues and workers; manage the store's schema."
    ),
    no_args_is_help=True,
    # Locals can hold store URLs with passwords; keep them out of tracebacks.
    pretty_exceptions_show_locals=False,
)
app.add_typer(runs)
app.add_typer(checkpoints)
app.add_typer(db)
app.add_typer(queues)
app.add_typer(workers)
app.command("fork")(fork)
app.command("replay")(replay)
app.command("worker")(worker)
app.command("up")(up)


def _version(value: bool) -> None:
    if value:
        from kernos import __version__

        typer.echo(f"kernos {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    store: Annotated[
        str, typer.Option("--store", envvar="KERNOS_STORE", help=STORE_HELP, metavar="URL")
    ] = DEFAULT_STORE,
    apps: Annotated[
        list[str] | None,
        typer.Option("--app", envvar="KERNOS_APP", help=APP_HELP, metavar="MODULE"),
    ] = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Global options; every command also accepts --store (and fork, replay --app)."""
    ctx.obj = Settings(store=store, apps=split_apps(apps))


def main() -> None:
    """Entry point of the `kernos` console script."""
    try:
        app()
    except errors.KernosError as exc:
        # Expected failures: the message says what happened and what to do.
        render.error(exc.message)
        raise SystemExit(2 if isinstance(exc, errors.UsageError) else 1) from None
