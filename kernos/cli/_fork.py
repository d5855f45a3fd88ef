"""`kernos fork`: branch a run from a journal position, optionally with a patched result."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
import typer

from kernos import errors, records, runtime
from kernos.cli import _render as render
from kernos.cli._client import Client, call
from kernos.cli._settings import (
    AppOption,
    JsonOption,
    RunArgument,
    Settings,
    StoreOption,
    import_apps,
    resolve,
)

__all__ = ["fork"]

AT_HELP = (
    "Where the fork goes on from: a journal seq (see `kernos runs show`), or a checkpoint "
    "name (the fork resumes just after it, its state verified first)."
)
PATCH_HELP = (
    "JSON to use as the result of the entry at --at instead of running it again, "
    "e.g. '\"text\"', '{\"ok\": true}' or 'null'."
)
WAIT_HELP = (
    "Wait for the fork to finish and print its output. With --app this process executes "
    "it (and any other runnable runs of those workflows); without, another worker must."
)


def parse_at(at: str) -> int | str:
    """A seq when ``at`` is a number, else a checkpoint name."""
    return int(at) if at.isdigit() else at


def parse_patch(patch: str) -> Any:
    """The JSON value given to ``--patch``."""
    try:
        return orjson.loads(patch)
    except orjson.JSONDecodeError as exc:
        raise errors.UsageError(
            f"--patch {patch!r} is not valid JSON ({exc}); quote strings as JSON, "
            "e.g. --patch '\"new text\"'",
            patch=patch,
        ) from None


def fork(
    ctx: typer.Context,
    run_id: RunArgument,
    at: Annotated[str, typer.Option("--at", metavar="SEQ|CHECKPOINT", help=AT_HELP)],
    patch: Annotated[str | None, typer.Option("--patch", metavar="JSON", help=PATCH_HELP)] = None,
    new_id: Annotated[
        str | None,
        typer.Option(
            "--id",
            metavar="NEW_ID",
            help="The fork's run id (default RUN~<random>; local store only).",
        ),
    ] = None,
    wait: Annotated[bool, typer.Option("--wait", help=WAIT_HELP)] = False,
    timeout: Annotated[
        float | None,
        typer.Option("--timeout", min=0, help="With --wait: give up after this many seconds."),
    ] = None,
    json: JsonOption = False,
    store: StoreOption = None,
    app: AppOption = None,
) -> None:
    """Fork a run: a new run reuses its journal before --at and goes on from there.

    The original is kept and marked superseded by the fork (and cancelled first
    if it has not finished). Without --wait, any worker of the workflow executes
    the fork (on a server, its embedded worker).

    Example: kernos fork brief-1 --at 1 --patch '"shorter notes"' --wait
    """
    settings = resolve(ctx, store=store, apps=app)
    position = parse_at(at)
    patch_value = parse_patch(patch) if patch is not None else None
    if wait and settings.apps:
        import_apps(settings.apps)  # before forking, so a bad --app changes nothing

    async def create(client: Client) -> records.Run:
        if wait and settings.apps and not client.remote:
            _require_workflow((await client.get_run(run_id)).workflow, settings)
        return await client.fork(
            run_id, position, patch=patch_value, patched=patch is not None, new_run_id=new_id
        )

    created = call(settings, create)
    if not wait:
        _report(created, json=json)
        return
    render.note(f"created fork {created.run_id} of {run_id} at seq {created.fork_seq}")
    finished = _wait(settings, created, timeout)
    _report(finished, json=json)


def _wait(settings: Settings, fork: records.Run, timeout: float | None) -> records.Run:
    async def use(client: Client) -> records.Run:
        if not client.remote and not settings.apps:
            render.note(f"no --app given: waiting for a worker to execute {fork.run_id}")
        try:
            return await client.wait(fork.run_id, timeout=timeout)
        except TimeoutError:
            raise errors.RuntimeFailure(
                f"fork {fork.run_id!r} has not finished after {timeout}s; it goes on without "
                f"this command: `kernos runs show {fork.run_id}`",
                run_id=fork.run_id,
            ) from None

    return call(settings, use, worker=bool(settings.apps))


def _require_workflow(workflow: str, settings: Settings) -> None:
    # Without its workflow this process would claim nothing and wait forever.
    if runtime.registry.get(workflow) is None:
        raise errors.ConfigError(
            f"workflow {workflow!r} is not registered by --app {','.join(settings.apps)}; "
            "pass the module that defines it",
            workflow=workflow,
        )


def _report(run: records.Run, *, json: bool) -> None:
    if json:
        render.print_json(run.to_dict())
    elif run.status is records.RunStatus.SUCCEEDED:
        render.console.print(f"fork {run.run_id} succeeded", soft_wrap=True)
        render.print_json(run.output)
    else:
        render.console.print(
            f"forked {run.forked_from} at seq {run.fork_seq}: {run.run_id} ({run.status.value})",
            soft_wrap=True,
        )
