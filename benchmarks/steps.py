"""Step throughput and latency against the raw commit floor of the same store.

Scenarios (a fresh SQLite file / PostgreSQL database each):

- ``sequential``: one workflow of 1,000 sequential steps;
- ``concurrent``: 50 concurrent workflows of 100 steps each.

Each step returns a ~100-byte dict. In the same run, the floor is measured: one
small INSERT per transaction (BEGIN; INSERT; COMMIT) through the same driver with
the same durability settings. Prints one JSON object per scenario on stdout.

    python benchmarks/steps.py --store sqlite --durability full --scenario all
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import time
from pathlib import Path
from typing import Any

from _common import (
    DEFAULT_POSTGRES_URL,
    Floor,
    emit,
    log,
    percentile,
    postgres_floor,
    scratch_dir,
    scratch_postgres,
    sqlite_floor,
)

import kernos

SCENARIOS: dict[str, tuple[int, int]] = {  # name -> (workflows, steps per workflow)
    "sequential": (1, 1000),
    "concurrent": (50, 100),
}

CLOSE_TIMEOUT = 10.0

# Per run: seconds between consecutive step completions, measured in the workflow.
LATENCIES: dict[str, list[float]] = {}


@kernos.step
async def produce(i: int) -> dict[str, Any]:
    """A step returning ~100 bytes of JSON."""
    return {"i": i, "note": "x" * 60, "ok": True, "tags": ["a", "b", "c"]}


@kernos.workflow
async def chain(steps: int) -> int:
    """``steps`` sequential steps; records the time each one took to complete."""
    latencies = LATENCIES.setdefault(kernos.current_run_id(), [])
    previous = time.perf_counter()
    for i in range(steps):
        await produce(i)
        now = time.perf_counter()
        latencies.append(now - previous)
        previous = now
    return steps


async def close_bounded(app: kernos.Kernos, timeout: float = CLOSE_TIMEOUT) -> bool:
    """Close ``app``; False if that took longer than ``timeout`` and was abandoned.

    On Python 3.11, ``Kernos.close()`` can hang: ``asyncio.wait_for`` in the engine's
    claim loop swallows the cancellation when a run's end wakes the loop at the same
    moment (see README). A benchmark must not hang on it.
    """
    try:
        await asyncio.wait_for(app.close(), timeout)
    except TimeoutError:
        log(f"Kernos.close() did not return within {timeout}s; abandoned")
        return False
    return True


async def run_scenario(url: str, *, durable: bool, name: str) -> dict[str, Any]:
    """Execute one scenario on a fresh store at ``url``; return its measurements."""
    workflows, steps = SCENARIOS[name]
    run_ids = [f"{name}-{k}" for k in range(workflows)]
    app = await kernos.Kernos(url, durable=durable).open()
    try:
        writer = app.engine.writer
        batches, writes = writer.batches, writer.writes
        started, cpu = time.perf_counter(), time.process_time()
        handles = await asyncio.gather(
            *(app.start(chain, steps, run_id=run_id) for run_id in run_ids)
        )
        results = await asyncio.gather(*(handle.result(timeout=600) for handle in handles))
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        batches, writes = writer.batches - batches, writer.writes - writes
    finally:
        close_hung = not await close_bounded(app)
    assert results == [steps] * workflows, results
    latencies = [t for run_id in run_ids for t in LATENCIES.pop(run_id)]
    total = workflows * steps
    assert len(latencies) == total
    return {
        "workflows": workflows,
        "steps": total,
        "seconds": round(seconds, 4),
        "steps_per_s": round(total / seconds, 1),
        "step_us_p50": round(percentile(latencies, 50) * 1e6, 1),
        "step_us_p99": round(percentile(latencies, 99) * 1e6, 1),
        "cpu_us_per_step": round(cpu / total * 1e6, 1),
        "commit_batches": batches,
        "writes": writes,
        "writes_per_batch": round(writes / batches, 2) if batches else None,
        **({"close_hung": True} if close_hung else {}),
    }


def report(
    name: str, store: str, durability: str, result: dict[str, Any], floor: Floor
) -> dict[str, Any]:
    """One output line: the scenario, its floor, and the ratios between them."""
    return {
        "scenario": name,
        "store": store,
        "durability": durability,
        **result,
        **floor.as_dict(),
        "ratio_step_to_floor_p50": round(result["step_us_p50"] / floor.us_p50, 2),
        "ratio_steps_per_s_to_floor": round(result["steps_per_s"] / floor.commits_per_s, 3),
        "python": platform.python_version(),
        "kernos": kernos.__version__,
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }


def bench_sqlite(names: list[str], *, durable: bool, durability: str, parent: str | None) -> None:
    for name in names:
        with scratch_dir(parent) as directory:
            floor = sqlite_floor(directory / "floor.db", durable=durable)
            url = f"sqlite:///{Path(directory, 'kernos.db').resolve()}"
            result = asyncio.run(run_scenario(url, durable=durable, name=name))
        emit(report(name, "sqlite", durability, result, floor))


def bench_postgres(names: list[str], *, durable: bool, durability: str, admin_url: str) -> None:
    for name in names:
        with scratch_postgres(admin_url, f"kernos_bench_{os.getpid()}_{name}") as url:
            floor = postgres_floor(url, durable=durable)
            result = asyncio.run(run_scenario(url, durable=durable, name=name))
        emit(report(name, "postgres", durability, result, floor))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--durability", choices=["full", "fast"], default="full")
    parser.add_argument("--scenario", choices=[*SCENARIOS, "all"], default="all")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL, help="admin URL")
    parser.add_argument("--dir", default=None, help="where SQLite files go (default: $TMPDIR)")
    args = parser.parse_args()
    names = list(SCENARIOS) if args.scenario == "all" else [args.scenario]
    durable = args.durability == "full"
    log(f"steps: store={args.store} durability={args.durability} scenarios={names}")
    if args.store == "sqlite":
        bench_sqlite(names, durable=durable, durability=args.durability, parent=args.dir)
    else:
        bench_postgres(
            names, durable=durable, durability=args.durability, admin_url=args.postgres_url
        )


if __name__ == "__main__":
    main()
