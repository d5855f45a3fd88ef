"""`kernos tenants ...`: list and create tenants, add members to them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated

import typer
from rich.table import Table

from kernos import records
from kernos.cli import _render as render
from kernos.cli._client import Client, call
from kernos.cli._keys import RoleOption
from kernos.cli._settings import JsonOption, StoreOption, resolve

__all__ = ["tenants"]

tenants = typer.Typer(
    name="tenants",
    help=(
        "List and create tenants, and add users to them. Creating tenants and adding "
        "members needs the admin role in the 'default' tenant."
    ),
    no_args_is_help=True,
)

TenantArgument = Annotated[
    str, typer.Argument(help="The tenant's id: lowercase letters, digits, '.', '_', '-'.")
]


def tenants_table(found: Iterable[records.Tenant]) -> Table:
    """One line per tenant with its retention policy."""
    table = Table()
    table.add_column("tenant", style="bold", no_wrap=True)
    table.add_column("name", overflow="fold")
    table.add_column("created", no_wrap=True)
    table.add_column("retention")
    for tenant in found:
        retention = (
            f"{tenant.retention_action} after {tenant.retention_days}d"
            if tenant.retention_days is not None
            else "keep"
        )
        table.add_row(tenant.tenant_id, tenant.name, render.timestamp(tenant.created_at), retention)
    return table


@tenants.command("list")
def list_tenants(ctx: typer.Context, json: JsonOption = False, store: StoreOption = None) -> None:
    """List tenants: every one for admins of the default tenant, else your own.

    Example: kernos tenants list
    """

    async def use(client: Client) -> list[records.Tenant]:
        return await client.tenants()

    found = call(resolve(ctx, store=store), use)
    if json:
        render.print_json({"tenants": [tenant.to_dict() for tenant in found]})
    else:
        render.console.print(tenants_table(found))


@tenants.command("create")
def create(
    ctx: typer.Context,
    tenant_id: TenantArgument,
    name: Annotated[
        str, typer.Option("--name", help="A display name (default: the id).", show_default=False)
    ] = "",
    json: JsonOption = False,
    store: StoreOption = None,
) -> None:
    """Create a tenant: its own runs, users, API keys and audit log.

    Then give it an admin: `kernos --tenant ID keys create admin --role admin
    --store URL` locally, or `kernos tenants add-member ID USER --role admin`.

    Example: kernos tenants create acme --name "Acme Corp"
    """

    async def use(client: Client) -> records.Tenant:
        return await client.create_tenant(tenant_id, name)

    tenant = call(resolve(ctx, store=store), use)
    if json:
        render.print_json(tenant.to_dict())
    else:
        render.console.print(f"created tenant {tenant.tenant_id} ({tenant.name})", soft_wrap=True)


@tenants.command("add-member")
def add_member(
    ctx: typer.Context,
    tenant_id: TenantArgument,
    username: Annotated[str, typer.Argument(help="An existing user's name.", metavar="USERNAME")],
    role: RoleOption = records.Role.VIEWER,
    store: StoreOption = None,
) -> None:
    """Give an existing user a role in a tenant (or change it).

    Example: kernos tenants add-member acme alice --role admin
    """

    async def use(client: Client) -> None:
        await client.add_member(tenant_id, username, role)

    call(resolve(ctx, store=store), use)
    render.console.print(f"{username} is {role.value} in tenant {tenant_id}", soft_wrap=True)
