"""Workflows and queues of the queue limit tests; run as a script, a worker process.

Every execution of the ``qt_busy`` step appends one line to a ledger file (one
``O_APPEND`` write): ``run_id,queue,key,pid,start,end``, with ``start`` and
``end`` taken inside the step (``time.time()``, one clock for every process on
the host). The step runs while its run holds a slot, so the ledger's intervals
are a lower bound of what really ran at once.

Usage (as a subprocess)::

    queue_worker.py URL QUEUE[,QUEUE...] [READY_FILE]

declares the queues, opens ``Kernos(URL, queues=[...], poll_interval=0.02)`` and
works until SIGTERM; READY_FILE, if given, is created once the worker is open.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import kernos

LIMITED = "qt_limited"  # concurrency 3, 1 per key
RATED = "qt_rated"  # 5 starts per second
LIMITS = {
    LIMITED: {"concurrency": 3, "key_concurrency": 1},
    RATED: {"rate_limit": 5, "rate_period": 1.0},
}


def declare() -> list[kernos.Queue]:
    """Declare the queues of these tests; declarations are global, so a test
    that calls this must undo it (``test_queues.py`` does, for every test)."""
    return [kernos.Queue(name, **options) for name, options in LIMITS.items()]  # type: ignore[arg-type]


def append_line(path: str, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


@kernos.step(name="qt_busy_step")
async def busy_step(run_id: str, ledger: str, queue: str, key: str, pause: float) -> float:
    start = time.time()
    await asyncio.sleep(pause)
    end = time.time()
    line = f"{run_id},{queue},{key},{os.getpid()},{start:.6f},{end:.6f}\n"
    await asyncio.to_thread(append_line, ledger, line)
    return end - start


@kernos.workflow(name="qt_busy")
async def busy(ledger: str, queue: str, key: str, pause: float) -> float:
    return await busy_step(kernos.current_run_id(), ledger, queue, key, pause)


@dataclass(frozen=True, slots=True)
class Interval:
    """One ledger line: a step execution."""

    run_id: str
    queue: str
    key: str
    pid: int
    start: float
    end: float


def read_ledger(path: Path) -> list[Interval]:
    if not path.exists():
        return []
    found = []
    for line in path.read_text().splitlines():
        run_id, queue, key, pid, start, end = line.split(",")
        found.append(Interval(run_id, queue, key, int(pid), float(start), float(end)))
    return found


async def work(url: str, queues: list[str], ready: str | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    declare()
    async with kernos.Kernos(url, poll_interval=0.02, queues=queues):
        if ready:
            await asyncio.to_thread(Path(ready).touch)
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(
        work(sys.argv[1], sys.argv[2].split(","), sys.argv[3] if len(sys.argv) > 3 else None)
    )
