"""The `kernos` command line: inspect, cancel, fork and replay runs; migrate the store.

Every command is a thin call into :class:`kernos.Kernos` (never opened as a
worker unless it must execute a fork), so the CLI reads what the API serves.
"""

from kernos.cli._app import app, main

__all__ = ["app", "main"]
