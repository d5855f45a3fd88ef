"""One error shape for every response: RFC 9457 problem details.

Every error answer is ``application/problem+json`` with ``type``, ``title``,
``status``, ``detail`` and, for validation errors, ``errors`` (each with
``loc``, ``msg`` and ``type``). Stack traces never leave the server; an
unexpected error answers 500 with a request id that is also in the log.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from kernos import errors

__all__ = [
    "PROBLEM_TYPES",
    "install_problem_handlers",
    "problem",
    "problem_response",
    "problem_responses",
    "problem_schemas",
]

log = logging.getLogger("kernos.api")

PROBLEM_TYPES = "https://kernos.dev/problems/"
MEDIA_TYPE = "application/problem+json"

_STATUS: list[tuple[type[errors.KernosError], int]] = [
    (errors.AuthenticationError, 401),
    (errors.PermissionDeniedError, 403),
    (errors.NotFoundError, 404),
    (errors.RunNotFoundError, 404),
    (errors.WorkflowNotFoundError, 404),
    (errors.ConflictError, 409),
    (errors.RunStateError, 409),
    (errors.RateLimitedError, 429),
    (errors.InvalidForkError, 422),
    (errors.DependencyCycleError, 422),
    (errors.ChecksumMismatchError, 409),
    (errors.UsageError, 422),
    (errors.StoreUnavailableError, 503),
]

_TITLES = {
    400: "Bad request",
    401: "Unauthenticated",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Request body too large",
    415: "Unsupported media type",
    422: "Invalid request",
    429: "Too many requests",
    431: "Request headers too large",
    500: "Internal server error",
    503: "Service unavailable",
}


_DESCRIPTIONS = {
    401: "Missing, malformed, expired or revoked credentials",
    403: "The caller's role does not allow this (or a session write lacks X-CSRF-Token)",
    404: "No such object in the caller's tenant",
    409: "Conflicts with the object's state",
    413: "The request body is too large",
    422: "Invalid request: `errors` locates each bad value",
    429: "Too many requests; wait for Retry-After seconds",
    503: "The store is unavailable; retry later",
}


def problem_responses(*statuses: int, **descriptions: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for error statuses, each a :class:`Problem` document.

    ``descriptions`` override the default description of a status, keyed ``s409``.
    """
    return {
        status: {
            "description": descriptions.get(f"s{status}", _DESCRIPTIONS.get(status, "Error")),
            "content": {MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for status in statuses
    }


def problem_schemas() -> dict[str, Any]:
    """The JSON Schemas of :class:`Problem` and what it refers to, for the components."""
    from kernos.api._schemas import Problem

    schema = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    definitions: dict[str, Any] = schema.pop("$defs", {})
    return {**definitions, "Problem": schema}


def problem(status: int, detail: str, *, code: str | None = None, **extra: Any) -> dict[str, Any]:
    """A problem-details body."""
    body: dict[str, Any] = {
        "type": PROBLEM_TYPES + (code or f"http-{status}"),
        "title": _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
    }
    body.update({k: v for k, v in extra.items() if v is not None})
    return body


def problem_response(
    status: int,
    detail: str,
    *,
    code: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    """A problem-details response."""
    return JSONResponse(
        problem(status, detail, code=code, **extra),
        status_code=status,
        media_type=MEDIA_TYPE,
        headers=headers,
    )


def status_of(error: errors.KernosError) -> int:
    """The HTTP status a Kernos error answers with."""
    for cls, status in _STATUS:
        if isinstance(error, cls):
            return status
    return 500


def install_problem_handlers(app: FastAPI) -> None:
    """Make every error answer problem details."""

    @app.exception_handler(errors.KernosError)
    async def kernos_error(request: Request, error: errors.KernosError) -> JSONResponse:
        status = status_of(error)
        if status == 500:
            return _internal(request, error)
        headers = {}
        if isinstance(error, errors.RateLimitedError):
            headers["Retry-After"] = str(getattr(error, "retry_after", 1))
        if isinstance(error, errors.AuthenticationError):
            headers["WWW-Authenticate"] = 'Bearer realm="kernos"'
        extra: dict[str, Any] = {}
        if isinstance(error, errors.UsageError):
            if "errors" in error.facts:
                extra["errors"] = error.facts["errors"]
            elif isinstance(error.facts.get("field"), str):
                # One shape for every 422: a field-level refusal names its field.
                extra["errors"] = [
                    {"loc": [error.facts["field"]], "msg": str(error), "type": error.code}
                ]
        return problem_response(
            status, str(error), code=error.code, headers=headers or None, **extra
        )

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        details = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in error.errors()
        ]
        first = details[0] if details else None
        where = ".".join(str(part) for part in first["loc"]) if first else "request"
        summary = f"{where}: {first['msg']}" if first else "invalid request"
        return problem_response(422, summary, code="validation_error", errors=details)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        if error.status_code == 400 and isinstance(error.__cause__, ValueError | RecursionError):
            # FastAPI's answer to a body that is not JSON it can read (bad UTF-8,
            # nested too deep, an integer too long): invalid input like any other.
            return problem_response(
                422,
                "body: not valid JSON (undecodable text, nesting too deep or a number too long)",
                code="validation_error",
                errors=[{"loc": ["body"], "msg": "JSON decode error", "type": "json_invalid"}],
            )
        detail = error.detail if isinstance(error.detail, str) else _TITLES.get(error.status_code)
        return problem_response(
            error.status_code, detail or "error", headers=dict(error.headers or {}) or None
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        return _internal(request, error)


def _internal(request: Request, error: Exception) -> JSONResponse:
    request_id = uuid.uuid4().hex[:12]
    log.error(
        "request %s %s failed (request id %s)",
        request.method,
        request.url.path,
        request_id,
        exc_info=error,
    )
    return problem_response(
        500,
        f"the server failed to handle this request; report request id {request_id}",
        code="internal_error",
        request_id=request_id,
    )
