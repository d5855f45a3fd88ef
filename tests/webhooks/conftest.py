"""Fixtures of the webhook tests: a live server that allows loopback receivers and
retries fast, and a receiver on loopback.

``api_support`` and ``routes_support`` are the modules tests/api imports (one copy
of each in the process, so the workflows they register are registered once).
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "api"))

from api_support import Live, live_server
from webhook_support import FAST, Receiver, receiver


@pytest.fixture
async def live(store_url: str) -> AsyncIterator[Live]:
    """A real server on loopback over this test's database, webhooks to loopback allowed."""
    async with live_server(store_url, settings=FAST) as server:
        yield server


@pytest.fixture
def hook_receiver() -> Iterator[Receiver]:
    """A receiver on loopback that verifies each request's signature."""
    with receiver() as state:
        yield state
