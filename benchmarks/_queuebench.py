"""The queue workload shared by ``queue.py`` (Kernos) and ``peers/`` (DBOS, Procrastinate).

One CLI, one producer, one way to run worker processes and one way to turn the
store's timestamps into figures, so every system is measured the same way:

- ``created``: when the job was enqueued (the enqueue transaction's time);
- ``started``: when a worker took it (Kernos ``started_at``, DBOS
  ``started_at_epoch_ms``, Procrastinate's ``started`` event);
- ``finished``: when its success was recorded.

Note ``queue.py`` is a shim: imported as a module (the stdlib name ``queue``, which
``concurrent.futures`` and psycopg import) from a script in ``benchmarks/``, it hands
back the standard library's module.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from _common import DEFAULT_POSTGRES_URL, log, percentile

QUEUE = "bench"
WORKFLOW = "bench_job"
DEFAULT_JOBS = {"burst": 10_000, "preload": 10_000, "steady": 2_000}
DEFAULT_CONCURRENCY = 100  # runs per worker process, for every system


def parser(
    description: str, *, stores: Sequence[str] = ("sqlite", "postgres")
) -> argparse.ArgumentParser:
    """The CLI every queue benchmark takes (plus the hidden worker-role flags)."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--store", choices=list(stores), default=stores[-1])
    p.add_argument("--mode", choices=list(DEFAULT_JOBS), default="burst")
    p.add_argument(
        "--jobs", type=int, default=None, help="default: 10000 (burst, preload), 2000 (steady)"
    )
    p.add_argument("--workers", type=int, default=1, help="worker processes")
    p.add_argument(
        "--concurrency",
        type=int,
        default=DEFAULT_CONCURRENCY,
        help=f"jobs each worker runs at once (default {DEFAULT_CONCURRENCY})",
    )
    p.add_argument("--rate", type=float, default=100.0, help="jobs/s in steady mode")
    p.add_argument("--durability", choices=["full", "fast"], default="full")
    p.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL, help="admin URL")
    p.add_argument("--timeout", type=float, default=900.0, help="give up after this many s")
    # Internal: how the script starts its own worker processes.
    p.add_argument(
        "--role", choices=["main", "worker", "setup"], default="main", help=argparse.SUPPRESS
    )
    p.add_argument("--url", default=None, help=argparse.SUPPRESS)
    p.add_argument("--index", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--dump", default=None, help="write created,started,finished per job (CSV)")
    return p


def resolve(args: argparse.Namespace) -> argparse.Namespace:
    """Fill in defaults that depend on other flags."""
    if args.jobs is None:
        args.jobs = DEFAULT_JOBS[args.mode]
    if args.jobs < 1 or args.workers < 1 or args.concurrency < 1 or args.rate <= 0:
        raise SystemExit("--jobs, --workers, --concurrency and --rate must be positive")
    return args


# -- worker processes ------------------------------------------------------------------


class Workers:
    """Worker processes started from a script (``--role worker``), each printing one JSON
    line ``{"ready_at": <time the worker began to start its runtime>}`` once it works, and
    stopping when its stdin closes."""

    def __init__(self, commands: list[list[str]]) -> None:
        self.commands = commands
        self.procs: list[subprocess.Popen[str]] = []
        self.launched_at = 0.0
        self.ready: list[dict[str, Any]] = []

    def start(self) -> None:
        self.launched_at = time.time()
        for command in self.commands:
            self.procs.append(
                subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            )

    async def wait_ready(self, timeout: float = 120.0) -> None:
        async def one(proc: subprocess.Popen[str]) -> dict[str, Any]:
            assert proc.stdout is not None
            line = await asyncio.to_thread(proc.stdout.readline)
            if not line:
                raise SystemExit(f"worker {proc.pid} exited before it was ready ({proc.poll()})")
            return dict(json.loads(line))

        self.ready = await asyncio.wait_for(asyncio.gather(*(one(p) for p in self.procs)), timeout)

    @property
    def first_ready_at(self) -> float:
        """When the first worker began to start its runtime (after imports)."""
        return min(r["ready_at"] for r in self.ready)

    def stop(self, timeout: float = 30.0) -> None:
        for proc in self.procs:
            if proc.stdin is not None and not proc.stdin.closed:
                proc.stdin.close()
        deadline = time.monotonic() + timeout
        for proc in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log(f"worker {proc.pid} did not stop in {timeout}s; killing it")
                proc.kill()
                proc.wait()


def announce_ready(started_at: float, **extra: Any) -> None:
    """From a worker process: tell the parent this worker runs."""
    sys.stdout.write(json.dumps({"ready_at": started_at, **extra}) + "\n")
    sys.stdout.flush()


def wait_for_stdin_eof() -> None:
    """From a worker process: block until the parent closes our stdin."""
    sys.stdin.read()


# -- the producer --------------------------------------------------------------------


@dataclass
class Produced:
    first_call: float
    last_return: float
    jobs: int

    @property
    def enqueue_per_s(self) -> float:
        return self.jobs / max(self.last_return - self.first_call, 1e-9)


async def produce(
    mode: str, jobs: int, rate: float, enqueue: Callable[[int], Awaitable[Any]]
) -> Produced:
    """Enqueue ``jobs`` jobs one call at a time: as fast as possible, or at ``rate``/s."""
    loop = asyncio.get_running_loop()
    first = time.time()
    origin = loop.time()
    for i in range(jobs):
        if mode == "steady":
            delay = origin + i / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
        await enqueue(i)
    return Produced(first_call=first, last_return=time.time(), jobs=jobs)


async def wait_done(count_done: Callable[[], Awaitable[int]], jobs: int, timeout: float) -> None:
    """Poll ``count_done`` until it reaches ``jobs`` (or raise after ``timeout`` s)."""
    give_up = time.monotonic() + timeout
    last_report = time.monotonic()
    while True:
        done = await count_done()
        if done >= jobs:
            return
        if time.monotonic() > give_up:
            raise SystemExit(f"timed out: {done}/{jobs} jobs done after {timeout}s")
        if time.monotonic() - last_report > 10:
            log(f"  {done}/{jobs} done")
            last_report = time.monotonic()
        await asyncio.sleep(0.1)


# -- figures --------------------------------------------------------------------------


@dataclass
class Timings:
    """Per job, in seconds since the epoch, as recorded by the store."""

    created: list[float] = field(default_factory=list)
    started: list[float] = field(default_factory=list)
    finished: list[float] = field(default_factory=list)

    def add(self, created: float, started: float, finished: float) -> None:
        self.created.append(created)
        self.started.append(started)
        self.finished.append(finished)


def _ms(values: list[float], q: float) -> float:
    return round(percentile(values, q) * 1000, 2)


def summarize(
    system: str,
    args: argparse.Namespace,
    timings: Timings,
    produced: Produced,
    *,
    drain_from: float | None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One output line. ``jobs_per_s`` is jobs / (last finish - first enqueue), or for
    preload jobs / (last finish - ``drain_from``, when the workers started)."""
    n = len(timings.created)
    if args.dump:
        with open(args.dump, "w") as out:
            out.write("created,started,finished\n")
            rows = zip(timings.created, timings.started, timings.finished, strict=True)
            out.writelines(f"{c:.6f},{s:.6f},{f:.6f}\n" for c, s, f in sorted(rows))
    if n != args.jobs:
        raise SystemExit(f"{system}: expected {args.jobs} finished jobs, the store has {n}")
    last_finish = max(timings.finished)
    origin = (
        drain_from if args.mode == "preload" and drain_from is not None else min(timings.created)
    )
    seconds = last_finish - origin
    to_start = [s - c for c, s in zip(timings.created, timings.started, strict=True)]
    to_finish = [f - c for c, f in zip(timings.created, timings.finished, strict=True)]
    return {
        "system": system,
        "store": args.store,
        "mode": args.mode,
        "workers": args.workers,
        "concurrency": args.concurrency,
        "jobs": n,
        "durability": args.durability,
        **({"rate": args.rate} if args.mode == "steady" else {}),
        "seconds": round(seconds, 3),
        "jobs_per_s": round(n / seconds, 1),
        "enqueue_per_s": round(produced.enqueue_per_s, 1),
        "enqueue_to_start_ms_p50": _ms(to_start, 50),
        "enqueue_to_start_ms_p99": _ms(to_start, 99),
        "enqueue_to_finish_ms_p50": _ms(to_finish, 50),
        "enqueue_to_finish_ms_p99": _ms(to_finish, 99),
        **(extra or {}),
        "loadavg_1m": round(os.getloadavg()[0], 2),  # others' load on the machine shows here
        "python": platform.python_version(),
    }
