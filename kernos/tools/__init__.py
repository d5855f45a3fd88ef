"""Tools agents call: ``@tool``, workspace files, the sandboxed shell; tool policy.

Not imported by ``import kernos``; import ``kernos.tools`` where tools are used.
"""

from kernos.tools._policy import Action, Decision, Rule, ToolPolicy, strictest
from kernos.tools._sandbox import SandboxKind, SandboxMode, ShellLimits
from kernos.tools._shell import ShellResult, ShellTool
from kernos.tools._tool import Tool, ToolResult, tool
from kernos.tools._toolbox import Toolbox
from kernos.tools._workspace import Workspace

__all__ = [
    "Action",
    "Decision",
    "Rule",
    "SandboxKind",
    "SandboxMode",
    "ShellLimits",
    "ShellResult",
    "ShellTool",
    "Tool",
    "ToolPolicy",
    "ToolResult",
    "Toolbox",
    "Workspace",
    "strictest",
    "tool",
]
