"""Tools agents call: ``@tool``, files, web fetch, export, the sandboxed shell; tool policy.

Not imported by ``import kernos``; import ``kernos.tools`` where tools are used.
"""

from kernos.tools._export import export_tools, to_csv, to_pdf
from kernos.tools._fetch import Fetcher, FetchPolicy, FetchResult
from kernos.tools._html import html_to_text
from kernos.tools._policy import (
    Action,
    ApprovalDefault,
    Approvers,
    CallContext,
    Decision,
    Escalation,
    Rule,
    ToolPolicy,
    strictest,
)
from kernos.tools._policy_yaml import (
    BudgetLimits,
    PolicyBudgets,
    PolicyDocument,
    PolicyProblem,
    check_policy,
    parse_policy,
    policy_sha256,
)
from kernos.tools._sandbox import SandboxKind, SandboxMode, ShellLimits
from kernos.tools._shell import ShellResult, ShellTool
from kernos.tools._tool import Tool, ToolResult, tool
from kernos.tools._toolbox import Toolbox
from kernos.tools._workspace import Workspace

__all__ = [
    "Action",
    "ApprovalDefault",
    "Approvers",
    "BudgetLimits",
    "CallContext",
    "Decision",
    "Escalation",
    "FetchPolicy",
    "FetchResult",
    "Fetcher",
    "PolicyBudgets",
    "PolicyDocument",
    "PolicyProblem",
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
    "check_policy",
    "export_tools",
    "html_to_text",
    "parse_policy",
    "policy_sha256",
    "strictest",
    "to_csv",
    "to_pdf",
    "tool",
]
