"""`kernos policy ...`: check, apply, show and test the tenant's YAML policy."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from kernos import records
from kernos.cli import _render as render
from kernos.cli._client import Client, call
from kernos.cli._settings import JsonOption, StoreOption, resolve
from kernos.control._policies import PolicyTestRow, check_policy_text

__all__ = ["policy", "policy_test_table"]

policy = typer.Typer(
    name="policy",
    help=(
        "The tenant's tool policy as a YAML document: check a file (offline), apply it as "
        "the next version (admin), show a version, and test a file against a recorded run. "
        "Runs record the version they ran under."
    ),
    no_args_is_help=True,
)

FileArgument = Annotated[
    Path,
    typer.Argument(
        help="The policy document (YAML).",
        exists=True,
        dir_okay=False,
        readable=True,
        metavar="FILE",
    ),
]
DECISION_STYLES = {"allow": "green", "deny": "red", "needs_approval": "yellow"}


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        typer.echo(f"{path}:1:1: the file is not UTF-8 text")
        raise typer.Exit(1) from None


def _checked(path: Path) -> str:
    """The file's text; its problems printed and exit 1 when it is not a valid policy."""
    text = _read(path)
    problems = check_policy_text(text, str(path))
    if problems:
        for problem in problems:
            typer.echo(str(problem))
        render.note(f"{path}: {len(problems)} problem{'s' if len(problems) != 1 else ''}")
        raise typer.Exit(1)
    return text


def _arguments(row: PolicyTestRow) -> str:
    if row.arguments is None:
        return "(unreadable)"
    return render.preview(row.arguments, 60)


def policy_test_table(rows: Iterable[PolicyTestRow]) -> Table:
    """One line per recorded tool call: then and now, the changed ones marked."""
    table = Table()
    table.add_column("seq", justify="right")
    table.add_column("tool", no_wrap=True)
    table.add_column("arguments", overflow="fold")
    table.add_column("recorded", no_wrap=True)
    table.add_column("would decide", no_wrap=True)
    table.add_column("rule", overflow="fold")
    for row in rows:
        decision = Text(row.decision, style=DECISION_STYLES.get(row.decision, ""))
        if row.changed:
            decision.append(" (changed)", style="bold")
        rule = row.rule or "(default)"
        if row.line is not None:
            rule = f"{rule} (line {row.line})"
        table.add_row(
            str(row.seq),
            Text(row.tool),
            Text(_arguments(row)),
            row.recorded or "",
            decision,
            Text(rule),
        )
    return table


@policy.command("check")
def check(path: FileArgument, json: JsonOption = False) -> None:
    """Check a policy file; print each problem as FILE:LINE:COL: message (exit 1 if any).

    Needs no server and no store.

    Example: kernos policy check policy.yaml
    """
    text = _read(path)
    problems = check_policy_text(text, str(path))
    if json:
        render.print_json(
            {"valid": not problems, "problems": [problem.to_dict() for problem in problems]}
        )
    elif problems:
        for problem in problems:
            typer.echo(str(problem))
        render.note(f"{path}: {len(problems)} problem{'s' if len(problems) != 1 else ''}")
    else:
        typer.echo(f"{path}: a valid policy")
    if problems:
        raise typer.Exit(1)


@policy.command("apply")
def apply(
    ctx: typer.Context, path: FileArgument, json: JsonOption = False, store: StoreOption = None
) -> None:
    """Apply a policy file as the tenant's next version (admin; checked first).

    Runs started afterwards use it; runs already going keep the version they loaded.

    Example: kernos policy apply policy.yaml
    """
    text = _checked(path)

    async def use(client: Client) -> records.PolicyVersion:
        return await client.apply_policy(text)

    stored = call(resolve(ctx, store=store), use)
    if json:
        render.print_json({k: v for k, v in stored.to_dict().items() if k != "document"})
        return
    typer.echo(
        f"applied {path} as policy version {stored.version} of tenant {stored.tenant_id} "
        f"(sha256 {stored.sha256[:12]})"
    )


@policy.command("show")
def show(
    ctx: typer.Context,
    version: Annotated[
        int | None,
        typer.Option("--version", "-v", min=1, help="This version instead of the current one."),
    ] = None,
    json: JsonOption = False,
    store: StoreOption = None,
) -> None:
    """Print the tenant's current policy document (or one version) to stdout.

    Example: kernos policy show --version 2 > policy-v2.yaml
    """

    async def use(client: Client) -> records.PolicyVersion:
        return await client.policy(version)

    found = call(resolve(ctx, store=store), use)
    if json:
        render.print_json(found.to_dict())
        return
    render.note(
        f"# policy version {found.version} of tenant {found.tenant_id}, applied by "
        f"{found.created_by} at {render.timestamp(found.created_at)} (sha256 {found.sha256[:12]})"
    )
    typer.echo(found.document, nl=not found.document.endswith("\n"))


@policy.command("versions")
def versions(ctx: typer.Context, json: JsonOption = False, store: StoreOption = None) -> None:
    """List the tenant's policy versions, newest first.

    Example: kernos policy versions
    """

    async def use(client: Client) -> list[records.PolicyVersion]:
        return await client.policy_versions()

    found = call(resolve(ctx, store=store), use)
    if json:
        render.print_json(
            [{k: v for k, v in item.to_dict().items() if k != "document"} for item in found]
        )
        return
    if not found:
        render.console.print("no policy applied yet")
        return
    table = Table()
    for column in ("version", "applied", "by", "sha256"):
        table.add_column(column)
    for item in found:
        table.add_row(
            str(item.version),
            render.timestamp(item.created_at),
            Text(item.created_by),
            item.sha256[:12],
        )
    render.console.print(table)


@policy.command("test")
def test(
    ctx: typer.Context,
    path: FileArgument,
    run: Annotated[
        str, typer.Option("--run", help="The recorded run to decide again.", metavar="RUN")
    ],
    json: JsonOption = False,
    store: StoreOption = None,
) -> None:
    """Show what a policy file would decide on each tool call of a recorded run.

    Nothing runs: each call's recorded arguments and context (agent, model,
    spend so far) are decided under the file, next to the recorded decision.

    Example: kernos policy test policy.yaml --run 3f2a9c
    """
    text = _checked(path)

    async def use(client: Client) -> list[PolicyTestRow]:
        return await client.test_policy(text, run)

    rows = call(resolve(ctx, store=store), use)
    if json:
        render.print_json([row.to_dict() for row in rows])
        return
    if not rows:
        render.console.print(f"run {run} made no tool calls")
        return
    render.console.print(policy_test_table(rows))
    changed = sum(row.changed for row in rows)
    render.note(f"{len(rows)} tool calls, {changed} decided differently")
