"""Fixtures of the dashboard tests: a live server with the dashboard per test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from web_support import Site, live_site


@pytest.fixture
async def site(store_url: str) -> AsyncIterator[Site]:
    """The API and dashboard on loopback over this test's own database."""
    async with live_site(store_url) as server:
        yield server
