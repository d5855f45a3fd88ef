"""REST API latency: list runs, get a run and start a run under concurrent clients.

The store is filled with ``--runs`` runs (100,000 by default) of one tenant, in
batches of 1,000 per transaction through the store's own enqueue (then, on
PostgreSQL, ``ANALYZE``, as autovacuum would soon do). A Kernos API
server (``ApiServer`` on a free loopback port, no embedded worker, so started
runs stay pending) then runs in a child process, so that the clients' CPU does
not share the server's event loop and GIL; ``--server inline`` runs it in this
process instead. For each operation in turn, ``--clients`` concurrent clients
(one keep-alive connection each, an admin API key) send requests back to
back for ``--seconds`` seconds after ``--warmup`` seconds (a minimal HTTP/1.1
client, cheaper than httpx, so that the clients are not what is measured):

- ``list``: ``GET /api/v1/runs?limit=50`` (the first page, newest first);
- ``get``: ``GET /api/v1/runs/{id}`` of a random run among those in the store;
- ``start``: ``POST /api/v1/runs`` of a one-step workflow (validated, audited,
  enqueued).

Latency is measured by the client, from sending the request to having read the
whole response, so it includes the client's own work. Prints one JSON object
per operation: ``operation``, ``store``, ``clients``, ``runs_in_store``,
``requests``, ``errors`` (non-2xx answers or transport failures),
``requests_per_s``, ``p50_ms``, ``p95_ms``, ``p99_ms``, ``max_ms``,
``server_cpu_s`` and ``client_cpu_s`` (process CPU during the measurement),
``fill_s`` and ``load_avg_1m``. The goal: p95 under 25 ms for reads.

``--server-processes N`` starts N server processes over the same store (each
on its own port, as behind a load balancer; the clients are spread over them
evenly, and ``server_cpu_s`` adds up their CPU). ``--loop uvloop`` runs the
servers' event loops on uvloop instead of asyncio's own.

    python benchmarks/api.py --store sqlite
    python benchmarks/api.py --store postgres --clients 50 --seconds 10
    python benchmarks/api.py --store sqlite --server-processes 2 --loop uvloop
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import sys
import time
from pathlib import Path
from typing import Any

from _common import DEFAULT_POSTGRES_URL, emit, log, percentile, scratch_dir, scratch_postgres

import kernos

OPERATIONS = ("list", "get", "start")
BATCH = 1000


@kernos.workflow(name="bench_api_noop")
async def noop(i: int) -> int:
    """What the start requests start (it never runs: the server has no worker)."""
    return i


# -- filling the store ---------------------------------------------------------------------


async def fill(url: str, runs: int) -> list[str]:
    """Put ``runs`` pending runs in the store, a batch per transaction; return their ids."""
    from kernos.store import open_store
    from kernos.store._runs import enqueue

    app = kernos.Kernos(url, worker=False)
    store = open_store(url)
    try:
        await store.migrate()
        ids: list[str] = []
        for start in range(0, runs, BATCH):
            batch = [
                app.new_queued_run("default", noop, (), {"i": i}, run_id=f"bench-{i:07d}")
                for i in range(start, min(start + BATCH, runs))
            ]
            await store._call(lambda tx, batch=batch: [enqueue(tx, run) for run in batch])
            ids += [run.run_id for run in batch]
            if (start // BATCH) % 20 == 0:
                log(f"  filled {len(ids):,} runs")
    finally:
        await store.close()
    if url.startswith("postgresql"):
        # Statistics, as autovacuum would gather them within a minute or so. Right
        # after a bulk load without them, the planner expects a handful of rows and
        # sorts the whole tenant for every page (about 130 ms at 100,000 runs).
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("ANALYZE")
    return ids


# -- the server ------------------------------------------------------------------------------


async def start_server(url: str) -> tuple[Any, str, str | None]:
    """An API server on a free port without an embedded worker: (server, base URL, key).

    The key is the first admin's, made by the first server over a store (None after).
    """
    from kernos.api import ServerSettings
    from kernos.api._server import ApiServer
    from kernos.control import Service, ensure_first_admin

    app = kernos.Kernos(url, worker=False)
    await app.open()
    bootstrap = await ensure_first_admin(app.store)
    settings = ServerSettings(key_rate=(1_000_000_000, 60.0), embedded_worker=False)
    server = ApiServer(Service(app), host="127.0.0.1", port=0, settings=settings)
    return server, await server.start(), bootstrap.api_key if bootstrap is not None else None


async def serve(url: str) -> None:
    """Child process: serve, print the URL and key, report CPU per operation, stop on EOF."""
    server, base, key = await start_server(url)
    print(json.dumps({"url": base, "key": key}), flush=True)
    loop = asyncio.get_running_loop()
    while (await loop.run_in_executor(None, sys.stdin.readline)).strip():  # "go"
        cpu = time.process_time()
        await loop.run_in_executor(None, sys.stdin.readline)  # the measurement ended
        print(json.dumps({"server_cpu_s": time.process_time() - cpu}), flush=True)
    await server.stop()
    await server.service.app.close()


# -- the clients -----------------------------------------------------------------------------


def _request(operation: str, ids: list[str], serial: list[int]) -> tuple[str, str, Any]:
    if operation == "list":
        return "GET", "/api/v1/runs?limit=50", None
    if operation == "get":
        return "GET", f"/api/v1/runs/{random.choice(ids)}", None
    serial[0] += 1
    return "POST", "/api/v1/runs", {"workflow": "bench_api_noop", "input": {"i": serial[0]}}


class RawClient:
    """A minimal HTTP/1.1 keep-alive client: one connection, one request at a time.

    Its CPU per request is a small fraction of httpx's, so the client process can
    keep 50 connections busy without becoming the bottleneck it measures.
    """

    def __init__(self, base: str, key: str) -> None:
        host, port = base.removeprefix("http://").split(":")
        self.host, self.port = host, int(port)
        self.headers = f"Host: {host}\r\nAuthorization: Bearer {key}\r\n".encode()
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: Any) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        payload = json.dumps(body).encode() if body is not None else b""
        head = f"{method} {path} HTTP/1.1\r\n".encode() + self.headers
        if body is not None:
            head += b"Content-Type: application/json\r\n"
        head += f"Content-Length: {len(payload)}\r\n\r\n".encode()
        self.writer.write(head + payload)
        response = await self.reader.readuntil(b"\r\n\r\n")
        status = int(response.split(b" ", 2)[1])
        length = 0
        for line in response.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        await self.reader.readexactly(length)
        return status

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            await self.writer.wait_closed()


async def load(
    bases: list[str],
    key: str,
    operation: str,
    ids: list[str],
    clients: int,
    warmup: float,
    seconds: float,
) -> dict[str, Any]:
    """``clients`` clients sending ``operation`` requests back to back; latencies after warmup.

    Client ``i`` talks to ``bases[i % len(bases)]``.
    """
    latencies: list[float] = []
    errors = 0
    serial = [0]
    loop = asyncio.get_running_loop()
    begin = loop.time() + warmup
    end = begin + seconds

    async def client(base: str) -> None:
        nonlocal errors
        http = RawClient(base, key)
        try:
            while (sent := loop.time()) < end:
                method, path, body = _request(operation, ids, serial)
                try:
                    failed = not 200 <= await http.request(method, path, body) < 300
                except (OSError, asyncio.IncompleteReadError, ValueError):
                    failed = True
                    await http.close()
                    http = RawClient(base, key)
                done = loop.time()
                if sent >= begin:
                    latencies.append(done - sent)
                    errors += failed
        finally:
            await http.close()

    await asyncio.gather(*(client(bases[i % len(bases)]) for i in range(clients)))
    return {
        "requests": len(latencies),
        "errors": errors,
        "requests_per_s": round(len(latencies) / seconds, 1),
        "p50_ms": round(percentile(latencies, 50) * 1000, 2),
        "p95_ms": round(percentile(latencies, 95) * 1000, 2),
        "p99_ms": round(percentile(latencies, 99) * 1000, 2),
        "max_ms": round(max(latencies, default=0) * 1000, 2),
    }


async def measure(url: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Fill the store, start the server, load it with each operation in turn."""
    started = time.perf_counter()
    ids = await fill(url, args.runs)
    fill_s = time.perf_counter() - started
    log(f"  filled {len(ids):,} runs in {fill_s:.1f} s")
    results = []
    if args.server == "inline":
        server, base, key = await start_server(url)
        assert key is not None
        try:
            for operation in args.operations:
                cpu = time.process_time()
                result = await load(
                    [base], key, operation, ids, args.clients, args.warmup, args.seconds
                )
                result["client_cpu_s"] = round(time.process_time() - cpu, 2)  # server too
                results.append({"operation": operation, **result, "fill_s": round(fill_s, 1)})
        finally:
            await server.stop()
            await server.service.app.close()
        return results
    children: list[asyncio.subprocess.Process] = []
    try:
        infos = []
        for _ in range(args.server_processes):  # one by one: the first makes the admin key
            children.append(await _spawn_server(url, args.loop))
            stdout = children[-1].stdout
            assert stdout is not None
            infos.append(json.loads(await stdout.readline()))
        key = infos[0]["key"]
        bases = [info["url"] for info in infos]
        for operation in args.operations:
            await _tell(children, b"go\n")
            cpu = time.process_time()
            result = await load(bases, key, operation, ids, args.clients, args.warmup, args.seconds)
            result["client_cpu_s"] = round(time.process_time() - cpu, 2)
            await _tell(children, b"done\n")
            server_cpu = 0.0
            for child in children:
                assert child.stdout is not None
                server_cpu += json.loads(await child.stdout.readline())["server_cpu_s"]
            result["server_cpu_s"] = round(server_cpu, 2)
            results.append({"operation": operation, **result, "fill_s": round(fill_s, 1)})
        await _tell(children, b"\n")
        for child in children:
            await asyncio.wait_for(child.wait(), 30)
    finally:
        for child in children:
            if child.returncode is None:
                child.kill()
                await child.wait()
    return results


async def _spawn_server(url: str, loop: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--serve",
        url,
        "--loop",
        loop,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )


async def _tell(children: list[asyncio.subprocess.Process], line: bytes) -> None:
    for child in children:
        assert child.stdin is not None
        child.stdin.write(line)
        await child.stdin.drain()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--runs", type=int, default=100_000, help="runs in the store")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10.0, help="measured, per operation")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds before measuring")
    parser.add_argument("--operations", type=lambda text: text.split(","), default=list(OPERATIONS))
    parser.add_argument("--server", choices=["process", "inline"], default="process")
    parser.add_argument(
        "--server-processes", type=int, default=1, help="server processes (--server process)"
    )
    parser.add_argument(
        "--loop", choices=["asyncio", "uvloop"], default="asyncio", help="the servers' event loop"
    )
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL, help="admin URL")
    parser.add_argument("--dir", default=None, help="where SQLite files go (default: $TMPDIR)")
    parser.add_argument("--serve", metavar="STORE_URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        if args.loop == "uvloop":
            import uvloop

            uvloop.run(serve(args.serve))
        else:
            asyncio.run(serve(args.serve))
        return
    unknown = set(args.operations) - set(OPERATIONS)
    if unknown:
        parser.error(f"unknown operations {sorted(unknown)}; choose from {OPERATIONS}")
    log(
        f"api: store={args.store} runs={args.runs:,} clients={args.clients} "
        f"seconds={args.seconds} server={args.server}"
    )
    if args.store == "sqlite":
        with scratch_dir(args.dir) as directory:
            url = f"sqlite:///{Path(directory, 'kernos.db').resolve()}"
            results = asyncio.run(measure(url, args))
    else:
        with scratch_postgres(args.postgres_url, f"kernos_bench_{os.getpid()}_api") as url:
            results = asyncio.run(measure(url, args))
    for result in results:
        emit(
            {
                "benchmark": "api",
                "operation": result.pop("operation"),
                "store": args.store,
                "clients": args.clients,
                "runs_in_store": args.runs,
                "seconds": args.seconds,
                "server": args.server,
                "server_processes": args.server_processes if args.server == "process" else 0,
                "loop": args.loop,
                **result,
                "python": platform.python_version(),
                "kernos": kernos.__version__,
                "load_avg_1m": round(os.getloadavg()[0], 2),
            }
        )


if __name__ == "__main__":
    main()
