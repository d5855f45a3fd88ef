"""The behaviour of :class:`kernos.store.Store`, specified once and run on every backend."""

from __future__ import annotations

import asyncio
import socket
import sqlite3
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import pytest
from store_support import T0, WF, Clock, entry, finish, kinds, new_run

from kernos import errors
from kernos.records import EntryStatus, RunStatus, Worker
from kernos.serialization import checksum
from kernos.store import (
    EntryWrite,
    EventWrite,
    Fence,
    NewRun,
    RunFilter,
    Store,
    open_store,
)

if TYPE_CHECKING:
    from tests.conftest import Fetch, MakeStore, MakeStoreUrl


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def store(make_store: MakeStore, clock: Clock) -> Store:
    return await make_store(clock=clock)


# -- runs ---------------------------------------------------------------------


async def test_create_run_is_idempotent(store: Store) -> None:
    assert await store.create_run(new_run("r1")) is True
    assert not await store.create_run(NewRun(run_id="r1", workflow="other", version="2", input="7"))

    run = await store.get_run("r1")
    assert run.workflow == "wf"
    assert run.input == {"n": 1}
    assert run.status is RunStatus.PENDING
    assert (run.owner, run.lease_epoch, run.executions) == (None, 0, 0)
    assert await kinds(store, "r1") == ["run.created"]


async def test_create_owned_run_starts_running(store: Store, clock: Clock) -> None:
    assert await store.create_run(new_run("r1", owner="w1", lease_s=10, timeout=60))

    run = await store.get_run("r1")
    assert run.status is RunStatus.RUNNING
    assert (run.owner, run.lease_epoch, run.executions) == ("w1", 1, 1)
    assert run.lease_expires_at == clock.now + 10
    assert run.deadline == clock.now + 60
    assert run.started_at == run.created_at == clock.now
    assert await kinds(store, "r1") == ["run.created", "run.started"]


async def test_get_run_not_found(store: Store) -> None:
    with pytest.raises(errors.RunNotFoundError) as caught:
        await store.get_run("nope")
    assert caught.value.facts["run_id"] == "nope"


async def test_list_runs_filters_and_pages(store: Store, clock: Clock) -> None:
    for i in range(7):
        await store.create_run(new_run(f"a{i}", workflow="a" if i < 5 else "b"))
        if i % 2:  # pairs of runs share a creation time; the cursor breaks ties by id
            clock.advance(1)
    await store.create_run(new_run("child", parent_id="a0"))
    await store.claim("w1", limit=1, lease_s=30, workflows=WF)

    newest_first = [run.run_id for run in await store.list_runs(RunFilter(limit=100))]
    assert len(newest_first) == 8
    paged: list[str] = []
    cursor = None
    while True:
        page = await store.list_runs(RunFilter(limit=3, before=cursor))
        if not page:
            break
        paged += [run.run_id for run in page]
        cursor = (page[-1].created_at, page[-1].run_id)
    assert paged == newest_first
    created = [(run.created_at, run.run_id) for run in await store.list_runs(RunFilter())]
    assert created == sorted(created, reverse=True)

    assert {r.run_id for r in await store.list_runs(RunFilter(workflow="b"))} == {"a5", "a6"}
    assert [r.run_id for r in await store.list_runs(RunFilter(parent_id="a0"))] == ["child"]
    (running,) = await store.list_runs(RunFilter(status="running"))
    assert running.run_id in {"a0", "a1"}  # the oldest are claimed first
    assert len(await store.list_runs(RunFilter(status="pending", workflow="a"))) == 4
    assert await store.count_runs() == {"pending": 7, "running": 1}


# -- fenced writes --------------------------------------------------------------


async def test_apply_writes_under_the_lease(store: Store) -> None:
    await store.create_run(new_run("r1", owner="w1"))

    results = await store.apply(
        [entry("r1", 0, event_kind="step.finished"), EventWrite(run_id="r1", kind="note")]
    )
    assert results == [Fence.OK, None]
    (saved,) = await store.load_journal("r1")
    assert (saved.seq, saved.status, saved.output) == (0, EntryStatus.OK, "out0")
    assert (await store.get_run("r1")).steps == 1
    assert (await kinds(store, "r1"))[-2:] == ["step.finished", "note"]


async def test_apply_refuses_a_stale_epoch(store: Store) -> None:
    await store.create_run(new_run("r1", owner="w1"))

    assert await store.apply([entry("r1", 0, epoch=2, event_kind="x")]) == [Fence.LOST]
    assert await store.apply([finish("r1", epoch=0)]) == [Fence.LOST]
    assert await store.load_journal("r1") == []
    run = await store.get_run("r1")
    assert (run.status, run.steps) == (RunStatus.RUNNING, 0)
    assert "x" not in await kinds(store, "r1")


async def test_apply_answers_pause_when_requested(store: Store) -> None:
    await store.create_run(new_run("r1", owner="w1"))
    run = await store.request_pause("r1")
    assert (run.status, run.pause_requested) == (RunStatus.RUNNING, True)

    assert await store.apply([entry("r1", 0)]) == [Fence.PAUSE]
    assert await store.get_entry("r1", 0) is not None  # written all the same
    assert await store.pause_at_boundary("r1", 2) is False
    assert await store.pause_at_boundary("r1", 1) is True
    run = await store.get_run("r1")
    assert (run.status, run.owner, run.pause_requested) == (RunStatus.PAUSED, None, False)
    assert await store.apply([entry("r1", 1)]) == [Fence.LOST]


async def test_settled_entries_never_change(store: Store) -> None:
    await store.create_run(new_run("r1", owner="w1"))
    await store.apply([entry("r1", 0, output='"first"')])

    assert await store.apply([entry("r1", 0, output='"second"', status="error")]) == [Fence.OK]
    saved = await store.get_entry("r1", 0)
    assert saved is not None
    assert (saved.status, saved.output) == (EntryStatus.OK, "first")


async def test_a_pending_entry_can_be_settled(store: Store) -> None:
    await store.create_run(new_run("r1", owner="w1"))
    await store.apply([entry("r1", 0, kind="sleep", status="pending", output=None)])
    pending = await store.get_entry("r1", 0)
    assert pending is not None
    assert (pending.status, pending.output, pending.finished_at) == (
        EntryStatus.PENDING,
        None,
        None,
    )

    await store.apply([entry("r1", 0, kind="sleep", output="5", finished_at=T0 + 5)])
    settled = await store.get_entry("r1", 0)
    assert settled is not None
    assert (settled.status, settled.output, settled.finished_at) == (EntryStatus.OK, 5, T0 + 5)


async def test_finish_ends_the_lease_and_wakes_a_waiting_parent(store: Store) -> None:
    await store.create_run(new_run("parent", owner="w1"))
    await store.create_run(new_run("child", owner="w1", parent_id="parent", parent_seq=0))
    assert await store.suspend("parent", 1, wake_at=None, topics=[], children=["child"]) is Fence.OK
    assert (await store.get_run("parent")).status is RunStatus.WAITING

    assert await store.apply([finish("child")]) == [Fence.OK]
    child = await store.get_run("child")
    assert (child.status, child.output, child.owner) == (RunStatus.SUCCEEDED, "done", None)
    assert child.finished_at is not None
    assert (await store.get_run("parent")).status is RunStatus.PENDING
    assert await store.apply([entry("child", 0), finish("child")]) == [Fence.LOST, Fence.LOST]


# -- claiming -----------------------------------------------------------------------


async def test_claim_takes_runnable_runs_only(store: Store, clock: Clock) -> None:
    await store.create_run(new_run("pending"))
    await store.create_run(new_run("later", wake_at=clock.now + 100))
    await store.create_run(new_run("sleeper", owner="w0"))
    await store.suspend("sleeper", 1, wake_at=clock.now + 10, topics=[], children=[])
    await store.create_run(new_run("napper", owner="w0"))
    await store.suspend("napper", 1, wake_at=clock.now + 60, topics=[], children=[])
    await store.create_run(new_run("abandoned", owner="w0", lease_s=5))
    await store.create_run(new_run("held", owner="w0", lease_s=50))
    clock.advance(20)

    claimed = await store.claim("w1", limit=10, lease_s=30, workflows=WF)

    assert {run.run_id for run in claimed} == {"pending", "sleeper", "abandoned"}
    by_id = {run.run_id: run for run in claimed}
    assert (by_id["pending"].lease_epoch, by_id["pending"].executions) == (1, 1)
    assert (by_id["sleeper"].lease_epoch, by_id["sleeper"].executions) == (2, 2)
    assert (by_id["abandoned"].lease_epoch, by_id["abandoned"].executions) == (2, 2)
    for run in claimed:
        assert run.status is RunStatus.RUNNING
        assert run.owner == "w1"
        assert run.lease_expires_at == clock.now + 30
        assert run.wake_at is None
        assert run == await store.get_run(run.run_id)
    assert await store.claim("w2", limit=10, lease_s=30, workflows=WF) == []
    # The previous owner of a run taken over can no longer write to it.
    assert await store.apply([entry("abandoned", 0, epoch=1)]) == [Fence.LOST]
    assert await store.next_due() == clock.now + 30  # "napper" at +40 comes after the leases


async def test_claim_honours_limit_and_priority(store: Store, clock: Clock) -> None:
    await store.create_run(new_run("low"))
    clock.advance(1)
    await store.create_run(new_run("high", priority=5))
    clock.advance(1)
    await store.create_run(new_run("low2"))

    first = await store.claim("w1", limit=2, lease_s=30, workflows=WF)
    assert {run.run_id for run in first} == {"high", "low"}  # in no particular order
    second = await store.claim("w1", limit=2, lease_s=30, workflows=WF)
    assert [run.run_id for run in second] == ["low2"]


async def test_claim_takes_only_the_workflows_asked_for(store: Store) -> None:
    await store.create_run(new_run("mine"))
    await store.create_run(new_run("unknown", workflow="elsewhere"))

    assert await store.claim("w1", limit=5, lease_s=30, workflows=[]) == []
    claimed = await store.claim("w1", limit=5, lease_s=30, workflows=["wf", "other"])
    assert [run.run_id for run in claimed] == ["mine"]


async def test_next_due(store: Store, clock: Clock) -> None:
    assert await store.next_due() is None
    await store.create_run(new_run("later", wake_at=clock.now + 100))
    assert await store.next_due() == clock.now + 100
    await store.create_run(new_run("now"))
    assert await store.next_due() == 0


async def test_concurrent_claimers_never_share_a_run(
    store: Store, make_store: MakeStore, store_url: str, clock: Clock
) -> None:
    ids = {f"r{i:02d}" for i in range(30)}
    for run_id in sorted(ids):
        await store.create_run(new_run(run_id))
    other = await make_store(store_url, clock=clock)

    async def drain(claimer: Store, owner: str) -> list[str]:
        taken: list[str] = []
        while batch := await claimer.claim(owner, limit=3, lease_s=60, workflows=WF):
            taken += [run.run_id for run in batch]
        return taken

    first, second = await asyncio.gather(drain(store, "w1"), drain(other, "w2"))
    assert not set(first) & set(second)
    assert sorted(first + second) == sorted(ids)
    for run in await store.list_runs(RunFilter(limit=100)):
        assert (run.lease_epoch, run.executions) == (1, 1)


# -- waiting: suspend, messages, children ---------------------------------------------


async def test_suspend_lets_go_of_the_run(store: Store, clock: Clock) -> None:
    await store.create_run(new_run("r1", owner="w1"))

    assert await store.suspend("r1", 2, wake_at=None, topics=[], children=[]) is Fence.LOST
    fence = await store.suspend("r1", 1, wake_at=clock.now + 5, topics=["t"], children=[])
    assert fence is Fence.OK
    run = await store.get_run("r1")
    assert (run.status, run.owner, run.lease_expires_at) == (RunStatus.WAITING, None, None)
    assert run.wake_at == clock.now + 5
    assert (await kinds(store, "r1"))[-1] == "run.waiting"


async def test_suspend_is_ready_when_a_message_is_unread(store: Store) -> None:
    await store.create_run(new_run("r1", owner="w1"))
    await store.send("r1", "other", '"x"')
    assert await store.suspend("r1", 1, wake_at=None, topics=["t"], children=[]) is Fence.OK

    await store.create_run(new_run("r2", owner="w1"))
    await store.send("r2", "t", '"x"')
    assert await store.suspend("r2", 1, wake_at=None, topics=["u", "t"], children=[]) is Fence.READY
    run = await store.get_run("r2")
    assert (run.status, run.owner) == (RunStatus.RUNNING, "w1")


async def test_suspend_is_ready_when_a_child_finished(store: Store) -> None:
    await store.create_run(new_run("parent", owner="w1"))
    await store.create_run(new_run("done", owner="w1", parent_id="parent"))
    await store.create_run(new_run("busy", parent_id="parent"))
    await store.apply([finish("done")])

    assert (
        await store.suspend("parent", 1, wake_at=None, topics=[], children=["busy", "done"])
        is Fence.READY
    )
    assert (await store.get_run("parent")).status is RunStatus.RUNNING
    assert await store.suspend("parent", 1, wake_at=None, topics=[], children=["busy"]) is Fence.OK


async def test_suspend_pauses_when_requested(store: Store) -> None:
    await store.create_run(new_run("r1", owner="w1"))
    await store.request_pause("r1")

    assert await store.suspend("r1", 1, wake_at=None, topics=[], children=[]) is Fence.PAUSE
    assert (await store.get_run("r1")).status is RunStatus.PAUSED


async def test_send_wakes_a_run_waiting_on_its_topic_only(store: Store) -> None:
    await store.create_run(new_run("r1", owner="w1"))
    await store.suspend("r1", 1, wake_at=None, topics=["a", "b"], children=[])
    await store.create_run(new_run("sleeper", owner="w1"))
    await store.suspend("sleeper", 1, wake_at=T0 + 60, topics=[], children=[])

    await store.send("r1", "c", '"nope"')
    await store.send("sleeper", "a", '"nope"')
    assert (await store.get_run("r1")).status is RunStatus.WAITING
    assert (await store.get_run("sleeper")).status is RunStatus.WAITING

    await store.send("r1", "b", '"yes"')
    run = await store.get_run("r1")
    assert (run.status, run.wake_at) == (RunStatus.PENDING, None)
    assert (await kinds(store, "r1"))[-3:] == ["run.waiting", "message.sent", "message.sent"]


async def test_send_refuses_finished_runs(store: Store) -> None:
    await store.create_run(new_run("r1", owner="w1"))
    await store.apply([finish("r1")])

    with pytest.raises(errors.RunStateError):
        await store.send("r1", "t", "1")
    with pytest.raises(errors.RunNotFoundError):
        await store.send("missing", "t", "1")


async def test_receive_takes_messages_in_order_exactly_once(store: Store) -> None:
    await store.create_run(new_run("r1", owner="w1"))
    for payload in ('"m1"', '"m2"'):
        await store.send("r1", "t", payload)
    await store.send("r1", "other", '"o"')

    def recv(seq: int, epoch: int = 1) -> EntryWrite:
        return entry("r1", seq, kind="recv", status="pending", output=None, epoch=epoch)

    assert await store.receive(recv(0, epoch=9), "t", timed_out=False) == (Fence.LOST, False, None)
    assert await store.receive(recv(0), "t", timed_out=False) == (Fence.OK, True, '"m1"')
    assert await store.receive(recv(1), "t", timed_out=False) == (Fence.OK, True, '"m2"')
    assert await store.receive(recv(2), "t", timed_out=False) == (Fence.OK, False, None)
    waiting = await store.get_entry("r1", 2)
    assert waiting is not None and waiting.status is EntryStatus.PENDING

    await store.send("r1", "t", '"m3"')
    assert await store.receive(recv(2), "t", timed_out=False) == (Fence.OK, True, '"m3"')
    assert await store.receive(recv(3), "t", timed_out=True) == (Fence.OK, True, None)

    journal = await store.load_journal("r1")
    assert [(e.seq, e.status, e.output) for e in journal] == [
        (0, EntryStatus.OK, "m1"),
        (1, EntryStatus.OK, "m2"),
        (2, EntryStatus.OK, "m3"),
        (3, EntryStatus.OK, None),
    ]
    assert await store.suspend("r1", 1, wake_at=None, topics=["t"], children=[]) is Fence.OK
    assert await store.suspend("r1", 1, wake_at=None, topics=["t"], children=[]) is Fence.LOST


# -- control: cancel, pause, resume, fork ---------------------------------------------


async def test_cancel_cascades_and_wakes_the_waiting_parent(store: Store) -> None:
    await store.create_run(new_run("root", owner="w1"))
    await store.create_run(new_run("child", owner="w1", parent_id="root"))
    await store.create_run(new_run("grandchild", parent_id="child"))
    await store.create_run(new_run("finished", owner="w1", parent_id="child"))
    await store.apply([finish("finished")])
    await store.create_run(new_run("sibling", parent_id="root"))
    await store.suspend("root", 1, wake_at=None, topics=[], children=["child"])

    assert await store.cancel("child", "enough") == ["child", "grandchild"]

    for run_id in ("child", "grandchild"):
        run = await store.get_run(run_id)
        assert (run.status, run.owner) == (RunStatus.CANCELLED, None)
        assert isinstance(run.error, dict) and run.error["message"] == "enough"
        assert (await kinds(store, run_id))[-1] == "run.cancelled"
    assert (await store.get_run("finished")).status is RunStatus.SUCCEEDED
    assert (await store.get_run("sibling")).status is RunStatus.PENDING
    assert (await store.get_run("root")).status is RunStatus.PENDING
    assert await store.apply([entry("child", 0)]) == [Fence.LOST]

    assert await store.cancel("root", "all") == ["root", "sibling"]
    assert await store.cancel("root", "again") == []
    with pytest.raises(errors.RunNotFoundError):
        await store.cancel("missing", "x")


async def test_pause_and_resume(store: Store) -> None:
    await store.create_run(new_run("idle"))
    await store.create_run(new_run("busy", owner="w1"))

    assert (await store.request_pause("idle")).status is RunStatus.PAUSED
    assert await store.claim("w1", limit=5, lease_s=30, workflows=WF) == []
    assert (await store.resume("idle")).status is RunStatus.PENDING

    busy = await store.request_pause("busy")
    assert (busy.status, busy.pause_requested) == (RunStatus.RUNNING, True)
    busy = await store.resume("busy")  # withdraws the request
    assert (busy.status, busy.pause_requested) == (RunStatus.RUNNING, False)
    assert await store.apply([entry("busy", 0)]) == [Fence.OK]
    assert (await kinds(store, "busy"))[-2:] == ["run.pause_requested", "run.resumed"]

    await store.suspend("busy", 1, wake_at=None, topics=["t"], children=[])
    assert (await store.request_pause("busy")).status is RunStatus.PAUSED
    assert (await store.resume("busy")).status is RunStatus.PENDING


async def test_pause_and_resume_refuse_finished_runs(store: Store) -> None:
    await store.create_run(new_run("r1", owner="w1"))
    await store.apply([finish("r1")])

    with pytest.raises(errors.RunStateError) as caught:
        await store.request_pause("r1")
    assert caught.value.facts["status"] == "succeeded"
    with pytest.raises(errors.RunStateError):
        await store.resume("r1")
    with pytest.raises(errors.RunNotFoundError):
        await store.request_pause("missing")


async def _journal_of_three(store: Store) -> None:
    await store.create_run(new_run("src", owner="w1"))
    await store.apply([entry("src", seq) for seq in range(3)])
    await store.apply([finish("src")])


async def test_fork_copies_the_journal_prefix(store: Store) -> None:
    await _journal_of_three(store)

    await store.fork("src", 2, None, new_run("f1", forked_from="src", fork_seq=2))

    forked = await store.get_run("f1")
    assert (forked.status, forked.forked_from, forked.fork_seq) == (RunStatus.PENDING, "src", 2)
    assert forked.input == {"n": 1}
    assert [(e.seq, e.output) for e in await store.load_journal("f1")] == [
        (0, "out0"),
        (1, "out1"),
    ]
    source = await store.get_run("src")
    assert (source.superseded_by, source.status) == ("f1", RunStatus.SUCCEEDED)
    assert len(await store.load_journal("src")) == 3
    assert (await kinds(store, "src"))[-1] == "run.superseded"


async def test_fork_with_a_patch(store: Store) -> None:
    await _journal_of_three(store)

    await store.fork("src", 1, '{"patched": true}', new_run("f2", forked_from="src", fork_seq=1))

    journal = await store.load_journal("f2")
    assert [(e.seq, e.status, e.output) for e in journal] == [
        (0, EntryStatus.OK, "out0"),
        (1, EntryStatus.OK, {"patched": True}),
    ]
    assert journal[1].name == "step1"
    assert (await store.get_run("src")).superseded_by == "f2"


async def test_fork_refuses_an_existing_id_and_a_missing_source(store: Store) -> None:
    await _journal_of_three(store)

    with pytest.raises(errors.InvalidForkError):
        await store.fork("src", 1, None, new_run("src"))
    with pytest.raises(errors.RunNotFoundError):
        await store.fork("missing", 1, None, new_run("f3"))
    assert (await store.get_run("src")).superseded_by is None


# -- large values, checkpoints, events ------------------------------------------------


BIG = {"text": "x" * 500, "items": list(range(50))}


async def _write_big_values(store: Store) -> None:
    big = orjson.dumps(BIG).decode()
    await store.create_run(NewRun(run_id="r1", workflow="wf", version="1", input=big, owner="w"))
    await store.apply(
        [entry("r1", 0, output=big), entry("r1", 1, output=big), finish("r1", output=big)]
    )


async def _assert_big_values_read_back(store: Store) -> None:
    run = await store.get_run("r1")
    assert run.input == BIG
    assert run.output == BIG
    assert [e.output for e in await store.load_journal("r1")] == [BIG, BIG]


async def test_large_values_go_to_the_blob_table(
    make_store: MakeStore, store_url: str, fetch_rows: Fetch
) -> None:
    store = await make_store(blob_threshold=100)
    await _write_big_values(store)

    await _assert_big_values_read_back(store)
    # Stored once, by content: the input and both outputs are the same text.
    assert await fetch_rows(store_url, "SELECT count(*) FROM kernos_blobs") == [(1,)]
    rows = await fetch_rows(store_url, "SELECT input FROM kernos_runs")
    assert rows[0][0].startswith('{"$kernos_blob":')


async def test_large_values_go_to_the_blob_directory(
    make_store: MakeStore, store_url: str, fetch_rows: Fetch, tmp_path: Path
) -> None:
    blob_dir = tmp_path / "blobs"
    store = await make_store(blob_threshold=100, blob_dir=str(blob_dir))
    await _write_big_values(store)

    await _assert_big_values_read_back(store)
    (blob,) = list(blob_dir.iterdir())
    assert orjson.loads(blob.read_text()) == BIG
    assert await fetch_rows(store_url, "SELECT count(*) FROM kernos_blobs") == [(0,)]


async def test_checkpoints_report_whether_they_are_intact(store: Store) -> None:
    await store.create_run(new_run("r1", owner="w1"))
    state = orjson.dumps({"step": 3}).decode()
    good = orjson.dumps({"sha256": checksum(state)}).decode()
    bad = orjson.dumps({"sha256": checksum(state + " ")}).decode()
    await store.apply(
        [
            entry("r1", 0),
            entry("r1", 1, kind="checkpoint", name="after-3", output=state, detail=good),
            entry("r1", 2, kind="checkpoint", name="tampered", output=state, detail=bad),
        ]
    )

    first, second = await store.list_checkpoints("r1")
    assert (first.seq, first.name, first.state, first.intact) == (1, "after-3", {"step": 3}, True)
    assert first.sha256 == checksum(state)
    assert first.taken_at == T0
    assert (second.name, second.intact) == ("tampered", False)
    assert await store.list_checkpoints("missing") == []


async def test_events_are_append_only_with_increasing_ids(store: Store) -> None:
    await store.create_run(new_run("r1", owner="w1"))
    await store.create_run(new_run("r2"))
    before = await store.list_events()
    await store.apply([entry("r1", 0), EventWrite(run_id="r1", kind="custom", data='{"a": 1}')])
    await store.cancel("r2", "no")
    after = await store.list_events()

    assert after[: len(before)] == before
    ids = [event.event_id for event in after]
    assert ids == sorted(set(ids))
    assert after[-2].data == {"a": 1}
    assert {event.run_id for event in await store.list_events("r2")} == {"r2"}
    assert await store.list_events(after=ids[1], limit=2) == after[2:4]
    assert await store.list_events(after=ids[-1]) == []


# -- the worker registry ---------------------------------------------------------------


def worker(worker_id: str, host: str = "h1") -> Worker:
    return Worker(
        worker_id=worker_id, host=host, pid=100, started_at=0, heartbeat_at=0, state="active"
    )


async def test_worker_registry(store: Store, clock: Clock) -> None:
    await store.register_worker(worker("w1"), "start-1")
    await store.register_worker(worker("w2", host="h2"), None)
    clock.advance(5)
    await store.heartbeat("w2", lease_s=30)
    await store.set_worker_state("w1", "draining")

    listed = {w.worker_id: w for w in await store.list_workers()}
    assert (listed["w1"].state, listed["w1"].host, listed["w1"].pid) == ("draining", "h1", 100)
    assert listed["w1"].started_at == T0
    assert listed["w2"].heartbeat_at == T0 + 5
    assert [(w.worker_id, start) for w, start in await store.workers_on_host("h1")] == [
        ("w1", "start-1")
    ]

    assert await store.mark_stale_workers(T0 + 5) == []
    clock.advance(1)
    await store.heartbeat("w2", lease_s=30)
    assert await store.mark_stale_workers(T0 + 5.5) == ["w1"]
    assert await store.workers_on_host("h1") == []


async def test_heartbeat_renews_the_workers_leases(store: Store, clock: Clock) -> None:
    await store.register_worker(worker("w1"), None)
    await store.create_run(new_run("r1"))
    await store.create_run(new_run("theirs", owner="w2", lease_s=5))
    await store.claim("w1", limit=1, lease_s=5, workflows=WF)
    clock.advance(4)

    assert await store.heartbeat("w1", lease_s=5) == {"r1"}

    assert (await store.get_run("r1")).lease_expires_at == clock.now + 5
    assert (await store.get_run("theirs")).lease_expires_at == T0 + 5
    clock.advance(2)
    assert [run.run_id for run in await store.claim("w3", limit=5, lease_s=5, workflows=WF)] == [
        "theirs"
    ]


async def test_retiring_a_dead_worker_frees_its_runs_at_once(store: Store) -> None:
    await store.register_worker(worker("w1"), None)
    await store.create_run(new_run("r1", owner="w1", lease_s=300))
    await store.create_run(new_run("r2", owner="w2", lease_s=300))

    assert await store.retire_worker("w1", dead=True) == ["r1"]

    (worker_row,) = [w for w in await store.list_workers() if w.worker_id == "w1"]
    assert worker_row.state == "gone"
    claimed = await store.claim("w3", limit=5, lease_s=30, workflows=WF)
    assert [(run.run_id, run.lease_epoch, run.executions) for run in claimed] == [("r1", 2, 2)]
    assert (await kinds(store, "r1"))[-2:] == ["run.released", "run.started"]


async def test_retiring_a_clean_worker_makes_its_runs_pending(store: Store) -> None:
    await store.register_worker(worker("w1"), None)
    await store.create_run(new_run("r1", owner="w1", lease_s=300))

    assert await store.retire_worker("w1", dead=False) == ["r1"]

    run = await store.get_run("r1")
    assert (run.status, run.owner, run.lease_expires_at) == (RunStatus.PENDING, None, None)
    assert await store.apply([entry("r1", 0)]) == [Fence.LOST]
    assert [run.run_id for run in await store.claim("w2", limit=5, lease_s=30, workflows=WF)] == [
        "r1"
    ]


# -- an unavailable store ----------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_unreachable_postgres_raises_store_unavailable() -> None:
    pytest.importorskip("psycopg")
    store = open_store(f"postgresql://postgres@127.0.0.1:{_closed_port()}/kernos", retry_for=0.5)
    started = time.monotonic()
    try:
        with pytest.raises(errors.StoreUnavailableError) as caught:
            await store.get_run("r1")
    finally:
        await store.close()
    assert time.monotonic() - started < 5
    assert caught.value.facts["url"] == store.url


class _Locker:
    """Another program holding SQLite's write lock from its own thread."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.locked = threading.Event()
        self.release = threading.Event()
        self.thread = threading.Thread(target=self._hold)

    def _hold(self) -> None:
        conn = sqlite3.connect(self.path, isolation_level=None)
        try:
            conn.execute("BEGIN EXCLUSIVE")
            self.locked.set()
            self.release.wait(30)
            conn.execute("COMMIT")
        finally:
            conn.close()

    async def __aenter__(self) -> _Locker:
        self.thread.start()
        await asyncio.to_thread(self.locked.wait, 10)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release.set()
        await asyncio.to_thread(self.thread.join)


async def _migrated_sqlite(tmp_path: Path, **options: Any) -> tuple[Store, str]:
    path = str(tmp_path / "locked.db")
    store = open_store(f"sqlite:///{path}", **options)
    await store.migrate()
    return store, path


async def test_sqlite_locked_past_retry_for_raises_and_writes_nothing(tmp_path: Path) -> None:
    store, path = await _migrated_sqlite(tmp_path, retry_for=0.5)
    try:
        async with _Locker(path):
            started = time.monotonic()
            with pytest.raises(errors.StoreUnavailableError):
                await store.create_run(new_run("r1"))
            assert time.monotonic() - started < 5
        with pytest.raises(errors.RunNotFoundError):
            await store.get_run("r1")
        assert await store.list_events() == []
    finally:
        await store.close()


async def test_sqlite_lock_released_within_retry_for_succeeds(tmp_path: Path) -> None:
    store, path = await _migrated_sqlite(tmp_path, retry_for=10)
    try:
        async with _Locker(path) as locker:
            asyncio.get_running_loop().call_later(0.3, locker.release.set)
            assert await store.create_run(new_run("r1"))
        assert (await store.get_run("r1")).status is RunStatus.PENDING
    finally:
        await store.close()


async def test_fresh_database_urls_are_independent(make_store_url: MakeStoreUrl) -> None:
    first, second = make_store_url(), make_store_url()
    assert first != second
    a, b = open_store(first), open_store(second)
    try:
        assert (await a.schema_version())[0] == (await a.schema_version())[1] > 0
        await a.create_run(new_run("r1"))
        with pytest.raises(errors.RunNotFoundError):
            await b.get_run("r1")
    finally:
        await a.close()
        await b.close()
