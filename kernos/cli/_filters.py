"""The run filter options shared by `runs list`, `runs export` and `bulk`, and time parsing."""

from __future__ import annotations

import re
import time
from datetime import datetime
from typing import Annotated

import typer

from kernos import errors, records
from kernos.store import RunFilter

__all__ = [
    "QueueOption",
    "SearchOption",
    "SinceOption",
    "StatusOption",
    "UntilOption",
    "WorkflowOption",
    "parse_time",
    "run_filter",
]

TIME_HELP = (
    "epoch seconds, an ISO date or time in local time (2026-03-01, 2026-03-01T09:30), "
    "or an age like 30m, 12h, 7d"
)
STATUS_HELP = "Only runs in this status: " + ", ".join(status.value for status in records.RunStatus)

StatusOption = Annotated[
    records.RunStatus | None,
    typer.Option("--status", "-s", help=STATUS_HELP, case_sensitive=False, metavar="STATUS"),
]
WorkflowOption = Annotated[
    str | None,
    typer.Option("--workflow", "-w", help="Only runs of this workflow.", metavar="NAME"),
]
QueueOption = Annotated[
    str | None, typer.Option("--queue", help="Only runs of this queue.", metavar="QUEUE")
]
SinceOption = Annotated[
    str | None,
    typer.Option("--since", help=f"Only runs created at or after this: {TIME_HELP}.", metavar="T"),
]
UntilOption = Annotated[
    str | None,
    typer.Option("--until", help=f"Only runs created before this: {TIME_HELP}.", metavar="T"),
]
SearchOption = Annotated[
    str | None,
    typer.Option(
        "--search", "-q", help="Only runs whose id, workflow or error contains this text."
    ),
]

_AGE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_time(value: str, option: str, *, now: float | None = None) -> float:
    """Epoch seconds from a ``--since``/``--until`` value.

    Raises:
        UsageError: the value is none of the accepted forms.
    """
    text = value.strip()
    age = _AGE.match(text.lower())
    if age is not None:
        return (time.time() if now is None else now) - float(age.group(1)) * _UNITS[age.group(2)]
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise errors.UsageError(
            f"{option} {value!r} is not a time: use {TIME_HELP}", option=option
        ) from None


def run_filter(
    *,
    status: records.RunStatus | None = None,
    workflow: str | None = None,
    queue: str | None = None,
    since: str | None = None,
    until: str | None = None,
    search: str | None = None,
    parent: str | None = None,
) -> RunFilter:
    """The store's run filter for the options given."""
    return RunFilter(
        status=status.value if status is not None else None,
        workflow=workflow,
        queue=queue,
        created_after=parse_time(since, "--since") if since else None,
        created_before=parse_time(until, "--until") if until else None,
        text=search or None,
        parent_id=parent,
    )
