"""Shared by the agent tests: the fake model's key and name, apps with fast timings."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import kernos
from kernos import agents, llm
from kernos.testing import FakeServer

KEY = "sk-agent-test-0123456789"
MODEL = "openai:gpt-4o-mini"

MakeAgent = Callable[..., agents.Agent]
"""The ``make_agent`` fixture: ``make_agent(tools=[...], budget=..., ...)`` builds an agent."""


def source(fake: FakeServer, model: str = MODEL) -> Callable[[], llm.Provider]:
    """Connects ``model`` to ``fake`` on first use, without retries (the fake fails on cue)."""

    def connect() -> llm.Provider:
        return llm.connect(model, base_url=fake.url, api_key=KEY, retries=0)

    return connect


def new_app(url: str, **options: Any) -> kernos.Kernos:
    """An app on ``url`` with fast test timings."""
    options.setdefault("poll_interval", 0.05)
    options.setdefault("inline_wait", 0.2)
    options.setdefault("lease", 5.0)
    return kernos.Kernos(url, **options)


async def until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait until ``predicate()`` holds; fail after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + timeout
    while not predicate():
        if loop.time() > give_up:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


def tool_messages(body: Any) -> list[dict[str, Any]]:
    """The tool-result messages of an OpenAI chat request body."""
    return [m for m in body["messages"] if m["role"] == "tool"]
