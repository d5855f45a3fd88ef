"""Nondeterminism and versions: a run recovered under code that no longer matches
its journal fails with NondeterminismError instead of running the wrong steps.
Every test runs on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from runtime_support import make_gate, new_app, until

import kernos
from kernos import errors
from kernos.records import RunStatus
from kernos.runtime import registry

CALLS: Counter[str] = Counter()
GATES: dict[str, asyncio.Event] = {}
gate = make_gate(GATES)
SEEN: dict[str, BaseException] = {}
NAME = "rt_nd.flow"


@pytest.fixture(autouse=True)
def _reset() -> None:
    CALLS.clear()
    GATES.clear()
    SEEN.clear()


@pytest.fixture
def swap(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Re-register a workflow name with other code, as a new deployment would."""

    def install(name: str, fn: Callable[..., Any], version: str = "2") -> None:
        variant = kernos.Workflow(fn, name=name, version=version, timeout=None)
        monkeypatch.setitem(registry.workflows, name, variant)

    return install


@kernos.step
async def count(key: str) -> str:
    CALLS[key] += 1
    return key


@kernos.step
async def other(key: str) -> str:
    CALLS[f"other:{key}"] += 1
    return key


@kernos.step
async def gated(key: str) -> str:
    CALLS[key] += 1
    await gate(key).wait()
    return key


@kernos.workflow(name=NAME, version="1")
async def flow() -> list[str]:
    return [await count("a"), await gated("block"), await count("c")]


async def interrupted_run(url: str) -> None:
    """Start a run under version 1 and stop its worker after step "a"."""
    async with new_app(url) as app:
        handle = await app.start(flow, run_id="nd")
        await until(lambda: CALLS["block"] == 1)
        assert handle.run_id == "nd"
        assert (await app.get_run("nd")).version == "1"


async def recovered_failure(url: str) -> tuple[kernos.Run, errors.RunFailedError]:
    async with new_app(url) as app:
        with pytest.raises(errors.RunFailedError) as info:
            await app.handle("nd").result(timeout=10)
        return await app.get_run("nd"), info.value


async def name_changed() -> list[str]:
    try:
        first = await other("a")  # the journal has count("a") at seq 0
    except errors.NondeterminismError as exc:
        SEEN["error"] = exc
        raise
    return [first, await gated("block"), await count("c")]


async def test_recovery_under_diverging_code_fails_with_nondeterminism(
    store_url: str, swap: Callable[..., None]
) -> None:
    await interrupted_run(store_url)
    swap(NAME, name_changed)
    run, failure = await recovered_failure(store_url)
    assert failure.error_type == "kernos.errors.NondeterminismError"
    assert failure.error_code == "nondeterminism"
    exc = SEEN["error"]
    assert isinstance(exc, errors.NondeterminismError)
    assert (exc.run_id, exc.seq) == ("nd", 0)
    assert "count" in exc.expected
    assert "other" in exc.found
    assert run.status is RunStatus.FAILED
    assert run.error["code"] == "nondeterminism"
    assert run.error["facts"]["seq"] == 0
    assert run.error["facts"]["expected"] == exc.expected
    assert run.error["facts"]["found"] == exc.found
    assert "'1'" in run.error["message"] and "'2'" in run.error["message"]  # both versions
    assert CALLS == {"a": 1, "block": 1}  # nothing of the new code ran


async def args_changed() -> list[str]:
    try:
        await count("A")  # the journal has count("a")
    except errors.NondeterminismError as exc:
        SEEN["error"] = exc
        raise
    return []


async def test_changed_step_arguments_are_nondeterminism(
    store_url: str, swap: Callable[..., None]
) -> None:
    await interrupted_run(store_url)
    swap(NAME, args_changed)
    _, failure = await recovered_failure(store_url)
    assert failure.error_code == "nondeterminism"
    exc = SEEN["error"]
    assert isinstance(exc, errors.NondeterminismError)
    assert exc.seq == 0
    assert exc.expected != exc.found
    assert "args" in exc.expected and "args" in exc.found
    assert CALLS["A"] == 0


async def swallows_nondeterminism() -> str:
    try:
        await other("a")
    except Exception:
        return "pretending all is well"
    return "unreachable"


async def test_workflow_code_cannot_swallow_nondeterminism(
    store_url: str, swap: Callable[..., None]
) -> None:
    await interrupted_run(store_url)
    swap(NAME, swallows_nondeterminism)
    run, failure = await recovered_failure(store_url)
    assert failure.error_code == "nondeterminism"
    assert run.output is None


async def reordered_later() -> list[str]:
    # Same calls as version 1 up to the journal's end (seq 0), different after.
    return [await count("a"), await gated("block"), await other("new")]


async def test_code_changed_only_past_the_journal_recovers(
    store_url: str, swap: Callable[..., None]
) -> None:
    await interrupted_run(store_url)
    swap(NAME, reordered_later)
    gate("block").set()
    async with new_app(store_url) as app:
        assert await app.handle("nd").result(timeout=10) == ["a", "block", "new"]
        assert (await app.get_run("nd")).version == "1"  # the version it began under
    assert CALLS == {"a": 1, "block": 2, "other:new": 1}


async def new_code() -> list[str]:
    return [await other("a"), await other("b")]


async def test_fork_at_the_divergence_continues_under_the_new_code(
    store_url: str, swap: Callable[..., None]
) -> None:
    await interrupted_run(store_url)
    swap(NAME, new_code)
    run, _ = await recovered_failure(store_url)
    assert run.error["facts"]["seq"] == 0
    async with new_app(store_url) as app:
        fork = await app.fork("nd", at=run.error["facts"]["seq"])
        assert await fork.result(timeout=10) == ["a", "b"]
    assert CALLS["other:a"] == 1


@kernos.workflow(name="rt_nd.versioned", version="3")
async def versioned() -> str:
    return await count("v")


async def test_runs_record_the_workflow_version(store_url: str) -> None:
    async with new_app(store_url) as app:
        handle = await app.start(versioned)
        await handle.result(timeout=10)
        assert (await app.get_run(handle.run_id)).version == "3"
        assert versioned.version == "3"
