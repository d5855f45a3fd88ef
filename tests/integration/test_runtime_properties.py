"""Properties of replay and fork over random workflows (SQLite).

A workflow is described by a list of operations (steps, failing steps, fan-out,
checkpoints, sleeps, receives); one interpreter workflow runs any description.
For every description hypothesis draws:

1. replaying the finished run is identical;
2. a fork at any position keeps the source's journal before it and, the steps
   being deterministic, reaches the same journal and output;
3. a fork with a patched step result holds the patch at that position and never
   re-executes the steps before it (nor the patched one).
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kernos
from kernos.records import EntryKind, EntryStatus, JournalEntry, RunStatus

CALLS: Counter[str] = Counter()
_ids = itertools.count()

PROPERTY_SETTINGS = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@kernos.step
async def compute(tag: str, i: int, branch: int, value: int) -> dict[str, int]:
    CALLS[f"{tag}:{i}:{branch}"] += 1
    return {"i": i, "branch": branch, "v": value * 3 + i - branch}


@kernos.step
async def explode(tag: str, i: int, code: int) -> None:
    CALLS[f"{tag}:{i}:0"] += 1
    raise ValueError(f"op {i} code {code}")


@kernos.workflow(name="rt_props.interpreter")
async def interpreter(tag: str, ops: list[list[Any]]) -> list[Any]:
    trace: list[Any] = []
    for i, (kind, value) in enumerate(ops):
        if kind == "step":
            trace.append((await compute(tag, i, 0, value))["v"])
        elif kind == "fail":
            try:
                await explode(tag, i, value)
            except ValueError as exc:
                trace.append(str(exc))
        elif kind == "gather":
            results = await kernos.gather(compute(tag, i, 0, value), compute(tag, i, 1, -value))
            trace.append([r["v"] for r in results])
        elif kind == "checkpoint":
            kernos.checkpoint(f"cp{i}", {"trace": trace, "value": value})
            trace.append(f"cp{i}")
        elif kind == "sleep":
            await kernos.sleep(0)
            trace.append("slept")
        elif kind == "recv":
            trace.append(await kernos.recv("nothing", timeout=0))
    return trace


values = st.integers(min_value=-1000, max_value=1000)
operation = st.one_of(
    st.tuples(st.just("step"), values),
    st.tuples(st.just("fail"), st.integers(0, 9)),
    st.tuples(st.just("gather"), values),
    st.tuples(st.just("checkpoint"), values),
    st.tuples(st.just("sleep"), st.just(0)),
    st.tuples(st.just("recv"), st.just(0)),
).map(list)
programs = st.lists(operation, max_size=8)


def comparable(entry: JournalEntry) -> tuple[Any, ...]:
    return (entry.seq, entry.kind, entry.name, entry.status, entry.args_hash, entry.output)


def step_keys(tag: str, entries: list[JournalEntry]) -> list[str]:
    """The CALLS keys of the steps recorded in ``entries``."""
    keys = []
    for entry in entries:
        if entry.kind is not EntryKind.STEP:
            continue
        if entry.status is EntryStatus.OK:
            assert isinstance(entry.output, dict)
            keys.append(f"{tag}:{entry.output['i']}:{entry.output['branch']}")
        else:  # a failing step: its message names the op ("op 3 code 7")
            assert isinstance(entry.error, dict)
            keys.append(f"{tag}:{entry.error['message'].split()[1]}:0")
    return keys


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'properties.db'}"


def run_scenario(url: str, scenario: Any) -> None:
    async def main() -> None:
        async with kernos.Kernos(url, poll_interval=0.02, durable=False) as app:
            await scenario(app)

    asyncio.run(main())


async def run_program(app: kernos.Kernos, ops: list[list[Any]]) -> tuple[str, str, list[Any]]:
    n = next(_ids)
    tag, run_id = f"t{n}", f"prop-{n}"
    handle = await app.start(interpreter, tag, ops, run_id=run_id)
    output = await handle.result(timeout=20, poll=0.02)
    assert (await app.get_run(run_id)).status is RunStatus.SUCCEEDED
    return tag, run_id, output


@PROPERTY_SETTINGS
@given(ops=programs)
def test_replay_of_a_finished_run_is_identical(url: str, ops: list[list[Any]]) -> None:
    async def scenario(app: kernos.Kernos) -> None:
        _, run_id, _ = await run_program(app, ops)
        calls = Counter(CALLS)
        report = await app.replay(run_id)
        assert report.identical, str(report)
        assert report.complete
        assert report.entries_checked == len(await app.journal(run_id))
        assert calls == CALLS  # nothing ran

    run_scenario(url, scenario)


@PROPERTY_SETTINGS
@given(ops=programs, data=st.data())
def test_fork_at_any_position_keeps_the_prefix_and_reaches_the_same_output(
    url: str, ops: list[list[Any]], data: st.DataObject
) -> None:
    async def scenario(app: kernos.Kernos) -> None:
        tag, run_id, output = await run_program(app, ops)
        source = await app.journal(run_id)
        at = data.draw(st.integers(min_value=0, max_value=len(source)), label="at")
        before = Counter(CALLS)
        fork = await app.fork(run_id, at=at)
        assert await fork.result(timeout=20, poll=0.02) == output
        forked = await app.journal(fork.run_id)
        assert [comparable(e) for e in forked[:at]] == [comparable(e) for e in source[:at]]
        assert [comparable(e) for e in forked] == [comparable(e) for e in source]
        for key in step_keys(tag, source[:at]):
            assert CALLS[key] == before[key], f"{key} ran again"
        for key in step_keys(tag, source[at:]):
            assert CALLS[key] == before[key] + 1, f"{key} did not run again"
        assert (await app.get_run(run_id)).superseded_by == fork.run_id

    run_scenario(url, scenario)


@PROPERTY_SETTINGS
@given(
    ops=programs.filter(lambda ops: any(kind in ("step", "gather") for kind, _ in ops)),
    data=st.data(),
    patched_value=values,
)
def test_fork_with_patch_holds_the_patch_and_never_reruns_the_prefix(
    url: str, ops: list[list[Any]], data: st.DataObject, patched_value: int
) -> None:
    async def scenario(app: kernos.Kernos) -> None:
        tag, run_id, _ = await run_program(app, ops)
        source = await app.journal(run_id)
        patchable = [
            e.seq for e in source if e.kind is EntryKind.STEP and e.status is EntryStatus.OK
        ]
        at = data.draw(st.sampled_from(patchable), label="at")
        original = source[at].output
        assert isinstance(original, dict)
        patch = {**original, "v": patched_value}
        before = Counter(CALLS)
        fork = await app.fork(run_id, at=at, patch=patch)
        fork_output = await fork.result(timeout=20, poll=0.02)
        forked = await app.journal(fork.run_id)
        assert forked[at].output == patch
        assert forked[at].status is EntryStatus.OK
        assert [comparable(e) for e in forked[:at]] == [comparable(e) for e in source[:at]]
        for key in step_keys(tag, source[: at + 1]):
            assert CALLS[key] == before[key], f"{key} ran again"
        assert patched_value in _flatten(fork_output)

    run_scenario(url, scenario)


def _flatten(value: Any) -> list[Any]:
    if isinstance(value, list):
        return [leaf for item in value for leaf in _flatten(item)]
    return [value]
