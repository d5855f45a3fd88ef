"""Live event streams: the hub on real stores, SSE and WebSocket through a real server.

The hub tests write events through the store (or with raw SQL, to make holes
and out-of-order commits) and read them from subscriptions. The end-to-end
tests run uvicorn on loopback and talk to it with httpx and websockets.
"""

from __future__ import annotations

import asyncio
import base64
import os
import random
import socket
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import orjson
import pytest
from api_support import Live, greet, live_server
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from kernos.api import ServerSettings
from kernos.api import _streams as streams
from kernos.api._hub import EndReason, EventHub, StreamEvent, Subscription
from kernos.api._state import ServerState
from kernos.records import Role
from kernos.store import EventWrite, NewRun, Store

pytestmark = pytest.mark.timeout(180)

MakeHub = Callable[..., Awaitable[EventHub]]


@pytest.fixture
async def make_hub() -> AsyncIterator[MakeHub]:
    """Start hubs over stores; they are stopped when the test ends."""
    hubs: list[EventHub] = []

    async def make(store: Store, **options: Any) -> EventHub:
        options.setdefault("poll_interval", 0.02)
        hub = EventHub(store, **options)
        await hub.start()
        hubs.append(hub)
        return hub

    yield make
    for hub in hubs:
        await hub.stop()


async def add_run(
    store: Store, run_id: str, *, tenant: str = "default", workflow: str = "wf"
) -> None:
    """Create a pending run (it writes a run.created event)."""
    await store.create_run(
        NewRun(run_id=run_id, workflow=workflow, version="1", input="[]", tenant=tenant)
    )


async def emit(store: Store, run_id: str, count: int, kind: str = "test.tick") -> None:
    """Append ``count`` events to a run in one transaction."""
    data = orjson.dumps({"n": 1}).decode()
    await store.apply([EventWrite(run_id=run_id, kind=kind, data=data)] * count)


async def expected_ids(store: Store, after: int, **filters: Any) -> list[int]:
    """Every event id above ``after`` matching ``filters``, read straight from the store."""
    ids: list[int] = []
    while True:
        page = await store.stream_events(after=after, limit=1000, **filters)
        ids += [e.event_id for e in page]
        if len(page) < 1000:
            return ids
        after = page[-1].event_id


async def take(sub: Subscription, count: int, *, timeout: float = 30.0) -> list[StreamEvent]:
    """Receive exactly ``count`` events (failing on timeout or an ended subscription)."""
    got: list[StreamEvent] = []
    async with asyncio.timeout(timeout):
        while len(got) < count:
            batch = await sub.receive(max_events=count - len(got))
            assert batch is not None, f"subscription ended: {sub.reason}"
            got += batch
    return got


async def nothing_within(sub: Subscription, seconds: float) -> bool:
    """Whether no event arrives for ``seconds``."""
    return await sub.receive(timeout=seconds) == []


def ids_of(items: list[StreamEvent]) -> list[int]:
    return [item.event_id for item in items]


def raw_sql(url: str, statements: list[str]) -> None:
    """Run statements in one transaction on the store's database, bypassing the store."""
    if url.startswith("sqlite:///"):
        conn = sqlite3.connect(url[len("sqlite:///") :])
        try:
            with conn:
                for statement in statements:
                    conn.execute(statement)
        finally:
            conn.close()
        return
    import psycopg

    with psycopg.connect(url) as pg:
        for statement in statements:
            pg.execute(statement.encode())


# -- the hub ------------------------------------------------------------------------------


async def test_replay_in_pages_then_live_in_order(store: Store, make_hub: MakeHub) -> None:
    await add_run(store, "r1")
    await emit(store, "r1", 40)
    hub = await make_hub(store, page=7)
    first = (await expected_ids(store, 0))[0]

    sub = hub.subscribe(first + 4, tenant="default")
    replayed = await take(sub, 36, timeout=30)
    assert ids_of(replayed) == await expected_ids(store, first + 4)

    for _ in range(5):
        await emit(store, "r1", 9)
        hub.wake()
    live = await take(sub, 45)
    assert ids_of(replayed + live) == await expected_ids(store, first + 4)
    assert await nothing_within(sub, 0.05)  # caught up: now on the live fan-out
    assert sub.live and sub.position == ids_of(live)[-1]

    # "From now": only what is written afterwards.
    now = hub.subscribe(None, tenant="default")
    await emit(store, "r1", 3)
    hub.wake()
    assert ids_of(await take(now, 3)) == (await expected_ids(store, 0))[-3:]


async def test_subscribing_while_events_flow_never_duplicates_or_skips(
    store: Store, make_hub: MakeHub
) -> None:
    await add_run(store, "r1")
    hub = await make_hub(store, page=50)
    start = await store.last_event_id()
    stop = asyncio.Event()
    final: list[int] = []

    async def produce() -> None:
        while not stop.is_set():
            await emit(store, "r1", random.randint(1, 20))
            hub.wake()
            await asyncio.sleep(random.random() * 0.01)

    async def consume(after: int) -> tuple[int, list[int]]:
        sub = hub.subscribe(after, tenant="default")
        got: list[int] = []
        while not final or sub.position < final[0]:
            batch = await sub.receive(max_events=random.randint(1, 60), timeout=0.05)
            assert batch is not None
            got += ids_of(batch)
            await asyncio.sleep(random.random() * 0.005)
        return after, got

    producer = asyncio.create_task(produce())
    consumers = []
    for _ in range(20):  # join at random moments, from random points (some in the future)
        await asyncio.sleep(random.random() * 0.05)
        consumers.append(asyncio.create_task(consume(start + random.randint(0, 50))))
    await asyncio.sleep(0.2)
    stop.set()
    await producer
    final.append(await store.last_event_id())
    hub.wake()
    everything = await expected_ids(store, start)
    for task in consumers:
        after, got = await task
        assert got == [i for i in everything if i > after]


async def test_tenant_run_workflow_and_kind_filters(store: Store, make_hub: MakeHub) -> None:
    await add_run(store, "a1", tenant="acme", workflow="brief")
    await add_run(store, "a2", tenant="acme", workflow="audit")
    await add_run(store, "b1", tenant="umbrella", workflow="brief")
    hub = await make_hub(store)
    start = await store.last_event_id()
    subs = {
        "acme": hub.subscribe(start, tenant="acme"),
        "run": hub.subscribe(start, tenant="acme", run_id="a2"),
        "workflow": hub.subscribe(start, tenant="acme", workflow="brief"),
        "kinds": hub.subscribe(start, tenant="acme", kinds=["test.b", "test.c"]),
        "foreign run": hub.subscribe(start, tenant="acme", run_id="b1"),
        "umbrella": hub.subscribe(start, tenant="umbrella"),
    }
    for round_ in range(3):
        for run in ("a1", "a2", "b1"):
            await emit(store, run, 2, kind="test.a")
            await emit(store, run, 1, kind="test.b" if round_ % 2 else "test.c")
        hub.wake()
        if round_ == 1:  # half replayed, half live: a late subscriber with the same filters
            subs["late kinds"] = hub.subscribe(start, tenant="acme", kinds=["test.b", "test.c"])
    expect = {
        "acme": {"tenant": "acme"},
        "run": {"tenant": "acme", "run_id": "a2"},
        "workflow": {"tenant": "acme", "workflow": "brief"},
        "kinds": {"tenant": "acme", "kinds": ["test.b", "test.c"]},
        "late kinds": {"tenant": "acme", "kinds": ["test.b", "test.c"]},
        "foreign run": {"tenant": "acme", "run_id": "b1"},
        "umbrella": {"tenant": "umbrella"},
    }
    for name, filters in expect.items():
        want = await expected_ids(store, start, **filters)
        got = ids_of(await take(subs[name], len(want)))
        assert got == want, name
        assert await nothing_within(subs[name], 0.1), name
    assert expect["foreign run"] and not await expected_ids(
        store, start, tenant="acme", run_id="b1"
    )


async def test_a_hole_holds_delivery_then_is_skipped(
    store: Store, store_url: str, make_hub: MakeHub
) -> None:
    await add_run(store, "r1")
    hub = await make_hub(store, gap_hold=0.3)
    sub = hub.subscribe(None, tenant="default")
    base = await store.last_event_id()
    insert = (
        "INSERT INTO kernos_events (run_id, kind, at, data) VALUES ('r1', 'test.hole', 0, NULL)"
    )
    # Three events in one transaction, the middle one deleted before commit: a
    # permanent hole the hub cannot tell from a commit still in flight.
    await asyncio.to_thread(
        raw_sql,
        store_url,
        [insert, insert, insert, f"DELETE FROM kernos_events WHERE event_id = {base + 2}"],
    )
    hub.wake()
    assert ids_of(await take(sub, 1)) == [base + 1]
    assert ids_of(await take(sub, 1)) == [base + 3]  # after the hold
    assert hub.gaps_skipped == 1 and hub.position == base + 3
    # A subscriber replaying across the hole reads what the store has.
    again = hub.subscribe(base, tenant="default")
    assert ids_of(await take(again, 2)) == [base + 1, base + 3]


@pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.postgres)])
async def test_out_of_order_commits_on_postgres_are_delivered_in_order(
    store: Store, store_url: str, make_hub: MakeHub
) -> None:
    import psycopg

    await add_run(store, "r1")
    hub = await make_hub(store, gap_hold=60.0)
    sub = hub.subscribe(None, tenant="default")
    insert = (
        b"INSERT INTO kernos_events (run_id, kind, at, data) "
        b"VALUES ('r1', 'test.race', 0, NULL) RETURNING event_id"
    )
    first = await psycopg.AsyncConnection.connect(store_url)
    second = await psycopg.AsyncConnection.connect(store_url)
    try:
        (early,) = await (await first.execute(insert)).fetchone()  # type: ignore[misc]
        (late,) = await (await second.execute(insert)).fetchone()  # type: ignore[misc]
        assert late == early + 1
        await second.commit()  # id early+1 is visible, id early is not yet
        hub.wake()
        assert await nothing_within(sub, 0.5), "delivered past a transaction in flight"
        assert hub.position == early - 1

        # Meanwhile a client resumes from before the hole: it must wait too.
        resumed = hub.subscribe(early - 1, tenant="default")
        assert await nothing_within(resumed, 0.2)

        await first.commit()
        hub.wake()
        assert ids_of(await take(sub, 2)) == [early, late]
        assert ids_of(await take(resumed, 2)) == [early, late]

        # A rolled-back insert leaves a hole for good: skipped after the hold.
        hub.gap_hold = 0.3
        (lost,) = await (await first.execute(insert)).fetchone()  # type: ignore[misc]
        (kept,) = await (await second.execute(insert)).fetchone()  # type: ignore[misc]
        await second.commit()
        await first.rollback()
        hub.wake()
        assert ids_of(await take(sub, 1)) == [kept] and kept == lost + 1
        assert hub.gaps_skipped == 1
        assert await nothing_within(sub, 0.1)
    finally:
        await first.close()
        await second.close()


async def test_slow_consumer_is_ended_with_a_reason_and_others_go_on(
    store: Store, make_hub: MakeHub
) -> None:
    await add_run(store, "r1")
    hub = await make_hub(store, buffer=20)
    fast = hub.subscribe(None, tenant="default")
    slow = hub.subscribe(None, tenant="default")
    start = await store.last_event_id()
    for _ in range(3):
        await emit(store, "r1", 8)
        hub.wake()
        await take(fast, 8)
    assert await slow.receive() is None
    assert slow.end is EndReason.SLOW_CONSUMER
    assert slow.reason == (
        "slow consumer: more than 20 events buffered; reconnect with Last-Event-ID"
    )
    assert fast.end is None and fast.position == start + 24
    # The slow client resumes from what it had: nothing is lost.
    resumed = hub.subscribe(slow.position, tenant="default")
    assert ids_of(await take(resumed, 24)) == list(range(start + 1, start + 25))
    assert await nothing_within(resumed, 0.05)
    assert hub.subscriptions == 2  # fast and resumed; the slow one is forgotten


async def test_stop_ends_subscriptions(store: Store, make_hub: MakeHub) -> None:
    await add_run(store, "r1")
    hub = await make_hub(store)
    sub = hub.subscribe(None, tenant="default")
    assert await sub.receive(timeout=0.01) == []
    waiting = asyncio.create_task(sub.receive())
    await asyncio.sleep(0)
    catching_up = hub.subscribe(0, tenant="default")  # has history to replay
    assert not catching_up.live
    await hub.stop()
    assert await waiting is None and sub.end is EndReason.SHUTDOWN
    assert await catching_up.receive() is None and catching_up.end is EndReason.SHUTDOWN
    with pytest.raises(RuntimeError, match="not running"):
        hub.subscribe(None, tenant="default")


async def test_engine_commits_wake_the_hub(store_url: str, make_hub: MakeHub) -> None:
    import kernos

    app = kernos.Kernos(store_url, poll_interval=0.05)
    await app.open()
    try:
        # Polling once an hour: only the engine's commit hook can deliver in time.
        hub = await make_hub(app.store, poll_interval=3600.0)
        app.on_events_committed(hub.wake)
        sub = hub.subscribe(None, tenant="default")
        handle = await app.start(greet, "ada", run_id="woken")
        assert await handle.result() == "hello ADA"
        kinds: list[str] = []
        async with asyncio.timeout(30):
            while "run.succeeded" not in kinds:
                batch = await sub.receive()
                assert batch is not None
                kinds += [item.event.kind for item in batch if item.event.run_id == "woken"]
        assert kinds[0] == "run.created"
    finally:
        await app.close()


# -- Server-Sent Events through a real server ---------------------------------------------


async def sse_frames(response: httpx.Response) -> AsyncIterator[dict[str, str]]:
    """Parse an SSE body into frames (field -> value); a comment-only frame (a
    heartbeat) comes out empty."""
    buffer = b""
    async for chunk in response.aiter_bytes():
        buffer += chunk
        *raws, buffer = buffer.split(b"\n\n")
        for raw in raws:
            frame: dict[str, str] = {}
            for line in raw.split(b"\n"):
                if line.startswith(b":"):
                    continue
                name, _, value = line.partition(b":")
                frame[name.decode()] = value[1:].decode() if value[:1] == b" " else value.decode()
            yield frame


FAST = ServerSettings(key_rate=(100_000, 60.0), sse_heartbeat_s=0.3, stream_poll_s=0.02)


async def sse_client(
    http: httpx.AsyncClient,
    key: str,
    start: int,
    finished: Callable[[int], bool],
    *,
    index: int = 0,
    disconnects: int = 6,
) -> list[dict[str, Any]]:
    """Read one tenant's stream from ``start`` until ``finished(last id)``, hanging up
    at random ``disconnects`` times and resuming with Last-Event-ID (alternately the
    header and the query parameter)."""
    got: list[dict[str, Any]] = []
    last = start
    for attempt in range(disconnects + 1):
        headers = {"Authorization": f"Bearer {key}"}
        params: dict[str, Any] = {}
        if (index + attempt) % 2:
            headers["Last-Event-ID"] = str(last)
        else:
            params["last_event_id"] = last
        hang_up_after = random.randint(1, 120) if attempt < disconnects else -1
        async with http.stream("GET", "/events", params=params, headers=headers) as response:
            assert response.status_code == 200, await response.aread()
            assert response.headers["content-type"].startswith("text/event-stream")
            received = 0
            async for frame in sse_frames(response):
                if "id" in frame:
                    event = orjson.loads(frame["data"])
                    assert int(frame["id"]) == event["event_id"]
                    assert frame["event"] == event["kind"]
                    got.append(event)
                    last = event["event_id"]
                    received += 1
                else:
                    assert "event" not in frame, frame  # no error frame expected here
                if finished(last):
                    return got
                if received == hang_up_after:
                    break  # hang up abruptly
    raise AssertionError("the stream ended before the last event")


async def test_100_sse_clients_with_random_disconnects_miss_nothing(
    store_url: str, make_store: Callable[..., Awaitable[Store]]
) -> None:
    async with live_server(store_url, settings=FAST) as live:
        keys = {
            "acme": await live.key(Role.VIEWER, tenant="acme"),
            "umbrella": await live.key(Role.VIEWER, tenant="umbrella"),
        }
        # A second store writes events, as another process would (the server sees
        # them by polling); workflow runs in the server wake the hub directly.
        writer = await make_store()
        for run in ("a1", "a2", "a3"):
            await add_run(writer, run, tenant="acme")
        await add_run(writer, "u1", tenant="umbrella")
        start = await writer.last_event_id()
        last_of: dict[str, int] = {}

        async def produce() -> None:
            handles = []
            for i in range(60):
                for run in ("a1", "a2", "a3", "u1"):
                    if random.random() < 0.7:
                        await emit(writer, run, random.randint(1, 8))
                if i % 15 == 0:
                    handles.append(await live.app.start(greet, f"n{i}", tenant="acme"))
                await asyncio.sleep(random.random() * 0.02)
            for handle in handles:
                await handle.result()
            for tenant in keys:
                last_of[tenant] = (await expected_ids(writer, start, tenant=tenant))[-1]

        def finished(tenant: str) -> Callable[[int], bool]:
            return lambda last: tenant in last_of and last >= last_of[tenant]

        limits = httpx.Limits(max_connections=200, max_keepalive_connections=0)
        async with httpx.AsyncClient(
            base_url=live.url + "/api/v1", timeout=60.0, limits=limits
        ) as http:
            producer = asyncio.create_task(produce())
            acme = [
                asyncio.create_task(
                    sse_client(http, keys["acme"], start, finished("acme"), index=i)
                )
                for i in range(100)
            ]
            umbrella = asyncio.create_task(
                sse_client(http, keys["umbrella"], start, finished("umbrella"), disconnects=2)
            )
            async with asyncio.timeout(150):
                await producer
                results = await asyncio.gather(*acme)
                foreign = await umbrella

        want = await expected_ids(writer, start, tenant="acme")
        assert len(want) > 300
        for got in results:
            assert [event["event_id"] for event in got] == want  # in order, no gaps, no repeats
            assert {event["tenant"] for event in got} == {"acme"}
        assert [e["event_id"] for e in foreign] == await expected_ids(
            writer, start, tenant="umbrella"
        )
        assert {event["tenant"] for event in foreign} == {"umbrella"}


def state_of(live: Live) -> ServerState:
    """The running server's state (hub, metrics, settings)."""
    state: ServerState = live.server.api.state.kernos
    return state


async def until(predicate: Callable[[], bool], *, timeout: float = 60.0) -> None:
    """Wait until ``predicate()`` holds."""
    async with asyncio.timeout(timeout):
        while True:
            if predicate():
                return
            await asyncio.sleep(0.02)


async def test_sse_refusals_headers_and_shutdown(store_url: str) -> None:
    async with live_server(store_url, settings=FAST) as live:
        key = await live.key(Role.VIEWER)
        async with live.client() as anonymous:
            refused = await anonymous.get("/events")
            assert refused.status_code == 401
            assert refused.headers["content-type"] == "application/problem+json"
        async with live.client(key) as http:
            bad = await http.get("/events", headers={"Last-Event-ID": "seven"})
            assert bad.status_code == 422 and bad.json()["status"] == 422
            negative = await http.get("/events", params={"last_event_id": -1})
            assert negative.status_code == 422
            many = await http.get("/events", params={"kind": [f"k{i}" for i in range(51)]})
            assert many.status_code == 422

            spec = (await http.get("/openapi.json")).json()
            ok = spec["paths"]["/api/v1/events"]["get"]["responses"]["200"]
            assert "text/event-stream" in ok["content"]

            await add_run(live.app.store, "r1")
            await emit(live.app.store, "r1", 5)
            last = await live.app.store.last_event_id()
            # The header wins over the query parameter; then heartbeats while idle.
            headers = {"Last-Event-ID": str(last - 2)}
            params = {"last_event_id": 0}
            async with http.stream("GET", "/events", headers=headers, params=params) as r:
                assert r.headers["cache-control"] == "no-cache"
                frames = sse_frames(r)
                assert await anext(frames) == {"retry": "1000"}
                assert [int((await anext(frames))["id"]) for _ in range(2)] == [last - 1, last]
                assert await anext(frames) == {}  # a heartbeat
                await state_of(live).hub.stop()  # the server shutting down
                final = await anext(frames)
                assert final["event"] == "error" and "id" not in final
                body = orjson.loads(final["data"])
                assert body["code"] == "shutdown" and body["last_event_id"] == last
                with pytest.raises(StopAsyncIteration):
                    await anext(frames)
            await state_of(live).hub.start()
            unavailable = state_of(live).hub
            await unavailable.stop()
            assert (await http.get("/events")).status_code == 503
            await unavailable.start()


async def test_sse_slow_client_is_cut_off_with_a_reason_and_resumes(
    store_url: str, make_store: Callable[..., Awaitable[Store]]
) -> None:
    settings = ServerSettings(stream_buffer=50, sse_heartbeat_s=0.3, stream_poll_s=0.02)
    async with live_server(store_url, settings=settings) as live:
        key = await live.key(Role.VIEWER)
        writer = await make_store()
        await add_run(writer, "r1")
        start = await writer.last_event_id()
        hub = state_of(live).hub
        # A client with a small receive window (no autotuning) that reads nothing for a while.
        tiny = httpx.AsyncHTTPTransport(
            socket_options=[(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)]
        )
        headers = {"Authorization": f"Bearer {key}", "Last-Event-ID": str(start)}
        async with (
            httpx.AsyncClient(base_url=live.url + "/api/v1", transport=tiny, timeout=60) as http,
            http.stream("GET", "/events", headers=headers) as response,
        ):
            await until(lambda: hub.subscriptions == 1)
            payload = orjson.dumps({"text": "x" * 8000}).decode()
            for _ in range(400):  # at most 3,200 events, ~26 MB
                if hub.subscriptions == 0:
                    break
                await writer.apply([EventWrite(run_id="r1", kind="test.big", data=payload)] * 8)
                await asyncio.sleep(0.01)
            assert hub.subscriptions == 0, "the slow client was never cut off"
            ids: list[int] = []
            final: dict[str, str] = {}
            async for frame in sse_frames(response):
                if "id" in frame:
                    ids.append(int(frame["id"]))
                elif "event" in frame:
                    final = frame
        assert ids == list(range(start + 1, start + 1 + len(ids)))
        end = orjson.loads(final["data"])
        assert final["event"] == "error" and end["code"] == "slow_consumer"
        assert end["detail"].startswith("slow consumer: more than 50 events buffered")
        assert end["last_event_id"] == ids[-1]
        assert (
            live.server.api.state.kernos.metrics.registry.get_sample_value(
                "kernos_stream_slow_disconnects_total"
            )
            == 1.0
        )

        # Resuming from the last event received misses nothing.
        last = await writer.last_event_id()
        async with live.client(key) as http:
            got = await sse_client(http, key, ids[-1], lambda i: i >= last, disconnects=0)
        assert [e["event_id"] for e in got] == list(range(ids[-1] + 1, last + 1))


async def test_sse_client_that_accepts_nothing_is_dropped(
    store_url: str, make_store: Callable[..., Awaitable[Store]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(streams, "WRITE_TIMEOUT_S", 1.0)
    settings = ServerSettings(stream_buffer=50, sse_heartbeat_s=0.3, stream_poll_s=0.02)
    async with live_server(store_url, settings=settings) as live:
        key = await live.key(Role.VIEWER)
        writer = await make_store()
        await add_run(writer, "r1")
        state = state_of(live)
        host, port = live.url.removeprefix("http://").split(":")
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
        reader, stream = await asyncio.open_connection(sock=sock, limit=65536)
        try:
            stream.write(
                f"GET /api/v1/events HTTP/1.1\r\nHost: {host}:{port}\r\n"
                f"Authorization: Bearer {key}\r\n\r\n".encode()
            )
            await until(lambda: state.hub.subscriptions == 1)
            payload = orjson.dumps({"text": "x" * 8000}).decode()
            while state.hub.subscriptions:  # fill every buffer on the way
                await writer.apply([EventWrite(run_id="r1", kind="test.big", data=payload)] * 8)
                await asyncio.sleep(0.01)
            clients = state.metrics.stream_clients.labels(transport="sse")
            await until(lambda: clients._value.get() == 0, timeout=30)
            # The server hung up: what the client reads ends without the last chunk.
            async with asyncio.timeout(30):
                body = await reader.read()  # up to EOF
            assert not body.endswith(b"0\r\n\r\n")
        finally:
            stream.close()


# -- WebSocket ----------------------------------------------------------------------------


def ws_url(live: Live) -> str:
    return live.url.replace("http://", "ws://") + "/api/v1/ws"


async def ws_receive(ws: Any) -> dict[str, Any]:
    """The next message, as JSON."""
    async with asyncio.timeout(30):
        message: dict[str, Any] = orjson.loads(await ws.recv())
    return message


async def test_websocket_subscriptions(store_url: str) -> None:
    async with live_server(store_url, settings=FAST) as live:
        key = await live.key(Role.VIEWER, tenant="acme")
        store = live.app.store
        await add_run(store, "a1", tenant="acme", workflow="brief")
        await add_run(store, "u1", tenant="umbrella")
        await emit(store, "a1", 3)
        await emit(store, "u1", 3)
        start = await store.last_event_id()
        old = await expected_ids(store, 0, tenant="acme")

        headers = {"Authorization": f"Bearer {key}"}
        async with ws_connect(ws_url(live), additional_headers=headers) as ws:
            await ws.send(orjson.dumps({"type": "subscribe", "id": "all", "last_event_id": 0}))
            assert await ws_receive(ws) == {
                "type": "subscribed",
                "subscription": "all",
                "last_event_id": 0,
            }
            replayed = [await ws_receive(ws) for _ in old]
            assert [m["event"]["event_id"] for m in replayed] == old
            assert {(m["type"], m["subscription"]) for m in replayed} == {("event", "all")}

            subscribe_b = {"type": "subscribe", "id": "b", "kinds": ["test.b"], "run_id": "a1"}
            await ws.send(orjson.dumps(subscribe_b))
            assert (await ws_receive(ws))["subscription"] == "b"
            for kind in ("test.a", "test.b", "test.a"):
                await emit(store, "a1", 1, kind=kind)
                await emit(store, "u1", 1, kind=kind)
            new = await expected_ids(store, start, tenant="acme")
            b_ids = await expected_ids(store, start, tenant="acme", kinds=["test.b"])
            messages = [await ws_receive(ws) for _ in range(len(new) + len(b_ids))]
            by_sub: dict[str, list[int]] = {}
            for m in messages:
                assert m["event"]["tenant"] == "acme"
                by_sub.setdefault(m["subscription"], []).append(m["event"]["event_id"])
            assert by_sub == {"all": new, "b": b_ids}

            await ws.send(b"{not json")
            assert (await ws_receive(ws))["code"] == "bad_message"
            await ws.send(orjson.dumps({"type": "subscribe", "id": "all"}))
            assert (await ws_receive(ws))["code"] == "duplicate_subscription"
            await ws.send(orjson.dumps({"type": "subscribe", "id": "x", "last_event_id": -3}))
            error = await ws_receive(ws)
            assert error["code"] == "bad_message" and error["subscription"] == "x"
            await ws.send(orjson.dumps({"type": "shout"}))
            assert (await ws_receive(ws))["code"] == "bad_message"
            await ws.send(orjson.dumps({"type": "unsubscribe", "id": "nope"}))
            assert (await ws_receive(ws))["code"] == "unknown_subscription"
            await ws.send(orjson.dumps({"type": "ping"}))
            assert await ws_receive(ws) == {"type": "pong"}

            await ws.send(orjson.dumps({"type": "unsubscribe", "id": "b"}))
            assert await ws_receive(ws) == {"type": "unsubscribed", "subscription": "b"}
            await emit(store, "a1", 1, kind="test.b")
            after = await ws_receive(ws)
            assert after["subscription"] == "all"
            assert after["event"]["event_id"] == await store.last_event_id()
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.3):
                    await ws.recv()


async def test_websocket_refusals(store_url: str) -> None:
    async with live_server(store_url, settings=FAST) as live:
        key = await live.key(Role.VIEWER)
        cases: list[tuple[dict[str, str], int, str]] = [
            ({}, 1008, "credentials"),
            ({"Authorization": "Bearer kn_nope"}, 1008, "API key"),
            # A session cookie sent by a page of another site: refused before anything.
            (
                {"Cookie": "kernos_session=stolen", "Origin": "https://evil.example"},
                1008,
                "cross-site",
            ),
            # Same site, but no such session.
            (
                {"Cookie": "kernos_session=stolen", "Origin": live.url},
                1008,
                "session",
            ),
        ]
        for headers, code, words in cases:
            async with ws_connect(ws_url(live), additional_headers=headers) as ws:
                with pytest.raises(ConnectionClosed) as closed:
                    await ws.recv()
                assert closed.value.rcvd is not None
                assert closed.value.rcvd.code == code, headers
                assert words.lower() in closed.value.rcvd.reason.lower(), closed.value.rcvd
        # API keys need no Origin check: browsers never send them on their own.
        headers = {"Authorization": f"Bearer {key}", "Origin": "https://elsewhere.example"}
        async with ws_connect(ws_url(live), additional_headers=headers) as ws:
            await ws.send(orjson.dumps({"type": "ping"}))
            assert await ws_receive(ws) == {"type": "pong"}


class RawSocket:
    """A bare WebSocket client over asyncio streams: unlike client libraries, it
    stops reading from the network when the test stops reading."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, live: Live, headers: dict[str, str]) -> RawSocket:
        host, port = live.url.removeprefix("http://").split(":")
        sock = socket.socket()
        # A small window that does not grow, and a small stream buffer: the
        # server's writes block soon after the test stops reading.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
        reader, writer = await asyncio.open_connection(sock=sock, limit=65536)
        lines = [
            "GET /api/v1/ws HTTP/1.1",
            f"Host: {host}:{port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}",
            "Sec-WebSocket-Version: 13",
            *(f"{name}: {value}" for name, value in headers.items()),
        ]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        answer = await reader.readuntil(b"\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 101"), answer
        return cls(reader, writer)

    async def send(self, message: dict[str, Any]) -> None:
        payload = orjson.dumps(message)
        assert len(payload) < 126
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.writer.write(bytes([0x81, 0x80 | len(payload)]) + mask + masked)
        await self.writer.drain()

    async def receive(self) -> tuple[int, bytes]:
        """The next frame: (opcode, payload); 1 is text, 8 is close."""
        async with asyncio.timeout(30):
            first, second = await self.reader.readexactly(2)
            length = second & 0x7F
            if length == 126:
                length = int.from_bytes(await self.reader.readexactly(2), "big")
            elif length == 127:
                length = int.from_bytes(await self.reader.readexactly(8), "big")
            return first & 0x0F, await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


async def test_websocket_slow_consumer_is_closed_with_a_reason(
    store_url: str, make_store: Callable[..., Awaitable[Store]]
) -> None:
    settings = ServerSettings(stream_buffer=50, sse_heartbeat_s=0.3, stream_poll_s=0.02)
    async with live_server(store_url, settings=settings) as live:
        key = await live.key(Role.VIEWER)
        writer = await make_store()
        await add_run(writer, "r1")
        start = await writer.last_event_id()
        hub = state_of(live).hub
        ws = await RawSocket.connect(live, {"Authorization": f"Bearer {key}"})
        try:
            await ws.send({"type": "subscribe", "id": "s", "last_event_id": start})
            opcode, body = await ws.receive()
            assert orjson.loads(body)["type"] == "subscribed"
            await until(lambda: hub.subscriptions == 1)
            payload = orjson.dumps({"text": "x" * 8000}).decode()
            for _ in range(400):
                if hub.subscriptions == 0:
                    break
                await writer.apply([EventWrite(run_id="r1", kind="test.big", data=payload)] * 8)
                await asyncio.sleep(0.01)
            assert hub.subscriptions == 0, "the slow client was never cut off"
            ids: list[int] = []
            messages: list[dict[str, Any]] = []
            while True:
                opcode, body = await ws.receive()
                if opcode == 8:
                    break
                message = orjson.loads(body)
                if message["type"] == "event":
                    ids.append(message["event"]["event_id"])
                else:
                    messages.append(message)
        finally:
            ws.close()
        assert ids == list(range(start + 1, start + 1 + len(ids)))
        (error,) = messages
        assert error["code"] == "slow_consumer" and error["last_event_id"] == ids[-1]
        assert int.from_bytes(body[:2], "big") == 4000
        assert body[2:].decode().startswith("slow consumer: more than 50 events buffered")
