"""A Kernos process for the crash and restart tests, run as a subprocess by path.

Every step appends ``run_id,step,pid,time`` to a side-effect ledger (one
``O_APPEND`` write, fsync'ed before the step returns), so a test can count how
often each step really executed, whatever the journal says.

Usage::

    torture_worker.py work  URL LEDGER [--concurrency N] [--lease S] [--inline-wait S]
    torture_worker.py start URL LEDGER WORKFLOW RUN_ID ARGS_JSON [--inline-wait S] [--linger]

``work`` claims and executes runs until killed (SIGTERM stops it cleanly).
``start`` starts one run in this process (which claims nothing), waits until
it suspends, and exits cleanly, or with ``--linger`` stays up until killed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import time
from typing import Any

import kernos

LEDGER_ENV = "KERNOS_TEST_LEDGER"


def append_ledger(run_id: str, index: int) -> None:
    """Record that step ``index`` of ``run_id`` executed, durably, in one append."""
    line = f"{run_id},{index},{os.getpid()},{time.time():.6f}\n".encode()
    fd = os.open(os.environ[LEDGER_ENV], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


# -- the crash torture workflow ------------------------------------------------------


@kernos.step(name="torture_step")
async def torture_step(run_id: str, index: int) -> str:
    # Random pauses on both sides of the side effect, so kills land before it,
    # after it but before the journal write, and between steps.
    await asyncio.sleep(random.uniform(0.0, 0.08))
    await asyncio.to_thread(append_ledger, run_id, index)
    await asyncio.sleep(random.uniform(0.0, 0.08))
    return f"{run_id}:{index}"


@kernos.workflow(name="torture", version="1")
async def torture(run_id: str) -> list[str]:
    return [await torture_step(run_id, index) for index in range(5)]


# -- the restart workflows -------------------------------------------------------------


@kernos.step(name="mark")
async def mark(run_id: str, index: int, pause: float = 0.0) -> str:
    await asyncio.to_thread(append_ledger, run_id, index)
    await asyncio.sleep(pause)
    return f"{run_id}:{index}"


@kernos.workflow(name="timer_then_mark", version="1")
async def timer_then_mark(run_id: str, seconds: float) -> list[str]:
    before = await mark(run_id, 0)
    await kernos.sleep(seconds)
    return [before, await mark(run_id, 1)]


@kernos.workflow(name="slow_then_recv", version="1")
async def slow_then_recv(run_id: str, pause: float) -> list[Any]:
    await mark(run_id, 0, pause)
    first = await kernos.recv("notes", timeout=120)
    second = await kernos.recv("notes", timeout=120)
    await mark(run_id, 1)
    return [first, second]


@kernos.workflow(name="marks", version="1")
async def marks(run_id: str, pauses: list[float]) -> list[str]:
    return [await mark(run_id, index, pause) for index, pause in enumerate(pauses)]


# -- entry point -------------------------------------------------------------------------


async def work(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with kernos.Kernos(
        args.url,
        worker=True,
        concurrency=args.concurrency,
        lease=args.lease,
        poll_interval=0.05,
        inline_wait=args.inline_wait,
    ):
        await stop.wait()


async def start(args: argparse.Namespace) -> None:
    workflow = {wf.name: wf for wf in (torture, timer_then_mark, slow_then_recv, marks)}[
        args.workflow
    ]
    async with kernos.Kernos(
        args.url, worker=False, lease=args.lease, poll_interval=0.05, inline_wait=args.inline_wait
    ) as app:
        handle = await app.start(workflow, *json.loads(args.args), run_id=args.run_id)
        while True:
            if await handle.status() is kernos.RunStatus.WAITING:
                break
            await asyncio.sleep(0.02)
        if args.linger:  # stay up until killed, holding nothing
            await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["work", "start"])
    parser.add_argument("url")
    parser.add_argument("ledger")
    parser.add_argument("workflow", nargs="?")
    parser.add_argument("run_id", nargs="?")
    parser.add_argument("args", nargs="?", default="[]")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--lease", type=float, default=2.0)
    parser.add_argument("--inline-wait", type=float, default=1.0)
    parser.add_argument("--linger", action="store_true")
    args = parser.parse_args()
    os.environ[LEDGER_ENV] = args.ledger
    asyncio.run(work(args) if args.mode == "work" else start(args))


if __name__ == "__main__":
    main()
