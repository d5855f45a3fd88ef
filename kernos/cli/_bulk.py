"""`kernos bulk ...`: cancel, retry or replay every run matching a filter, with progress."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Annotated, Any

import typer
from rich.table import Table

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
from kernos.cli._settings import (
    AppOption,
    JsonOption,
    StoreOption,
    YesOption,
    import_apps,
    resolve,
)
from kernos.store import RunFilter

__all__ = ["bulk"]

bulk = typer.Typer(
    name="bulk",
    help=(
        "Cancel, retry or replay every run matching a filter: shows how many first and "
        "asks, then follows the job's progress."
    ),
    no_args_is_help=True,
)

FAILURES_SHOWN = 10
POLL = 0.5  # seconds between looks at the job's progress

ACTIONS = {
    "cancel": (
        "Cancel every matching run (and its unfinished children).",
        "kernos bulk cancel --status waiting --workflow brief --until 7d",
    ),
    "retry": (
        "Retry every matching run from its first failed step: each gets a fork that runs "
        "that step again and keeps what came before.",
        "kernos bulk retry --status failed --since 1d --yes",
    ),
    "replay": (
        "Replay every matching run against its journal (no side effects) and count "
        "divergences; with a local store --app names the code to check.",
        "kernos bulk replay --workflow brief --status succeeded",
    ),
}


def _job_line(job: records.BulkJob) -> str:
    return (
        f"bulk {job.action} {job.job_id}: {job.done} done, {job.failed} failed of "
        f"{job.total} ({job.state})"
    )


def _failures(job: records.BulkJob) -> list[dict[str, Any]]:
    results = job.results if isinstance(job.results, list) else []
    return [r for r in results if isinstance(r, dict) and not r.get("ok")]


def _report(job: records.BulkJob, *, json: bool) -> None:
    if json:
        render.print_json(job.to_dict())
    else:
        render.console.print(_job_line(job), soft_wrap=True)
        for failure in _failures(job)[:FAILURES_SHOWN]:
            render.console.print(
                f"  {failure.get('run_id')}: {failure.get('message') or failure.get('error')}",
                soft_wrap=True,
            )
    if job.state != "done" or job.failed:
        raise typer.Exit(1)


async def _follow(client: Client, action: str, query: RunFilter, started: list[str]) -> Any:
    job = await client.bulk_start(action, query)
    started.append(job.job_id)
    with render.progress() as progress:
        task = progress.add_task(f"bulk {action}", total=job.total)
        while job.state == "running":
            await asyncio.sleep(POLL)
            job = await client.bulk_job(job.job_id)
            progress.update(task, total=job.total, completed=job.done + job.failed)
    return job


def _perform(
    ctx: typer.Context,
    action: str,
    query: RunFilter,
    *,
    yes: bool,
    json: bool,
    store: str | None,
    apps: list[str] | None,
) -> None:
    settings = resolve(ctx, store=store, apps=apps)
    if settings.apps:
        import_apps(settings.apps)

    async def count(client: Client) -> int:
        return await client.bulk_count(action, query)

    matching = call(settings, count)
    if matching == 0:
        if json:
            render.print_json({"action": action, "count": 0, "job": None})
        else:
            render.console.print(f"no runs match; nothing to {action}")
        return
    if not yes:
        typer.confirm(f"{action} {matching} run(s)?", abort=True, err=True)
    started: list[str] = []
    try:
        job = call(settings, lambda client: _follow(client, action, query, started))
    except KeyboardInterrupt:
        if started:
            raise errors.RuntimeFailure(
                f"stopped following bulk job {started[0]}; on a server it goes on: "
                f"`kernos bulk show {started[0]}`",
                job_id=started[0],
            ) from None
        raise
    _report(job, json=json)


def _command(action: str) -> Callable[..., None]:
    summary, example = ACTIONS[action]

    def command(
        ctx: typer.Context,
        status: StatusOption = None,
        workflow: WorkflowOption = None,
        queue: QueueOption = None,
        since: SinceOption = None,
        until: UntilOption = None,
        search: SearchOption = None,
        yes: YesOption = False,
        json: JsonOption = False,
        store: StoreOption = None,
        app: AppOption = None,
    ) -> None:
        query = run_filter(
            status=status, workflow=workflow, queue=queue, since=since, until=until, search=search
        )
        _perform(ctx, action, query, yes=yes, json=json, store=store, apps=app)

    command.__doc__ = (
        f"{summary}\n\nShows how many runs match and asks before acting (--yes skips "
        f"the question). Exit code 1 when the job did not act on every run.\n\n"
        f"Example: {example}"
    )
    return command


for _action in ACTIONS:
    bulk.command(_action)(_command(_action))


def jobs_table(found: Iterable[records.BulkJob]) -> Table:
    """One line per bulk job."""
    table = Table()
    table.add_column("job", style="bold", no_wrap=True)
    table.add_column("action")
    table.add_column("state")
    table.add_column("done", justify="right")
    table.add_column("failed", justify="right")
    table.add_column("total", justify="right")
    table.add_column("by", overflow="fold")
    table.add_column("created", no_wrap=True)
    table.add_column("filter", overflow="fold")
    for job in found:
        table.add_row(
            job.job_id,
            job.action,
            job.state,
            str(job.done),
            str(job.failed),
            str(job.total),
            job.created_by,
            render.timestamp(job.created_at),
            render.preview(job.filter, 60),
        )
    return table


@bulk.command("list")
def list_jobs(ctx: typer.Context, json: JsonOption = False, store: StoreOption = None) -> None:
    """List the tenant's bulk jobs, newest first.

    Example: kernos bulk list
    """

    async def use(client: Client) -> list[records.BulkJob]:
        return await client.bulk_jobs()

    found = call(resolve(ctx, store=store), use)
    if json:
        render.print_json({"jobs": [job.to_dict() for job in found]})
    elif not found:
        render.console.print("no bulk jobs")
    else:
        render.console.print(jobs_table(found))


@bulk.command("show")
def show(
    ctx: typer.Context,
    job_id: Annotated[str, typer.Argument(help="The job's id.", metavar="JOB")],
    json: JsonOption = False,
    store: StoreOption = None,
) -> None:
    """Show a bulk job's progress and the runs it could not act on.

    Example: kernos bulk show 3f2a...
    """

    async def use(client: Client) -> records.BulkJob:
        return await client.bulk_job(job_id)

    job = call(resolve(ctx, store=store), use)
    if json:
        render.print_json(job.to_dict())
        return
    render.console.print(_job_line(job), soft_wrap=True)
    for failure in _failures(job)[:FAILURES_SHOWN]:
        render.console.print(
            f"  {failure.get('run_id')}: {failure.get('message') or failure.get('error')}",
            soft_wrap=True,
        )
