"""`kernos users ...` (the tenant's users and roles) and `kernos whoami`.

Passwords are never command-line arguments (other users of the machine can
read those): they are typed at a prompt, twice, or read from standard input
with ``--password-stdin``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from kernos import errors, records
from kernos.cli import _render as render
from kernos.cli._client import Client, Identity, Member, call
from kernos.cli._keys import RoleOption
from kernos.cli._settings import JsonOption, StoreOption, YesOption, resolve

__all__ = ["read_password", "users", "whoami"]

users = typer.Typer(
    name="users",
    help="List, create, change and remove the tenant's users (admin).",
    no_args_is_help=True,
)

UserArgument = Annotated[str, typer.Argument(help="The user's name.", metavar="USERNAME")]
PasswordStdinOption = Annotated[
    bool,
    typer.Option(
        "--password-stdin",
        help="Read the password from the first line of standard input instead of a prompt.",
    ),
]


def read_password(from_stdin: bool) -> str:
    """A password from stdin's first line, or typed twice at a terminal prompt.

    Raises:
        UsageError: empty, or no terminal to prompt on.
    """
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif not sys.stdin.isatty():
        raise errors.UsageError(
            "no terminal to ask for the password on; pipe it in with --password-stdin"
        )
    else:
        password = typer.prompt(
            "Password", hide_input=True, confirmation_prompt=True, err=True, type=str
        )
    if not password:
        raise errors.UsageError("the password is empty")
    return password


def users_table(found: Iterable[Member]) -> Table:
    """One line per user."""
    table = Table()
    table.add_column("user", style="bold", overflow="fold")
    table.add_column("role")
    table.add_column("state")
    table.add_column("created", no_wrap=True)
    for member in found:
        state = Text("disabled", style="red") if member.disabled else Text("active", "green")
        table.add_row(
            member.username, member.role.value, state, render.timestamp(member.created_at)
        )
    return table


def _report(member: Member, what: str, *, json: bool) -> None:
    if json:
        render.print_json(member.to_dict())
        return
    state = " (disabled)" if member.disabled else ""
    render.console.print(
        f"{what} user {member.username}: role {member.role.value}{state}", soft_wrap=True
    )


@users.command("list")
def list_users(ctx: typer.Context, json: JsonOption = False, store: StoreOption = None) -> None:
    """List the tenant's users and their roles.

    Example: kernos users list
    """

    async def use(client: Client) -> list[Member]:
        return await client.users()

    found = call(resolve(ctx, store=store), use)
    if json:
        render.print_json({"users": [member.to_dict() for member in found]})
    elif not found:
        render.console.print("no users")
    else:
        render.console.print(users_table(found))


@users.command("create")
def create(
    ctx: typer.Context,
    username: UserArgument,
    role: RoleOption = records.Role.VIEWER,
    password_stdin: PasswordStdinOption = False,
    json: JsonOption = False,
    store: StoreOption = None,
) -> None:
    """Create a user in the tenant; they sign in to the dashboard with the password.

    The password (12 characters or more) is asked for twice, or read from
    standard input with --password-stdin.

    Example: kernos users create alice --role operator --password-stdin < password.txt
    """
    password = read_password(password_stdin)

    async def use(client: Client) -> Member:
        return await client.create_user(username, password, role)

    _report(call(resolve(ctx, store=store), use), "created", json=json)


@users.command("update")
def update(
    ctx: typer.Context,
    username: UserArgument,
    role: Annotated[
        records.Role | None,
        typer.Option("--role", "-r", case_sensitive=False, help="Give the user this role."),
    ] = None,
    disabled: Annotated[
        bool | None,
        typer.Option(
            "--disable/--enable",
            help="Disable the user (their sign-ins fail) or enable them again.",
            show_default=False,
        ),
    ] = None,
    new_password: Annotated[
        bool, typer.Option("--password", help="Set a new password, asked for twice.")
    ] = False,
    password_stdin: PasswordStdinOption = False,
    json: JsonOption = False,
    store: StoreOption = None,
) -> None:
    """Change a user's role, disable or enable them, or set a new password.

    Example: kernos users update alice --role admin
    """
    if role is None and disabled is None and not (new_password or password_stdin):
        raise errors.UsageError(
            "nothing to change: pass --role, --disable/--enable, --password or --password-stdin"
        )
    password = read_password(password_stdin) if new_password or password_stdin else None

    async def use(client: Client) -> Member:
        return await client.update_user(username, role=role, disabled=disabled, password=password)

    _report(call(resolve(ctx, store=store), use), "updated", json=json)


@users.command("remove")
def remove(
    ctx: typer.Context, username: UserArgument, yes: YesOption = False, store: StoreOption = None
) -> None:
    """Take a user out of the tenant (the account itself stays, for other tenants).

    Example: kernos users remove alice --yes
    """
    if not yes:
        typer.confirm(f"Remove {username} from the tenant?", abort=True, err=True)

    async def use(client: Client) -> None:
        await client.remove_user(username)

    call(resolve(ctx, store=store), use)
    render.console.print(f"removed user {username}")


def whoami(ctx: typer.Context, json: JsonOption = False, store: StoreOption = None) -> None:
    """Show who commands act as: the API key's identity on a server, or the system locally.

    Example: kernos --url http://127.0.0.1:8420 whoami
    """

    async def use(client: Client) -> Identity:
        return await client.whoami()

    me = call(resolve(ctx, store=store), use)
    if json:
        render.print_json(me.to_dict())
    else:
        render.console.print(
            f"{me.actor} in tenant {me.tenant} as {me.role.value} ({me.where})", soft_wrap=True
        )
