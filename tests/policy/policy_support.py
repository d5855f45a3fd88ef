"""Shared by the policy tests: the agent tests' and API tests' helpers, and policies.

``agent_support`` (tests/agents) and ``api_support`` (tests/api) are the same
modules those suites import, loaded by putting their folders on the path.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

_TESTS = Path(__file__).parents[1]
for _folder in ("agents", "api"):
    if str(_TESTS / _folder) not in sys.path:
        sys.path.insert(0, str(_TESTS / _folder))

agent_support: ModuleType = importlib.import_module("agent_support")
api_support: ModuleType = importlib.import_module("api_support")
routes_support: ModuleType = importlib.import_module("routes_support")

DENY_SHELL = """\
version: 1
default: allow
rules:
  - id: no-shell
    tools: shell
    action: deny
    reason: no shell for agents
"""
