"""`kernos webhooks ...`: subscribe URLs to events (approvals by default) and watch deliveries.

The server delivers; with a local store (``--store``) these commands only change
what is stored, and a server on that store picks the change up within seconds.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from kernos import records
from kernos.cli import _render as render
from kernos.cli._client import Client, call
from kernos.cli._settings import JsonOption, StoreOption, resolve

__all__ = ["webhooks"]

webhooks = typer.Typer(
    name="webhooks",
    help=(
        "Notify URLs of events (approval requests, escalations and decisions by default), "
        "signed with HMAC-SHA256 and retried with backoff; see their deliveries. "
        "Example: kernos webhooks create https://hooks.example.com/kernos --format json"
    ),
    no_args_is_help=True,
)

WebhookArgument = Annotated[
    str, typer.Argument(help="The webhook's id (kernos webhooks list).", metavar="WEBHOOK_ID")
]

_STATUS_STYLE = {
    records.DeliveryStatus.DELIVERED: "green",
    records.DeliveryStatus.PENDING: "yellow",
    records.DeliveryStatus.FAILED: "yellow",
    records.DeliveryStatus.DEAD: "red",
}


def _table(found: Iterable[records.Webhook]) -> Table:
    table = Table()
    table.add_column("webhook id", style="bold", no_wrap=True)
    table.add_column("url", overflow="fold")
    table.add_column("kinds", overflow="fold")
    table.add_column("format")
    table.add_column("state", no_wrap=True)
    table.add_column("created", no_wrap=True)
    table.add_column("by", overflow="fold")
    for hook in found:
        table.add_row(
            hook.webhook_id,
            hook.url,
            ", ".join(hook.kinds),
            hook.format.value,
            Text("active", style="green") if hook.active else Text("paused", style="dim"),
            render.timestamp(hook.created_at),
            hook.created_by,
        )
    return table


def _deliveries_table(found: Iterable[records.WebhookDelivery]) -> Table:
    table = Table()
    table.add_column("delivery id", style="bold", no_wrap=True)
    table.add_column("event", no_wrap=True)
    table.add_column("kind", overflow="fold")
    table.add_column("status", no_wrap=True)
    table.add_column("attempts", justify="right")
    table.add_column("answer", no_wrap=True)
    table.add_column("error", overflow="fold")
    table.add_column("next attempt", no_wrap=True)
    table.add_column("created", no_wrap=True)
    for item in found:
        table.add_row(
            item.delivery_id,
            "" if item.event_id is None else str(item.event_id),
            item.kind,
            Text(item.status.value, style=_STATUS_STYLE[item.status]),
            str(item.attempts),
            "" if item.response_status is None else str(item.response_status),
            item.last_error or "",
            render.timestamp(item.next_attempt_at),
            render.timestamp(item.created_at),
        )
    return table


def _show_secret(hook: records.Webhook, secret: str, *, json: bool, what: str) -> None:
    if json:
        render.print_json({"webhook": hook.to_dict(), "secret": secret})
        return
    render.console.print(
        f"{what} webhook {hook.webhook_id} -> {hook.url} ({', '.join(hook.kinds)}, "
        f"{hook.format.value})",
        soft_wrap=True,
    )
    render.console.print(
        "The signing secret is shown this once; receivers verify Kernos-Signature with it:"
    )
    render.console.print(f"\n    {secret}\n", soft_wrap=True, highlight=False)


@webhooks.command("create")
def create(
    ctx: typer.Context,
    url: Annotated[str, typer.Argument(help="The http(s) URL to POST notifications to.")],
    kinds: Annotated[
        list[str] | None,
        typer.Option(
            "--kind",
            "-k",
            metavar="GLOB",
            help="Event kinds to send, as globs; repeat for more (default approval.*).",
        ),
    ] = None,
    format: Annotated[
        records.WebhookFormat,
        typer.Option(
            "--format",
            "-f",
            case_sensitive=False,
            help="json: Kernos' signed JSON envelope; slack: a message for a Slack "
            "incoming-webhook URL.",
        ),
    ] = records.WebhookFormat.JSON,
    json: JsonOption = False,
    store: StoreOption = None,
) -> None:
    """Subscribe a URL to the tenant's events (admin) and print its signing secret, once.

    Example: kernos webhooks create https://hooks.slack.com/services/T0/B0/XYZ --format slack
    """

    async def use(client: Client) -> tuple[records.Webhook, str]:
        return await client.create_webhook(url, kinds=list(kinds or ()), format=format)

    hook, secret = call(resolve(ctx, store=store), use)
    _show_secret(hook, secret, json=json, what="created")


@webhooks.command("list")
def list_webhooks(ctx: typer.Context, json: JsonOption = False, store: StoreOption = None) -> None:
    """List the tenant's webhooks (operator; full URLs for admins only).

    Example: kernos webhooks list --json
    """

    async def use(client: Client) -> list[records.Webhook]:
        return await client.webhooks()

    found = call(resolve(ctx, store=store), use)
    if json:
        render.print_json({"webhooks": [hook.to_dict() for hook in found]})
    elif not found:
        render.console.print("no webhooks")
    else:
        render.console.print(_table(found))


@webhooks.command("delete")
def delete(ctx: typer.Context, webhook_id: WebhookArgument, store: StoreOption = None) -> None:
    """Delete a webhook and its deliveries (admin); pending notifications are dropped.

    Example: kernos webhooks delete wh_0123456789abcdef0123
    """

    async def use(client: Client) -> None:
        await client.delete_webhook(webhook_id)

    call(resolve(ctx, store=store), use)
    render.console.print(f"deleted webhook {webhook_id}", soft_wrap=True)


@webhooks.command("rotate")
def rotate(
    ctx: typer.Context,
    webhook_id: WebhookArgument,
    json: JsonOption = False,
    store: StoreOption = None,
) -> None:
    """Give a webhook a new signing secret, effective at once (admin); print it, once.

    Example: kernos webhooks rotate wh_0123456789abcdef0123
    """

    async def use(client: Client) -> tuple[records.Webhook, str]:
        return await client.rotate_webhook(webhook_id)

    hook, secret = call(resolve(ctx, store=store), use)
    _show_secret(hook, secret, json=json, what="rotated")


@webhooks.command("deliveries")
def deliveries(
    ctx: typer.Context,
    webhook_id: WebhookArgument,
    status: Annotated[
        records.DeliveryStatus | None,
        typer.Option("--status", "-s", case_sensitive=False, help="Only deliveries in this state."),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=500)] = 50,
    json: JsonOption = False,
    store: StoreOption = None,
) -> None:
    """Show a webhook's latest deliveries: attempts, last answer or error, next attempt.

    Example: kernos webhooks deliveries wh_0123456789abcdef0123 --status dead
    """

    async def use(client: Client) -> list[records.WebhookDelivery]:
        return await client.webhook_deliveries(webhook_id, status=status, limit=limit)

    found = call(resolve(ctx, store=store), use)
    if json:
        render.print_json({"deliveries": [item.to_dict() for item in found]})
    elif not found:
        render.console.print("no deliveries")
    else:
        render.console.print(_deliveries_table(found))


@webhooks.command("test")
def test(
    ctx: typer.Context,
    webhook_id: WebhookArgument,
    json: JsonOption = False,
    store: StoreOption = None,
) -> None:
    """Send a signed ping to a webhook now (admin) and show how the receiver answered.

    Example: kernos webhooks test wh_0123456789abcdef0123
    """

    async def use(client: Client) -> records.WebhookDelivery:
        return await client.test_webhook(webhook_id)

    item = call(resolve(ctx, store=store), use)
    if json:
        render.print_json(item.to_dict())
        return
    render.console.print(_deliveries_table([item]))
    if item.status is not records.DeliveryStatus.DELIVERED:
        raise typer.Exit(1)
