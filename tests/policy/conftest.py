"""Fixtures of the policy tests: agents on the fake OpenAI server, apps, live servers."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from policy_support import agent_support, api_support

import kernos
from kernos import agents
from kernos.testing import FakeOpenAI

_numbers = itertools.count()


@pytest.fixture
async def make_agent(
    fake: FakeOpenAI, request: pytest.FixtureRequest
) -> AsyncIterator[Callable[..., agents.Agent]]:
    """Build agents on the fake, named for their test (the registry is process-wide)."""
    made: list[agents.Agent] = []
    base = "".join(c if c.isalnum() else "-" for c in request.node.name)[:60]

    def make(**options: Any) -> agents.Agent:
        options.setdefault("name", f"{base}-{next(_numbers)}")
        options.setdefault("model", agent_support.MODEL)
        options.setdefault("provider", agent_support.source(fake))
        agent = agents.Agent(**options)
        made.append(agent)
        return agent

    yield make
    for agent in made:
        await agent.aclose()


@pytest.fixture
async def app(store_url: str) -> AsyncIterator[kernos.Kernos]:
    """An app on this test's store (SQLite and PostgreSQL)."""
    async with agent_support.new_app(store_url) as opened:
        yield opened


@pytest.fixture
async def live(store_url: str) -> AsyncIterator[Any]:
    """A real API server on loopback over this test's database, with an admin key."""
    async with api_support.live_server(store_url) as server:
        yield server
