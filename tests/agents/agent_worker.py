"""A Kernos process running one agent, for the agent crash test; run as a subprocess by path.

The agent's one tool, ``record(n)``, writes ``start n pid`` to a side-effect
ledger (one fsync'ed append), SIGKILLs its own process on call ``KILL_AT`` the
first time (a marker file says it happened), then writes ``done n pid``. The
model is the fake OpenAI server at ``KERNOS_TEST_FAKE_URL``.

Usage::

    agent_worker.py start URL RUN_ID    # start the run here; killed on call KILL_AT
    agent_worker.py work URL            # claim and execute runs until SIGTERM

Environment: ``KERNOS_TEST_FAKE_URL``, ``KERNOS_TEST_LEDGER``, ``KERNOS_TEST_MARKER``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import kernos
from kernos import agents, llm, tools

KILL_AT = 4
LEASE = 60.0  # far longer than the test: the run is taken over because its worker died


def append(line: str) -> None:
    """One durable append to the ledger."""
    fd = os.open(os.environ["KERNOS_TEST_LEDGER"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{line} {os.getpid()}\n".encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def begin(n: int) -> None:
    """Log the start of call ``n``; on call ``KILL_AT``, the first time, die."""
    append(f"start {n}")
    marker = Path(os.environ["KERNOS_TEST_MARKER"])
    if n == KILL_AT and not marker.exists():
        marker.write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)


@tools.tool
async def record(n: int) -> str:
    """Record that call ``n`` happened.

    Args:
        n: the call's number.
    """
    await asyncio.to_thread(begin, n)
    await asyncio.to_thread(append, f"done {n}")
    return f"recorded {n}"


def connect() -> llm.Provider:
    return llm.connect(
        "openai:gpt-4o-mini", base_url=os.environ["KERNOS_TEST_FAKE_URL"], api_key="k", retries=0
    )


recorder = agents.Agent("crash-recorder", "openai:gpt-4o-mini", tools=[record], provider=connect)


async def start(url: str, run_id: str) -> None:
    async with kernos.Kernos(url, lease=LEASE, poll_interval=0.05) as app:
        handle = await recorder.start(app, "record four calls", run_id=run_id)
        await handle.result()


async def work(url: str) -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with kernos.Kernos(url, lease=LEASE, poll_interval=0.05):
        await stop.wait()
    await recorder.aclose()


if __name__ == "__main__":
    mode, store_url, *rest = sys.argv[1:]
    if mode == "start":
        asyncio.run(start(store_url, rest[0]))
    else:
        asyncio.run(work(store_url))
