"""Serialization of journaled values: rich results come back as their types on
recovery and replay; values that are not JSON fail loudly, naming what and where.
Every test runs on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import enum
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pydantic
import pytest
from runtime_support import make_gate, new_app, until

import kernos
from kernos import errors
from kernos.records import EntryStatus, RunStatus

CALLS: Counter[str] = Counter()
GATES: dict[str, asyncio.Event] = {}
gate = make_gate(GATES)
SEEN: dict[str, list[str]] = {}


@pytest.fixture(autouse=True)
def _reset() -> None:
    CALLS.clear()
    GATES.clear()
    SEEN.clear()


@pytest.fixture
async def app(store_url: str) -> AsyncIterator[kernos.Kernos]:
    async with new_app(store_url) as app:
        yield app


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


@dataclass(frozen=True)
class Point:
    x: int
    y: int
    color: Color


class Report(pydantic.BaseModel):
    title: str
    points: list[Point]
    score: float


@kernos.step
async def make_point(x: int) -> Point:
    CALLS["make_point"] += 1
    return Point(x, x * 2, Color.BLUE)


@kernos.step
async def make_report(points: list[Point]) -> Report:
    CALLS["make_report"] += 1
    return Report(title="r", points=points, score=0.5)


@kernos.step
async def make_points(n: int) -> list[Point]:
    CALLS["make_points"] += 1
    return [Point(i, i, Color.RED) for i in range(n)]


@kernos.step
async def gated(key: str) -> str:
    CALLS[key] += 1
    await gate(key).wait()
    return key


def note(where: str, *values: Any) -> None:
    SEEN.setdefault(where, []).extend(type(v).__name__ for v in values)


@kernos.workflow(name="rt_ser.rich")
async def rich(origin: Point) -> Report:
    point = await make_point(origin.x)
    points = await make_points(2)
    report = await make_report([point, *points])
    note("before-gate", origin, point, points[0], report, point.color)
    await gated("g")
    note("after-gate", origin, point, points[0], report, point.color)
    assert report.points[0] == point
    return report


EXPECTED = Report(
    title="r",
    points=[Point(3, 6, Color.BLUE), Point(0, 0, Color.RED), Point(1, 1, Color.RED)],
    score=0.5,
)
TYPES = ["Point", "Point", "Point", "Report", "Color"]


async def test_dataclass_and_pydantic_results_come_back_as_their_types(
    app: kernos.Kernos,
) -> None:
    gate("g").set()
    handle = await app.start(rich, Point(3, 0, Color.RED))
    result = await handle.result(timeout=10)
    assert isinstance(result, Report)
    assert result == EXPECTED
    assert SEEN["after-gate"] == TYPES
    journal = await app.journal(handle.run_id)
    assert journal[0].output == {"x": 3, "y": 6, "color": "blue"}  # stored as plain JSON
    assert (await app.get_run(handle.run_id)).output == EXPECTED.model_dump(mode="json")
    other = await app.handle(handle.run_id).result(timeout=10)  # typed by the registry
    assert other == EXPECTED


async def test_rich_results_are_restored_to_their_types_on_recovery(store_url: str) -> None:
    async with new_app(store_url) as app_a:
        handle = await app_a.start(rich, Point(3, 0, Color.RED))
        await until(lambda: CALLS["g"] == 1)
    SEEN.clear()
    gate("g").set()
    async with new_app(store_url) as app_b:
        result = await app_b.handle(handle.run_id).result(timeout=10)
    assert result == EXPECTED
    # Re-executed from the journal: every value restored from JSON to its type.
    assert SEEN["before-gate"] == TYPES
    assert SEEN["after-gate"] == TYPES
    assert CALLS == {"make_point": 1, "make_points": 1, "make_report": 1, "g": 2}


async def test_rich_results_are_restored_to_their_types_on_replay(app: kernos.Kernos) -> None:
    gate("g").set()
    handle = await app.start(rich, Point(3, 0, Color.RED))
    await handle.result(timeout=10)
    SEEN.clear()
    report = await app.replay(handle.run_id)
    assert report.identical, str(report)
    assert SEEN["before-gate"] == TYPES
    assert SEEN["after-gate"] == TYPES


@kernos.step
async def opaque() -> Any:
    CALLS["opaque"] += 1
    return {"fine": [1, 2], "bad": object()}


@kernos.workflow(name="rt_ser.opaque")
async def returns_opaque() -> Any:
    return await opaque()


async def test_a_result_that_is_not_json_fails_the_run_naming_step_and_type(
    app: kernos.Kernos,
) -> None:
    handle = await app.start(returns_opaque)
    with pytest.raises(errors.RunFailedError) as info:
        await handle.result(timeout=10)
    assert info.value.error_type == "kernos.errors.SerializationError"
    assert info.value.error_code == "serialization_error"
    run = await app.get_run(handle.run_id)
    assert run.status is RunStatus.FAILED
    assert "'opaque'" in run.error["message"]
    assert "builtins.object" in run.error["message"]
    assert run.error["facts"]["type_name"] == "builtins.object"
    assert "opaque" in run.error["facts"]["what"]
    (entry,) = await app.journal(handle.run_id)
    assert entry.status is EntryStatus.ERROR
    assert entry.error["code"] == "serialization_error"
    assert CALLS["opaque"] == 1  # a usage error is not retried


@kernos.workflow(name="rt_ser.opaque_output")
async def opaque_output() -> Any:
    await make_point(1)
    return {1j}


@kernos.step
async def takes_anything(value: Any) -> str:
    CALLS["takes_anything"] += 1
    return "called"


@kernos.workflow(name="rt_ser.opaque_argument")
async def opaque_argument() -> str:
    return await takes_anything(object())


async def test_outputs_arguments_and_states_that_are_not_json_fail_the_run(
    app: kernos.Kernos,
) -> None:
    output = await app.start(opaque_output)
    argument = await app.start(opaque_argument)
    state = await app.start(bad_checkpoint)
    for handle, where in (
        (output, "output of workflow 'rt_ser.opaque_output'"),
        (argument, "step 'takes_anything'"),
        (state, "checkpoint 'state'"),
    ):
        with pytest.raises(errors.RunFailedError) as info:
            await handle.result(timeout=10)
        assert info.value.error_code == "serialization_error"
        run = await app.get_run(handle.run_id)
        assert where in run.error["message"]
    assert (await app.get_run(argument.run_id)).error["facts"]["type_name"] == "builtins.object"
    assert CALLS["takes_anything"] == 0


@kernos.workflow(name="rt_ser.echo")
async def echo(value: Any) -> Any:
    return value


async def test_start_refuses_arguments_that_are_not_json(app: kernos.Kernos) -> None:
    with pytest.raises(errors.SerializationError) as info:
        await app.start(echo, object(), run_id="never")
    assert info.value.type_name == "builtins.object"
    assert await app.list_runs() == []


@kernos.workflow(name="rt_ser.bad_checkpoint")
async def bad_checkpoint() -> None:
    kernos.checkpoint("state", {"socket": object()})


async def test_json_values_round_trip_exactly(app: kernos.Kernos) -> None:
    value = {"s": "ü ☃", "i": 2**53 + 1, "f": 0.1, "b": False, "n": None, "l": [[], {}]}
    handle = await app.start(echo, value)
    assert await handle.result(timeout=10) == value


@kernos.step
async def big_value(n: int) -> dict[str, str]:
    CALLS["big_value"] += 1
    return {"data": "x" * n}


@kernos.workflow(name="rt_ser.big")
async def big(n: int) -> int:
    value = await big_value(n)
    kernos.checkpoint("big", value)
    await gated("big")
    return len(value["data"])


async def test_values_stored_out_of_line_survive_recovery_replay_and_fork(
    store_url: str,
) -> None:
    async with new_app(store_url, blob_threshold=100) as app_a:
        handle = await app_a.start(big, 5000, run_id="big")
        await until(lambda: CALLS["big"] == 1)
    gate("big").set()
    async with new_app(store_url, blob_threshold=100) as app_b:
        assert await app_b.handle("big").result(timeout=10) == 5000
        assert CALLS["big_value"] == 1
        assert (await app_b.journal("big"))[0].output == {"data": "x" * 5000}
        assert await app_b.restore("big", "big") == {"data": "x" * 5000}
        assert (await app_b.replay("big")).identical
        fork = await app_b.fork("big", at=0, patch={"data": "y" * 300})
        assert await fork.result(timeout=10) == 300
        assert (await app_b.journal(fork.run_id))[0].output == {"data": "y" * 300}
    assert handle.run_id == "big"
