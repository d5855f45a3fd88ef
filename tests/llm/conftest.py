"""Fixtures for provider tests: one fake server per provider, adapters pointed at them.

The fakes run once per session; each test gets a clean one (no replies queued, no
requests recorded, no key or model checks, no latency). Tests parametrized over
``kind`` run against OpenAI, Anthropic and Ollama alike.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
from llm_support import FAST_RETRIES, KEY, KINDS, Kind

from kernos import llm
from kernos.testing import FakeServer

Connect = Callable[..., Awaitable[llm.Provider]]


@pytest.fixture(scope="session")
def servers() -> Iterator[dict[str, FakeServer]]:
    """The three fake servers, started once."""
    started = {name: kind.fake().start() for name, kind in KINDS.items()}
    try:
        yield started
    finally:
        for server in started.values():
            server.stop()


def _clean(server: FakeServer) -> None:
    server.reset()
    server.api_key = None
    server.models = None
    server.latency = 0.0
    server.default = None
    server.responder = None


@pytest.fixture(params=list(KINDS))
def kind(request: pytest.FixtureRequest) -> Kind:
    """Each provider in turn."""
    return KINDS[request.param]


@pytest.fixture
def fake(kind: Kind, servers: dict[str, FakeServer]) -> Iterator[FakeServer]:
    """This provider's fake server, clean."""
    server = servers[kind.name]
    _clean(server)
    yield server
    _clean(server)


@pytest.fixture
async def connect(kind: Kind, fake: FakeServer) -> AsyncIterator[Connect]:
    """Connect this provider to its fake (fast retries, the test key); closed after the test."""
    opened: list[llm.Provider] = []

    async def make(**options: Any) -> llm.Provider:
        options.setdefault("base_url", fake.url)
        options.setdefault("api_key", KEY)
        options.setdefault("retries", FAST_RETRIES)
        provider = llm.connect(options.pop("model", kind.model_string), **options)
        opened.append(provider)
        return provider

    yield make
    for provider in opened:
        await provider.aclose()


@pytest.fixture
async def provider(connect: Connect) -> llm.Provider:
    """This provider, connected to its fake."""
    return await connect()
