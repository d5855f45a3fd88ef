"""Helpers shared by the runtime integration tests (tests/integration/test_runtime_*.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import kernos
from kernos import errors
from kernos.records import RunStatus


def make_gate(gates: dict[str, asyncio.Event]) -> Callable[[str], asyncio.Event]:
    """Return ``gate(key)``: the event for ``key`` in ``gates``, created on first use."""

    def gate(key: str) -> asyncio.Event:
        return gates.setdefault(key, asyncio.Event())

    return gate


def new_app(
    url: str,
    *,
    poll_interval: float = 0.05,
    inline_wait: float = 0.2,
    lease: float = 5.0,
    **options: Any,
) -> kernos.Kernos:
    """An app on ``url`` with fast test timings; ``options`` go to ``kernos.Kernos``."""
    return kernos.Kernos(
        url, poll_interval=poll_interval, inline_wait=inline_wait, lease=lease, **options
    )


async def until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait until ``predicate()`` holds; fail after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + timeout
    while not predicate():
        if loop.time() > give_up:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


async def run_status(app: kernos.Kernos, run_id: str, *wanted: RunStatus) -> kernos.Run:
    """Wait (up to 10 s) until run ``run_id`` exists with a status in ``wanted``."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + 10.0
    while True:
        try:
            run: kernos.Run | None = await app.get_run(run_id)
        except errors.RunNotFoundError:  # a child not created yet
            run = None
        if run is not None and run.status in wanted:
            return run
        if loop.time() > give_up:
            raise AssertionError(f"run {run_id} is {run and run.status}, not {wanted}")
        await asyncio.sleep(0.02)
