"""Run bodies are written without pydantic (kernos.api._run_json): they must be, byte for
byte, what pydantic makes of the same run through ``RunOut``/``RunPage``, and valid
against the schema the OpenAPI document publishes, on each backend."""

from __future__ import annotations

import dataclasses
import math

import orjson
from api_support import Live

from kernos.api._run_json import run_page_response, run_response
from kernos.api._schemas import RunOut, RunPage
from kernos.records import Run

# Strings pydantic and orjson must escape alike: quotes, backslashes, control
# characters, non-ASCII and astral characters.
AWKWARD = 'ünï ✓ 😀 "quoted" \\ back\nline\ttab \x01\x1f \x7f </script>'


def _pydantic(run: Run) -> bytes:
    """What FastAPI wrote for a run before: validate into RunOut, dump as JSON."""
    return RunOut.model_validate(run.to_dict()).model_dump_json().encode()


def _same_as_pydantic(body: bytes, model: type[RunOut] | type[RunPage]) -> None:
    """``body`` is valid against ``model`` and is exactly what pydantic writes for it."""
    assert body == model.model_validate_json(body).model_dump_json().encode()


async def test_get_list_and_start_answer_what_pydantic_would(live: Live) -> None:
    start = {"workflow": "api_wait", "input": {"topic": AWKWARD}, "priority": 7}
    async with live.client(live.admin_key) as client:
        started = await client.post("/runs", json=start, headers={"Idempotency-Key": "k1"})
        assert started.status_code == 201, started.text
        assert started.headers["content-type"] == "application/json"
        run_id = started.json()["run_id"]
        assert started.headers["location"] == f"/api/v1/runs/{run_id}"
        assert started.json()["input"] == {"args": [], "kwargs": {"topic": AWKWARD}}
        _same_as_pydantic(started.content, RunOut)

        again = await client.post("/runs", json=start, headers={"Idempotency-Key": "k1"})
        assert again.status_code == 200 and again.json()["run_id"] == run_id
        assert again.headers["location"] == f"/api/v1/runs/{run_id}"
        _same_as_pydantic(again.content, RunOut)

        for name in ("a", "b", "c"):
            made = await client.post(
                "/runs", json={"workflow": "api_greet", "input": {"name": name}}
            )
            assert made.status_code == 201

        got = await client.get(f"/runs/{run_id}")
        assert got.status_code == 200 and got.headers["content-type"] == "application/json"
        _same_as_pydantic(got.content, RunOut)
        assert got.json()["run_id"] == run_id and got.json()["priority"] == 7

        page = await client.get("/runs", params={"limit": 2})
        assert page.status_code == 200 and page.headers["content-type"] == "application/json"
        _same_as_pydantic(page.content, RunPage)
        assert len(page.json()["items"]) == 2 and page.json()["next_cursor"] is not None
        rest = await client.get("/runs", params={"cursor": page.json()["next_cursor"]})
        _same_as_pydantic(rest.content, RunPage)
        assert rest.json()["next_cursor"] is None
        listed = [item["run_id"] for item in page.json()["items"] + rest.json()["items"]]
        assert len(listed) == 4 and run_id in listed


def _awkward_runs(run: Run) -> list[Run]:
    """The same run with values that serialize differently if done carelessly."""
    big = 2**70  # wider than orjson's 64 bits: the pydantic way must take over
    return [
        run,
        dataclasses.replace(run, created_at=1_700_000_000, updated_at=0, started_at=12),
        dataclasses.replace(
            run,
            input={"a": [1.5, 1e21, 1e-7, 0.1, -0.0, 123456789.123456789, 2**63 - 1, None]},
            output={"nested": {"deep": [AWKWARD, True, False, {}]}},
            error={"type": "X", "message": AWKWARD},
            finished_at=1.0e16,
            wake_at=5e-324,
        ),
        dataclasses.replace(run, input={"nan": math.nan, "inf": math.inf}),
        dataclasses.replace(run, input={"big": big}, output=[-big]),
        dataclasses.replace(run, pause_requested=True, fork_seq=3, parent_id=AWKWARD),
    ]


async def test_awkward_values_serialize_like_pydantic(live: Live) -> None:
    async with live.client(live.admin_key) as client:
        made = await client.post("/runs", json={"workflow": "api_wait", "input": {}})
        assert made.status_code == 201
    stored = await live.app.store.get_run(made.json()["run_id"])
    assert stored is not None
    runs = _awkward_runs(stored)
    for run in runs:
        response = run_response(run)
        assert response.body == _pydantic(run), run
        RunOut.model_validate_json(response.body)
        assert list(orjson.loads(response.body)) == list(RunOut.model_fields)
    page = run_page_response(runs[:3], "cursor")
    expected = RunPage.model_validate(
        {"items": [r.to_dict() for r in runs[:3]], "next_cursor": "cursor"}
    )
    assert page.body == expected.model_dump_json().encode()
    with_big = run_page_response(runs, None)  # one run orjson cannot write: all go pydantic
    assert (
        with_big.body
        == RunPage.model_validate({"items": [r.to_dict() for r in runs], "next_cursor": None})
        .model_dump_json()
        .encode()
    )
