"""Schemathesis against the live server's own OpenAPI document.

For every operation, valid and invalid requests generated from the document are
sent with an admin API key to a real server (uvicorn on loopback, SQLite), and
every response must be no server error, have a documented status code, a
documented content type and a body matching the documented schema. Problem
details are documented on every operation, so their shape is checked too.

The server runs in a thread of its own with its own event loop: Schemathesis
calls it synchronously. ``GET /events`` is left out (an endless stream; the
stream tests cover it). Generation is derandomized, so a failure reproduces.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from api_support import live_server

from kernos.api import ServerSettings

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402

POSITIVE_EXAMPLES = 25
NEGATIVE_EXAMPLES = 10
STREAMS = {("GET", "/api/v1/events")}


@dataclass
class ThreadedServer:
    url: str
    admin_key: str


@pytest.fixture
def threaded_server(store_url: str) -> Iterator[ThreadedServer]:
    """A live server in a thread with its own event loop, for synchronous clients."""
    ready = threading.Event()
    found: dict[str, Any] = {}
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    async def serve() -> None:
        # No rate limit worth the name: thousands of requests come from one key.
        settings = ServerSettings(key_rate=(1_000_000, 60.0))
        try:
            async with live_server(store_url, settings=settings) as live:
                found["server"] = ThreadedServer(live.url, live.admin_key)
                ready.set()
                await stop.wait()
        except BaseException as error:
            found["error"] = error
            ready.set()
            raise

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    ready.wait(60)
    if "error" in found:
        raise found["error"]
    try:
        yield found["server"]
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(30)
        loop.close()


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_the_api_conforms_to_its_openapi_document(threaded_server: ThreadedServer) -> None:
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
    ]
    # Both headers: Schemathesis fills the documented security schemes with
    # generated values, and X-API-Key wins over Authorization in the server.
    headers = {
        "Authorization": f"Bearer {threaded_server.admin_key}",
        "X-API-Key": threaded_server.admin_key,
    }
    schema = schemathesis.openapi.from_url(f"{threaded_server.url}/api/v1/openapi.json")
    failures: list[str] = []
    tested = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        if (operation.method.upper(), operation.path) in STREAMS:
            continue
        tested += 1
        for mode, examples in (
            (GenerationMode.POSITIVE, POSITIVE_EXAMPLES),
            (GenerationMode.NEGATIVE, NEGATIVE_EXAMPLES),
        ):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=examples,
                deadline=None,
                derandomize=True,
                database=None,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            def check(case: Any) -> None:
                case.call_and_validate(
                    base_url=threaded_server.url, headers=headers, checks=checks, timeout=30
                )

            try:
                check()
            except Unsatisfiable:  # nothing to make invalid: an operation without inputs
                assert mode is GenerationMode.NEGATIVE and not operation.body
            except (Exception, BaseExceptionGroup) as error:  # collect all, then report
                failures.append(
                    f"{operation.method.upper()} {operation.path} [{mode.value}]:\n{error}"
                )
    assert tested >= 40
    assert not failures, "\n\n".join(failures)
