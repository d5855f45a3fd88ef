"""Live event streams: events per second delivered to SSE clients, and latency.

A Kernos server (``ApiServer``, embedded worker, in a child process) serves
``GET /api/v1/events``; ``--clients`` SSE clients (httpx, in this process)
subscribe to one tenant's stream. A producer then writes ``--rate`` events per
second for ``--seconds`` seconds into one run of that tenant:

- ``--producer engine`` (default): in the server process, through the engine's
  journal writer (group commit), which wakes the event hub after each commit,
  as step events of runs executing in the server do;
- ``--producer store``: from this process through a store of its own, as
  another worker process would; the server sees those by polling
  (``stream_poll_s``, 50 ms).

Latency is the client's receive time minus the event's ``at`` (the store clock
when its transaction began), so it spans the commit, the hub's poll, the
fan-out, the HTTP write and the client's parse. Every client must receive every
event of the tenant in order: ``gaps``, ``duplicates`` and ``out_of_order``
count what did not. The default 100 events/s to 100 clients is the goal's load:
10,000 events/s delivered, p99 under 100 ms, no gaps or duplicates.

Clients read with a minimal HTTP/1.1 reader by default (``--client raw``), so
their own CPU stays small next to the server's; ``--client httpx`` uses httpx.

Prints one JSON object: ``clients``; ``events_per_s`` (events received by all
clients together, per second from the start of production until every client
had the last event); ``latency_ms_p50``/``_p99``/``_max``; ``gaps`` (expected
events a client never got, summed over clients), ``duplicates``,
``out_of_order``; ``disconnects`` and ``end_reasons`` (streams that ended
early); ``events_written``, ``produced_per_s``, ``delivered``, ``seconds``;
``client_cpu_s``, ``server_cpu_s`` (process CPU during the measurement);
``load_avg_1m``.

    python benchmarks/stream.py --store sqlite --clients 100 --seconds 10
    python benchmarks/stream.py --store postgres --producer store --rate 500
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import DEFAULT_POSTGRES_URL, emit, log, percentile, scratch_dir, scratch_postgres

TENANT = "bench"
RUN_ID = "stream-bench"
TICK = 0.01  # the producer writes what is due every 10 ms
DRAIN_TIMEOUT = 30.0  # seconds after production for the clients to catch up


# -- the server process -----------------------------------------------------------------


async def serve(store_url: str, rate: int, producer: str) -> None:
    """Run the server; produce when told on stdin; report on stdout."""
    import kernos
    from kernos.api import ServerSettings
    from kernos.api._server import ApiServer
    from kernos.control import Principal, Service
    from kernos.records import Role
    from kernos.store import NewRun

    app = kernos.Kernos(store_url)
    await app.open()
    service = Service(app)
    await service.admin.create_tenant(Principal.system("default"), TENANT, TENANT)
    _, key = await service.admin.create_key(Principal.system(TENANT), "bench", Role.VIEWER)
    settings = ServerSettings(key_rate=(1_000_000, 60.0))
    server = ApiServer(service, host="127.0.0.1", port=0, settings=settings)
    url = await server.start()
    app.on_events_committed(server.api.state.kernos.hub.wake)
    await app.store.create_run(
        NewRun(run_id=RUN_ID, workflow="bench", version="1", input="[]", tenant=TENANT)
    )
    start = await app.store.last_event_id()
    _say({"url": url, "key": key, "start": start})
    loop = asyncio.get_running_loop()
    command = (await loop.run_in_executor(None, sys.stdin.readline)).split()
    cpu = time.process_time()
    if command and command[0] == "go" and producer == "engine":
        produced, seconds = await produce_through_engine(app, rate, float(command[1]))
        _say({"produced": produced, "seconds": seconds})
    await loop.run_in_executor(None, sys.stdin.readline)  # "stop": the clients have it all
    _say({"server_cpu_s": time.process_time() - cpu})
    await server.stop()
    await app.close()


def _say(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


async def produce_through_engine(app: Any, rate: int, seconds: float) -> tuple[int, float]:
    """Submit ``rate`` events a second to the journal writer for ``seconds``."""
    from kernos.store import EventWrite

    writer = app.engine.writer
    return await _produce(
        lambda n, first: asyncio.gather(
            *(
                writer.submit(EventWrite(run_id=RUN_ID, kind="bench.tick", data=f'{{"i":{i}}}'))
                for i in range(first, first + n)
            )
        ),
        rate,
        seconds,
    )


async def produce_through_store(store_url: str, rate: int, seconds: float) -> tuple[int, float]:
    """Write ``rate`` events a second through a store of this process for ``seconds``."""
    from kernos.store import EventWrite, open_store

    store = open_store(store_url)
    try:

        async def write(n: int, first: int) -> None:
            await store.apply(
                [
                    EventWrite(run_id=RUN_ID, kind="bench.tick", data=f'{{"i":{i}}}')
                    for i in range(first, first + n)
                ]
            )

        return await _produce(write, rate, seconds)
    finally:
        await store.close()


async def _produce(write: Any, rate: int, seconds: float) -> tuple[int, float]:
    started = time.perf_counter()
    produced = 0
    pending: set[asyncio.Future[Any]] = set()
    while (elapsed := time.perf_counter() - started) < seconds:
        due = int(elapsed * rate) + 1 - produced
        if due > 0:
            pending.add(asyncio.ensure_future(write(due, produced)))
            produced += due
        pending = {f for f in pending if not f.done()}
        await asyncio.sleep(TICK)
    await asyncio.gather(*pending)
    return produced, time.perf_counter() - started


# -- the clients -------------------------------------------------------------------------


@dataclass
class Client:
    """What one SSE client received."""

    ids: list[int] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    ended: str | None = None  # an `event: error` frame's code, or an exception

    @property
    def last(self) -> int:
        return self.ids[-1] if self.ids else 0


def _record(client: Client, frames: list[bytes], now: float) -> None:
    import orjson

    for frame in frames:
        if frame.startswith(b"id: "):
            event = orjson.loads(frame[frame.index(b"\ndata: ") + 7 :])
            client.ids.append(event["event_id"])
            client.latencies.append(now - event["at"])
        elif frame.startswith(b"retry:"):
            client.connected.set()
        elif frame.startswith(b"event: error"):
            client.ended = orjson.loads(frame.split(b"data: ", 1)[1])["code"]


async def listen_httpx(url: str, key: str, start: int, client: Client) -> None:
    """Read the stream from ``start`` with httpx until cancelled."""
    import httpx

    headers = {"Authorization": f"Bearer {key}", "Last-Event-ID": str(start)}
    try:
        async with (
            httpx.AsyncClient(timeout=None) as http,
            http.stream("GET", url + "/api/v1/events", headers=headers) as response,
        ):
            response.raise_for_status()
            buffer = b""
            async for chunk in response.aiter_bytes():
                buffer += chunk
                *frames, buffer = buffer.split(b"\n\n")
                _record(client, frames, time.time())
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        client.ended = f"{type(exc).__name__}: {exc}"
    client.connected.set()


class _RawSse(asyncio.Protocol):
    """A minimal HTTP/1.1 SSE reader (chunked transfer encoding), far cheaper than a
    full client, so the clients' CPU does not dominate what is measured."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.raw = b""
        self.body = b""
        self.head = True
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        now = time.time()
        self.raw += data
        if self.head:
            end = self.raw.find(b"\r\n\r\n")
            if end < 0:
                return
            status = self.raw.split(b" ", 2)[1]
            if status != b"200" or b"chunked" not in self.raw[:end].lower():
                self.client.ended = f"HTTP {status.decode()}"
                self.client.connected.set()
                return
            self.raw, self.head = self.raw[end + 4 :], False
        while True:
            line_end = self.raw.find(b"\r\n")
            if line_end < 0:
                break
            size = int(self.raw[:line_end], 16)
            if len(self.raw) < line_end + 2 + size + 2:
                break
            self.body += self.raw[line_end + 2 : line_end + 2 + size]
            self.raw = self.raw[line_end + 2 + size + 2 :]
        *frames, self.body = self.body.split(b"\n\n")
        _record(self.client, frames, now)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)


async def listen_raw(url: str, key: str, start: int, client: Client) -> None:
    """Read the stream from ``start`` over a bare connection until cancelled."""
    host, port = url.removeprefix("http://").split(":")
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_connection(lambda: _RawSse(client), host, int(port))
    request = (
        f"GET /api/v1/events HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Authorization: Bearer {key}\r\nLast-Event-ID: {start}\r\n\r\n"
    )
    transport.write(request.encode())
    try:
        await protocol.lost
        client.ended = client.ended or "connection closed"
    finally:
        transport.close()
        client.connected.set()


async def measure(
    store_url: str, *, clients: int, seconds: float, rate: int, producer: str, client: str
) -> dict[str, Any]:
    """Start the server, connect the clients, produce, and tally what arrived."""
    from kernos.store import open_store

    child = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        *("--serve", store_url, "--rate", str(rate), "--producer", producer),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert child.stdin is not None and child.stdout is not None

    async def tell(line: str) -> None:
        assert child.stdin is not None
        child.stdin.write(line.encode() + b"\n")
        await child.stdin.drain()

    try:
        info = json.loads(await child.stdout.readline())
        listen = listen_raw if client == "raw" else listen_httpx
        states = [Client() for _ in range(clients)]
        tasks = [
            asyncio.create_task(listen(info["url"], info["key"], info["start"], state))
            for state in states
        ]
        await asyncio.gather(*(state.connected.wait() for state in states))
        log(f"stream: {clients} clients connected; producing {rate}/s for {seconds}s")
        cpu = time.process_time()
        go = time.perf_counter()
        await tell(f"go {seconds}")
        if producer == "engine":
            report = json.loads(await child.stdout.readline())
        else:
            produced, spent = await produce_through_store(store_url, rate, seconds)
            report = {"produced": produced, "seconds": spent}
        store = open_store(store_url)
        try:
            expected = await _all_ids(store, info["start"])
        finally:
            await store.close()
        await _caught_up(states, expected[-1])
        delivered_at = time.perf_counter()
        client_cpu = time.process_time() - cpu
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await tell("stop")
        report.update(json.loads(await child.stdout.readline()))
        async with asyncio.timeout(30):
            await child.wait()
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
    return tally(states, expected, report, delivered_at - go, client_cpu)


async def _caught_up(states: list[Client], target: int) -> None:
    """Wait until every client that is still connected has event ``target``."""
    deadline = time.perf_counter() + DRAIN_TIMEOUT
    while time.perf_counter() < deadline:
        if all(s.last >= target or s.ended is not None for s in states):
            return
        await asyncio.sleep(0.005)


async def _all_ids(store: Any, after: int) -> list[int]:
    ids: list[int] = []
    while True:
        page = await store.stream_events(after=after, limit=10_000, tenant=TENANT)
        ids += [e.event_id for e in page]
        if len(page) < 10_000:
            return ids
        after = page[-1].event_id


def tally(
    states: list[Client],
    expected: list[int],
    report: dict[str, Any],
    seconds: float,
    client_cpu: float,
) -> dict[str, Any]:
    """The output fields."""
    want = set(expected)
    delivered = sum(len(s.ids) for s in states)
    latencies = [t for s in states for t in s.latencies]
    return {
        "clients": len(states),
        "events_per_s": round(delivered / seconds, 1),
        "latency_ms_p50": round(percentile(latencies, 50) * 1000, 2),
        "latency_ms_p99": round(percentile(latencies, 99) * 1000, 2),
        "gaps": sum(len(want - set(s.ids)) for s in states),
        "duplicates": sum(len(s.ids) - len(set(s.ids)) for s in states),
        "out_of_order": sum(
            sum(1 for a, b in zip(s.ids, s.ids[1:], strict=False) if b <= a) for s in states
        ),
        "disconnects": sum(1 for s in states if s.ended is not None),
        "end_reasons": sorted({s.ended for s in states if s.ended is not None}),
        "events_written": len(expected),
        "produced_per_s": round(report["produced"] / report["seconds"], 1),
        "delivered": delivered,
        "seconds": round(seconds, 3),
        "latency_ms_max": round(max(latencies, default=0.0) * 1000, 2),
        "client_cpu_s": round(client_cpu, 2),
        **({"server_cpu_s": round(report["server_cpu_s"], 2)} if "server_cpu_s" in report else {}),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Measure on a scratch store of the chosen backend."""
    options = {
        "clients": args.clients,
        "seconds": args.seconds,
        "rate": args.rate,
        "producer": args.producer,
        "client": args.client,
    }
    if args.store == "sqlite":
        with scratch_dir(args.dir) as directory:
            url = f"sqlite:///{Path(directory, 'kernos.db').resolve()}"
            return asyncio.run(measure(url, **options))
    with scratch_postgres(args.postgres_url, f"kernos_bench_{os.getpid()}_stream") as url:
        return asyncio.run(measure(url, **options))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=int, default=100, help="events written per second")
    parser.add_argument("--producer", choices=["engine", "store"], default="engine")
    parser.add_argument(
        "--client", choices=["raw", "httpx"], default="raw", help="how clients read"
    )
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL, help="admin URL")
    parser.add_argument("--dir", default=None, help="where SQLite files go (default: $TMPDIR)")
    parser.add_argument("--serve", metavar="STORE_URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.serve, args.rate, args.producer))
        return
    log(
        f"stream: store={args.store} clients={args.clients} rate={args.rate}/s "
        f"seconds={args.seconds} producer={args.producer}"
    )
    import kernos

    result = run(args)
    emit(
        {
            "benchmark": "stream",
            "store": args.store,
            "producer": args.producer,
            "client": args.client,
            "rate": args.rate,
            **result,
            "python": platform.python_version(),
            "kernos": kernos.__version__,
            "load_avg_1m": round(os.getloadavg()[0], 2),
        }
    )


if __name__ == "__main__":
    main()
