"""Type aliases shared across Kernos."""

from __future__ import annotations

from typing import TypeAlias

JSON: TypeAlias = "dict[str, JSON] | list[JSON] | str | int | float | bool | None"
"""A value that round-trips through JSON unchanged."""

__all__ = ["JSON"]
