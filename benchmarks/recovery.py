"""Crash recovery: how soon a fresh process resumes a run whose worker was SIGKILLed.

A child process runs a 100-step workflow; each step appends its index to a ledger
file before doing anything else. Step 51 blocks in that first process (an env var
tells it to), the parent sees its ledger line and SIGKILLs the child there, so the
kill lands on step 51 every time. The parent notes t0 and spawns a fresh process
that opens ``kernos.Kernos(url)``: on start it takes over the runs of workers on
this host whose process died, claims the run and resumes it from its journal.
Prints one JSON object on stdout.

    python benchmarks/recovery.py --store sqlite
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _common import DEFAULT_POSTGRES_URL, emit, log, scratch_dir, scratch_postgres
from _recovery_child import HANG_ENV

CHILD = Path(__file__).resolve().parent / "_recovery_child.py"
STEPS = 100
KILL_AT = 51
RUN_ID = "recovery-1"
WAIT_LIMIT = 120.0


# -- the parent: spawn, kill, respawn, measure ---------------------------------------


def spawn(
    mode: str, url: str, ledger: Path, steps: int, hang_at: int | None
) -> subprocess.Popen[str]:
    env = dict(os.environ)
    env.pop(HANG_ENV, None)
    if hang_at is not None:
        env[HANG_ENV] = str(hang_at)
    command = [sys.executable, str(CHILD), mode, url, str(ledger), str(steps), RUN_ID]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)


def read_ledger(ledger: Path) -> list[tuple[int, int, float]]:
    """(index, pid, time) per complete ledger line."""
    if not ledger.exists():
        return []
    lines = ledger.read_text().splitlines(keepends=True)
    found = []
    for line in lines:
        if line.endswith("\n"):
            index, pid, at = line.split()
            found.append((int(index), int(pid), float(at)))
    return found


def journaled_steps(url: str) -> int:
    """Settled journal entries of the run, read straight through the driver."""
    query = "SELECT count(*) FROM kernos_journal WHERE run_id = {p} AND status = 'ok'"
    if url.startswith("sqlite:///"):
        with sqlite3.connect(url[len("sqlite:///") :]) as conn:
            return int(conn.execute(query.format(p="?"), (RUN_ID,)).fetchone()[0])
    import psycopg

    with psycopg.connect(url) as conn:
        row = conn.execute(query.format(p="%s"), (RUN_ID,)).fetchone()
        assert row is not None
        return int(row[0])


def measure(store: str, url: str, ledger: Path, steps: int, kill_at: int) -> dict[str, Any]:
    first = spawn("start", url, ledger, steps, hang_at=kill_at)
    give_up = time.monotonic() + WAIT_LIMIT
    while not any(index == kill_at for index, _, _ in read_ledger(ledger)):
        if first.poll() is not None:
            raise RuntimeError(f"first process exited ({first.returncode}) before step {kill_at}")
        if time.monotonic() > give_up:
            first.kill()
            raise RuntimeError(f"step {kill_at} never started")
        time.sleep(0.001)
    first.send_signal(signal.SIGKILL)
    first.wait()
    journaled = journaled_steps(url)

    t0 = time.time()
    second = spawn("resume", url, ledger, steps, hang_at=None)
    out, _ = second.communicate(timeout=WAIT_LIMIT + 30)
    if second.returncode != 0:
        raise RuntimeError(f"resuming process failed ({second.returncode})")
    report = json.loads(out.strip().splitlines()[-1])

    lines = read_ledger(ledger)
    before = [index for index, pid, _ in lines if pid == first.pid]
    after = [(index, at) for index, pid, at in lines if pid == report["pid"]]
    first_at = min(at for _, at in after)
    return {
        "benchmark": "recovery",
        "store": store,
        "durability": "full",
        "steps": steps,
        "killed_at_step": kill_at,
        "journaled_before_kill": journaled,
        "steps_before_kill": len(before),
        "restart_to_first_step_s": round(first_at - t0, 4),
        "restart_to_complete_s": round(report["done_at"] - t0, 4),
        "first_resumed_step": min(index for index, _ in after),
        "steps_reexecuted": sum(1 for index, _ in after if index < kill_at),
        "inflight_step_reexecuted": any(index == kill_at for index, _ in after),
        "steps_after_restart": len(after),
        "import_kernos_s": round(report["import_kernos_s"], 4),
        "spawn_to_interpreter_s": round(report["process_started_at"] - t0, 4),
        "interpreter_to_main_s": round(
            report["child_entered_at"] - report["process_started_at"], 4
        ),
        "import_to_open_s": round(
            report["open_started_at"] - report["child_entered_at"] - report["import_kernos_s"], 4
        ),
        "open_s": round(report["opened_at"] - report["open_started_at"], 4),
        "opened_to_first_step_s": round(first_at - report["opened_at"], 4),
        "python": platform.python_version(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL, help="admin URL")
    parser.add_argument("--dir", default=None, help="where files go (default: $TMPDIR)")
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--kill-at", type=int, default=KILL_AT)
    args = parser.parse_args()
    if not 0 < args.kill_at < args.steps:
        parser.error("--kill-at must be between 1 and --steps - 1")
    log(f"recovery: store={args.store} steps={args.steps} kill at step {args.kill_at}")
    with scratch_dir(args.dir) as directory:
        ledger = directory / "ledger.txt"
        if args.store == "sqlite":
            url = f"sqlite:///{(directory / 'kernos.db').resolve()}"
            emit(measure("sqlite", url, ledger, args.steps, args.kill_at))
        else:
            dbname = f"kernos_bench_{os.getpid()}"
            with scratch_postgres(args.postgres_url, dbname) as url:
                emit(measure("postgres", url, ledger, args.steps, args.kill_at))


if __name__ == "__main__":
    main()
