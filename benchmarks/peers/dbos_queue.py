"""The queue workload of ``benchmarks/queue.py`` on DBOS Transact queues (PostgreSQL only).

The job is a DBOS workflow with one tiny step (it returns ``time.time()``). Workers
are separate processes, each a launched DBOS with the queue registered with
``worker_concurrency=--concurrency`` and ``polling_interval_sec=--dbos-polling``
(DBOS queues poll; the default interval is 1 s, the benchmark uses 0.01 s unless
told otherwise). Each worker has its own ``executor_id``, as DBOS requires for
``worker_concurrency``. The producer enqueues through ``DBOSClient.enqueue_async``.
Figures come from ``dbos.workflow_status``: ``created_at`` (enqueue),
``started_at_epoch_ms`` (dequeue) and ``completed_at``.

    python benchmarks/peers/dbos_queue.py --mode burst --workers 4
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # benchmarks/: shared helpers

import argparse
import asyncio
import os
import threading
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
    from dbos import DBOS, DBOSClient, DBOSConfig
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise SystemExit(
        f"DBOS is not installed ({exc}); install the bench extra: pip install -e '.[bench]'"
    ) from exc

SCRIPT = str(Path(__file__).resolve())

APP = "kernos_bench"
APP_VERSION = "bench-1"
DEFAULT_POLLING = 0.01


@DBOS.step()
async def stamp() -> float:
    """The job's only step: when it ran."""
    return time.time()


@DBOS.workflow(name=WORKFLOW)
async def bench_job(i: int) -> float:
    return await stamp()


def config(url: str, executor_id: str) -> DBOSConfig:
    return {
        "name": APP,
        "system_database_url": url,
        "application_version": APP_VERSION,
        "executor_id": executor_id,
        "log_level": "WARNING",
    }


def register_queue(args: argparse.Namespace) -> None:
    DBOS.register_queue(
        QUEUE,
        worker_concurrency=args.concurrency,
        polling_interval_sec=args.dbos_polling,
        on_conflict="always_update",
    )


# -- worker and setup processes ---------------------------------------------------------


def setup_main(args: argparse.Namespace) -> None:
    """Create DBOS's schema and register the queue, before any worker or producer."""
    DBOS(config=config(args.url, "bench-setup"))
    DBOS.listen_queues([])
    DBOS.launch()
    register_queue(args)
    DBOS.destroy()


def worker_main(args: argparse.Namespace) -> None:
    began = time.time()
    DBOS(config=config(args.url, f"bench-worker-{args.index}"))
    DBOS.launch()
    register_queue(args)
    # The queue manager starts one thread per queue; wait for ours before saying ready.
    name = f"queue-worker-{QUEUE}"
    give_up = time.monotonic() + 30
    while not any(t.name == name for t in threading.enumerate()):
        if time.monotonic() > give_up:
            raise SystemExit(f"DBOS started no {name} thread in 30 s")
        time.sleep(0.005)
    announce_ready(began, pid=os.getpid())
    wait_for_stdin_eof()
    DBOS.destroy()


def role_command(args: argparse.Namespace, url: str, role: str) -> list[str]:
    return [
        sys.executable,
        SCRIPT,
        f"--role={role}",
        f"--url={url}",
        f"--concurrency={args.concurrency}",
        f"--dbos-polling={args.dbos_polling}",
    ]


# -- the run ------------------------------------------------------------------------------


def prepare_database(url: str, durability: str) -> None:
    """``fast``: ``synchronous_commit = off`` for every connection to the scratch database,
    as Kernos sets on its own connections."""
    import psycopg

    if durability == "fast":
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{conn.info.dbname}" SET synchronous_commit = off')


async def run(args: argparse.Namespace, url: str) -> dict[str, Any]:
    import psycopg

    prepare_database(url, args.durability)
    setup = await asyncio.create_subprocess_exec(*role_command(args, url, "setup"))
    if await setup.wait() != 0:
        raise SystemExit("DBOS setup (launch, migrations, queue registration) failed")
    workers = Workers(
        [[*role_command(args, url, "worker"), f"--index={k}"] for k in range(args.workers)]
    )
    client = DBOSClient(system_database_url=url, application_name=APP)
    options: Any = {"queue_name": QUEUE, "workflow_name": WORKFLOW, "app_version": APP_VERSION}
    conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
    try:

        async def enqueue(i: int) -> None:
            await client.enqueue_async(options, i)

        async def done() -> int:
            cur = await conn.execute(
                "SELECT count(*) FROM dbos.workflow_status WHERE queue_name = %s "
                "AND status IN ('SUCCESS', 'ERROR')",
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
            "SELECT status, created_at, started_at_epoch_ms, coalesce(completed_at, updated_at) "
            "FROM dbos.workflow_status WHERE queue_name = %s",
            (QUEUE,),
        )
        rows = await cur.fetchall()
    finally:
        await conn.close()
        client.destroy()
    bad = [row for row in rows if row[0] != "SUCCESS"]
    if bad:
        raise SystemExit(f"{len(bad)} DBOS workflows did not succeed, e.g. {bad[0]}")
    timings = Timings()
    for _, created, started, finished in rows:
        timings.add(created / 1000, started / 1000, finished / 1000)
    return summarize(
        "dbos",
        args,
        timings,
        produced,
        drain_from=workers.first_ready_at,
        extra={"dbos_polling_interval_s": args.dbos_polling, "dbos": version("dbos")},
    )


def main() -> None:
    cli = parser(__doc__.split("\n\n")[0], stores=("postgres",))
    cli.add_argument(
        "--dbos-polling",
        type=float,
        default=DEFAULT_POLLING,
        help=f"the queue's polling_interval_sec (default {DEFAULT_POLLING}; DBOS's is 1.0)",
    )
    args = resolve(cli.parse_args())
    if args.role == "setup":
        setup_main(args)
        return
    if args.role == "worker":
        worker_main(args)
        return
    log(
        f"queue: dbos mode={args.mode} workers={args.workers} jobs={args.jobs} "
        f"durability={args.durability} polling={args.dbos_polling}s"
    )
    with scratch_postgres(args.postgres_url, f"kernos_bench_dbos_{os.getpid()}") as url:
        result = asyncio.run(run(args, url))
    emit(result)


if __name__ == "__main__":
    main()
