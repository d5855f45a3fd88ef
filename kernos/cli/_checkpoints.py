"""`kernos checkpoints ...`: a run's named state snapshots and whether they are intact."""

from __future__ import annotations

import typer

from kernos import records
from kernos.cli import _render as render
from kernos.cli._client import Client, call
from kernos.cli._settings import JsonOption, RunArgument, StoreOption, resolve

__all__ = ["checkpoints"]

checkpoints = typer.Typer(
    name="checkpoints",
    help="Inspect the named checkpoints runs take with kernos.checkpoint().",
    no_args_is_help=True,
)


@checkpoints.command("list")
def list_checkpoints(
    ctx: typer.Context, run_id: RunArgument, json: JsonOption = False, store: StoreOption = None
) -> None:
    """List a run's checkpoints in the order taken.

    Each is verified against its SHA-256: intact NO means the stored state was
    altered, and forking at that checkpoint is refused.

    Example: kernos checkpoints list brief-1
    """

    async def use(client: Client) -> list[records.Checkpoint]:
        return await client.checkpoints(run_id)

    found = call(resolve(ctx, store=store), use)
    if json:
        render.print_json({"checkpoints": [checkpoint.to_dict() for checkpoint in found]})
    elif not found:
        render.console.print(f"run {run_id} has no checkpoints")
    else:
        render.console.print(render.checkpoints_table(found))
