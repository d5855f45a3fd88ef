"""Forks ("time travel"): a new run reuses a journal prefix, optionally with a
patched result, and the source is kept and marked superseded. Every test runs on
SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
from runtime_support import make_gate, new_app, until

import kernos
from kernos import errors
from kernos.records import EntryKind, EntryStatus, RunStatus

CALLS: Counter[str] = Counter()
GATES: dict[str, asyncio.Event] = {}
gate = make_gate(GATES)


@pytest.fixture(autouse=True)
def _reset() -> None:
    CALLS.clear()
    GATES.clear()


@pytest.fixture
async def app(store_url: str) -> AsyncIterator[kernos.Kernos]:
    async with new_app(store_url) as app:
        yield app


def same_entry(entry: kernos.JournalEntry) -> tuple[Any, ...]:
    return (entry.seq, entry.kind, entry.name, entry.status, entry.args_hash, entry.output)


@kernos.step
async def numbered(i: int, value: int) -> int:
    CALLS[f"s{i}"] += 1
    return value * 10 + i


@kernos.step
async def gated(key: str) -> str:
    CALLS[key] += 1
    await gate(key).wait()
    return key


@kernos.workflow(name="rt_fork.four")
async def four_steps(seed: int) -> list[int]:
    results: list[int] = []
    value = seed
    for i in range(4):
        value = await numbered(i, value)
        results.append(value)
    return results


async def finished_four(app: kernos.Kernos, run_id: str = "src") -> list[int]:
    handle = await app.start(four_steps, 1, run_id=run_id)
    result: list[int] = await handle.result(timeout=10)
    CALLS.clear()
    return result


async def test_fork_reuses_entries_before_at_and_reexecutes_from_at(app: kernos.Kernos) -> None:
    expected = await finished_four(app)
    fork = await app.fork("src", at=2)
    assert fork.run_id.startswith("src~")
    assert await fork.result(timeout=10) == expected
    assert CALLS == {"s2": 1, "s3": 1}  # s0 and s1 came from the journal
    source_journal = await app.journal("src")
    fork_journal = await app.journal(fork.run_id)
    assert [same_entry(e) for e in fork_journal[:2]] == [same_entry(e) for e in source_journal[:2]]
    assert [same_entry(e) for e in fork_journal] == [same_entry(e) for e in source_journal]
    run = await app.get_run(fork.run_id)
    assert (run.forked_from, run.fork_seq, run.superseded_by) == ("src", 2, None)
    assert run.input == (await app.get_run("src")).input
    source = await app.get_run("src")
    assert source.superseded_by == fork.run_id
    assert source.status is RunStatus.SUCCEEDED  # kept, not destroyed
    assert source.output == expected
    assert "run.superseded" in [e.kind for e in await app.events("src")]


async def test_fork_at_the_ends_of_the_journal(app: kernos.Kernos) -> None:
    expected = await finished_four(app)
    at_start = await app.fork("src", at=0)
    assert await at_start.result(timeout=10) == expected
    assert CALLS == {"s0": 1, "s1": 1, "s2": 1, "s3": 1}  # everything again
    CALLS.clear()
    at_end = await app.fork(at_start.run_id, at=4)
    assert await at_end.result(timeout=10) == expected
    assert CALLS == {}  # nothing again


async def test_fork_with_patch_uses_the_patched_result_without_rerunning_it(
    app: kernos.Kernos,
) -> None:
    assert await finished_four(app) == [10, 101, 1012, 10123]
    fork = await app.fork("src", at=1, patch=5, new_run_id="patched")
    assert fork.run_id == "patched"
    assert await fork.result(timeout=10) == [10, 5, 52, 523]
    assert CALLS == {"s2": 1, "s3": 1}  # s1 was patched, not re-run; s0 reused
    journal = await app.journal("patched")
    assert journal[1].output == 5
    assert journal[1].status is EntryStatus.OK
    assert journal[1].name == "numbered"
    assert journal[1].args_hash == (await app.journal("src"))[1].args_hash
    assert (await app.get_run("src")).superseded_by == "patched"


async def test_fork_can_patch_with_none(app: kernos.Kernos) -> None:
    await finished_four(app)
    fork = await app.fork("src", at=3, patch=None, patched=True)
    assert await fork.result(timeout=10) == [10, 101, 1012, None]
    assert (await app.journal(fork.run_id))[3].output is None
    assert CALLS == {}


@kernos.step
async def maybe_fail(ok: bool) -> str:
    CALLS["maybe_fail"] += 1
    if not ok:
        raise errors.PermanentError("bad data")
    return "fine"


@kernos.workflow(name="rt_fork.fails")
async def fails_midway() -> list[str]:
    first = await numbered(0, 0)
    broken = await maybe_fail(False)
    return [str(first), broken, str(await numbered(2, 0))]


async def test_fork_with_patch_repairs_a_failed_run(app: kernos.Kernos) -> None:
    handle = await app.start(fails_midway, run_id="broken")
    with pytest.raises(errors.RunFailedError):
        await handle.result(timeout=10)
    assert (await app.journal("broken"))[1].status is EntryStatus.ERROR
    fork = await app.fork("broken", at=1, patch="repaired")
    assert await fork.result(timeout=10) == ["0", "repaired", "2"]
    assert CALLS == {"s0": 1, "maybe_fail": 1, "s2": 1}
    repaired = (await app.journal(fork.run_id))[1]
    assert (repaired.status, repaired.output, repaired.error) == (
        EntryStatus.OK,
        "repaired",
        None,
    )
    assert (await app.get_run("broken")).status is RunStatus.FAILED


async def test_a_fork_can_be_forked_again(app: kernos.Kernos) -> None:
    await finished_four(app)
    first = await app.fork("src", at=2, patch=7, new_run_id="f1")
    assert await first.result(timeout=10) == [10, 101, 7, 73]
    second = await app.fork("f1", at=3, new_run_id="f2")
    assert await second.result(timeout=10) == [10, 101, 7, 73]
    assert (await app.get_run("f1")).superseded_by == "f2"
    assert (await app.get_run("f2")).forked_from == "f1"


@kernos.workflow(name="rt_fork.blocked")
async def blocked() -> list[str]:
    return [await gated("first"), await gated("second")]


async def test_forking_an_unfinished_run_cancels_it_first(app: kernos.Kernos) -> None:
    gate("first").set()
    handle = await app.start(blocked, run_id="live")
    await until(lambda: CALLS["second"] == 1)
    fork = await app.fork("live", at=1)
    with pytest.raises(errors.RunCancelledError):
        await handle.result(timeout=10)
    source = await app.get_run("live")
    assert source.status is RunStatus.CANCELLED
    assert source.superseded_by == fork.run_id
    gate("second").set()
    assert await fork.result(timeout=10) == ["first", "second"]
    assert CALLS == {"first": 1, "second": 2}


@kernos.workflow(name="rt_fork.checkpointed")
async def checkpointed() -> list[int]:
    a = await numbered(0, 1)
    kernos.checkpoint("after-a", {"a": a})
    b = await numbered(1, a)
    return [a, b]


async def test_fork_at_a_checkpoint_resumes_right_after_it(app: kernos.Kernos) -> None:
    handle = await app.start(checkpointed, run_id="cp")
    assert await handle.result(timeout=10) == [10, 101]
    CALLS.clear()
    fork = await app.fork("cp", at="after-a")
    assert await fork.result(timeout=10) == [10, 101]
    assert CALLS == {"s1": 1}
    run = await app.get_run(fork.run_id)
    assert run.fork_seq == 2  # the checkpoint is seq 1
    journal = await app.journal(fork.run_id)
    assert journal[1].kind is EntryKind.CHECKPOINT
    assert (await app.restore(fork.run_id, "after-a")) == {"a": 10}


async def test_fork_at_a_position_the_journal_lacks_raises_invalid_fork(
    app: kernos.Kernos,
) -> None:
    await finished_four(app)
    await finished_four(app, run_id="other")
    invalid: list[tuple[int | str, Any]] = [
        (5, None),  # past the end (4 entries: 0..3, and 4 means "after the last")
        (100, None),
        (-1, None),
        (4, 1),  # nothing to patch at the end
        ("no-such-checkpoint", None),
    ]
    for at, patch in invalid:
        with pytest.raises(errors.InvalidForkError):
            await app.fork("src", at=at, patch=patch)
    with pytest.raises(errors.InvalidForkError):  # the fork's id is taken
        await app.fork("src", at=1, new_run_id="other")
    with pytest.raises(errors.RunNotFoundError):
        await app.fork("nope", at=0)
    source = await app.get_run("src")
    assert source.superseded_by is None
    assert sorted(r.run_id for r in await app.list_runs()) == ["other", "src"]


async def test_checkpoint_entries_cannot_be_patched(app: kernos.Kernos) -> None:
    handle = await app.start(checkpointed, run_id="cp")
    await handle.result(timeout=10)
    with pytest.raises(errors.InvalidForkError) as info:
        await app.fork("cp", at=1, patch={"a": 0})
    assert info.value.at_seq == 1


@kernos.workflow(name="rt_fork.waiting")
async def waiting() -> Any:
    first = await numbered(0, 0)
    return [first, await kernos.recv("t")]


async def test_fork_past_an_unfinished_wait_raises_invalid_fork(app: kernos.Kernos) -> None:
    handle = await app.start(waiting, run_id="w")
    loop = asyncio.get_running_loop()
    give_up = loop.time() + 10
    while (await app.get_run("w")).status is not RunStatus.WAITING:
        assert loop.time() < give_up
        await asyncio.sleep(0.02)
    with pytest.raises(errors.InvalidForkError):
        await app.fork("w", at=2)
    assert (await app.get_run("w")).status is RunStatus.WAITING
    fork = await app.fork("w", at=1)  # at the wait: the fork waits afresh
    await app.send(fork.run_id, "for the fork", topic="t")
    assert await fork.result(timeout=10) == [0, "for the fork"]
    with pytest.raises(errors.RunCancelledError):
        await handle.result(timeout=10)
