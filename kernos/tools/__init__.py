"""Tools agents call: ``@tool`` and workspace files.

Not imported by ``import kernos``; import ``kernos.tools`` where tools are used.
"""

from kernos.tools._tool import Tool, ToolResult, tool
from kernos.tools._workspace import Workspace

__all__ = [
    "Tool",
    "ToolResult",
    "Workspace",
    "tool",
]
