"""A queue worker for the chaos tests (``test_worker_torture.py``), run as a subprocess by path.

It serves the ``torture`` queue only. Steps append ``run_id,step,pid,time`` to the
fsync'ed side-effect ledger of ``torture_worker.py`` before they return, so a test
can count how often each step really executed, whatever the journal says.

Usage::

    chaos_worker.py work URL LEDGER [--concurrency N] [--lease S]

It claims and executes runs until killed (SIGTERM stops it cleanly). The test
process imports this module too, for the workflow objects it enqueues.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal

from torture_worker import LEDGER_ENV, append_ledger

import kernos

QUEUE = "torture"
STEPS = 5
CONCURRENCY = 8
LEASE = 1.5

# Ledger marks of the long step (its start is recorded as step 1).
INTERRUPTED = -1
COMPLETED = 101

torture_queue = kernos.Queue(QUEUE)


@kernos.step(name="chaos_step")
async def chaos_step(run_id: str, index: int) -> str:
    # Random pauses on both sides of the side effect, so kills and freezes land
    # before it, after it but before the journal write, and between steps.
    await asyncio.sleep(random.uniform(0.0, 0.12))
    await asyncio.to_thread(append_ledger, run_id, index)
    await asyncio.sleep(random.uniform(0.0, 0.12))
    return f"{run_id}:{index}"


@kernos.workflow(name="chaos", version="1")
async def chaos(run_id: str) -> list[str]:
    return [await chaos_step(run_id, index) for index in range(STEPS)]


@kernos.step(name="long_step")
async def long_step(run_id: str, seconds: float) -> str:
    append_ledger(run_id, 1)
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        append_ledger(run_id, INTERRUPTED)
        raise
    append_ledger(run_id, COMPLETED)
    return f"{run_id}:1"


@kernos.workflow(name="chaos_long", version="1")
async def chaos_long(run_id: str, seconds: float) -> list[str]:
    done = [await chaos_step(run_id, 0), await long_step(run_id, seconds)]
    return done + [await chaos_step(run_id, index) for index in range(2, STEPS)]


async def work(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with kernos.Kernos(
        args.url,
        worker=True,
        queues=[QUEUE],
        concurrency=args.concurrency,
        lease=args.lease,
        poll_interval=0.05,
    ):
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["work"])
    parser.add_argument("url")
    parser.add_argument("ledger")
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY)
    parser.add_argument("--lease", type=float, default=LEASE)
    args = parser.parse_args()
    os.environ[LEDGER_ENV] = args.ledger
    asyncio.run(work(args))


if __name__ == "__main__":
    main()
