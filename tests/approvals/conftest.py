"""Fixtures of the approval tests: the shared store fixtures (tests/conftest.py) on
SQLite and PostgreSQL, and a controllable clock."""

from __future__ import annotations

import pytest
from approvals_support import Clock


@pytest.fixture
def clock() -> Clock:
    """A clock the test moves forward; pass it to the app as ``clock=``."""
    return Clock()
