"""Fixtures for the agent tests: agents pointed at the fake OpenAI server, apps.

The fake (``fake`` in tests/conftest.py) runs once per session; each test gets it
clean (no replies queued, no requests recorded). Agents get names unique to their
test (the workflow registry is process-wide) and are closed after it.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from typing import Any

import pytest
from agent_support import MODEL, MakeAgent, new_app, source

import kernos
from kernos import agents
from kernos.testing import FakeOpenAI

_numbers = itertools.count()


@pytest.fixture
async def make_agent(fake: FakeOpenAI, request: pytest.FixtureRequest) -> AsyncIterator[MakeAgent]:
    """Build agents on the fake: ``make_agent(tools=[...], budget=..., ...)``."""
    made: list[agents.Agent] = []
    base = "".join(c if c.isalnum() else "-" for c in request.node.name)[:60]

    def make(**options: Any) -> agents.Agent:
        options.setdefault("name", f"{base}-{next(_numbers)}")
        options.setdefault("model", MODEL)
        options.setdefault("provider", source(fake))
        agent = agents.Agent(**options)
        made.append(agent)
        return agent

    yield make
    for agent in made:
        await agent.aclose()


@pytest.fixture
async def app(store_url: str) -> AsyncIterator[kernos.Kernos]:
    """An app on this test's store (SQLite and PostgreSQL)."""
    async with new_app(store_url) as opened:
        yield opened
