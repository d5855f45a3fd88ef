"""Steps and retries: results journaled once, recovery, idempotent start, retry
policies, step and run timeouts. Every test runs on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import sys
import threading
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from runtime_support import make_gate, new_app, until

import kernos
from kernos import errors
from kernos.records import EntryStatus, RunStatus

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


# -- steps and workflows -----------------------------------------------------------


@kernos.step
async def count(key: str) -> str:
    CALLS[key] += 1
    return f"done-{key}"


@kernos.step
async def gated(key: str) -> str:
    CALLS[key] += 1
    await gate(key).wait()
    return f"passed-{key}"


@kernos.step
def sync_double(x: int) -> int:
    CALLS["sync_double"] += 1
    return x * 2


@kernos.workflow(name="rt_steps.three")
async def three_steps(tag: str) -> list[str]:
    a = await count(f"{tag}-a")
    b = await gated(f"{tag}-b")
    c = await count(f"{tag}-c")
    return [a, b, c]


@kernos.workflow(name="rt_steps.sync")
def sync_workflow(x: int) -> int:
    doubled: int = sync_double(x)
    return doubled + sync_double(1)


@kernos.workflow(name="rt_steps.swallow")
async def swallow_failure() -> str:
    try:
        await fail_always()
    except ValueError as exc:
        outcome = f"caught {exc}"
    await gated("after")
    return outcome


@kernos.step
async def fail_always() -> None:
    CALLS["fail_always"] += 1
    raise ValueError("boom")


# -- results are journaled once ------------------------------------------------------


async def test_steps_run_once_and_are_journaled_once(app: kernos.Kernos) -> None:
    gate("t-b").set()
    handle = await app.start(three_steps, "t", run_id="once")
    assert await handle.result(timeout=10) == ["done-t-a", "passed-t-b", "done-t-c"]
    assert CALLS == {"t-a": 1, "t-b": 1, "t-c": 1}
    journal = await app.journal("once")
    assert [(e.seq, e.kind.value, e.name, e.status) for e in journal] == [
        (0, "step", "count", EntryStatus.OK),
        (1, "step", "gated", EntryStatus.OK),
        (2, "step", "count", EntryStatus.OK),
    ]
    assert [e.output for e in journal] == ["done-t-a", "passed-t-b", "done-t-c"]
    assert all(e.attempts is None for e in journal)
    run = await app.get_run("once")
    assert run.status is RunStatus.SUCCEEDED
    assert run.output == ["done-t-a", "passed-t-b", "done-t-c"]
    assert run.executions == 1


async def test_restarted_worker_resumes_without_rerunning_completed_steps(
    store_url: str,
) -> None:
    app_a = new_app(store_url)
    await app_a.open()
    try:
        await app_a.start(three_steps, "r", run_id="restart")
        await until(lambda: CALLS["r-b"] == 1)
    finally:
        await app_a.close()  # interrupts the blocked step and hands the run back
    app_b = new_app(store_url)
    async with app_b:
        run = await app_b.get_run("restart")
        assert run.status is RunStatus.PENDING or run.owner == app_b.engine.worker_id
        gate("r-b").set()
        result = await app_b.handle("restart").result(timeout=10)
        assert result == ["done-r-a", "passed-r-b", "done-r-c"]
        # "a" finished before the restart and is not run again; "b" had not finished.
        assert CALLS == {"r-a": 1, "r-b": 2, "r-c": 1}
        journal = await app_b.journal("restart")
        assert [(e.seq, e.name) for e in journal] == [(0, "count"), (1, "gated"), (2, "count")]
        completed = [
            e.data["seq"]
            for e in await app_b.events("restart")
            if e.kind == "step.completed" and isinstance(e.data, dict)
        ]
        assert sorted(completed) == [0, 1, 2]
        assert (await app_b.get_run("restart")).executions == 2


async def test_failed_step_is_journaled_and_not_rerun_on_recovery(store_url: str) -> None:
    async with new_app(store_url) as app_a:
        await app_a.start(swallow_failure, run_id="swallow")
        await until(lambda: CALLS["after"] == 1)
    journal_before = await _journal(store_url, "swallow")
    assert journal_before[0].status is EntryStatus.ERROR
    assert journal_before[0].error["type"] == "builtins.ValueError"
    async with new_app(store_url) as app_b:
        gate("after").set()
        assert await app_b.handle("swallow").result(timeout=10) == "caught boom"
        assert CALLS["fail_always"] == 1  # the recorded failure was raised again, not re-run
        assert CALLS["after"] == 2


async def _journal(url: str, run_id: str) -> list[kernos.JournalEntry]:
    async with new_app(url, worker=False) as app:
        return await app.journal(run_id)


async def test_sync_workflow_and_sync_steps(app: kernos.Kernos) -> None:
    handle = await app.start(sync_workflow, 5)
    assert await handle.result(timeout=10) == 12
    assert CALLS["sync_double"] == 2
    assert [e.output for e in await app.journal(handle.run_id)] == [10, 2]


@kernos.step
async def outer(x: int) -> int:
    CALLS["outer"] += 1
    return await plus_one(x) * 10  # a step called inside a step is a plain call


@kernos.step
async def plus_one(x: int) -> int:
    CALLS["plus_one"] += 1
    return x + 1


@kernos.step
async def sleeps_inside() -> None:
    await kernos.sleep(1)


@kernos.workflow(name="rt_steps.nested")
async def nested(misuse: bool) -> int:
    if misuse:
        await sleeps_inside()
    return await outer(1)


async def test_a_step_inside_a_step_is_a_plain_call(app: kernos.Kernos) -> None:
    handle = await app.start(nested, False)
    misuse = await app.start(nested, True)
    assert await handle.result(timeout=10) == 20
    assert CALLS == {"outer": 1, "plus_one": 1}
    assert [e.name for e in await app.journal(handle.run_id)] == ["outer"]
    with pytest.raises(errors.RunFailedError) as info:  # durable primitives are refused
        await misuse.result(timeout=10)
    assert info.value.error_type == "kernos.errors.NotInWorkflowError"


@kernos.workflow(name="rt_steps.many")
async def many_steps(i: int) -> list[str]:
    return [await count(f"m{i}-{k}") for k in range(5)]


async def test_concurrent_runs_journal_every_step_exactly_once(app: kernos.Kernos) -> None:
    handles = [await app.start(many_steps, i) for i in range(30)]
    results = await asyncio.gather(*(h.result(timeout=20) for h in handles))
    for i, result in enumerate(results):
        assert result == [f"done-m{i}-{k}" for k in range(5)]
    assert set(CALLS.values()) == {1}
    assert len(CALLS) == 150
    for handle in handles:
        journal = await app.journal(handle.run_id)
        assert [e.seq for e in journal] == [0, 1, 2, 3, 4]


# -- a real crash: the worker process is killed ------------------------------------

CRASH_WORKFLOW = "rt_steps.crash"


@kernos.step
def mark(directory: str, name: str) -> str:
    with open(Path(directory) / "calls.txt", "a") as log:
        log.write(name + "\n")
    return name


@kernos.step
def hang(directory: str) -> str:
    with open(Path(directory) / "calls.txt", "a") as log:
        log.write("hang\n")
    if not (Path(directory) / "release").exists():
        threading.Event().wait()  # until the process is killed
    return "released"


@kernos.workflow(name=CRASH_WORKFLOW)
async def crash_workflow(directory: str) -> list[str]:
    return [
        await mark(directory, "a"),
        await mark(directory, "b"),
        await hang(directory),
        await mark(directory, "c"),
    ]


async def _crash_child(url: str, run_id: str, directory: str) -> None:
    async with new_app(url) as app:
        await app.start(crash_workflow, directory, run_id=run_id)
        await asyncio.Event().wait()


async def test_killed_worker_run_resumes_elsewhere_from_its_journal(
    store_url: str, tmp_path: Path
) -> None:
    calls = tmp_path / "calls.txt"
    child = await asyncio.create_subprocess_exec(
        sys.executable, __file__, store_url, "crash", str(tmp_path), cwd=Path(__file__).parents[2]
    )
    try:
        await until(lambda: calls.exists() and "hang" in calls.read_text(), timeout=60)
    finally:
        child.kill()  # SIGKILL: no clean shutdown, the lease is simply abandoned
        await child.wait()
    (tmp_path / "release").touch()
    async with new_app(store_url) as app:  # takes over the dead local worker's runs
        result = await app.handle("crash").result(timeout=20)
        assert result == ["a", "b", "released", "c"]
        assert calls.read_text().split() == ["a", "b", "hang", "hang", "c"]
        journal = await app.journal("crash")
        assert [(e.seq, e.name, e.status) for e in journal] == [
            (0, "mark", EntryStatus.OK),
            (1, "mark", EntryStatus.OK),
            (2, "hang", EntryStatus.OK),
            (3, "mark", EntryStatus.OK),
        ]
        run = await app.get_run("crash")
        assert run.executions == 2
        assert run.lease_epoch == 2


# -- idempotent start ---------------------------------------------------------------


async def test_starting_the_same_run_id_twice_executes_once(app: kernos.Kernos) -> None:
    gate("i-b").set()
    first = await app.start(three_steps, "i", run_id="idem")
    second = await app.start(three_steps, "i", run_id="idem")
    assert first.run_id == second.run_id == "idem"
    assert await first.result(timeout=10) == await second.result(timeout=10)
    third = await app.start(three_steps, "i", run_id="idem")  # after it finished
    assert await third.result(timeout=10) == ["done-i-a", "passed-i-b", "done-i-c"]
    assert CALLS == {"i-a": 1, "i-b": 1, "i-c": 1}
    assert [r.run_id for r in await app.list_runs()] == ["idem"]
    assert len([e for e in await app.events("idem") if e.kind == "run.created"]) == 1

    gate("c-b").set()
    handles = await asyncio.gather(
        *(app.start(three_steps, "c", run_id="idem-concurrent") for _ in range(5))
    )
    results = [await h.result(timeout=10) for h in handles]
    assert all(r == ["done-c-a", "passed-c-b", "done-c-c"] for r in results)
    assert CALLS["c-a"] == CALLS["c-b"] == CALLS["c-c"] == 1


# -- retries -----------------------------------------------------------------------

BACKOFF = kernos.RetryPolicy(max_attempts=4, initial_delay=0.02, multiplier=2.0, jitter=0.5)


@kernos.step(retries=BACKOFF)
async def flaky(failures: int) -> str:
    CALLS["flaky"] += 1
    if CALLS["flaky"] <= failures:
        raise ValueError(f"failure {CALLS['flaky']}")
    return "ok"


@kernos.workflow(name="rt_steps.flaky")
async def flaky_workflow(failures: int) -> str:
    return await flaky(failures)


async def test_failed_attempts_retry_with_exponential_backoff_and_jitter(
    app: kernos.Kernos,
) -> None:
    handle = await app.start(flaky_workflow, 3)
    assert await handle.result(timeout=10) == "ok"
    assert CALLS["flaky"] == 4
    (entry,) = await app.journal(handle.run_id)
    assert entry.status is EntryStatus.OK
    assert isinstance(entry.attempts, list)
    assert [a["attempt"] for a in entry.attempts] == [1, 2, 3]
    assert [a["error"]["type"] for a in entry.attempts] == ["builtins.ValueError"] * 3
    assert [a["error"]["message"] for a in entry.attempts] == [
        "failure 1",
        "failure 2",
        "failure 3",
    ]
    retrying = [e.data for e in await app.events(handle.run_id) if e.kind == "step.retrying"]
    assert [d["attempt"] for d in retrying] == [1, 2, 3]
    for data in retrying:
        base = 0.02 * 2.0 ** (data["attempt"] - 1)
        assert base * (1 - 0.5) <= data["delay"] <= base


async def test_exhausted_retries_fail_the_run_with_the_step_error(app: kernos.Kernos) -> None:
    handle = await app.start(flaky_workflow, 100)
    with pytest.raises(errors.RunFailedError) as info:
        await handle.result(timeout=10)
    assert info.value.error_type == "builtins.ValueError"
    assert type(info.value) is errors.RunFailedError
    assert CALLS["flaky"] == BACKOFF.max_attempts
    (entry,) = await app.journal(handle.run_id)
    assert entry.status is EntryStatus.ERROR
    assert entry.error["message"] == "failure 4"
    assert len(entry.attempts) == 4
    run = await app.get_run(handle.run_id)
    assert run.status is RunStatus.FAILED
    assert run.error["type"] == "builtins.ValueError"


@kernos.step(retries=5)
async def permanent() -> None:
    CALLS["permanent"] += 1
    raise errors.PermanentError("no point retrying", reason="bad input")


@kernos.step(retries=kernos.RetryPolicy(max_attempts=3, initial_delay=0.01, retry_on=(KeyError,)))
async def transient_then_ok() -> str:
    CALLS["transient"] += 1
    if CALLS["transient"] == 1:
        raise errors.TransientError("try again")
    return "recovered"


@kernos.step(
    retries=kernos.RetryPolicy(max_attempts=5, initial_delay=0.01, give_up_on=(LookupError,))
)
async def gives_up() -> None:
    CALLS["gives_up"] += 1
    raise KeyError("missing")


@kernos.step(retries=kernos.RetryPolicy(max_attempts=5, initial_delay=0.01, retry_on=(KeyError,)))
async def not_retried_type() -> None:
    CALLS["not_retried_type"] += 1
    raise TypeError("wrong type")


STEPS_BY_NAME = {
    "permanent": permanent,
    "transient": transient_then_ok,
    "gives_up": gives_up,
    "not_retried_type": not_retried_type,
}


@kernos.workflow(name="rt_steps.one")
async def one_step(name: str) -> Any:
    return await STEPS_BY_NAME[name]()


NOT_RETRIED = {
    "permanent": "kernos.errors.PermanentError",
    "gives_up": "builtins.KeyError",
    "not_retried_type": "builtins.TypeError",
}


async def test_errors_that_must_not_be_retried_fail_at_once(app: kernos.Kernos) -> None:
    handles = {name: await app.start(one_step, name) for name in NOT_RETRIED}
    for name, error_type in NOT_RETRIED.items():
        handle = handles[name]
        with pytest.raises(errors.RunFailedError) as info:
            await handle.result(timeout=10)
        assert info.value.error_type == error_type
        assert CALLS[name] == 1
        (entry,) = await app.journal(handle.run_id)
        assert entry.status is EntryStatus.ERROR
        assert len(entry.attempts) == 1
        assert not [e for e in await app.events(handle.run_id) if e.kind == "step.retrying"]
    permanent = await app.get_run(handles["permanent"].run_id)
    assert permanent.error["code"] == "permanent"
    assert permanent.error["facts"] == {"reason": "bad input"}  # kept with the error


async def test_transient_error_is_retried_even_when_not_listed(app: kernos.Kernos) -> None:
    handle = await app.start(one_step, "transient")
    assert await handle.result(timeout=10) == "recovered"
    assert CALLS["transient"] == 2
    (entry,) = await app.journal(handle.run_id)
    assert [a["error"]["code"] for a in entry.attempts] == ["transient"]


# -- timeouts ----------------------------------------------------------------------


@kernos.step(timeout=0.05, retries=kernos.RetryPolicy(max_attempts=3, initial_delay=0.01))
async def slow_once(key: str) -> str:
    CALLS[key] += 1
    if CALLS[key] == 1:
        await gate(key).wait()  # never set: the first attempt times out
    return "fast enough"


@kernos.step(timeout=0.05, retries=kernos.RetryPolicy(max_attempts=2, initial_delay=0.01))
async def always_slow(key: str) -> str:
    CALLS[key] += 1
    await gate(key).wait()
    return "never"


@kernos.workflow(name="rt_steps.slow")
async def slow_workflow(which: str) -> str:
    if which == "once":
        return await slow_once("slow-once")
    return await always_slow("always-slow")


async def test_step_timeouts_are_retried_and_fail_the_run_when_exhausted(
    app: kernos.Kernos,
) -> None:
    once = await app.start(slow_workflow, "once")
    always = await app.start(slow_workflow, "always")
    assert await once.result(timeout=10) == "fast enough"
    assert CALLS["slow-once"] == 2
    (entry,) = await app.journal(once.run_id)
    assert [a["error"]["code"] for a in entry.attempts] == ["step_timeout"]
    assert entry.attempts[0]["error"]["type"] == "kernos.errors.StepTimeoutError"

    with pytest.raises(errors.RunFailedError) as info:
        await always.result(timeout=10)
    assert info.value.error_type == "kernos.errors.StepTimeoutError"
    assert info.value.error_code == "step_timeout"
    assert CALLS["always-slow"] == 2
    (entry,) = await app.journal(always.run_id)
    assert entry.status is EntryStatus.ERROR
    assert [a["error"]["code"] for a in entry.attempts] == ["step_timeout", "step_timeout"]


@kernos.workflow(name="rt_steps.run_timeout", timeout=0.3)
async def run_timeout_workflow() -> str:
    await count("before")
    return await gated("forever")


async def test_run_timeout_fails_the_run(app: kernos.Kernos) -> None:
    declared = await app.start(run_timeout_workflow)  # the workflow's timeout
    given = await app.start(three_steps, "to", timeout=0.2)  # start's overrides it
    for handle, timeout in ((declared, 0.3), (given, 0.2)):
        with pytest.raises(errors.RunFailedError) as info:
            await handle.result(timeout=10)
        assert info.value.error_type == "kernos.errors.RunTimeoutError"
        assert info.value.error_code == "run_timeout"
        run = await app.get_run(handle.run_id)
        assert run.status is RunStatus.FAILED
        assert run.timeout == timeout
        assert run.error["code"] == "run_timeout"
        assert [e.name for e in await app.journal(handle.run_id)] == ["count"]
    assert CALLS["to-c"] == 0


@kernos.workflow(name="rt_steps.waits_too_long")
async def waits_too_long(kind: str) -> Any:
    if kind == "recv":
        return await kernos.recv("never")
    if kind == "sleep":
        return await kernos.sleep(3600)
    return await waits_too_long.run_child("recv")


async def test_run_timeout_is_enforced_while_the_run_waits(app: kernos.Kernos) -> None:
    kinds = ["recv", "sleep", "child"]
    handles = [await app.start(waits_too_long, kind, timeout=0.3, run_id=kind) for kind in kinds]
    for handle in handles:
        with pytest.raises(errors.RunFailedError) as info:
            await handle.result(timeout=10)
        assert info.value.error_code == "run_timeout"
        assert "run.waiting" in [e.kind for e in await app.events(handle.run_id)]
    # The child had no timeout of its own: its parent's timeout ended it.
    assert (await app.get_run("child.0")).status is RunStatus.CANCELLED


if __name__ == "__main__":  # the worker process test_killed_worker_... kills
    asyncio.run(_crash_child(sys.argv[1], sys.argv[2], sys.argv[3]))
