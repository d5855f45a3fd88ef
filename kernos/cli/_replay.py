"""`kernos replay`: re-execute a run's workflow code against its journal, with no side effects."""

from __future__ import annotations

import typer

from kernos import errors, runtime
from kernos.cli import _render as render
from kernos.cli._client import Client, call
from kernos.cli._settings import (
    AppOption,
    JsonOption,
    Remote,
    RunArgument,
    StoreOption,
    import_apps,
    resolve,
)

__all__ = ["replay"]


def replay(
    ctx: typer.Context,
    run_id: RunArgument,
    json: JsonOption = False,
    store: StoreOption = None,
    app: AppOption = None,
) -> None:
    """Check that the current workflow code still matches a run's journal.

    No step executes and nothing is written: every durable call is answered from
    the journal. Prints "identical" or the first divergence. Exit code 0 when
    identical, 1 when diverged. On a server, the server's code is replayed (no
    --app needed); with a local store, --app names the code to check.

    Example: kernos replay brief-1 --app myapp.flows
    """
    settings = resolve(ctx, store=store, apps=app)
    remote = isinstance(settings.target(), Remote)
    if not remote and not settings.apps:
        raise errors.UsageError(
            "replay needs the workflow code: pass --app MODULE (or set KERNOS_APP) naming "
            "the module that defines the run's workflow"
        )
    if not remote:
        import_apps(settings.apps)

    async def use(client: Client) -> runtime.ReplayReport:
        try:
            return await client.replay(run_id)
        except errors.WorkflowNotFoundError as exc:
            raise errors.ConfigError(
                f"{exc.message} (imported: {', '.join(settings.apps)})", **exc.facts
            ) from exc

    report = call(settings, use)
    if json:
        render.print_json(report.to_dict())
    else:
        render.console.print(str(report), soft_wrap=True)
        if not report.complete:
            render.console.print(
                "the run has not finished: its journal was checked as far as it goes"
            )
    raise typer.Exit(0 if report.identical else 1)
