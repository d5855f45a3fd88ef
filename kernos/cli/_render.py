"""Output: Rich tables for people, one JSON document for programs, errors on stderr."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson
import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from kernos import records

if TYPE_CHECKING:
    from rich.progress import Progress

__all__ = [
    "checkpoints_table",
    "console",
    "duration",
    "err_console",
    "error",
    "events_table",
    "journal_table",
    "note",
    "preview",
    "print_json",
    "progress",
    "run_fields",
    "runs_table",
    "timestamp",
]


def _console() -> Console:
    console = Console(highlight=False)
    # Piped output has no terminal width; Rich would assume 80 columns and wrap
    # every table. Let tables take their natural width unless COLUMNS says otherwise.
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = 200
    return console


console = _console()

STATUS_STYLES = {
    records.RunStatus.PENDING: "cyan",
    records.RunStatus.RUNNING: "blue",
    records.RunStatus.WAITING: "cyan",
    records.RunStatus.PAUSED: "yellow",
    records.RunStatus.SUCCEEDED: "green",
    records.RunStatus.FAILED: "red",
    records.RunStatus.CANCELLED: "magenta",
}
ENTRY_STYLES = {
    records.EntryStatus.PENDING: "cyan",
    records.EntryStatus.OK: "green",
    records.EntryStatus.ERROR: "red",
}


# -- plain values -------------------------------------------------------------------


def print_json(data: Any) -> None:
    """Write ``data`` to stdout as one indented JSON document."""
    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")
    sys.stdout.flush()


def error(message: str) -> None:
    """Print a one-line error to stderr (red on a terminal)."""
    line = " ".join(message.splitlines())
    typer.secho(f"error: {line}", fg="red", err=True)


def note(message: str) -> None:
    """Print a remark to stderr, keeping stdout for results."""
    typer.secho(message, dim=True, err=True)


def timestamp(at: float | None) -> str:
    """Local time, to the second; blank when unknown."""
    if at is None:
        return ""
    return datetime.fromtimestamp(at).strftime("%Y-%m-%d %H:%M:%S")


def duration(seconds: float | None) -> str:
    """``850ms``, ``12.3s``, ``4m05s``, ``2h07m``; blank when unknown."""
    if seconds is None:
        return ""
    seconds = max(seconds, 0.0)
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def preview(value: Any, width: int = 40) -> str:
    """Compact JSON of ``value``, cut to ``width`` characters."""
    if value is None:
        return ""
    text = orjson.dumps(value).decode()
    return text if len(text) <= width else text[: width - 1] + "…"


def describe_error(info: Any) -> str:
    """``Type: message`` from a stored error description."""
    if not isinstance(info, dict):
        return preview(info, 80)
    kind = str(info.get("type") or "error").rpartition(".")[2]
    return f"{kind}: {info.get('message', '')}"


def _status(status: records.RunStatus | records.EntryStatus) -> Text:
    style = (
        STATUS_STYLES.get(status, "")
        if isinstance(status, records.RunStatus)
        else ENTRY_STYLES.get(status, "")
    )
    return Text(status.value, style=style)


def _run_duration(run: records.Run) -> float | None:
    begin = run.started_at if run.started_at is not None else run.created_at
    if run.finished_at is not None:
        return run.finished_at - begin
    return None


def _links(run: records.Run) -> str:
    notes = []
    if run.parent_id is not None:
        notes.append(f"child of {run.parent_id}@{run.parent_seq}")
    if run.forked_from is not None:
        notes.append(f"fork of {run.forked_from}@{run.fork_seq}")
    if run.superseded_by is not None:
        notes.append(f"superseded by {run.superseded_by}")
    return "; ".join(notes)


# -- runs -----------------------------------------------------------------------------


def runs_table(runs: Iterable[records.Run], title: str | None = None) -> Table:
    """One line per run."""
    table = Table(title=title, title_justify="left")
    table.add_column("run", overflow="fold", style="bold")
    table.add_column("workflow", overflow="fold")
    table.add_column("version")
    table.add_column("status", no_wrap=True)
    table.add_column("steps", justify="right")
    table.add_column("created", no_wrap=True)
    table.add_column("duration", justify="right")
    table.add_column("links", overflow="fold")
    for run in runs:
        table.add_row(
            run.run_id,
            run.workflow,
            run.version,
            _status(run.status),
            str(run.steps),
            timestamp(run.created_at),
            duration(_run_duration(run)),
            _links(run),
        )
    return table


def run_fields(run: records.Run) -> Table:
    """A run's fields, one per line."""
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    rows: list[tuple[str, str | Text]] = [
        ("run", run.run_id),
        ("workflow", f"{run.workflow} (version {run.version})"),
        ("status", _status(run.status)),
        ("created", timestamp(run.created_at)),
        ("started", timestamp(run.started_at)),
        ("finished", timestamp(run.finished_at)),
        ("duration", duration(_run_duration(run))),
        ("steps", str(run.steps)),
        ("executions", str(run.executions)),
        ("queue", f"{run.queue} (priority {run.priority})"),
        ("owner", run.owner or ""),
        ("wakes", timestamp(run.wake_at)),
        ("pause requested", "yes" if run.pause_requested else ""),
        ("parent", "" if run.parent_id is None else f"{run.parent_id} (seq {run.parent_seq})"),
        (
            "forked from",
            "" if run.forked_from is None else f"{run.forked_from} (at seq {run.fork_seq})",
        ),
        ("superseded by", run.superseded_by or ""),
        ("input", preview(run.input, 200)),
        ("output", preview(run.output, 200)),
        ("error", Text(describe_error(run.error), style="red") if run.error is not None else ""),
    ]
    for name, value in rows:
        if value != "":
            table.add_row(name, value)
    return table


# -- journal ----------------------------------------------------------------------------


def _step_detail(entry: records.JournalEntry) -> str:
    return preview(entry.output)


def _sleep_detail(entry: records.JournalEntry) -> str:
    detail = entry.detail if isinstance(entry.detail, dict) else {}
    wake_at = detail.get("wake_at")
    return f"until {timestamp(wake_at)}" if isinstance(wake_at, int | float) else ""


def _recv_detail(entry: records.JournalEntry) -> str:
    detail = entry.detail if isinstance(entry.detail, dict) else {}
    topic = f"topic {detail.get('topic')!s}"
    if entry.status is records.EntryStatus.PENDING:
        return topic
    return f"{topic}: {preview(entry.output, 30) or 'null'}"


def _child_detail(entry: records.JournalEntry) -> str:
    detail = entry.detail if isinstance(entry.detail, dict) else {}
    output = preview(entry.output, 30)
    return f"child {detail.get('child_id')!s}" + (f": {output}" if output else "")


def _checkpoint_detail(entry: records.JournalEntry) -> str:
    detail = entry.detail if isinstance(entry.detail, dict) else {}
    return f"sha256 {str(detail.get('sha256', ''))[:12]} {preview(entry.output, 24)}"


def _llm_detail(entry: records.JournalEntry) -> str:
    detail = entry.detail if isinstance(entry.detail, dict) else {}
    output = entry.output if isinstance(entry.output, dict) else {}
    usage = detail.get("usage")
    parts = [str(detail.get("model") or entry.name)]
    if isinstance(usage, dict):
        counts = [usage.get(key) for key in ("input_tokens", "output_tokens")]
        parts.append(f"{sum(c for c in counts if isinstance(c, int))} tokens")
    cost = detail.get("cost")
    if isinstance(cost, int | float):
        parts.append(f"${cost:.4f}")
    calls = output.get("tool_calls")
    if isinstance(calls, list) and calls:
        names = ", ".join(str(c.get("name")) for c in calls if isinstance(c, dict))
        parts.append(f"calls {names}")
    elif output.get("text"):
        parts.append(preview(output.get("text"), 40))
    return "; ".join(parts)


def _tool_detail(entry: records.JournalEntry) -> str:
    output = entry.output if isinstance(entry.output, dict) else {}
    decision = str(output.get("decision") or "")
    flag = " (error)" if output.get("is_error") else ""
    content = preview(output.get("content", entry.output), 40)
    return f"{decision}{flag}: {content}" if decision else content


def _enqueue_detail(entry: records.JournalEntry) -> str:
    return f"run {entry.output!s}" if entry.output is not None else ""


def _approval_detail(entry: records.JournalEntry) -> str:
    if entry.status is records.EntryStatus.PENDING:
        return "waiting for a decision"
    output = entry.output if isinstance(entry.output, dict) else {}
    decision = output.get("decision") or output.get("status")
    by = output.get("decided_by") or output.get("by")
    text = str(decision) if decision else preview(entry.output, 40)
    return f"{text} by {by}" if by else text


ENTRY_DETAILS: dict[records.EntryKind, Callable[[records.JournalEntry], str]] = {
    records.EntryKind.STEP: _step_detail,
    records.EntryKind.SLEEP: _sleep_detail,
    records.EntryKind.RECV: _recv_detail,
    records.EntryKind.CHILD: _child_detail,
    records.EntryKind.CHECKPOINT: _checkpoint_detail,
    records.EntryKind.ENQUEUE: _enqueue_detail,
    records.EntryKind.LLM: _llm_detail,
    records.EntryKind.TOOL: _tool_detail,
    records.EntryKind.APPROVAL: _approval_detail,
}


def _attempts(entry: records.JournalEntry) -> str:
    # ``attempts`` lists the failed attempts only; a success adds one more.
    if entry.kind is not records.EntryKind.STEP or entry.status is records.EntryStatus.PENDING:
        return ""
    failed = len(entry.attempts) if isinstance(entry.attempts, list) else 0
    return str(failed + (1 if entry.status is records.EntryStatus.OK else 0))


def journal_table(entries: Iterable[records.JournalEntry]) -> Table:
    """One line per journal entry; errors show their type and message."""
    table = Table(title="journal", title_justify="left")
    table.add_column("seq", justify="right")
    table.add_column("kind")
    table.add_column("name", overflow="fold")
    table.add_column("status", no_wrap=True)
    table.add_column("duration", justify="right")
    table.add_column("attempts", justify="right")
    table.add_column("output", overflow="fold")
    for entry in entries:
        finished = entry.finished_at
        detail: str | Text = (
            Text(describe_error(entry.error), style="red")
            if entry.status is records.EntryStatus.ERROR
            else ENTRY_DETAILS.get(entry.kind, _step_detail)(entry)
        )
        table.add_row(
            str(entry.seq),
            entry.kind.value,
            entry.name,
            _status(entry.status),
            duration(None if finished is None else finished - entry.started_at),
            _attempts(entry),
            detail,
        )
    return table


# -- events and checkpoints --------------------------------------------------------------


def events_table(events: Iterable[records.Event]) -> Table:
    """One line per event, oldest first."""
    table = Table()
    table.add_column("id", justify="right")
    table.add_column("at", no_wrap=True)
    table.add_column("kind")
    table.add_column("data", overflow="fold")
    for event in events:
        table.add_row(
            str(event.event_id), timestamp(event.at), event.kind, preview(event.data, 200)
        )
    return table


def checkpoints_table(checkpoints: Iterable[records.Checkpoint]) -> Table:
    """One line per checkpoint; a corrupt one shows ``NO`` under intact."""
    table = Table()
    table.add_column("name", overflow="fold")
    table.add_column("seq", justify="right")
    table.add_column("sha256")
    table.add_column("intact")
    table.add_column("taken at", no_wrap=True)
    for checkpoint in checkpoints:
        table.add_row(
            checkpoint.name,
            str(checkpoint.seq),
            checkpoint.sha256[:12],
            Text("yes", style="green") if checkpoint.intact else Text("NO", style="bold red"),
            timestamp(checkpoint.taken_at),
        )
    return table


# -- progress -----------------------------------------------------------------------------

err_console = Console(stderr=True, highlight=False)


def progress() -> Progress:
    """A progress bar on stderr: description, bar, done/total, elapsed time."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    return Progress(
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
    )
