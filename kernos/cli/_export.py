"""`kernos runs export`: every matching run as CSV or JSON Lines, with a progress bar."""

from __future__ import annotations

import csv
import enum
import sys
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated

import orjson
import typer

from kernos import errors, records
from kernos.cli import _render as render
from kernos.cli._client import Client, call
from kernos.cli._filters import (
    QueueOption,
    SearchOption,
    SinceOption,
    StatusOption,
    UntilOption,
    WorkflowOption,
    run_filter,
)
from kernos.cli._settings import StoreOption, resolve
from kernos.store import RunFilter

if TYPE_CHECKING:
    from rich.progress import Progress

__all__ = ["CSV_COLUMNS", "EXPORT_FIELDS", "ExportFormat", "export"]

EXPORT_FIELDS = (
    "run_id",
    "tenant",
    "workflow",
    "version",
    "status",
    "input",
    "output",
    "error",
    "parent_id",
    "forked_from",
    "fork_seq",
    "superseded_by",
    "queue",
    "priority",
    "created_at",
    "started_at",
    "finished_at",
    "updated_at",
    "wake_at",
    "pause_requested",
    "executions",
    "steps",
)
"""The fields of a JSON Lines record: those of a run in the REST API."""

CSV_COLUMNS = (
    "run_id",
    "workflow",
    "version",
    "status",
    "queue",
    "priority",
    "created_at",
    "started_at",
    "finished_at",
    "steps",
    "executions",
    "parent_id",
    "forked_from",
    "error",
)
"""The columns of a CSV export, as the server's /runs/export writes them."""


class ExportFormat(enum.StrEnum):
    """How exported runs are written."""

    CSV = "csv"
    JSONL = "jsonl"


class _Writer:
    """Writes runs to a text stream in one format; counts them."""

    def __init__(self, out: IO[str], format: ExportFormat) -> None:
        self.out = out
        self.format = format
        self.count = 0
        self._csv = csv.writer(out, lineterminator="\n") if format is ExportFormat.CSV else None
        if self._csv is not None:
            self._csv.writerow(CSV_COLUMNS)

    def write(self, run: records.Run) -> None:
        data = run.to_dict()
        if self._csv is not None:
            data["error"] = (
                orjson.dumps(data["error"]).decode() if data["error"] is not None else ""
            )
            self._csv.writerow(["" if data[c] is None else data[c] for c in CSV_COLUMNS])
        else:
            record = {name: data[name] for name in EXPORT_FIELDS}
            self.out.write(orjson.dumps(record).decode() + "\n")
        self.count += 1


def export(
    ctx: typer.Context,
    format: Annotated[
        ExportFormat,
        typer.Option("--format", "-f", case_sensitive=False, help="CSV or JSON Lines."),
    ] = ExportFormat.JSONL,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            metavar="FILE",
            help="Write to this file (with a progress bar) instead of standard output.",
            show_default=False,
        ),
    ] = None,
    status: StatusOption = None,
    workflow: WorkflowOption = None,
    queue: QueueOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    search: SearchOption = None,
    store: StoreOption = None,
) -> None:
    """Export every matching run, newest first, as CSV or JSON Lines.

    JSON Lines holds each run's fields as the REST API shows them; CSV holds
    one row per run with a summary of them (the error as JSON). The progress
    bar counts runs written against a total counted first (on a server the
    count needs the operator role; a viewer's export shows no total).

    Example: kernos runs export --status failed --since 7d -f csv -o failed.csv
    """
    query = run_filter(
        status=status, workflow=workflow, queue=queue, since=since, until=until, search=search
    )
    settings = resolve(ctx, store=store)
    if output is None:
        writer = _Writer(sys.stdout, format)
        call(settings, lambda client: _copy(client, query, writer, None))
        sys.stdout.flush()
        return
    partial = output.with_name(output.name + ".partial")
    try:
        with partial.open("w", newline="", encoding="utf-8") as out:
            writer = _Writer(out, format)
            call(settings, lambda client: _copy(client, query, writer, render.progress()))
        partial.replace(output)
    except OSError as exc:
        raise errors.UsageError(f"cannot write {str(output)!r}: {exc.strerror}") from None
    finally:
        partial.unlink(missing_ok=True)
    render.note(f"wrote {writer.count} run(s) to {output}")


async def _copy(
    client: Client, query: RunFilter, writer: _Writer, progress: Progress | None
) -> None:
    if progress is None:
        async for run in client.export_runs(query):
            writer.write(run)
        return
    with progress:
        task = progress.add_task("exporting runs", total=None)
        total = await client.count_runs(query)
        progress.update(task, total=total)
        async for run in client.export_runs(query):
            writer.write(run)
            progress.advance(task)
        if total is not None and writer.count != total:
            # Runs started or deleted meanwhile: show what was written.
            progress.update(task, total=writer.count)
