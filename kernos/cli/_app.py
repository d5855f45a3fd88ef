"""The root `kernos` command: global options, the command groups, and error handling."""

from __future__ import annotations

from typing import Annotated

import typer

from kernos import errors
from kernos.cli import _render as render
from kernos.cli._approvals import approvals
from kernos.cli._audit import audit
from kernos.cli._bulk import bulk
from kernos.cli._checkpoints import checkpoints
from kernos.cli._db import db
from kernos.cli._events import events
from kernos.cli._fleet import queues, workers
from kernos.cli._fork import fork
from kernos.cli._keys import keys
from kernos.cli._policy import policy
from kernos.cli._replay import replay
from kernos.cli._runs import runs
from kernos.cli._settings import (
    API_KEY_HELP,
    APP_HELP,
    DEFAULT_STORE,
    STORE_HELP,
    TENANT_HELP,
    URL_HELP,
    Settings,
    source_of,
    split_apps,
)
from kernos.cli._tenants import tenants
from kernos.cli._up import up
from kernos.cli._users import users, whoami
from kernos.cli._webhooks import webhooks
from kernos.cli._worker import worker
from kernos.records import DEFAULT_TENANT

__all__ = ["app", "main"]

app = typer.Typer(
    name="kernos",
    help=(
        "Kernos: durable runs of AI-agent workflows. Run the server and workers; start, "
        "inspect, cancel, fork, replay and export runs; follow events; manage API keys, "
        "users and tenants; manage the store's schema.\n\n"
        "Commands talk to a server when a URL is configured (--url, $KERNOS_URL or url in "
        "~/.config/kernos/config.toml, with an API key from --api-key, $KERNOS_API_KEY or "
        "api_key there), and to a store directly otherwise (--store, $KERNOS_STORE, default "
        "sqlite:///kernos.db). Errors are one line on stderr; exit code 2 means fix the "
        "command or configuration, 1 a failure at run time."
    ),
    no_args_is_help=True,
    # Locals can hold store URLs with passwords; keep them out of tracebacks.
    pretty_exceptions_show_locals=False,
)
app.add_typer(runs)
app.add_typer(approvals)
app.add_typer(checkpoints)
app.add_typer(events)
app.add_typer(queues)
app.add_typer(workers)
app.add_typer(keys)
app.add_typer(users)
app.add_typer(tenants)
app.add_typer(webhooks)
app.add_typer(bulk)
app.add_typer(policy)
app.add_typer(db)
app.command("fork")(fork)
app.command("replay")(replay)
app.command("audit")(audit)
app.command("whoami")(whoami)
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
    url: Annotated[
        str | None,
        typer.Option(
            "--url", envvar="KERNOS_URL", help=URL_HELP, metavar="URL", show_default=False
        ),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(
            "--api-key",
            envvar="KERNOS_API_KEY",
            help=API_KEY_HELP,
            metavar="KEY",
            show_default=False,
            show_envvar=True,
        ),
    ] = None,
    tenant: Annotated[
        str,
        typer.Option("--tenant", envvar="KERNOS_TENANT", help=TENANT_HELP, metavar="TENANT"),
    ] = DEFAULT_TENANT,
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
    ctx.obj = Settings(
        store=store,
        apps=split_apps(apps),
        url=url or None,
        api_key=api_key or None,
        tenant=tenant,
        store_source=source_of(ctx, "store"),
        url_source=source_of(ctx, "url"),
        tenant_source=source_of(ctx, "tenant"),
    )


def main() -> None:
    """Entry point of the `kernos` console script."""
    try:
        app()
    except errors.KernosError as exc:
        # Expected failures: the message says what happened and what to do.
        render.error(exc.message)
        raise SystemExit(2 if isinstance(exc, errors.UsageError) else 1) from None
