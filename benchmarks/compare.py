"""Kernos queues against DBOS Transact and Procrastinate: the same workload, one after another.

Runs ``queue.py`` (Kernos), ``peers/dbos_queue.py`` and ``peers/procrastinate_queue.py``
with the same flags on PostgreSQL, each on a fresh database, and prints their JSON
lines, then one summary line: per peer, ``jobs_per_s`` of Kernos / of the peer
(above 1: Kernos is faster) and ``enqueue_to_start_ms_p50`` of Kernos / of the peer
(below 1: Kernos starts jobs sooner). A peer that cannot run (not installed) gets
an ``error`` line instead, and the others still run.

    python benchmarks/compare.py --mode burst --workers 4 --jobs 10000
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from _common import DEFAULT_POSTGRES_URL, emit, log

HERE = Path(__file__).resolve().parent
SCRIPTS = {
    "kernos": HERE / "queue.py",
    "dbos": HERE / "peers" / "dbos_queue.py",
    "procrastinate": HERE / "peers" / "procrastinate_queue.py",
}


def run_one(system: str, flags: list[str], timeout: float) -> dict[str, Any]:
    command = [sys.executable, str(SCRIPTS[system]), *flags]
    log(f"compare: {system}: {' '.join(command[1:])}")
    try:
        done = subprocess.run(
            command, stdout=subprocess.PIPE, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        return {"system": system, "error": f"did not finish in {timeout:.0f}s"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        return {"system": system, "error": f"exited {done.returncode} (see stderr)"}
    return dict(json.loads(lines[-1]))


def ratio(a: Any, b: Any) -> float | None:
    if not isinstance(a, int | float) or not isinstance(b, int | float) or b == 0:
        return None
    return float(f"{a / b:.4g}")  # 4 significant digits: latency ratios can be tiny


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mode", choices=["burst", "preload", "steady"], default="burst")
    p.add_argument("--jobs", type=int, default=None)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--concurrency", type=int, default=100)
    p.add_argument("--rate", type=float, default=100.0)
    p.add_argument("--durability", choices=["full", "fast"], default="full")
    p.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL, help="admin URL")
    p.add_argument("--dbos-polling", type=float, default=None, help="see dbos_queue.py")
    p.add_argument("--systems", default=",".join(SCRIPTS), help="comma-separated subset")
    p.add_argument("--timeout", type=float, default=900.0, help="per system, in seconds")
    args = p.parse_args()
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = set(systems) - set(SCRIPTS)
    if unknown:
        raise SystemExit(f"unknown systems {sorted(unknown)}; choose from {list(SCRIPTS)}")
    flags = [
        "--store=postgres",
        f"--mode={args.mode}",
        f"--workers={args.workers}",
        f"--concurrency={args.concurrency}",
        f"--rate={args.rate}",
        f"--durability={args.durability}",
        f"--postgres-url={args.postgres_url}",
        f"--timeout={args.timeout}",
    ]
    if args.jobs is not None:
        flags.append(f"--jobs={args.jobs}")
    results = {}
    for system in systems:
        extra = (
            [f"--dbos-polling={args.dbos_polling}"]
            if system == "dbos" and args.dbos_polling is not None
            else []
        )
        results[system] = run_one(system, [*flags, *extra], args.timeout + 120)
        emit(results[system])
    summary: dict[str, Any] = {
        "summary": True,
        "mode": args.mode,
        "workers": args.workers,
        "durability": args.durability,
        "jobs_per_s": {s: r.get("jobs_per_s") for s, r in results.items()},
        "enqueue_to_start_ms_p50": {
            s: r.get("enqueue_to_start_ms_p50") for s, r in results.items()
        },
    }
    kernos = results.get("kernos", {})
    for peer in (s for s in systems if s != "kernos"):
        summary[f"kernos_vs_{peer}_jobs_per_s"] = ratio(
            kernos.get("jobs_per_s"), results[peer].get("jobs_per_s")
        )
        summary[f"kernos_vs_{peer}_enqueue_to_start_p50"] = ratio(
            kernos.get("enqueue_to_start_ms_p50"), results[peer].get("enqueue_to_start_ms_p50")
        )
    emit(summary)


if __name__ == "__main__":
    main()
