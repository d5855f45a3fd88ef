"""Run bodies written straight to JSON, without a pydantic round trip per run.

Building a ``RunOut`` per run and letting FastAPI validate and serialize the
response again costs more than the rest of a run listing together. The routes
that answer with runs build the same JSON here from the run's attributes and
return it as a ``Response``; ``response_model`` stays on their decorators, so
the OpenAPI document is unchanged, and tests compare these bytes with what
pydantic makes of the same run. What orjson cannot encode (an integer wider
than 64 bits in a run's input, say) goes the pydantic way instead.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from fastapi import Response
from pydantic import BaseModel

from kernos.api._schemas import RunOut, RunPage
from kernos.records import Run

__all__ = ["run_body", "run_page_response", "run_response"]

_FIELDS = tuple(RunOut.model_fields)
_VALUES = operator.attrgetter(*_FIELDS)
# pydantic writes a float field holding an int as 1.0; so must we.
_FLOATS = tuple(
    name for name, field in RunOut.model_fields.items() if field.annotation in (float, float | None)
)
_MEDIA_TYPE = "application/json"


def run_body(run: Run) -> dict[str, Any]:
    """The JSON-ready body of ``run``, field for field what ``RunOut`` serializes to."""
    body = dict(zip(_FIELDS, _VALUES(run), strict=True))
    body["status"] = run.status.value
    for name in _FLOATS:
        value = body[name]
        if value is not None and type(value) is not float:
            body[name] = float(value)
    return body


def run_response(
    run: Run, *, status_code: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    """A JSON response with ``run`` as a ``RunOut``."""
    return _response(run_body(run), RunOut, status_code, headers)


def run_page_response(runs: Sequence[Run], next_cursor: str | None) -> Response:
    """A JSON response with a ``RunPage`` of ``runs``."""
    body = {"items": [run_body(run) for run in runs], "next_cursor": next_cursor}
    return _response(body, RunPage, 200, None)


def _response(
    body: dict[str, Any],
    model: type[BaseModel],
    status_code: int,
    headers: Mapping[str, str] | None,
) -> Response:
    try:
        content = orjson.dumps(body)
    except TypeError:  # orjson.JSONEncodeError: let pydantic write what orjson cannot
        content = model.model_validate(body).model_dump_json().encode()
    return Response(content, status_code=status_code, headers=headers, media_type=_MEDIA_TYPE)
