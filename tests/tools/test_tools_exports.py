"""`kernos.tools` exports what it documents, and `import kernos` does not load it."""

from __future__ import annotations

import inspect
import subprocess
import sys
import types

import kernos
import kernos.tools


def test_all_names_exist_and_are_documented() -> None:
    for name in kernos.tools.__all__:
        value = getattr(kernos.tools, name)
        if inspect.isclass(value) or inspect.isroutine(value):  # not type aliases
            assert value.__doc__, f"kernos.tools.{name} has no docstring"


def test_exports_match_public_names() -> None:
    public = {
        name
        for name, value in vars(kernos.tools).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public == set(kernos.tools.__all__)


def test_kernos_tool_is_lazy() -> None:
    code = (
        "import sys, kernos\n"
        "assert 'kernos.tools' not in sys.modules and 'pydantic' not in sys.modules\n"
        "assert kernos.tool.__doc__\n"
        "@kernos.tool\n"
        "def ping(x: int) -> int:\n"
        "    '''Ping.'''\n"
        "    return x\n"
        "print(type(ping).__name__, 'kernos.tools' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["Tool", "True"]
    assert "tool" in kernos.__all__
