"""Where the CLI finds its store and workflows: global options, command overrides, app imports."""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import typer

from kernos import errors

__all__ = [
    "APP_HELP",
    "DEFAULT_STORE",
    "STORE_HELP",
    "AppOption",
    "JsonOption",
    "RunArgument",
    "Settings",
    "StoreOption",
    "import_apps",
    "resolve",
    "split_apps",
]

DEFAULT_STORE = "sqlite:///kernos.db"

STORE_HELP = "Store URL: sqlite:///rel.db, sqlite:////abs/path.db or postgresql://user@host/db."
APP_HELP = (
    "Module that defines your workflows, imported so they are registered: a dotted name "
    "(myapp.workflows) or a file (path/to/flows.py). Repeatable or comma-separated."
)
COMMAND_STORE_HELP = f"{STORE_HELP} Overrides the global --store and $KERNOS_STORE."
COMMAND_APP_HELP = f"{APP_HELP} Adds to the global --app and $KERNOS_APP."

StoreOption = Annotated[
    str | None, typer.Option("--store", help=COMMAND_STORE_HELP, show_default=False, metavar="URL")
]
AppOption = Annotated[
    list[str] | None,
    typer.Option("--app", help=COMMAND_APP_HELP, show_default=False, metavar="MODULE"),
]
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print one JSON document on stdout instead of tables.")
]
RunArgument = Annotated[
    str, typer.Argument(help="The run's id.", metavar="RUN", show_default=False)
]


@dataclass(frozen=True, slots=True)
class Settings:
    """The store URL and app modules one command works with."""

    store: str = DEFAULT_STORE
    apps: tuple[str, ...] = field(default=())


def split_apps(values: list[str] | None) -> tuple[str, ...]:
    """``["a,b", "c"]`` -> ``("a", "b", "c")``."""
    names = (part.strip() for value in values or () for part in value.split(","))
    return tuple(name for name in names if name)


def resolve(
    ctx: typer.Context, *, store: str | None = None, apps: list[str] | None = None
) -> Settings:
    """Combine the global options with a command's own ``--store`` and ``--app``."""
    root = ctx.find_object(Settings) or Settings()
    merged = root.apps + tuple(name for name in split_apps(apps) if name not in root.apps)
    return Settings(store=store or root.store, apps=merged)


def import_apps(names: tuple[str, ...]) -> None:
    """Import each app module (dotted name or ``.py`` file) so its workflows register.

    Raises:
        ConfigError: a module cannot be found or fails while importing.
    """
    # A console script's sys.path starts at its own bin directory; users expect
    # `--app myapp.flows` to resolve from where they stand, as `python -m` does.
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    for name in names:
        try:
            if name.endswith(".py") or os.sep in name:
                _import_file(Path(name))
            else:
                importlib.import_module(name)
        except errors.KernosError:
            raise
        except Exception as exc:
            raise errors.ConfigError(
                f"cannot import app module {name!r}: {type(exc).__name__}: {exc}; pass a "
                "dotted module name importable from the current directory or a .py file path",
                module=name,
            ) from exc


def _import_file(path: Path) -> None:
    if not path.is_file():
        raise FileNotFoundError(f"no file {str(path)!r}")
    resolved = path.resolve()
    # Sibling imports in the file work as they would for `python path/to/file.py`.
    if str(resolved.parent) not in sys.path:
        sys.path.insert(0, str(resolved.parent))
    module_name = resolved.stem
    existing = sys.modules.get(module_name)
    if existing is not None and getattr(existing, "__file__", None) == str(resolved):
        return
    spec = importlib.util.spec_from_file_location(module_name, resolved)
    if spec is None or spec.loader is None:
        raise ImportError(f"{str(path)!r} is not a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
