"""`kernos up`: the API server with an embedded worker, on SQLite by default."""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path
from typing import Annotated

import typer

from kernos import runtime
from kernos.cli._settings import AppOption, StoreOption, import_apps, resolve
from kernos.cli._worker import LogLevel, configure_logging
from kernos.store import redact_url

__all__ = ["up"]

logger = logging.getLogger("kernos.server")


def up(
    ctx: typer.Context,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", "-p", min=0, max=65535, help="Port (0: any free one).")
    ] = 8420,
    worker: Annotated[
        bool,
        typer.Option(
            "--worker/--no-worker",
            help="Also execute runs in this process (the embedded worker).",
        ),
    ] = True,
    concurrency: Annotated[
        int,
        typer.Option(
            "--concurrency", "-c", min=1, help="Runs the embedded worker executes at once."
        ),
    ] = 100,
    archive_dir: Annotated[
        Path,
        typer.Option("--archive-dir", help="Where retention writes archived runs."),
    ] = Path("kernos-archive"),
    grace: Annotated[
        float,
        typer.Option("--grace", min=0.0, help="Seconds to finish requests and runs on stop."),
    ] = 10.0,
    allow_private_webhooks: Annotated[
        bool,
        typer.Option(
            "--allow-private-webhooks",
            help="Let webhooks target private, loopback and link-local addresses "
            "(refused by default; for a receiver on this machine or network).",
        ),
    ] = False,
    log_level: Annotated[
        LogLevel,
        typer.Option("--log-level", case_sensitive=False, help="Log to stderr from this level."),
    ] = LogLevel.INFO,
    apps: AppOption = None,
    store: StoreOption = None,
) -> None:
    """Start the API server (and an embedded worker) until SIGTERM or SIGINT.

    Migrates the store's schema, imports the --app modules (their workflows can
    then be started over the API), and serves the REST API and event streams at
    http://HOST:PORT/api/v1 (OpenAPI document at /api/v1/openapi.json, docs at
    /api/v1/docs). On first start it creates the user 'admin' and an admin API
    key and prints both once: they are stored only as hashes. `kernos worker`
    processes on other machines can join the same (PostgreSQL) store.

    Example: kernos up --app myapp.flows --port 8420
    (a webhook receiver on this machine: kernos up --allow-private-webhooks)
    """
    settings = resolve(ctx, store=store, apps=apps)
    configure_logging(log_level)
    import_apps(settings.apps)
    asyncio.run(
        serve(
            settings.store,
            host=host,
            port=port,
            worker=worker,
            concurrency=concurrency,
            archive_dir=archive_dir,
            grace=grace,
            allow_private_webhooks=allow_private_webhooks,
        )
    )


async def serve(
    store: str,
    *,
    host: str,
    port: int,
    worker: bool,
    concurrency: int,
    archive_dir: Path,
    grace: float,
    allow_private_webhooks: bool = False,
) -> None:
    """Open the app, print the URL (and first-start secrets), serve until a signal."""
    from kernos.api import ServerSettings
    from kernos.api._server import ApiServer
    from kernos.control import Service, ensure_first_admin
    from kernos.web import mount

    app = runtime.Kernos(store, worker=worker, migrate=True, concurrency=concurrency)
    await app.open()
    try:
        bootstrap = await ensure_first_admin(app.store)
        service = Service(app, archive_dir=archive_dir)
        server = ApiServer(
            service,
            host=host,
            port=port,
            settings=ServerSettings(
                archive_dir=archive_dir,
                embedded_worker=worker,
                allow_private_webhooks=allow_private_webhooks,
            ),
            grace=grace,
            dashboard=mount,
        )
        url = await server.start()
        if bootstrap is not None:
            typer.echo(
                "First start: an admin user and API key were created. They are shown this\n"
                "once and stored only as hashes; keep them somewhere safe.\n"
                f"    user:     {bootstrap.username}\n"
                f"    password: {bootstrap.password}\n"
                f"    API key:  {bootstrap.api_key}\n"
                f"Try: curl -H 'Authorization: Bearer {bootstrap.api_key}' {url}/api/v1/runs\n"
            )
        typer.echo(f"Kernos is up at {url}  (API {url}/api/v1, docs {url}/api/v1/docs)")
        typer.echo(
            f"  store {redact_url(store)}; embedded worker "
            f"{'on' if worker else 'off'}; workflows: {', '.join(app.registry.names()) or 'none'}"
        )
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping.set)
        waiter = asyncio.create_task(server.wait())
        stopper = asyncio.create_task(stopping.wait())
        await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        logger.info("stopping")
        await server.stop()
    finally:
        await app.close(grace=grace)
