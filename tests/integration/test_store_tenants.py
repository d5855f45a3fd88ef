"""Runs by tenant, filtered listings, the event stream and purging, on every backend."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import pytest
from store_support import T0, WF, Clock, entry, finish, new_run

from kernos import errors
from kernos.records import DEFAULT_TENANT, Event, Run, RunStatus
from kernos.store import EventWrite, FinishWrite, NewRun, RunFilter, Store, _queries
from kernos.store._listing import run_filter_params

if TYPE_CHECKING:
    from tests.conftest import Fetch, MakeStore


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def store(make_store: MakeStore, clock: Clock) -> Store:
    return await make_store(clock=clock)


def ids(runs: list[Run]) -> list[str]:
    return [run.run_id for run in runs]


# -- runs carry a tenant ------------------------------------------------------------


async def test_runs_belong_to_the_tenant_they_were_created_in(store: Store) -> None:
    await store.create_run(new_run("plain"))
    await store.create_run(new_run("owned", owner="w1", tenant="acme"))
    await store.enqueue(new_run("queued", queue="q", tenant="acme"))

    assert (await store.get_run("plain")).tenant == DEFAULT_TENANT
    assert (await store.get_run("owned")).tenant == "acme"
    assert (await store.get_run("queued")).tenant == "acme"
    (created, *_) = await store.list_events("queued")
    assert created.data == {
        "workflow": "wf",
        "queue": "q",
        "parent_id": None,
        "forked_from": None,
        "depends_on": [],
        "tenant": "acme",
    }
    default = await store.get_tenant(DEFAULT_TENANT)  # the migration creates it
    assert default is not None and default.name == "Default"


# -- listing and counting -------------------------------------------------------------


async def _runs_of_two_tenants(store: Store, clock: Clock) -> None:
    """a0..a5 of acme (two per second), b0..b2 of beta, one failed with an error text."""
    for i in range(6):
        queue = "fast" if i % 3 == 0 else "default"
        await store.create_run(new_run(f"a{i}", tenant="acme", queue=queue, owner="w1"))
        if i % 2:
            clock.advance(1)
    for i in range(3):
        workflow = "Report_Daily" if i == 0 else "wf"
        await store.create_run(new_run(f"b{i}", tenant="beta", workflow=workflow, owner="w1"))
        clock.advance(1)
    error = orjson.dumps({"type": "ValueError", "message": "Disk 100% FULL"}).decode()
    await store.apply([FinishWrite(run_id="b1", epoch=1, status="failed", error=error)])
    await store.apply([finish("a0")])
    clock.advance(10)
    await store.apply([finish("a1")])


async def test_list_runs_of_one_tenant_pages_newest_first(store: Store, clock: Clock) -> None:
    await _runs_of_two_tenants(store, clock)

    newest_first = ids(await store.list_runs(RunFilter(tenant="acme", limit=100)))
    assert newest_first == ["a5", "a4", "a3", "a2", "a1", "a0"]
    paged: list[str] = []
    cursor = None
    while page := await store.list_runs(RunFilter(tenant="acme", limit=4, before=cursor)):
        paged += ids(page)
        cursor = (page[-1].created_at, page[-1].run_id)
    assert paged == newest_first
    assert ids(await store.list_runs(RunFilter(limit=100))) == [
        "b2",
        "b1",
        "b0",
        *newest_first,
    ]
    assert await store.list_runs(RunFilter(tenant="nobody")) == []


async def test_list_runs_filters(store: Store, clock: Clock) -> None:
    await _runs_of_two_tenants(store, clock)

    async def matching(**fields: Any) -> list[str]:
        query = RunFilter(limit=100, **fields)
        listed = ids(await store.list_runs(query))
        assert await store.count_matching(RunFilter(limit=1, **fields)) == len(listed)
        return listed

    assert await matching(tenant="acme", queue="fast") == ["a3", "a0"]
    assert await matching(queue="fast") == ["a3", "a0"]
    assert await matching(tenant="acme", status="succeeded") == ["a1", "a0"]
    assert await matching(tenant="beta", workflow="Report_Daily") == ["b0"]
    # a0, a1 were created at T0; a2, a3 at T0 + 1; a4, a5 at T0 + 2; b0 at T0 + 3.
    assert await matching(tenant="acme", created_after=T0 + 1) == ["a5", "a4", "a3", "a2"]
    assert await matching(created_before=T0 + 1) == ["a1", "a0"]
    assert await matching(created_after=T0 + 1, created_before=T0 + 3) == ["a5", "a4", "a3", "a2"]
    # Only finished runs count for retention; a1 finished 10 s after a0.
    assert await matching(tenant="acme", finished_before=clock.now) == ["a0"]
    assert await matching(finished_before=clock.now + 1) == ["b1", "a1", "a0"]


async def test_list_runs_text_matches_id_workflow_or_error_in_any_case(
    store: Store, clock: Clock
) -> None:
    await _runs_of_two_tenants(store, clock)

    async def text(value: str, tenant: str | None = None) -> list[str]:
        found = ids(await store.list_runs(RunFilter(text=value, tenant=tenant)))
        assert await store.count_matching(RunFilter(text=value, tenant=tenant)) == len(found)
        return found

    assert await text("A4") == ["a4"]
    assert await text("report_daily") == ["b0"]
    assert await text("disk 100% full") == ["b1"]
    assert await text("disk", tenant="acme") == []
    # Wildcards are literal: "%" and "_" match only themselves.
    assert await text("%") == ["b1"]
    assert await text("t_d") == ["b0"]
    assert await text("a_") == []


@pytest.mark.parametrize("query", ["list_tenant_runs", "count_tenant_matching_runs"])
def test_sqlite_reads_one_tenants_runs_from_its_index(sqlite_template: Path, query: str) -> None:
    # SQLite plans a statement once, whatever its parameters: this is the plan.
    sql = _queries.load_queries("sqlite")[query]
    params = run_filter_params(RunFilter(tenant="acme", before=(T0, "r1")), cursor=True)
    conn = sqlite3.connect(sqlite_template)
    try:
        plan = [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params)]
    finally:
        conn.close()
    # One range of the tenant's index, newest first: no scan, no sort.
    (step,) = plan
    assert step.startswith("SEARCH kernos_runs USING INDEX kernos_runs_tenant (tenant_id=? AND")
    assert "(created_at,run_id)<(?,?)" in step


async def test_count_matching_ignores_the_page(store: Store, clock: Clock) -> None:
    await _runs_of_two_tenants(store, clock)

    page = await store.list_runs(RunFilter(tenant="acme", limit=2))
    cursor = (page[-1].created_at, page[-1].run_id)
    assert await store.count_matching(RunFilter(tenant="acme", limit=2, before=cursor)) == 6
    assert await store.count_matching(RunFilter()) == 9


async def test_count_runs_per_tenant(store: Store, clock: Clock) -> None:
    await _runs_of_two_tenants(store, clock)

    assert await store.count_runs("acme") == {"running": 4, "succeeded": 2}
    assert await store.count_runs("beta") == {"running": 2, "failed": 1}
    assert await store.count_runs() == {"running": 6, "succeeded": 2, "failed": 1}
    assert await store.count_runs("nobody") == {}


async def test_list_queues_counts_one_tenants_runs(store: Store) -> None:
    await store.enqueue(new_run("a1", queue="q", tenant="acme"))
    await store.enqueue(new_run("a2", queue="q", tenant="acme"))
    await store.enqueue(new_run("b1", queue="q", tenant="beta"))
    await store.enqueue(new_run("b2", queue="only-beta", tenant="beta"))

    every = {q.name: q.pending for q in await store.list_queues()}
    assert every == {"q": 3, "only-beta": 1}
    acme = {q.name: q.pending for q in await store.list_queues("acme")}
    assert acme == {"q": 2}


# -- the event stream -------------------------------------------------------------------


async def test_stream_events_carry_tenant_and_workflow(store: Store) -> None:
    assert await store.last_event_id() == 0
    await store.create_run(new_run("a1", owner="w1", tenant="acme"))
    await store.create_run(new_run("b1", owner="w1", tenant="beta", workflow="other"))
    await store.apply([EventWrite(run_id="a1", kind="note"), EventWrite(run_id="b1", kind="note")])
    await store.apply([finish("a1")])

    every = await store.stream_events(after=0)
    assert [(e.run_id, e.kind) for e in every] == [
        ("a1", "run.created"),
        ("a1", "run.started"),
        ("b1", "run.created"),
        ("b1", "run.started"),
        ("a1", "note"),
        ("b1", "note"),
        ("a1", "run.succeeded"),
    ]
    assert [(e.tenant, e.workflow) for e in every[2:4]] == [("beta", "other")] * 2
    assert {e.tenant for e in every if e.run_id == "a1"} == {"acme"}
    assert await store.last_event_id() == every[-1].event_id
    plain = await store.list_events("a1")
    assert [e.event_id for e in plain] == [e.event_id for e in every if e.run_id == "a1"]
    assert plain[0].tenant is None  # list_events does not join the run


async def test_stream_events_filters_and_bounds(store: Store) -> None:
    await store.create_run(new_run("a1", owner="w1", tenant="acme"))
    await store.create_run(new_run("a2", owner="w1", tenant="acme", workflow="other"))
    await store.create_run(new_run("b1", owner="w1", tenant="beta"))
    await store.apply([EventWrite(run_id=r, kind="note") for r in ("a1", "a2", "b1")])
    every = await store.stream_events(after=0)

    def seen(events: list[Event]) -> list[tuple[str, str]]:
        return [(e.run_id, e.kind) for e in events]

    assert {e.run_id for e in await store.stream_events(after=0, tenant="acme")} == {"a1", "a2"}
    assert seen(await store.stream_events(after=0, tenant="acme", workflow="other")) == [
        ("a2", "run.created"),
        ("a2", "run.started"),
        ("a2", "note"),
    ]
    assert seen(await store.stream_events(after=0, run_id="b1", kinds=["note"])) == [("b1", "note")]
    assert seen(await store.stream_events(after=0, kinds=["run.created", "note"], limit=4)) == [
        ("a1", "run.created"),
        ("a2", "run.created"),
        ("b1", "run.created"),
        ("a1", "note"),
    ]
    assert await store.stream_events(after=0, kinds=[]) == []
    assert await store.stream_events(after=every[0].event_id, until=every[2].event_id) == every[1:3]
    assert await store.stream_events(after=every[-1].event_id) == []
    assert await store.stream_events(after=0, tenant="nobody") == []


# -- purging ---------------------------------------------------------------------------


async def test_purge_deletes_a_finished_runs_rows_and_keeps_its_relatives(
    store: Store, fetch_rows: Fetch, store_url: str
) -> None:
    await store.create_run(new_run("up", owner="w1"))
    await store.apply([finish("up")])
    await store.enqueue(new_run("r1", depends_on=("up",)))
    await store.send("r1", "t", '"hello"')
    await store.send("r1", "t", '"again"')
    (claimed,) = await store.claim("w1", limit=1, lease_s=30, workflows=WF)
    assert claimed.run_id == "r1"
    await store.apply([entry("r1", 0), entry("r1", 1)])
    await store.create_run(new_run("r1.2", owner="w1", parent_id="r1", parent_seq=2))
    await store.enqueue(new_run("down", depends_on=("r1",)))

    with pytest.raises(errors.RunStateError) as caught:
        await store.purge_run("r1")
    assert caught.value.facts == {"run_id": "r1", "status": "running"}
    await store.apply([finish("r1")])
    events = len(await store.list_events("r1"))

    counts = await store.purge_run("r1")

    assert counts == {"journal": 2, "events": events, "messages": 2, "blobs": 0, "runs": 1}
    with pytest.raises(errors.RunNotFoundError):
        await store.get_run("r1")
    assert await store.load_journal("r1") == []
    assert await store.list_events("r1") == []
    for table in ("kernos_messages", "kernos_run_deps"):
        assert await fetch_rows(store_url, f"SELECT count(*) FROM {table}") == [(0,)]
    # Children, dependencies and dependents are runs of their own: kept.
    assert {r.run_id for r in await store.list_runs(RunFilter())} == {"up", "r1.2", "down"}
    assert (await store.get_run("down")).status is RunStatus.PENDING
    with pytest.raises(errors.RunNotFoundError):
        await store.purge_run("r1")


BIG = orjson.dumps({"text": "x" * 500}).decode()
OTHER_BIG = orjson.dumps({"text": "y" * 500}).decode()


async def _blob_runs(store: Store) -> None:
    """``shared`` and ``keeper`` both hold BIG; ``shared`` alone holds OTHER_BIG."""
    await store.create_run(
        NewRun(run_id="shared", workflow="wf", version="1", input=BIG, owner="w")
    )
    await store.apply([entry("shared", 0, output=OTHER_BIG), finish("shared", output=OTHER_BIG)])
    await store.create_run(
        NewRun(run_id="keeper", workflow="wf", version="1", input="1", owner="w")
    )
    await store.apply([entry("keeper", 0, output=BIG), finish("keeper")])


async def test_purge_deletes_blobs_no_other_run_refers_to(
    make_store: MakeStore, fetch_rows: Fetch, store_url: str
) -> None:
    store = await make_store(blob_threshold=100)
    await _blob_runs(store)
    assert await fetch_rows(store_url, "SELECT count(*) FROM kernos_blobs") == [(2,)]

    assert (await store.purge_run("shared"))["blobs"] == 1

    assert await fetch_rows(store_url, "SELECT count(*) FROM kernos_blobs") == [(1,)]
    assert [e.output for e in await store.load_journal("keeper")] == [orjson.loads(BIG)]
    assert (await store.purge_run("keeper"))["blobs"] == 1
    assert await fetch_rows(store_url, "SELECT count(*) FROM kernos_blobs") == [(0,)]


async def test_purge_removes_unreferenced_blob_files(make_store: MakeStore, tmp_path: Path) -> None:
    blob_dir = tmp_path / "blobs"
    store = await make_store(blob_threshold=100, blob_dir=str(blob_dir))
    await _blob_runs(store)
    assert len(list(blob_dir.iterdir())) == 2

    assert (await store.purge_run("shared"))["blobs"] == 1

    assert len(list(blob_dir.iterdir())) == 1
    assert (await store.get_run("keeper")).status is RunStatus.SUCCEEDED
    assert [e.output for e in await store.load_journal("keeper")] == [orjson.loads(BIG)]


async def test_purge_keeps_blobs_a_fork_copied(make_store: MakeStore) -> None:
    store = await make_store(blob_threshold=100)
    await store.create_run(new_run("src", owner="w1"))
    await store.apply([entry("src", 0, output=BIG), entry("src", 1), finish("src")])
    await store.fork("src", 1, None, new_run("fork", forked_from="src", fork_seq=1))

    assert (await store.purge_run("src"))["blobs"] == 0

    assert [e.output for e in await store.load_journal("fork")] == [orjson.loads(BIG)]
