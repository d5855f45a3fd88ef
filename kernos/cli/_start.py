"""`kernos runs start`: put a run of a workflow on its queue, optionally wait for its result."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from kernos import errors, records
from kernos.cli import _render as render
from kernos.cli._client import Client, call
from kernos.cli._settings import AppOption, JsonOption, StoreOption, import_apps, resolve

__all__ = ["parse_input", "start"]

INPUT_HELP = 'The workflow\'s arguments as one JSON object, e.g. \'{"topic": "kernos"}\'.'
ITEM_HELP = (
    "One argument: key=value (a string) or key:=JSON (a number, list, object, true, null); "
    "repeatable, applied over --input."
)
WAIT_HELP = (
    "Wait for the run to finish and print its output (exit code 1 if it fails). With a "
    "local store and --app this process executes it; otherwise a worker must."
)


def _json(text: str, what: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise errors.UsageError(f"{what} is not valid JSON ({exc})") from None


def parse_input(
    input_json: str | None, input_file: Path | None, items: list[str] | None
) -> dict[str, Any]:
    """The input object from ``--input``, ``--input-file`` and ``-i`` items.

    Raises:
        UsageError: both --input and --input-file, invalid JSON, not an object,
            or an item without ``=``.
    """
    if input_json is not None and input_file is not None:
        raise errors.UsageError("pass --input or --input-file, not both")
    value: Any = {}
    if input_json is not None:
        value = _json(input_json, "--input")
    elif input_file is not None:
        try:
            text = sys.stdin.read() if str(input_file) == "-" else input_file.read_text()
        except OSError as exc:
            raise errors.UsageError(
                f"cannot read --input-file {str(input_file)!r}: {exc.strerror}"
            ) from None
        value = _json(text, f"--input-file {str(input_file)!r}")
    if not isinstance(value, dict):
        raise errors.UsageError(
            "a workflow's input must be a JSON object of named arguments, e.g. '{\"n\": 3}'"
        )
    for item in items or ():
        key, sep, raw = item.partition("=")
        if not sep or not key.rstrip(":"):
            raise errors.UsageError(f"-i {item!r}: use key=value or key:=JSON")
        if key.endswith(":"):
            value[key[:-1]] = _json(raw, f"-i {item!r}")
        else:
            value[key] = raw
    return value


def start(
    ctx: typer.Context,
    workflow: Annotated[
        str, typer.Argument(help="The workflow's registered name.", show_default=False)
    ],
    input_json: Annotated[
        str | None, typer.Option("--input", metavar="JSON", help=INPUT_HELP, show_default=False)
    ] = None,
    input_file: Annotated[
        Path | None,
        typer.Option(
            "--input-file",
            metavar="FILE",
            help="Read the input object from a JSON file ('-': standard input).",
            show_default=False,
        ),
    ] = None,
    items: Annotated[
        list[str] | None,
        typer.Option("--arg", "-i", metavar="KEY=VALUE", help=ITEM_HELP, show_default=False),
    ] = None,
    queue: Annotated[str, typer.Option("--queue", help="The queue to put it on.")] = "default",
    priority: Annotated[
        int, typer.Option("--priority", min=-1000, max=1000, help="Higher starts first.")
    ] = 0,
    idempotency_key: Annotated[
        str | None,
        typer.Option(
            "--idempotency-key",
            metavar="KEY",
            help="Repeat safely: the same key returns the run it started the first time.",
            show_default=False,
        ),
    ] = None,
    delay: Annotated[
        float | None,
        typer.Option("--delay", min=0, metavar="SECONDS", help="Hold the run back this long."),
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
    """Start a run of a workflow; a worker (or the server's embedded one) executes it.

    The input is a JSON object of the workflow's arguments by name; the server
    checks it against the workflow's signature before creating the run.

    Example: kernos runs start brief -i topic=kernos -i pages:=3 --wait
    """
    settings = resolve(ctx, store=store, apps=app)
    value = parse_input(input_json, input_file, items)
    if settings.apps:
        import_apps(settings.apps)  # locally, the workflow must be registered here

    async def use(client: Client) -> records.Run:
        run, created = await client.start_run(
            workflow,
            value,
            queue=queue,
            priority=priority,
            idempotency_key=idempotency_key,
            delay=delay,
        )
        if not created:
            render.note(f"run {run.run_id} was started earlier with this idempotency key")
        if not wait:
            return run
        render.note(f"started run {run.run_id}; waiting for it to finish")
        if not client.remote and not settings.apps:
            render.note("no --app given: waiting for a worker to execute it")
        try:
            return await client.wait(run.run_id, timeout=timeout)
        except TimeoutError:
            raise errors.RuntimeFailure(
                f"run {run.run_id!r} has not finished after {timeout}s; it goes on without "
                f"this command: `kernos runs show {run.run_id}`",
                run_id=run.run_id,
            ) from None

    run = call(settings, use, worker=wait and bool(settings.apps))
    if json:
        render.print_json(run.to_dict())
    elif run.status is records.RunStatus.SUCCEEDED:
        render.console.print(f"run {run.run_id} succeeded", soft_wrap=True)
        render.print_json(run.output)
    else:
        render.console.print(
            f"started run {run.run_id} of {run.workflow} on queue {run.queue} ({run.status.value})",
            soft_wrap=True,
        )
