"""Queue throughput and latency: jobs enqueued on a ``kernos.Queue``, run by worker processes.

The job is a workflow with one tiny step (it returns ``time.time()``). Workers are
separate processes, each ``kernos.Kernos(url, queues=["bench"], concurrency=N)``.
Modes (a fresh SQLite file / PostgreSQL database each):

- ``burst``: workers run while one producer enqueues one job per call, as fast as it can;
- ``preload``: enqueue every job first, then start the workers and drain the queue;
- ``steady``: jobs arrive at ``--rate`` per second (default 100/s, 2000 jobs).

Figures come from the store after the run (runs' ``created_at`` = enqueue time,
``started_at`` = claim, ``finished_at``); ``jobs_per_s`` is jobs / (last finish - first
enqueue), or for preload jobs / (last finish - worker start). Prints one JSON object.

    python benchmarks/queue.py --store postgres --mode burst --workers 4

(``queue.py`` runs this module; its own name would shadow the stdlib ``queue``.)
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import sys
import time
from pathlib import Path
from typing import Any

from _common import emit, log, percentile, scratch_dir, scratch_postgres
from _queuebench import (
    QUEUE,
    WORKFLOW,
    Timings,
    Workers,
    announce_ready,
    parser,
    produce,
    resolve,
    summarize,
    wait_done,
    wait_for_stdin_eof,
)

import kernos

bench = kernos.Queue(QUEUE)


@kernos.step
async def stamp() -> float:
    """The job's only step: when it ran."""
    return time.time()


@kernos.workflow(name=WORKFLOW)
async def job(i: int) -> float:
    return await stamp()


# -- worker process ---------------------------------------------------------------------


async def serve(args: argparse.Namespace) -> None:
    began = time.time()
    app = kernos.Kernos(
        args.url,
        queues=[QUEUE],
        concurrency=args.concurrency,
        poll_interval=args.poll_interval,
        durable=args.durability == "full",
    )
    await app.open()
    announce_ready(began, pid=os.getpid())
    await asyncio.to_thread(wait_for_stdin_eof)
    try:  # bounded, as in steps.py: close() can hang on Python 3.11 (see README)
        await asyncio.wait_for(app.close(), 10)
    except TimeoutError:
        log(f"worker {os.getpid()}: Kernos.close() did not return in 10 s; exiting anyway")


def worker_main(args: argparse.Namespace) -> None:
    if not args.profile:
        asyncio.run(serve(args))
        return
    profile = cProfile.Profile()
    profile.enable()
    try:
        asyncio.run(serve(args))
    finally:
        profile.disable()
        Path(args.profile).mkdir(parents=True, exist_ok=True)
        profile.dump_stats(str(Path(args.profile, f"worker-{args.index}.prof")))


def worker_commands(args: argparse.Namespace, url: str) -> list[list[str]]:
    base = [
        sys.executable,
        str(Path(__file__).with_name("queue.py")),
        "--role=worker",
        f"--url={url}",
        f"--concurrency={args.concurrency}",
        f"--poll-interval={args.poll_interval}",
        f"--durability={args.durability}",
    ]
    if args.profile:
        base.append(f"--profile={args.profile}")
    return [[*base, f"--index={k}"] for k in range(args.workers)]


# -- the run ------------------------------------------------------------------------------


async def run(args: argparse.Namespace, url: str) -> dict[str, Any]:
    workers = Workers(worker_commands(args, url))
    async with kernos.Kernos(url, worker=False, durable=args.durability == "full") as app:

        async def enqueue(i: int) -> None:
            await bench.enqueue(job, i)

        async def done() -> int:
            counts = await app.store.count_runs()
            return counts.get("succeeded", 0) + counts.get("failed", 0)

        try:
            if args.mode != "preload":
                workers.start()
                await workers.wait_ready()
            log(f"  enqueueing {args.jobs} jobs ({args.mode})")
            produced = await produce(args.mode, args.jobs, args.rate, enqueue)
            if args.mode == "preload":
                workers.start()
                await workers.wait_ready()
            await wait_done(done, args.jobs, args.timeout)
        finally:
            workers.stop()
        runs = await app.list_runs(workflow=WORKFLOW, limit=args.jobs + 1)
    failed = [run.run_id for run in runs if run.status is not kernos.RunStatus.SUCCEEDED]
    if failed:
        raise SystemExit(f"{len(failed)} runs did not succeed, e.g. {failed[0]}")
    timings = Timings()
    step_lag: list[float] = []
    for run in runs:
        assert run.started_at is not None and run.finished_at is not None
        timings.add(run.created_at, run.started_at, run.finished_at)
        step_lag.append(float(run.output) - run.started_at)
    return summarize(
        "kernos",
        args,
        timings,
        produced,
        drain_from=workers.first_ready_at,
        extra={
            "poll_interval": args.poll_interval,
            "claim_to_step_ms_p50": round(percentile(step_lag, 50) * 1000, 2),
            "claim_to_step_ms_p99": round(percentile(step_lag, 99) * 1000, 2),
            "kernos": kernos.__version__,
        },
    )


def main() -> None:
    cli = parser(__doc__.split("\n\n")[0])
    cli.add_argument(
        "--poll-interval", type=float, default=0.5, help="Kernos poll_interval (default 0.5)"
    )
    cli.add_argument("--dir", default=None, help="where SQLite files go (default: $TMPDIR)")
    cli.add_argument("--profile", default=None, help="write a cProfile of each worker to DIR")
    args = resolve(cli.parse_args())
    if args.role == "worker":
        worker_main(args)
        return
    log(
        f"queue: kernos store={args.store} mode={args.mode} workers={args.workers} "
        f"jobs={args.jobs} durability={args.durability}"
    )
    if args.store == "sqlite":
        with scratch_dir(args.dir) as directory:
            url = f"sqlite:///{Path(directory, 'kernos.db').resolve()}"
            result = asyncio.run(run(args, url))
    else:
        dbname = f"kernos_bench_queue_{os.getpid()}"
        with scratch_postgres(args.postgres_url, dbname) as url:
            result = asyncio.run(run(args, url))
    emit(result)


if __name__ == "__main__":
    main()
