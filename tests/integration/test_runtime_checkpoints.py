"""Named checkpoints: state snapshots with a SHA-256 checksum, verified on
restore, on forking at them, on recovery and on replay. Every test runs on SQLite
and PostgreSQL."""

from __future__ import annotations

import asyncio
import hashlib
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from runtime_support import make_gate, new_app, until

import kernos
from kernos import errors
from kernos.records import EntryKind, RunStatus

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


def _execute(url: str, sql: str, params: tuple[Any, ...]) -> int:
    """Write to a store's database behind its back, as corruption would."""
    if url.startswith("sqlite:///"):
        import sqlite3

        conn = sqlite3.connect(url[len("sqlite:///") :])
        try:
            with conn:
                return conn.execute(sql, params).rowcount
        finally:
            conn.close()
    import psycopg

    with psycopg.connect(url) as pg:
        return pg.execute(sql.replace("?", "%s").encode(), params).rowcount


async def corrupt(url: str, run_id: str, seq: int, state: Any) -> None:
    changed = await asyncio.to_thread(
        _execute,
        url,
        "UPDATE kernos_journal SET output = ? WHERE run_id = ? AND seq = ?",
        (orjson.dumps(state).decode(), run_id, seq),
    )
    assert changed == 1


@kernos.step
async def count(key: str) -> str:
    CALLS[key] += 1
    return key


@kernos.step
async def gated(key: str) -> str:
    CALLS[key] += 1
    await gate(key).wait()
    return key


@kernos.workflow(name="rt_cp.flow")
async def flow(n: int) -> list[str]:
    a = await count("a")
    kernos.checkpoint("collected", {"a": a, "n": n})
    kernos.checkpoint("empty")
    b = await gated("b")
    kernos.checkpoint("collected", {"a": a, "b": b, "n": n})
    return [a, b]


async def finished(app: kernos.Kernos, run_id: str = "cp") -> None:
    gate("b").set()
    handle = await app.start(flow, 1, run_id=run_id)
    assert await handle.result(timeout=10) == ["a", "b"]


async def test_checkpoints_are_journaled_with_their_checksum(app: kernos.Kernos) -> None:
    await finished(app)
    checkpoints = await app.checkpoints("cp")
    assert [(c.seq, c.name, c.intact) for c in checkpoints] == [
        (1, "collected", True),
        (2, "empty", True),
        (4, "collected", True),
    ]
    assert checkpoints[0].state == {"a": "a", "n": 1}
    assert checkpoints[1].state is None
    for checkpoint in checkpoints:
        text = orjson.dumps(checkpoint.state).decode()
        assert checkpoint.sha256 == hashlib.sha256(text.encode()).hexdigest()
    journal = await app.journal("cp")
    assert [e.kind for e in journal] == [
        EntryKind.STEP,
        EntryKind.CHECKPOINT,
        EntryKind.CHECKPOINT,
        EntryKind.STEP,
        EntryKind.CHECKPOINT,
    ]
    assert journal[1].detail == {"sha256": checkpoints[0].sha256}
    assert [e.data["name"] for e in await app.events("cp") if e.kind == "checkpoint"] == [
        "collected",
        "empty",
        "collected",
    ]


async def test_restore_returns_the_latest_checkpoint_of_a_name(app: kernos.Kernos) -> None:
    await finished(app)
    assert await app.restore("cp", "collected") == {"a": "a", "b": "b", "n": 1}
    assert await app.restore("cp", "empty") is None
    with pytest.raises(errors.InvalidForkError):
        await app.restore("cp", "no-such-checkpoint")
    with pytest.raises(errors.RunNotFoundError):
        await app.restore("nope", "collected")


async def test_checkpoint_is_durable_before_the_next_step_runs(app: kernos.Kernos) -> None:
    handle = await app.start(flow, 2, run_id="durable")
    await until(lambda: CALLS["b"] == 1)
    assert await app.restore("durable", "collected") == {"a": "a", "n": 2}
    gate("b").set()
    await handle.result(timeout=10)


async def test_restore_of_a_corrupted_checkpoint_raises_checksum_mismatch(
    app: kernos.Kernos, store_url: str
) -> None:
    await finished(app)
    await corrupt(store_url, "cp", 4, {"a": "a", "b": "tampered", "n": 1})
    checkpoints = await app.checkpoints("cp")
    assert [c.intact for c in checkpoints] == [True, True, False]
    with pytest.raises(errors.ChecksumMismatchError) as info:
        await app.restore("cp", "collected")
    assert (info.value.run_id, info.value.seq) == ("cp", 4)
    assert info.value.expected == checkpoints[2].sha256
    assert await app.restore("cp", "empty") is None  # the others still verify


async def test_fork_at_a_corrupted_checkpoint_raises_checksum_mismatch(
    app: kernos.Kernos, store_url: str
) -> None:
    await finished(app)
    await corrupt(store_url, "cp", 4, {"forged": True})
    with pytest.raises(errors.ChecksumMismatchError):
        await app.fork("cp", at="collected")
    assert [r.run_id for r in await app.list_runs()] == ["cp"]
    assert (await app.get_run("cp")).superseded_by is None


async def test_fork_at_an_intact_checkpoint_resumes_after_it(app: kernos.Kernos) -> None:
    await finished(app)
    CALLS.clear()
    fork = await app.fork("cp", at="empty")
    assert (await app.get_run(fork.run_id)).fork_seq == 3
    assert await fork.result(timeout=10) == ["a", "b"]
    assert CALLS == {"b": 1}


async def test_recovery_verifies_checkpoints(store_url: str) -> None:
    async with new_app(store_url) as app_a:
        handle = await app_a.start(flow, 3, run_id="recover")
        await until(lambda: CALLS["b"] == 1)
    await corrupt(store_url, "recover", 1, {"a": "a", "n": 999})
    gate("b").set()
    async with new_app(store_url) as app_b:
        with pytest.raises(errors.RunFailedError) as info:
            await app_b.handle(handle.run_id).result(timeout=10)
        assert info.value.error_code == "checksum_mismatch"
        run = await app_b.get_run("recover")
        assert run.status is RunStatus.FAILED
        assert run.error["facts"]["seq"] == 1
    assert CALLS == {"a": 1, "b": 1}  # stopped before running anything more


async def test_replay_reports_a_corrupted_checkpoint(app: kernos.Kernos, store_url: str) -> None:
    await finished(app)
    await corrupt(store_url, "cp", 1, {"a": "x", "n": 1})
    report = await app.replay("cp")
    assert not report.identical
    assert report.divergence is not None
    assert (report.divergence.seq, report.divergence.reason) == (1, "checksum")


@kernos.workflow(name="rt_cp.changed_state")
async def changed_state(n: int) -> int:
    kernos.checkpoint("state", {"n": n})
    return await gated_int(n)


@kernos.step
async def gated_int(n: int) -> int:
    CALLS["gated_int"] += 1
    await gate("int").wait()
    return n


async def test_recovered_code_taking_a_different_checkpoint_is_nondeterminism(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with new_app(store_url) as app_a:
        handle = await app_a.start(changed_state, 1, run_id="changed")
        await until(lambda: CALLS["gated_int"] == 1)

    async def other_state(n: int) -> int:
        kernos.checkpoint("state", {"n": n, "extra": True})
        return await gated_int(n)

    variant = kernos.Workflow(other_state, name="rt_cp.changed_state", version="2", timeout=None)
    monkeypatch.setitem(kernos.runtime.registry.workflows, "rt_cp.changed_state", variant)
    gate("int").set()
    async with new_app(store_url) as app_b:
        with pytest.raises(errors.RunFailedError) as info:
            await app_b.handle(handle.run_id).result(timeout=10)
    assert info.value.error_code == "nondeterminism"
    assert CALLS["gated_int"] == 1
