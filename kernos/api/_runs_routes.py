"""Routes for workflows, runs, their journals, checkpoints and events, queues and workers."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Body, Header, Path, Query, Request, Response
from fastapi.responses import StreamingResponse

from kernos.api._auth import Caller
from kernos.api._problems import problem_responses
from kernos.api._run_json import run_body, run_page_response, run_response
from kernos.api._schemas import (
    MAX_ID,
    TEXT,
    CancelIn,
    CancelOut,
    CheckpointOut,
    EntryOut,
    EventOut,
    ForkIn,
    PurgeOut,
    QueueOut,
    ReplayOut,
    RunOut,
    RunPage,
    SendIn,
    StartRunIn,
    WorkerOut,
    WorkflowOut,
)
from kernos.api._state import server_state
from kernos.control._cursor import decode_cursor
from kernos.errors import UsageError
from kernos.records import Role, Run, RunStatus
from kernos.store import RunFilter

__all__ = ["router"]

router = APIRouter()

_ERRORS = problem_responses(401, 403, 404, 422, 429, 503)

RunId = Annotated[str, Path(min_length=1, max_length=200, pattern=TEXT, description="A run's id")]


def _service(request: Request) -> Any:
    return server_state(request).service


# -- workflows -------------------------------------------------------------------


@router.get("/workflows", response_model=list[WorkflowOut], tags=["workflows"], responses=_ERRORS)
async def list_workflows(request: Request, caller: Caller) -> list[WorkflowOut]:
    """Every workflow registered in this server, with the JSON Schema of its input."""
    infos = _service(request).runs.workflows(caller)
    return [WorkflowOut.model_validate(info.to_dict()) for info in infos]


@router.get("/workflows/{name}", response_model=WorkflowOut, tags=["workflows"], responses=_ERRORS)
async def get_workflow(
    request: Request,
    caller: Caller,
    name: Annotated[str, Path(min_length=1, max_length=200, pattern=TEXT)],
) -> WorkflowOut:
    """One registered workflow."""
    return WorkflowOut.model_validate(_service(request).runs.workflow(caller, name).to_dict())


# -- runs ------------------------------------------------------------------------


@router.post(
    "/runs",
    response_model=RunOut,
    status_code=201,
    tags=["runs"],
    responses={
        **_ERRORS,
        200: {"model": RunOut, "description": "Idempotent repeat: the run made the first time"},
        **problem_responses(409, s409="Idempotency-Key reused for a different request"),
    },
)
async def start_run(
    request: Request,
    caller: Caller,
    body: StartRunIn,
    idempotency_key: Annotated[
        str | None,
        Header(
            min_length=1,
            max_length=200,
            description="Repeat a request safely: the same key returns the same run",
        ),
    ] = None,
) -> Response:
    """Start a run: it is put on its queue and a worker picks it up."""
    run, created = await _service(request).runs.start(
        caller,
        body.workflow,
        body.input,
        queue=body.queue,
        priority=body.priority,
        idempotency_key=idempotency_key,
        delay=body.delay,
    )
    return run_response(
        run,
        status_code=201 if created else 200,
        headers={"Location": f"/api/v1/runs/{run.run_id}"},
    )


def run_filter(
    status: Annotated[RunStatus | None, Query()] = None,
    workflow: Annotated[str | None, Query(max_length=200, pattern=TEXT)] = None,
    queue: Annotated[str | None, Query(max_length=100, pattern=TEXT)] = None,
    created_after: Annotated[float | None, Query(ge=0, description="Epoch seconds")] = None,
    created_before: Annotated[float | None, Query(ge=0, description="Epoch seconds")] = None,
    q: Annotated[
        str | None,
        Query(max_length=200, pattern=TEXT, description="Substring of id, workflow or error"),
    ] = None,
) -> RunFilter:
    """The filter query parameters shared by listing, export and bulk actions."""
    return RunFilter(
        status=status.value if status is not None else None,
        workflow=workflow,
        queue=queue,
        created_after=created_after,
        created_before=created_before,
        text=q or None,
    )


@router.get("/runs", response_model=RunPage, tags=["runs"], responses=_ERRORS)
async def list_runs(
    request: Request,
    caller: Caller,
    status: Annotated[RunStatus | None, Query()] = None,
    workflow: Annotated[str | None, Query(max_length=200, pattern=TEXT)] = None,
    queue: Annotated[str | None, Query(max_length=100, pattern=TEXT)] = None,
    created_after: Annotated[float | None, Query(ge=0, description="Epoch seconds")] = None,
    created_before: Annotated[float | None, Query(ge=0, description="Epoch seconds")] = None,
    q: Annotated[
        str | None,
        Query(max_length=200, pattern=TEXT, description="Substring of id, workflow or error"),
    ] = None,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> Response:
    """The tenant's runs, newest first, a page at a time."""
    query = run_filter(status, workflow, queue, created_after, created_before, q)
    query = RunFilter(**{**_fields(query), "limit": limit, "before": _cursor(cursor)})
    runs, next_cursor = await _service(request).runs.page(caller, query)
    return run_page_response(runs, next_cursor)


def _cursor(cursor: str | None) -> tuple[float, str] | None:
    if not cursor:
        return None
    try:
        return decode_cursor(cursor)
    except UsageError as error:
        where = {"loc": ["query", "cursor"], "msg": str(error), "type": error.code}
        raise UsageError(str(error), errors=[where]) from error


def _fields(query: RunFilter) -> dict[str, Any]:
    return {name: getattr(query, name) for name in query.__slots__}


@router.get(
    "/runs/export",
    tags=["runs"],
    responses={
        **_ERRORS,
        200: {
            "description": "The runs, streamed",
            "content": {"text/csv": {}, "application/x-ndjson": {}},
        },
    },
    response_class=StreamingResponse,
)
async def export_runs(
    request: Request,
    caller: Caller,
    format: Annotated[Literal["csv", "jsonl"], Query()] = "jsonl",
    status: Annotated[RunStatus | None, Query()] = None,
    workflow: Annotated[str | None, Query(max_length=200, pattern=TEXT)] = None,
    queue: Annotated[str | None, Query(max_length=100, pattern=TEXT)] = None,
    created_after: Annotated[float | None, Query(ge=0)] = None,
    created_before: Annotated[float | None, Query(ge=0)] = None,
    q: Annotated[str | None, Query(max_length=200, pattern=TEXT)] = None,
) -> StreamingResponse:
    """Every matching run, streamed as CSV or JSON Lines (newest first)."""
    query = run_filter(status, workflow, queue, created_after, created_before, q)
    service = _service(request)
    caller.require(Role.VIEWER, "exporting runs")  # before the 200 status line goes out
    runs = service.runs.iterate(caller, query)
    if format == "csv":
        body = _csv(runs)
        media = "text/csv; charset=utf-8"
    else:
        body = _jsonl(runs)
        media = "application/x-ndjson"
    filename = f"runs.{format}"
    return StreamingResponse(
        body,
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


_CSV_COLUMNS = (
    "run_id",
    "workflow",
    "version",
    "status",
    "queue",
    "priority",
    "created_at",
    "started_at",
    "finished_at",
    "steps",
    "executions",
    "parent_id",
    "forked_from",
    "error",
)


async def _csv(runs: AsyncIterator[Run]) -> AsyncIterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(_CSV_COLUMNS)
    count = 0
    async for run in runs:
        row = run.to_dict()
        row["error"] = orjson.dumps(row["error"]).decode() if row["error"] is not None else ""
        writer.writerow(["" if row[c] is None else row[c] for c in _CSV_COLUMNS])
        count += 1
        if count % 200 == 0:
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode()


async def _jsonl(runs: AsyncIterator[Run]) -> AsyncIterator[bytes]:
    chunk: list[bytes] = []
    async for run in runs:
        chunk.append(orjson.dumps(run_body(run)) + b"\n")
        if len(chunk) == 200:
            yield b"".join(chunk)
            chunk = []
    yield b"".join(chunk)


@router.get("/runs/{run_id}", response_model=RunOut, tags=["runs"], responses=_ERRORS)
async def get_run(request: Request, caller: Caller, run_id: RunId) -> Response:
    """One run."""
    return run_response(await _service(request).runs.get(caller, run_id))


@router.get(
    "/runs/{run_id}/journal", response_model=list[EntryOut], tags=["runs"], responses=_ERRORS
)
async def get_journal(request: Request, caller: Caller, run_id: RunId) -> list[EntryOut]:
    """A run's journal entries, in order."""
    entries = await _service(request).runs.journal(caller, run_id)
    return [EntryOut.model_validate(e.to_dict()) for e in entries]


@router.get(
    "/runs/{run_id}/checkpoints",
    response_model=list[CheckpointOut],
    tags=["runs"],
    responses=_ERRORS,
)
async def get_checkpoints(request: Request, caller: Caller, run_id: RunId) -> list[CheckpointOut]:
    """A run's named checkpoints; ``intact`` says whether each state matches its checksum."""
    found = await _service(request).runs.checkpoints(caller, run_id)
    return [CheckpointOut.model_validate(c.to_dict()) for c in found]


@router.get(
    "/runs/{run_id}/events", response_model=list[EventOut], tags=["runs"], responses=_ERRORS
)
async def get_run_events(
    request: Request,
    caller: Caller,
    run_id: RunId,
    after: Annotated[int, Query(ge=0, le=MAX_ID, description="Only events with a higher id")] = 0,
    limit: Annotated[int, Query(ge=1, le=5000)] = 1000,
) -> list[EventOut]:
    """A run's events, oldest first (use /events for a live stream)."""
    events = await _service(request).runs.events(caller, run_id, after=after, limit=limit)
    return [EventOut.model_validate(e.to_dict()) for e in events]


@router.post(
    "/runs/{run_id}/cancel",
    response_model=CancelOut,
    tags=["runs"],
    responses=_ERRORS,
)
async def cancel_run(
    request: Request, caller: Caller, run_id: RunId, body: Annotated[CancelIn | None, Body()] = None
) -> CancelOut:
    """Cancel a run and its unfinished descendants (a finished run is left as it is)."""
    reason = body.reason if body is not None else f"cancelled by {caller.actor}"
    return CancelOut(cancelled=await _service(request).runs.cancel(caller, run_id, reason))


@router.post("/runs/{run_id}/pause", response_model=RunOut, tags=["runs"], responses=_ERRORS)
async def pause_run(request: Request, caller: Caller, run_id: RunId) -> Response:
    """Pause a run: at once when idle, at its next step boundary when executing."""
    return run_response(await _service(request).runs.pause(caller, run_id))


@router.post("/runs/{run_id}/resume", response_model=RunOut, tags=["runs"], responses=_ERRORS)
async def resume_run(request: Request, caller: Caller, run_id: RunId) -> Response:
    """Resume a paused run."""
    return run_response(await _service(request).runs.resume(caller, run_id))


@router.post(
    "/runs/{run_id}/messages",
    status_code=202,
    tags=["runs"],
    responses={**_ERRORS, **problem_responses(409, s409="The run has finished")},
)
async def send_message(request: Request, caller: Caller, run_id: RunId, body: SendIn) -> Response:
    """Send a message to a run; ``kernos.recv(topic)`` in the run receives it."""
    await _service(request).runs.send(caller, run_id, body.payload, body.topic)
    return Response(status_code=202)


@router.post(
    "/runs/{run_id}/fork",
    response_model=RunOut,
    status_code=201,
    tags=["runs"],
    responses={**_ERRORS, **problem_responses(409, s409="Checkpoint state is corrupt")},
)
async def fork_run(request: Request, caller: Caller, run_id: RunId, body: ForkIn) -> Response:
    """Fork a run at a journal entry or checkpoint, optionally with an edited result there."""
    run = await _service(request).runs.fork(
        caller, run_id, body.at, patch=body.patch, patched=body.patched
    )
    return run_response(run, status_code=201)


@router.post("/runs/{run_id}/replay", response_model=ReplayOut, tags=["runs"], responses=_ERRORS)
async def replay_run(request: Request, caller: Caller, run_id: RunId) -> ReplayOut:
    """Re-execute a run's code against its journal without side effects; report divergence."""
    report = await _service(request).runs.replay(caller, run_id)
    return ReplayOut.model_validate(report.to_dict())


@router.delete(
    "/runs/{run_id}",
    response_model=PurgeOut,
    tags=["runs"],
    responses={**_ERRORS, **problem_responses(409, s409="The run has not finished")},
)
async def purge_run(request: Request, caller: Caller, run_id: RunId) -> PurgeOut:
    """Delete a finished run's data for good: journal, events, messages, blobs (admin)."""
    return PurgeOut(deleted=await _service(request).runs.purge(caller, run_id))


# -- fleet ---------------------------------------------------------------------------


@router.get("/queues", response_model=list[QueueOut], tags=["fleet"], responses=_ERRORS)
async def list_queues(request: Request, caller: Caller) -> list[QueueOut]:
    """Queues: limits, and the tenant's runs pending, running, waiting and paused in each."""
    return [
        QueueOut.model_validate(q.to_dict()) for q in await _service(request).runs.queues(caller)
    ]


@router.get("/workers", response_model=list[WorkerOut], tags=["fleet"], responses=_ERRORS)
async def list_workers(request: Request, caller: Caller) -> list[WorkerOut]:
    """The worker registry: host, pid, queues, heartbeat, runs in flight and state."""
    workers = await _service(request).runs.workers(caller)
    return [WorkerOut.model_validate(w.to_dict()) for w in workers]
