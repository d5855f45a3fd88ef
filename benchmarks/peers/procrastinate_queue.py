"""The queue workload of ``benchmarks/queue.py`` on Procrastinate (PostgreSQL only).

Procrastinate runs tasks, not workflows: the job is one async task that returns
``time.time()`` (there is no step to journal). Workers are separate processes,
each ``App.run_worker_async(queues=["bench"], concurrency=--concurrency,
listen_notify=True)``: idle workers are woken by its LISTEN/NOTIFY trigger, with
its default 5 s polling as the fallback. The producer defers with
``Task.defer_async``. Connections: the ``PsycopgConnector``'s default pool.
Figures come from ``procrastinate_events``: ``deferred`` (enqueue), ``started``
(fetched by a worker) and ``succeeded``.

    python benchmarks/peers/procrastinate_queue.py --mode burst --workers 4
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # benchmarks/: shared helpers

import argparse
import asyncio
import contextlib
import os
import time
from importlib.metadata import version
from typing import Any

from _common import emit, log, scratch_postgres
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

try:
    import procrastinate
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise SystemExit(
        f"Procrastinate is not installed ({exc}); install the bench extra: "
        "pip install -e '.[bench]'"
    ) from exc

SCRIPT = str(Path(__file__).resolve())


def make_app(url: str) -> procrastinate.App:
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=url))

    @app.task(name=WORKFLOW, queue=QUEUE)
    async def bench_job(i: int) -> float:
        return time.time()

    return app


# -- worker process ---------------------------------------------------------------------


async def serve(args: argparse.Namespace) -> None:
    began = time.time()
    app = make_app(args.url)
    async with app.open_async():
        worker = asyncio.create_task(
            app.run_worker_async(
                queues=[QUEUE],
                concurrency=args.concurrency,
                listen_notify=True,
                install_signal_handlers=False,
            )
        )
        await asyncio.sleep(0)  # let it start listening and fetching
        announce_ready(began, pid=os.getpid())
        await asyncio.to_thread(wait_for_stdin_eof)
        worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker


# -- the run ------------------------------------------------------------------------------


async def run(args: argparse.Namespace, url: str) -> dict[str, Any]:
    import psycopg

    if args.durability == "fast":  # as Kernos sets on its own connections
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(f'ALTER DATABASE "{admin.info.dbname}" SET synchronous_commit = off')
    base = [
        sys.executable,
        SCRIPT,
        "--role=worker",
        f"--url={url}",
        f"--concurrency={args.concurrency}",
    ]
    workers = Workers([[*base, f"--index={k}"] for k in range(args.workers)])
    app = make_app(url)
    task = app.tasks[WORKFLOW]
    conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
    try:
        async with app.open_async():
            await app.schema_manager.apply_schema_async()

            async def enqueue(i: int) -> None:
                await task.defer_async(i=i)

            async def done() -> int:
                cur = await conn.execute(
                    "SELECT count(*) FROM procrastinate_jobs WHERE queue_name = %s "
                    "AND status IN ('succeeded', 'failed')",
                    (QUEUE,),
                )
                row = await cur.fetchone()
                return int(row[0]) if row else 0

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
        cur = await conn.execute(
            """
            SELECT j.status,
                   extract(epoch FROM min(e.at) FILTER (WHERE e.type = 'deferred')),
                   extract(epoch FROM min(e.at) FILTER (WHERE e.type = 'started')),
                   extract(epoch FROM max(e.at) FILTER (WHERE e.type = 'succeeded'))
            FROM procrastinate_jobs j JOIN procrastinate_events e ON e.job_id = j.id
            WHERE j.queue_name = %s
            GROUP BY j.id, j.status
            """,
            (QUEUE,),
        )
        rows = await cur.fetchall()
    finally:
        await conn.close()
    bad = [row for row in rows if row[0] != "succeeded"]
    if bad:
        raise SystemExit(f"{len(bad)} Procrastinate jobs did not succeed, e.g. {bad[0]}")
    timings = Timings()
    for _, created, started, finished in rows:
        timings.add(float(created), float(started), float(finished))
    return summarize(
        "procrastinate",
        args,
        timings,
        produced,
        drain_from=workers.first_ready_at,
        extra={"procrastinate": version("procrastinate")},
    )


def main() -> None:
    args = resolve(parser(__doc__.split("\n\n")[0], stores=("postgres",)).parse_args())
    if args.role == "worker":
        asyncio.run(serve(args))
        return
    log(
        f"queue: procrastinate mode={args.mode} workers={args.workers} jobs={args.jobs} "
        f"durability={args.durability}"
    )
    with scratch_postgres(args.postgres_url, f"kernos_bench_procr_{os.getpid()}") as url:
        result = asyncio.run(run(args, url))
    emit(result)


if __name__ == "__main__":
    main()
