"""Dashboard server time: the runs page with 100,000 runs in the store, and a run of
2,000 journal entries opening, each against the REST API's JSON for the same data.

The store is filled with ``--runs`` runs of one tenant through the store's own
enqueue (as ``benchmarks/api.py`` does), then shaped like a week of work: creation
times spread over seven days, most runs finished (2% failed, the newest 200 still
pending) with durations and step counts, and one in five with a model call (an
``llm.completed`` event with tokens and cost), so the runs page's tokens and cost
columns and its filters have real rows to read. A workflow of ``--entries`` steps
(in gathers of 20, so the timeline has parallel lanes) is then run to completion.
On PostgreSQL the tables are analysed, as autovacuum would soon do.

A Kernos server with the dashboard (``ApiServer`` with ``kernos.web.mount``, no
worker) runs in a child process on a free loopback port. One client, signed in
through the login form, sends ``--requests`` requests of each kind back to back:

- ``runs_page``: ``GET /runs`` (the first page of 50, with the filters' choices);
- ``runs_api``: ``GET /api/v1/runs?limit=50`` (the baseline: the same page as JSON);
- ``run_page``: ``GET /runs/{id}`` of the run with ``--entries`` entries;
- ``run_api``: ``GET /api/v1/runs/{id}/journal`` (the baseline: its journal as JSON).

For each it prints one JSON object: ``p50_ms``, ``p95_ms`` and ``max_ms`` as the
client measured them (request sent to response read, over loopback), the same of
the server's own time for dashboard pages (``server_p50_ms``, ``server_p95_ms``:
the ``Server-Timing`` header, reads and rendering without the middleware),
``bytes``, ``ratio_p50`` against its baseline measured in the same run, and
``goal_ms`` with ``goal_met`` (p95 server time under 150 ms for the runs page,
under 500 ms for the run page).

    python benchmarks/dashboard.py --store sqlite
    python benchmarks/dashboard.py --store postgres --runs 100000 --requests 200
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from _common import DEFAULT_POSTGRES_URL, emit, log, percentile, scratch_dir, scratch_postgres
from api import fill

import kernos

GOALS_MS = {"runs_page": 150.0, "run_page": 500.0}
BASELINES = {"runs_page": "runs_api", "run_page": "run_api"}
LANES = 20


@kernos.step
async def bench_dashboard_step(i: int) -> dict[str, Any]:
    """One journal entry of ~100 bytes."""
    return {"i": i, "note": "x" * 60, "ok": True}


@kernos.workflow(name="bench_dashboard_long")
async def long_run(entries: int) -> int:
    """``entries`` steps, ``LANES`` at a time."""
    for start in range(0, entries, LANES):
        batch = range(start, min(start + LANES, entries))
        await kernos.gather(*(bench_dashboard_step(i) for i in batch))
    return entries


# -- shaping the store -----------------------------------------------------------------------


def _shape_statements(runs: int, now: float) -> list[str]:
    """SQL (the same on both stores) turning the filled pending runs into a week of work.

    Only numbers computed here are put in the text, never outside input.
    """
    spacing = 7 * 86400 / runs
    i = "CAST(substr(run_id, 7) AS INTEGER)"
    return [
        f"UPDATE kernos_runs SET created_at = {now} - ({runs} - {i}) * {spacing}, "
        f"updated_at = {now} WHERE run_id LIKE 'bench-%'",
        f"UPDATE kernos_runs SET status = CASE WHEN {i} % 50 = 0 THEN 'failed' "
        f"ELSE 'succeeded' END, started_at = created_at + 0.05, "
        f"finished_at = created_at + 0.05 + ({i} % 97) * 0.1, steps = {i} % 7 + 1, "
        f"executions = 1 WHERE run_id LIKE 'bench-%' AND {i} < {runs - 200}",
        "INSERT INTO kernos_events (run_id, kind, at, data) "
        "SELECT run_id, 'llm.completed', finished_at, "
        '\'{"input_tokens": 1200, "output_tokens": 300, "cost": 0.00036}\' '
        f"FROM kernos_runs WHERE run_id LIKE 'bench-%' AND {i} % 5 = 0 "
        "AND finished_at IS NOT NULL",
    ]


def shape(url: str, runs: int) -> None:
    """Spread the runs over a week, finish most of them, give some a model call."""
    statements = _shape_statements(runs, time.time())
    if url.startswith("sqlite"):
        import sqlite3

        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        with conn:
            for statement in statements:
                conn.execute(statement)
        conn.close()
        return
    import psycopg

    with psycopg.connect(url, autocommit=True) as pg:
        for statement in statements:
            pg.execute(statement.encode())  # no parameters: "%" is sent as it is
        pg.execute("ANALYZE")


async def long_run_id(url: str, entries: int) -> str:
    """Run the workflow of ``entries`` steps to its end; return its id."""
    app = kernos.Kernos(url, worker=True)
    await app.open()
    try:
        handle = await app.start(long_run, entries)
        await handle.result(timeout=600)
        return handle.run_id
    finally:
        await app.close()


# -- the server ------------------------------------------------------------------------------


async def serve(url: str) -> None:
    """Child process: serve the API and the dashboard, print the URL and credentials."""
    from kernos.api import ServerSettings
    from kernos.api._server import ApiServer
    from kernos.control import Service, ensure_first_admin
    from kernos.web import mount

    app = kernos.Kernos(url, worker=False)
    await app.open()
    bootstrap = await ensure_first_admin(app.store)
    assert bootstrap is not None
    settings = ServerSettings(key_rate=(1_000_000_000, 60.0), embedded_worker=False)
    server = ApiServer(Service(app), host="127.0.0.1", port=0, settings=settings, dashboard=mount)
    base = await server.start()
    print(
        json.dumps({"url": base, "key": bootstrap.api_key, "password": bootstrap.password}),
        flush=True,
    )
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    await server.stop()
    await app.close()


# -- the client ------------------------------------------------------------------------------

_TIMING = re.compile(r"page;dur=([0-9.]+)")


async def sign_in(client: httpx.AsyncClient, password: str) -> None:
    """Sign in as the first admin through the form (the session cookie stays in ``client``)."""
    form = await client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert token is not None, "no CSRF token on the sign-in form"
    response = await client.post(
        "/login",
        data={"csrf_token": token.group(1), "username": "admin", "password": password},
    )
    assert response.status_code == 303, f"sign-in failed: {response.status_code}"


async def timed(
    client: httpx.AsyncClient, path: str, requests: int, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    """``requests`` GETs of ``path`` one after another (after two for warming up)."""
    latencies: list[float] = []
    server: list[float] = []
    size = 0
    for n in range(requests + 2):
        sent = time.perf_counter()
        response = await client.get(path, headers=headers)
        took = time.perf_counter() - sent
        if response.status_code != 200:
            raise RuntimeError(f"GET {path} answered {response.status_code}")
        if n < 2:
            continue
        latencies.append(took)
        size = len(response.content)
        found = _TIMING.search(response.headers.get("server-timing", ""))
        if found:
            server.append(float(found.group(1)) / 1000)
    result: dict[str, Any] = {
        "requests": requests,
        "p50_ms": round(percentile(latencies, 50) * 1000, 2),
        "p95_ms": round(percentile(latencies, 95) * 1000, 2),
        "max_ms": round(max(latencies) * 1000, 2),
        "bytes": size,
    }
    if server:
        result["server_p50_ms"] = round(percentile(server, 50) * 1000, 2)
        result["server_p95_ms"] = round(percentile(server, 95) * 1000, 2)
    return result


async def measure(url: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Fill and shape the store, run the long workflow, serve, and time each request."""
    started = time.perf_counter()
    await fill(url, args.runs)
    shape(url, args.runs)
    fill_s = time.perf_counter() - started
    log(f"  {args.runs:,} runs in {fill_s:.1f} s; running {args.entries:,} steps")
    started = time.perf_counter()
    run_id = await long_run_id(url, args.entries)
    log(f"  run {run_id} of {args.entries:,} entries in {time.perf_counter() - started:.1f} s")
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--serve",
        url,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert child.stdin is not None and child.stdout is not None
    try:
        info = json.loads(await child.stdout.readline())
        api_headers = {"Authorization": f"Bearer {info['key']}"}
        results: dict[str, dict[str, Any]] = {}
        async with httpx.AsyncClient(base_url=info["url"], timeout=60.0) as client:
            await sign_in(client, info["password"])
            plan = [
                ("runs_page", "/runs", None),
                ("runs_api", "/api/v1/runs?limit=50", api_headers),
                ("run_page", f"/runs/{run_id}", None),
                ("run_api", f"/api/v1/runs/{run_id}/journal", api_headers),
            ]
            for name, path, headers in plan:
                log(f"  {name}: {args.requests} x GET {path}")
                results[name] = await timed(client, path, args.requests, headers)
        child.stdin.write(b"\n")
        await child.stdin.drain()
        await asyncio.wait_for(child.wait(), 30)
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
    for name, baseline in BASELINES.items():
        result, base = results[name], results[baseline]
        result["baseline"] = baseline
        result["ratio_p50"] = round(result["p50_ms"] / base["p50_ms"], 2)
        result["goal_ms"] = GOALS_MS[name]
        result["goal_met"] = result.get("server_p95_ms", result["p95_ms"]) < GOALS_MS[name]
    return [
        {"operation": name, **result, "fill_s": round(fill_s, 1)}
        for name, result in results.items()
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--runs", type=int, default=100_000, help="runs in the store")
    parser.add_argument("--entries", type=int, default=2_000, help="journal entries of one run")
    parser.add_argument("--requests", type=int, default=100, help="timed requests per page")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL, help="admin URL")
    parser.add_argument("--dir", default=None, help="where SQLite files go (default: $TMPDIR)")
    parser.add_argument("--serve", metavar="STORE_URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.serve))
        return
    log(f"dashboard: store={args.store} runs={args.runs:,} entries={args.entries:,}")
    if args.store == "sqlite":
        with scratch_dir(args.dir) as directory:
            url = f"sqlite:///{Path(directory, 'kernos.db').resolve()}"
            results = asyncio.run(measure(url, args))
    else:
        with scratch_postgres(args.postgres_url, f"kernos_bench_{os.getpid()}_dash") as url:
            results = asyncio.run(measure(url, args))
    for result in results:
        emit(
            {
                "benchmark": "dashboard",
                "operation": result.pop("operation"),
                "store": args.store,
                "runs_in_store": args.runs,
                "entries": args.entries,
                **result,
                "python": platform.python_version(),
                "kernos": kernos.__version__,
                "load_avg_1m": round(os.getloadavg()[0], 2),
            }
        )


if __name__ == "__main__":
    main()
