"""`kernos approvals ...`: list, show, approve and reject approval requests.

Over a server (``--url``) the decision is the caller's (its API key or
session): the server checks the role, the request's assignees and that the
caller did not start the run. With a local store the installation itself
decides (``system``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any

import orjson
import typer
from rich.table import Table
from rich.text import Text

from kernos import errors, records
from kernos.cli import _render as render
from kernos.cli._client import Client, call
from kernos.cli._settings import JsonOption, StoreOption, resolve

__all__ = ["approvals"]

approvals = typer.Typer(
    name="approvals",
    help="List, show, approve and reject the requests runs make for a person's decision.",
    no_args_is_help=True,
)

ApprovalArgument = Annotated[
    str,
    typer.Argument(help="The request's id (kernos approvals list).", metavar="APPROVAL_ID"),
]
CommentOption = Annotated[
    str | None,
    typer.Option("--comment", "-m", help="A note for the run and the audit log.", metavar="TEXT"),
]

_STYLES = {
    records.ApprovalStatus.PENDING: "yellow",
    records.ApprovalStatus.APPROVED: "green",
    records.ApprovalStatus.REJECTED: "red",
    records.ApprovalStatus.EXPIRED: "magenta",
    records.ApprovalStatus.CANCELLED: "dim",
}


def _status(request: records.ApprovalRequest) -> Text:
    return Text(request.status.value, style=_STYLES[request.status])


def _who(request: records.ApprovalRequest) -> str:
    return ", ".join(request.current_assignees) or "any operator"


def approvals_table(found: Iterable[records.ApprovalRequest]) -> Table:
    """A table of requests: id, status, title, run, who may decide, deadline."""
    table = Table(box=None, header_style="bold")
    for column in ("approval", "status", "kind", "title", "run", "assignees", "deadline"):
        table.add_column(column)
    for request in found:
        table.add_row(
            request.approval_id,
            _status(request),
            request.kind.value,
            render.preview(request.title),
            request.run_id,
            _who(request) if request.status is records.ApprovalStatus.PENDING else "",
            render.timestamp(request.deadline) if request.deadline else "",
        )
    return table


def approval_fields(request: records.ApprovalRequest) -> Table:
    """One request's fields, the exact details included."""
    table = Table(box=None, show_header=False)
    table.add_column(style="bold")
    table.add_column()
    decision = request.decision if isinstance(request.decision, dict) else {}
    rows: list[tuple[str, Any]] = [
        ("approval", request.approval_id),
        ("status", _status(request)),
        ("kind", request.kind.value),
        ("title", request.title),
        ("run", f"{request.run_id} (seq {request.seq}, {request.workflow})"),
        ("details", orjson.dumps(request.details, option=orjson.OPT_INDENT_2).decode()),
        ("options", ", ".join(request.options)),
        ("level", f"{request.level} of {len(request.timeouts)}"),
        ("may decide", _who(request)),
        ("deadline", render.timestamp(request.deadline) if request.deadline else "none"),
        ("default", request.default),
        ("created", render.timestamp(request.created_at)),
    ]
    if request.args_hash:
        rows.append(("args hash", request.args_hash))
    if decision:
        rows += [
            ("decided by", str(decision.get("by", ""))),
            ("decided", render.timestamp(request.decided_at)),
            ("comment", str(decision.get("comment") or "")),
        ]
        if decision.get("edited"):
            rows.append(("edited value", orjson.dumps(decision.get("value")).decode()))
    for name, value in rows:
        table.add_row(name, value)
    return table


@approvals.command("list")
def list_approvals(
    ctx: typer.Context,
    status: Annotated[
        records.ApprovalStatus | None,
        typer.Option("--status", "-s", case_sensitive=False, help="Only requests in this state."),
    ] = None,
    run: Annotated[
        str | None, typer.Option("--run", help="Only this run's requests.", metavar="RUN")
    ] = None,
    mine: Annotated[
        bool, typer.Option("--mine", help="Only pending requests you may decide now.")
    ] = False,
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=1, max=500, help="Requests per page.", metavar="N")
    ] = 50,
    before: Annotated[
        str | None,
        typer.Option("--before", metavar="CURSOR", help="Continue after a previous page."),
    ] = None,
    json: JsonOption = False,
    store: StoreOption = None,
) -> None:
    """List approval requests, newest first, a page at a time.

    Example: kernos approvals list --status pending --mine
    """

    async def use(client: Client) -> tuple[list[records.ApprovalRequest], str | None]:
        return await client.approvals(
            status=status.value if status is not None else None,
            run_id=run,
            mine=mine,
            limit=limit,
            cursor=before,
        )

    page, next_cursor = call(resolve(ctx, store=store), use)
    if json:
        render.print_json({"approvals": [r.to_dict() for r in page], "next_cursor": next_cursor})
        return
    if not page:
        render.console.print("no approval requests")
        return
    render.console.print(approvals_table(page))
    if next_cursor is not None:
        render.console.print(f"next page: --before {next_cursor}", soft_wrap=True)


@approvals.command("show")
def show(
    ctx: typer.Context,
    approval_id: ApprovalArgument,
    json: JsonOption = False,
    store: StoreOption = None,
) -> None:
    """Show a request: what it asks, the exact details (a tool call's arguments), who may decide.

    Example: kernos approvals show apr_3f2a9c0e
    """

    async def use(client: Client) -> records.ApprovalRequest:
        return await client.approval(approval_id)

    request = call(resolve(ctx, store=store), use)
    if json:
        render.print_json(request.to_dict())
        return
    render.console.print(approval_fields(request))


def _decide(
    ctx: typer.Context,
    approval_id: str,
    decision: str,
    *,
    comment: str | None,
    edits: Any,
    json: bool,
    store: str | None,
) -> None:
    async def use(client: Client) -> records.ApprovalRequest:
        # The service decides by compare-and-set on the request as it stands; a
        # request decided, cancelled or expired meanwhile is a conflict.
        return await client.decide(
            approval_id, decision, comment=comment, edits=edits, args_hash=None, level=None
        )

    decided = call(resolve(ctx, store=store), use)
    if json:
        render.print_json(decided.to_dict())
        return
    edited = " with edits" if edits is not None else ""
    render.console.print(f"{decided.status.value}{edited}: {approval_id} (run {decided.run_id})")


def _parse_edits(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise errors.UsageError(f"--edits is not JSON: {exc}", field="edits") from exc


@approvals.command("approve")
def approve(
    ctx: typer.Context,
    approval_id: ApprovalArgument,
    comment: CommentOption = None,
    edits: Annotated[
        str | None,
        typer.Option(
            "--edits",
            help="Approve with this JSON value instead (a tool call: its arguments object).",
            metavar="JSON",
        ),
    ] = None,
    json: JsonOption = False,
    store: StoreOption = None,
) -> None:
    """Approve a pending request, optionally with an edited value.

    If the request has been decided, cancelled or has expired meanwhile, nothing
    changes and the command fails (conflict).

    Example: kernos approvals approve apr_3f2a9c0e --edits '{"path": "notes.txt"}' -m "safer"
    """
    _decide(
        ctx,
        approval_id,
        "approve",
        comment=comment,
        edits=_parse_edits(edits),
        json=json,
        store=store,
    )


@approvals.command("reject")
def reject(
    ctx: typer.Context,
    approval_id: ApprovalArgument,
    comment: CommentOption = None,
    json: JsonOption = False,
    store: StoreOption = None,
) -> None:
    """Reject a pending request; the run (or the model, for a tool call) is told why.

    Example: kernos approvals reject apr_3f2a9c0e --comment "not on a Friday"
    """
    _decide(ctx, approval_id, "reject", comment=comment, edits=None, json=json, store=store)
