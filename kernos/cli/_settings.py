"""Where the CLI works: a server (URL and API key) or a store; the config file; app imports.

A command talks to a Kernos server when a URL is configured and to a store
directly otherwise. The first of these that says anything decides:

1. the command line: ``--store`` (local) or ``--url`` (server); both is an error;
2. the environment: ``KERNOS_URL`` (server), else ``KERNOS_STORE`` (local);
3. the config file (``$KERNOS_CONFIG``, default ``~/.config/kernos/config.toml``):
   ``url`` (server);
4. the default store, ``sqlite:///kernos.db``.

The API key comes from ``--api-key``, ``KERNOS_API_KEY`` or the config file's
``api_key`` (only sent to the config file's own ``url`` when it names one). A
config file holding a key must be readable by its owner only.
"""

from __future__ import annotations

import enum
import importlib
import importlib.util
import os
import stat
import sys
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

import typer

from kernos import errors
from kernos.records import DEFAULT_TENANT

__all__ = [
    "API_KEY_HELP",
    "APP_HELP",
    "DEFAULT_STORE",
    "STORE_HELP",
    "TENANT_HELP",
    "URL_HELP",
    "AppOption",
    "Config",
    "JsonOption",
    "Local",
    "Remote",
    "RunArgument",
    "Settings",
    "Source",
    "StoreOption",
    "YesOption",
    "config_path",
    "import_apps",
    "load_config",
    "normalize_url",
    "resolve",
    "split_apps",
]

DEFAULT_STORE = "sqlite:///kernos.db"
API_PATH = "/api/v1"

STORE_HELP = "Store URL: sqlite:///rel.db, sqlite:////abs/path.db or postgresql://user@host/db."
URL_HELP = (
    "The Kernos server to talk to, e.g. http://127.0.0.1:8420 (started with `kernos up`). "
    "Without it (or url in the config file) commands use the store directly."
)
API_KEY_HELP = (
    "API key for --url (kn_...). Prefer $KERNOS_API_KEY or the config file: a command "
    "line is visible to other users of the machine."
)
TENANT_HELP = (
    "With a local store: act in this tenant (as the installation itself, with every "
    "permission). A server takes the tenant from the API key."
)
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
YesOption = Annotated[
    bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.", show_default=False)
]
RunArgument = Annotated[
    str, typer.Argument(help="The run's id.", metavar="RUN", show_default=False)
]


class Source(enum.Enum):
    """Where a setting came from; the command line beats the environment beats the file."""

    COMMAND_LINE = "command line"
    ENVIRONMENT = "environment"
    CONFIG = "config file"
    DEFAULT = "default"


@dataclass(frozen=True, slots=True)
class Remote:
    """Talk to a server at ``url`` (its base, without /api/v1) with ``api_key``."""

    url: str
    api_key: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class Local:
    """Use the store at ``store`` directly, acting in ``tenant`` as the system."""

    store: str
    tenant: str = DEFAULT_TENANT


@dataclass(frozen=True, slots=True)
class Config:
    """What the config file says (both fields optional)."""

    path: Path
    url: str | None = None
    api_key: str | None = field(default=None, repr=False)


CONFIG_KEYS = ("url", "api_key")


def config_path() -> Path:
    """``$KERNOS_CONFIG``, else ``$XDG_CONFIG_HOME/kernos/config.toml`` (``~/.config``)."""
    explicit = os.environ.get("KERNOS_CONFIG")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "kernos" / "config.toml"


def load_config(path: Path) -> Config:
    """Read the config file at ``path`` (a missing file is an empty config).

    Raises:
        ConfigError: the file is not valid TOML, has unknown or mistyped
            settings, or holds an API key while group or others may read it.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return Config(path=path)
    except OSError as exc:
        raise errors.ConfigError(
            f"cannot read the config file {str(path)!r}: {exc.strerror}", path=str(path)
        ) from None
    try:
        data = tomllib.loads(raw.decode())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        # The decoder's message names a line and column, never the text there.
        raise errors.ConfigError(
            f"the config file {str(path)!r} is not valid TOML ({exc})", path=str(path)
        ) from None
    unknown = sorted(set(data) - set(CONFIG_KEYS))
    if unknown:
        raise errors.ConfigError(
            f"unknown setting(s) {', '.join(unknown)} in the config file {str(path)!r}; "
            f"known: {', '.join(CONFIG_KEYS)}",
            path=str(path),
        )
    for key in CONFIG_KEYS:
        if key in data and not isinstance(data[key], str):
            raise errors.ConfigError(
                f"{key} in the config file {str(path)!r} must be a string", path=str(path)
            )
    if "api_key" in data:
        _require_private(path)
    return Config(path=path, url=data.get("url") or None, api_key=data.get("api_key") or None)


def _require_private(path: Path) -> None:
    if os.name != "posix":
        return
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise errors.ConfigError(
            f"the config file {str(path)!r} holds an API key but other users may read it "
            f"(mode {mode:o}); run `chmod 600 {path}` and try again",
            path=str(path),
        )


def normalize_url(url: str) -> str:
    """The server's base URL: no trailing slash, no ``/api/v1``.

    Raises:
        ConfigError: not an http(s) URL with a host.
    """
    base = url.strip().rstrip("/")
    if base.endswith(API_PATH):
        base = base[: -len(API_PATH)]
    parts = urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise errors.ConfigError(
            f"server URL {url!r} is not an http(s) URL; pass e.g. --url http://127.0.0.1:8420",
            url=url,
        )
    if parts.username or parts.password:
        raise errors.ConfigError(
            "put no credentials in the server URL; pass the API key with --api-key, "
            "$KERNOS_API_KEY or the config file"
        )
    return base


@dataclass(frozen=True, slots=True)
class Settings:
    """The global options, each with where it came from, and the app modules to import."""

    store: str = DEFAULT_STORE
    apps: tuple[str, ...] = field(default=())
    url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    tenant: str = DEFAULT_TENANT
    store_source: Source = Source.DEFAULT
    url_source: Source = Source.DEFAULT
    tenant_source: Source = Source.DEFAULT

    def target(self) -> Remote | Local:
        """Decide between a server and the store (see the module docstring).

        Raises:
            UsageError: --url and --store both on the command line, or --tenant with a server.
            ConfigError: a server without an API key, or a bad URL or config file.
        """
        if self.store_source is Source.COMMAND_LINE:
            if self.url_source is Source.COMMAND_LINE:
                raise errors.UsageError(
                    "both --url and --store were given: pass --url to talk to a server, "
                    "--store to use a store directly"
                )
            return self._local()
        if self.url is not None:
            return self._remote(self.url, None)
        if self.store_source is Source.ENVIRONMENT:
            return self._local()
        config = load_config(config_path())
        if config.url is not None:
            return self._remote(config.url, config)
        return self._local()

    def _local(self) -> Local:
        return Local(store=self.store, tenant=self.tenant)

    def _remote(self, url: str, config: Config | None) -> Remote:
        base = normalize_url(url)
        if self.tenant_source is not Source.DEFAULT:
            raise errors.UsageError(
                "--tenant (or $KERNOS_TENANT) applies to a local store; a server acts in "
                "the tenant of the API key"
            )
        key = self.api_key
        if key is None:
            config = config or load_config(config_path())
            # A key in the file belongs to the file's server; never send it elsewhere.
            if config.url is None or normalize_url(config.url) == base:
                key = config.api_key
        if not key:
            raise errors.ConfigError(
                f"no API key for the server at {base}: pass --api-key, set KERNOS_API_KEY "
                f"or put api_key in {str(config_path())!r} (chmod 600)",
                url=base,
            )
        return Remote(url=base, api_key=key)


def source_of(ctx: typer.Context, name: str) -> Source:
    """Where the root option ``name`` came from."""
    found = ctx.get_parameter_source(name)
    kind = found.name if found is not None else None
    if kind == "COMMANDLINE":
        return Source.COMMAND_LINE
    if kind == "ENVIRONMENT":
        return Source.ENVIRONMENT
    return Source.DEFAULT


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
    if store is None:
        return replace(root, apps=merged)
    return replace(root, store=store, apps=merged, store_source=Source.COMMAND_LINE)


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
