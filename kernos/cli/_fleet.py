"""`kernos queues list` and `kernos workers list`: queue limits and depths, the worker registry."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from kernos import records
from kernos.cli import _render as render
from kernos.cli._client import Client, call
from kernos.cli._settings import JsonOption, StoreOption, resolve

__all__ = ["queues", "workers"]

GONE_HIDDEN_AFTER = 3600.0
"""Seconds after which a worker that is gone (or silent and stale) is left out of listings."""

WORKER_STYLES = {"active": "green", "draining": "yellow", "stale": "red", "gone": "dim"}

queues = typer.Typer(
    name="queues", help="Inspect queues: their limits and depth.", no_args_is_help=True
)
workers = typer.Typer(name="workers", help="Inspect the worker registry.", no_args_is_help=True)


@queues.command("list")
def list_queues(ctx: typer.Context, json: JsonOption = False, store: StoreOption = None) -> None:
    """List queues with limits or unfinished runs: limits, and runs per state.

    Limits are those declared by the workers and apps that opened the store
    (kernos.Queue or --config); "-" means unlimited. Runs counted are those of
    your tenant.

    Example: kernos queues list --json
    """

    async def use(client: Client) -> list[records.QueueStats]:
        return await client.queues()

    found = call(resolve(ctx, store=store), use)
    if json:
        render.print_json({"queues": [queue.to_dict() for queue in found]})
        return
    if not found:
        render.console.print("no queues")
        return
    render.console.print(queues_table(found))


@workers.command("list")
def list_workers(
    ctx: typer.Context,
    show_all: Annotated[
        bool,
        typer.Option(
            "--all", "-a", help="Also show workers gone (or stale) for more than an hour."
        ),
    ] = False,
    json: JsonOption = False,
    store: StoreOption = None,
) -> None:
    """List workers: where they run, what they serve, their state and runs in flight.

    State is active, draining (stopping: claims nothing new), stale (silent past
    its lease; its runs go to others) or gone.

    Example: kernos workers list --all
    """

    async def use(client: Client) -> list[records.Worker]:
        return await client.workers()

    found = call(resolve(ctx, store=store), use)
    now = time.time()
    shown = [w for w in found if show_all or not _long_gone(w, now)]
    hidden = len(found) - len(shown)
    if json:
        render.print_json(
            {
                "workers": [
                    worker.to_dict() | {"heartbeat_age": round(now - worker.heartbeat_at, 3)}
                    for worker in shown
                ],
                "hidden": hidden,
            }
        )
        return
    if shown:
        render.console.print(workers_table(shown, now))
    else:
        render.console.print("no workers")
    if hidden:
        render.note(f"{hidden} worker(s) gone for more than an hour not shown; --all shows them")


def _long_gone(worker: records.Worker, now: float) -> bool:
    return worker.state in ("gone", "stale") and now - worker.heartbeat_at > GONE_HIDDEN_AFTER


def _limit(value: int | None) -> str:
    return "-" if value is None else str(value)


def _rate(spec: records.QueueSpec | None) -> str:
    if spec is None or spec.rate_limit is None:
        return "-"
    return f"{spec.rate_limit}/{spec.rate_period or 1:g}s"


def queues_table(found: Iterable[records.QueueStats]) -> Table:
    """One line per queue: limits, then runs per unfinished state."""
    table = Table()
    table.add_column("queue", overflow="fold", style="bold")
    table.add_column("concurrency", justify="right")
    table.add_column("per worker", justify="right")
    table.add_column("per key", justify="right")
    table.add_column("rate", justify="right")
    for state in ("pending", "running", "waiting", "paused"):
        table.add_column(state, justify="right")
    for queue in found:
        spec = queue.spec
        table.add_row(
            queue.name,
            _limit(spec.concurrency if spec else None),
            _limit(spec.worker_concurrency if spec else None),
            _limit(spec.key_concurrency if spec else None),
            _rate(spec),
            str(queue.pending),
            str(queue.running),
            str(queue.waiting),
            str(queue.paused),
        )
    return table


def workers_table(found: Iterable[records.Worker], now: float) -> Table:
    """One line per worker, oldest first."""
    table = Table()
    table.add_column("worker", overflow="fold", style="bold")
    table.add_column("host", overflow="fold")
    table.add_column("pid", justify="right")
    table.add_column("queues", overflow="fold")
    table.add_column("state", no_wrap=True)
    table.add_column("started", no_wrap=True)
    table.add_column("heartbeat", justify="right", no_wrap=True)
    table.add_column("in flight", justify="right")
    for worker in found:
        capacity = f"/{worker.concurrency}" if worker.concurrency is not None else ""
        table.add_row(
            worker.worker_id,
            worker.host,
            str(worker.pid),
            ",".join(worker.queues) if worker.queues is not None else "all",
            Text(worker.state, style=WORKER_STYLES.get(worker.state, "")),
            render.timestamp(worker.started_at),
            f"{render.duration(now - worker.heartbeat_at)} ago",
            f"{worker.in_flight}{capacity}",
        )
    return table
