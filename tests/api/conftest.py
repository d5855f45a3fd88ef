"""Fixtures of the API tests: a live server per test, on each backend."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from api_support import Live, live_server


@pytest.fixture
async def live(store_url: str) -> AsyncIterator[Live]:
    """A real server on loopback over this test's own database, with an admin key."""
    async with live_server(store_url) as server:
        yield server
