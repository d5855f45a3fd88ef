"""`kernos keys ...`: create, list, revoke and rotate API keys.

With a local store (``--store``) these act on the store directly, as the
installation itself: that is how an operator who lost every admin key gets
one back (``kernos keys create rescue --role admin --store URL``).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from kernos import records
from kernos.cli import _render as render
from kernos.cli._client import Client, call
from kernos.cli._settings import JsonOption, StoreOption, resolve

__all__ = ["keys", "keys_table"]

keys = typer.Typer(
    name="keys",
    help=(
        "Create, list, revoke and rotate API keys (admin). With --store, directly in a "
        "store: `kernos keys create rescue --role admin --store sqlite:///kernos.db` makes "
        "an admin key when none is left."
    ),
    no_args_is_help=True,
)

KeyArgument = Annotated[
    str, typer.Argument(help="The key's id (kernos keys list).", metavar="KEY_ID")
]
RoleOption = Annotated[
    records.Role,
    typer.Option(
        "--role",
        "-r",
        case_sensitive=False,
        help="viewer reads; operator also starts, cancels, forks and replays; admin also "
        "manages users, keys and retention.",
    ),
]


def _state(key: records.ApiKey, now: float) -> Text:
    if key.revoked_at is not None:
        return Text("revoked", style="red")
    if key.expires_at is not None and key.expires_at <= now:
        return Text("expired", style="dim")
    if key.expires_at is not None:
        return Text(f"expires in {render.duration(key.expires_at - now)}", style="yellow")
    return Text("active", style="green")


def keys_table(found: Iterable[records.ApiKey], now: float) -> Table:
    """One line per key, newest first; never a secret."""
    table = Table()
    table.add_column("key id", style="bold", no_wrap=True)
    table.add_column("name", overflow="fold")
    table.add_column("role")
    table.add_column("state", no_wrap=True)
    table.add_column("created", no_wrap=True)
    table.add_column("by", overflow="fold")
    table.add_column("last used", no_wrap=True)
    table.add_column("rotated from", no_wrap=True)
    for key in found:
        table.add_row(
            key.key_id,
            key.name,
            key.role.value,
            _state(key, now),
            render.timestamp(key.created_at),
            key.created_by,
            render.timestamp(key.last_used_at),
            key.rotated_from or "",
        )
    return table


def _show_secret(key: records.ApiKey, secret: str, *, json: bool, what: str) -> None:
    if json:
        render.print_json({"key": key.to_dict(), "secret": secret})
        return
    expires = f", expires {render.timestamp(key.expires_at)}" if key.expires_at else ""
    render.console.print(
        f"{what} API key {key.key_id} ({key.name!r}, role {key.role.value}, "
        f"tenant {key.tenant_id}{expires})",
        soft_wrap=True,
    )
    render.console.print(
        "The secret is shown this once and stored only as a hash; keep it somewhere safe:"
    )
    render.console.print(f"\n    {secret}\n", soft_wrap=True, highlight=False)


@keys.command("create")
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="What the key is for, e.g. 'ci' or 'alice laptop'.")],
    role: RoleOption = records.Role.VIEWER,
    expires_in: Annotated[
        float | None,
        typer.Option(
            "--expires-in", min=1, metavar="SECONDS", help="Expire after this many seconds."
        ),
    ] = None,
    json: JsonOption = False,
    store: StoreOption = None,
) -> None:
    """Create an API key and print its secret, once.

    Use it as `Authorization: Bearer <secret>`, or with this command line as
    --api-key, $KERNOS_API_KEY or api_key in the config file.

    Example: kernos keys create ci --role operator --expires-in 2592000
    """

    async def use(client: Client) -> tuple[records.ApiKey, str]:
        return await client.create_key(name, role, expires_in=expires_in)

    key, secret = call(resolve(ctx, store=store), use)
    _show_secret(key, secret, json=json, what="created")


@keys.command("list")
def list_keys(ctx: typer.Context, json: JsonOption = False, store: StoreOption = None) -> None:
    """List the tenant's API keys, newest first, revoked and expired ones included.

    Example: kernos keys list
    """

    async def use(client: Client) -> list[records.ApiKey]:
        return await client.keys()

    found = call(resolve(ctx, store=store), use)
    if json:
        render.print_json({"keys": [key.to_dict() for key in found]})
    elif not found:
        render.console.print("no API keys")
    else:
        render.console.print(keys_table(found, time.time()))


@keys.command("revoke")
def revoke(
    ctx: typer.Context, key_id: KeyArgument, json: JsonOption = False, store: StoreOption = None
) -> None:
    """Revoke an API key: requests with it fail from now on.

    Example: kernos keys revoke a1B2c3D4e5F6
    """

    async def use(client: Client) -> records.ApiKey:
        return await client.revoke_key(key_id)

    key = call(resolve(ctx, store=store), use)
    if json:
        render.print_json(key.to_dict())
    else:
        render.console.print(f"revoked API key {key.key_id} ({key.name!r})", soft_wrap=True)


@keys.command("rotate")
def rotate(
    ctx: typer.Context,
    key_id: KeyArgument,
    overlap: Annotated[
        float,
        typer.Option(
            "--overlap",
            min=0,
            max=30 * 86400,
            metavar="SECONDS",
            help="How long the old key keeps working, to roll the new one out.",
        ),
    ] = 24 * 3600.0,
    json: JsonOption = False,
    store: StoreOption = None,
) -> None:
    """Replace an API key: a new one (same name and role) now; the old one expires later.

    Example: kernos keys rotate a1B2c3D4e5F6 --overlap 3600
    """

    async def use(client: Client) -> tuple[records.ApiKey, str]:
        return await client.rotate_key(key_id, overlap=overlap)

    key, secret = call(resolve(ctx, store=store), use)
    if not json:
        left = f"keeps working for {render.duration(overlap)}" if overlap else "stops working now"
        render.note(f"the old key {key_id} {left}")
    _show_secret(key, secret, json=json, what="rotated: new")
