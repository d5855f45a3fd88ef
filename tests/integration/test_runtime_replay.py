"""Replay: re-execute workflow code against a recorded journal with no side
effects, and report the first divergence of changed code. Every test runs on
SQLite and PostgreSQL."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from runtime_support import new_app, run_status

import kernos
from kernos import errors
from kernos.records import RunStatus
from kernos.runtime import registry

CALLS: Counter[str] = Counter()


@pytest.fixture(autouse=True)
def _reset() -> None:
    CALLS.clear()


@pytest.fixture
async def app(store_url: str) -> AsyncIterator[kernos.Kernos]:
    async with new_app(store_url) as app:
        yield app


@pytest.fixture
def swap(monkeypatch: pytest.MonkeyPatch) -> Callable[[str, Callable[..., Any]], None]:
    """Re-register ``name`` with other code, as a new deployment would; undone after."""

    def install(name: str, fn: Callable[..., Any], version: str = "2") -> None:
        variant = kernos.Workflow(fn, name=name, version=version, timeout=None)
        monkeypatch.setitem(registry.workflows, name, variant)

    return install


@kernos.step
async def add(x: int, y: int) -> int:
    CALLS["add"] += 1
    return x + y


@kernos.step
async def shout(text: str) -> str:
    CALLS["shout"] += 1
    return text.upper()


@kernos.step
async def fail(message: str) -> None:
    CALLS["fail"] += 1
    raise ValueError(message)


@kernos.workflow(name="rt_replay.child")
async def child(n: int) -> int:
    return await add(n, 1)


@kernos.workflow(name="rt_replay.everything")
async def everything(n: int) -> dict[str, Any]:
    a = await add(n, 1)
    kernos.checkpoint("after-add", {"a": a})
    pair = await kernos.gather(shout("x"), add(a, a))
    await kernos.sleep(0.01)
    message = await kernos.recv("t", timeout=0.0)
    c = await child.run_child(a)
    try:
        await fail("expected")
    except ValueError as exc:
        error = str(exc)
    return {"a": a, "pair": pair, "message": message, "child": c, "error": error}


async def test_replay_of_an_unchanged_workflow_is_identical_and_calls_nothing(
    app: kernos.Kernos,
) -> None:
    handle = await app.start(everything, 1, run_id="all")
    expected = await handle.result(timeout=10)
    assert expected == {"a": 2, "pair": ["X", 4], "message": None, "child": 3, "error": "expected"}
    journal = await app.journal("all")
    runs_before = await app.list_runs()
    events_before = await app.events()
    called = Counter(CALLS)
    report = await app.replay("all")
    assert report.identical, str(report)
    assert report.divergence is None
    assert report.complete
    assert report.entries_checked == len(journal) == 8
    assert called == CALLS  # no step ran
    assert await app.list_runs() == runs_before  # no child was started
    assert await app.journal("all") == journal  # nothing was written
    assert await app.events() == events_before
    assert report.to_dict()["identical"] is True
    assert str(report).startswith("identical")


@kernos.workflow(name="rt_replay.simple")
async def simple(n: int) -> int:
    a = await add(n, 1)
    b = await shout("b")
    c = await add(a, 10)
    return a + c + len(b)


async def finished_simple(app: kernos.Kernos) -> str:
    handle = await app.start(simple, 1, run_id="simple")
    assert await handle.result(timeout=10) == 2 + 12 + 1
    CALLS.clear()
    return handle.run_id


async def renamed_step(n: int) -> int:
    a = await add(n, 1)
    b = await add(0, 0)  # was shout("b")
    c = await add(a, 10)
    return a + c + b


async def other_args(n: int) -> int:
    a = await add(n, 1)
    b = await shout("B")  # was shout("b")
    c = await add(a, 10)
    return a + c + len(b)


async def missing_call(n: int) -> int:
    a = await add(n, 1)
    b = await shout("b")
    return a + len(b) + 12  # add(a, 10) dropped


async def extra_call(n: int) -> int:
    a = await add(n, 1)
    b = await shout("b")
    c = await add(a, 10)
    d = await add(c, 0)  # new
    return a + d + len(b)


async def other_output(n: int) -> int:
    a = await add(n, 1)
    b = await shout("b")
    c = await add(a, 10)
    return a + c + len(b) + 1


async def other_kind(n: int) -> int:
    a = await add(n, 1)
    await kernos.sleep(0)  # was shout("b")
    c = await add(a, 10)
    return a + c + 1


async def raises_now(n: int) -> int:
    await add(n, 1)
    raise RuntimeError("new bug")


VARIANTS = [
    (renamed_step, 1, "name"),
    (other_args, 1, "args"),
    (missing_call, 2, "missing"),
    (extra_call, 3, "extra"),
    (other_output, 3, "output"),
    (other_kind, 1, "kind"),
    (raises_now, 1, "error"),
]


async def test_replay_of_changed_code_names_the_first_divergence(
    app: kernos.Kernos, swap: Callable[[str, Callable[..., Any]], None]
) -> None:
    run_id = await finished_simple(app)
    for variant, seq, reason in VARIANTS:
        swap("rt_replay.simple", variant)
        report = await app.replay(run_id)
        assert not report.identical, variant.__name__
        assert report.divergence is not None
        assert (report.divergence.seq, report.divergence.reason) == (seq, reason), str(report)
        assert report.to_dict()["divergence"]["reason"] == reason
        assert f"seq {seq}" in str(report)
        if reason == "name":
            assert "shout" in report.divergence.expected
            assert "add" in report.divergence.found
    assert CALLS == {}  # replay ran no step, even of the new code
    assert (await app.get_run(run_id)).status is RunStatus.SUCCEEDED


@kernos.workflow(name="rt_replay.failing")
async def failing() -> None:
    await add(1, 1)
    await fail("fatal")


async def test_replay_of_a_failed_run_reproduces_the_failure(app: kernos.Kernos) -> None:
    handle = await app.start(failing, run_id="failed")
    with pytest.raises(errors.RunFailedError):
        await handle.result(timeout=10)
    CALLS.clear()
    report = await app.replay("failed")
    assert report.identical, str(report)
    assert report.complete
    assert report.entries_checked == 2
    assert CALLS == {}


async def test_replay_of_a_failed_run_that_now_succeeds_diverges(
    app: kernos.Kernos, swap: Callable[[str, Callable[..., Any]], None]
) -> None:
    handle = await app.start(failing, run_id="failed")
    with pytest.raises(errors.RunFailedError):
        await handle.result(timeout=10)

    async def fixed() -> None:
        await add(1, 1)
        try:
            await fail("fatal")
        except ValueError:
            return None

    swap("rt_replay.failing", fixed)
    report = await app.replay("failed")
    assert not report.identical
    assert report.divergence is not None
    assert report.divergence.reason == "output"


@kernos.workflow(name="rt_replay.waiting")
async def waiting() -> Any:
    first = await add(0, 1)
    return [first, await kernos.recv("t"), await add(1, 1)]


async def test_replay_of_an_unfinished_run_checks_the_journal_so_far(app: kernos.Kernos) -> None:
    handle = await app.start(waiting, run_id="waiting")
    await run_status(app, "waiting", RunStatus.WAITING)
    report = await app.replay("waiting")
    assert report.identical, str(report)
    assert not report.complete
    assert CALLS == {"add": 1}
    await app.send("waiting", "go", topic="t")
    assert await handle.result(timeout=10) == [1, "go", 2]
    report = await app.replay("waiting")
    assert report.identical and report.complete


async def test_replay_of_unknown_runs_and_unregistered_workflows_raises(
    app: kernos.Kernos, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(errors.RunNotFoundError):
        await app.replay("nope")
    run_id = await finished_simple(app)
    monkeypatch.delitem(registry.workflows, "rt_replay.simple")
    with pytest.raises(errors.WorkflowNotFoundError):
        await app.replay(run_id)
