"""The public surface: what `kernos` exports, and the downward-only layering rule."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import kernos
import kernos.errors

PACKAGE = Path(kernos.__file__).parent

# Each layer may import only the layers listed for it (and the core modules).
CORE = {"_netaddr", "errors", "records", "retry", "serialization", "types"}
ALLOWED = {
    "store": {"store"},
    "runtime": {"store", "runtime"},
    "llm": {"llm"},
    "tools": {"tools", "llm"},
    "agents": {"agents", "runtime", "store", "llm", "tools"},
    "testing": {"testing", "llm"},
    # Policies are tool policies: the control plane checks, stores and tests them.
    "control": {"store", "runtime", "control", "tools"},
    "api": {"store", "runtime", "control", "api"},
    # The dashboard renders what the Service returns; the API mounts it through a hook.
    "web": {"store", "runtime", "control", "api", "web"},
    # `kernos up` hosts the API server and the dashboard, so the CLI may start them.
    "cli": {"store", "runtime", "control", "api", "web", "cli"},
}


def test_all_names_exist_and_are_documented() -> None:
    for name in kernos.__all__:
        value = getattr(kernos, name)
        if callable(value) and name != "errors":
            assert value.__doc__, f"kernos.{name} has no docstring"


def test_exports_match_public_names() -> None:
    public = {name for name in vars(kernos) if not name.startswith("_")}
    modules = {"errors", "records", "retry", "runtime", "serialization", "store", "types"}
    modules |= {"agents", "api", "cli", "control", "llm", "testing", "tools", "web"}  # by tests
    assert public - modules == set(kernos.__all__) - {"__version__", "errors"}


def test_every_error_is_exported_and_has_a_code() -> None:
    for name in kernos.errors.__all__:
        cls = getattr(kernos.errors, name)
        assert issubclass(cls, BaseException)
        if issubclass(cls, kernos.errors.KernosError):
            assert (cls.code and cls.code != "kernos_error") or cls is kernos.errors.KernosError


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("kernos."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("kernos."):
                    found.add(alias.name.split(".")[1])
    return found


def test_layers_import_downward_only() -> None:
    for layer, allowed in ALLOWED.items():
        assert (PACKAGE / layer).is_dir(), f"no layer {layer}"
        for path in (PACKAGE / layer).rglob("*.py"):
            bad = _imports(path) - allowed - CORE
            assert not bad, f"{path.relative_to(PACKAGE)} imports higher layers {bad}"
    for core in CORE:
        bad = _imports(PACKAGE / f"{core}.py") - CORE
        assert not bad, f"core module {core}.py imports {bad}"


def test_import_kernos_stays_light() -> None:
    code = (
        "import sys, kernos\n"
        "heavy = {'typer', 'rich', 'psycopg', 'pydantic', 'fastapi'} & set(sys.modules)\n"
        "print(','.join(sorted(heavy)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_every_layer_has_an_import_rule() -> None:
    layers = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert layers <= set(ALLOWED), f"layers without an import rule: {layers - set(ALLOWED)}"
