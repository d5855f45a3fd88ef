"""The CLI's client pieces without a server: SSE frames and resumption, error
translation, where commands go (server or store), config files and option parsing."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from kernos import errors
from kernos.cli import _remote
from kernos.cli._client import EventQuery
from kernos.cli._filters import parse_time
from kernos.cli._remote import RemoteClient, error_from_response
from kernos.cli._settings import Local, Remote, Settings, Source, load_config
from kernos.cli._sse import Frame, frames
from kernos.cli._start import parse_input

KEY = "kn_AAAAAAAAAAAA_" + "s" * 43


async def _lines(*lines: str) -> AsyncIterator[str]:
    for line in lines:
        yield line


async def test_frames_follow_the_sse_rules() -> None:
    found = [
        frame
        async for frame in frames(
            _lines(
                "retry: 1000",
                "",
                ": keep-alive",
                "",
                "id: 7",
                "event: run.started",
                "data: {",
                "data:}",
                "",
                "id: 8",
                "",
                "data: plain",
                "",
            )
        )
    ]
    assert found == [
        Frame(id="7", event="run.started", data="{\n}"),
        Frame(id="8", event="message", data=""),
        Frame(id=None, event="message", data="plain"),
    ]


def _event(event_id: int, kind: str = "run.started") -> str:
    body = {"event_id": event_id, "run_id": "r1", "kind": kind, "at": 1.0, "data": None}
    return f"id: {event_id}\nevent: {kind}\ndata: {json.dumps(body)}\n\n"


async def test_tail_resumes_after_the_last_event_on_drops(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(_remote, "MAX_BACKOFF", 0.01)
    seen: list[tuple[str | None, list[tuple[str, str]]]] = []
    bodies = [
        _event(1) + _event(2),  # then the connection ends
        'event: error\ndata: {"code": "shutdown", "detail": "stopping", "last_event_id": 5}\n\n',
        _event(6, "run.succeeded"),
    ]

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.headers.get("last-event-id"), list(request.url.params.multi_items())))
        assert request.headers["authorization"] == f"Bearer {KEY}"
        return httpx.Response(200, text=bodies[len(seen) - 1])

    client = RemoteClient(Remote("http://kernos.test", KEY), transport=httpx.MockTransport(handler))
    connected: list[bool] = []
    got = []
    async with client:
        stream = client.tail(
            EventQuery(workflow="brief", kinds=("a", "b")),
            after=None,
            on_connected=lambda: connected.append(True),
        )
        async for event in stream:
            got.append(event.event_id)
            if len(got) == 3:
                break
        await stream.aclose()
    assert got == [1, 2, 6]
    assert [last for last, _ in seen] == [None, "2", "5"]
    assert seen[0][1] == [("workflow", "brief"), ("kind", "a"), ("kind", "b")]
    assert connected == [True]
    err = capsys.readouterr().err
    assert "reconnecting" in err and "stopping" in err and KEY not in err


async def test_tail_fails_at_once_when_refused() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"detail": "revoked API key", "status": 401})

    client = RemoteClient(Remote("http://kernos.test", KEY), transport=httpx.MockTransport(handler))
    async with client:
        with pytest.raises(errors.AuthenticationError, match="revoked API key"):
            async for _ in client.tail(EventQuery(), after=3):
                pass


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (401, errors.AuthenticationError),
        (403, errors.PermissionDeniedError),
        (404, errors.NotFoundError),
        (409, errors.ConflictError),
        (422, errors.UsageError),
        (429, errors.RateLimitedError),
        (400, errors.UsageError),
        (500, errors.RuntimeFailure),
        (503, errors.RuntimeFailure),
    ],
)
def test_problem_details_become_typed_errors(status: int, kind: type[Exception]) -> None:
    body = {
        "type": "https://kernos.dev/problems/x",
        "title": "t",
        "status": status,
        "detail": "what happened",
        "errors": [{"loc": ["body", "input", "name"], "msg": "Field required", "type": "missing"}],
    }
    response = httpx.Response(status, json=body, headers={"Retry-After": "7"})
    error = error_from_response(response, "http://kernos.test")
    assert type(error) is kind
    assert "what happened" in str(error) and "\n" not in str(error)
    assert error.facts["status"] == status
    if status == 422:
        assert "input.name: Field required" in str(error)
        assert error.facts["errors"][0]["msg"] == "Field required"
    if status == 429:
        assert error.facts["retry_after"] == 7.0


def test_an_answer_that_is_not_json_still_has_a_message() -> None:
    error = error_from_response(httpx.Response(502, text="<html>"), "http://x")
    assert "HTTP 502" in str(error)


async def test_unreachable_server_says_so() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    client = RemoteClient(Remote("http://kernos.test", KEY), transport=httpx.MockTransport(handler))
    async with client:
        with pytest.raises(errors.RuntimeFailure) as caught:
            await client.get_run("r1")
    assert str(caught.value) == (
        "cannot reach the Kernos server at http://kernos.test: is `kernos up` running?"
    )


# -- where commands go -----------------------------------------------------------------------


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "config.toml"
    monkeypatch.setenv("KERNOS_CONFIG", str(path))
    return path


def _private(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o600)
    return path


def test_target_precedence(config: Path) -> None:
    _private(config, f'url = "http://from-file:8420"\napi_key = "{KEY}"\n')
    cli = Source.COMMAND_LINE
    env = Source.ENVIRONMENT
    assert Settings().target() == Remote("http://from-file:8420", KEY)
    assert Settings(store="sqlite:///a.db", store_source=env).target() == Local("sqlite:///a.db")
    assert Settings(store="sqlite:///a.db", store_source=cli).target() == Local("sqlite:///a.db")
    assert Settings(
        url="http://from-env:1/api/v1/", url_source=env, api_key="kn_x", store_source=env
    ).target() == Remote("http://from-env:1", "kn_x")
    with pytest.raises(errors.UsageError, match="both --url and --store"):
        Settings(url="http://a", url_source=cli, store_source=cli).target()
    with pytest.raises(errors.UsageError, match="--tenant"):
        Settings(tenant="acme", tenant_source=cli).target()
    # The file's key goes to the file's server only.
    assert Settings(url="http://from-file:8420/", url_source=env).target().api_key == KEY  # type: ignore[union-attr]
    with pytest.raises(errors.ConfigError, match="no API key"):
        Settings(url="http://elsewhere", url_source=env).target()


def test_no_config_file_means_the_default_store(config: Path) -> None:
    assert Settings().target() == Local("sqlite:///kernos.db")


def test_config_file_with_a_key_must_be_private(config: Path) -> None:
    config.write_text(f'api_key = "{KEY}"\n')
    config.chmod(0o640)
    with pytest.raises(errors.ConfigError) as caught:
        load_config(config)
    assert f"chmod 600 {config}" in str(caught.value) and KEY not in str(caught.value)
    config.chmod(0o600)
    assert load_config(config).api_key == KEY
    assert KEY not in repr(load_config(config)) and KEY not in repr(Remote("http://x", KEY))


def test_config_file_errors(config: Path) -> None:
    _private(config, "url = \n")
    with pytest.raises(errors.ConfigError, match="not valid TOML"):
        load_config(config)
    _private(config, 'token = "x"\n')
    with pytest.raises(errors.ConfigError, match="unknown setting"):
        load_config(config)
    _private(config, "url = 3\n")
    with pytest.raises(errors.ConfigError, match="must be a string"):
        load_config(config)
    _private(config, 'url = "ftp://x"\n')
    with pytest.raises(errors.ConfigError, match="not an http"):
        Settings().target()


# -- option parsing ----------------------------------------------------------------------------


def test_parse_input() -> None:
    assert parse_input('{"a": 1}', None, ["b=two", "c:=[3]", "a:=null"]) == {
        "a": None,
        "b": "two",
        "c": [3],
    }
    assert parse_input(None, None, ["url=http://x?y=1"]) == {"url": "http://x?y=1"}
    for bad in (["novalue"], ["=x"], ["n:={"]):
        with pytest.raises(errors.UsageError):
            parse_input(None, None, bad)
    with pytest.raises(errors.UsageError, match="JSON object"):
        parse_input("[1]", None, None)


def test_parse_time() -> None:
    assert parse_time("90", "--since") == 90.0
    assert parse_time("2h", "--since", now=10_000.0) == 10_000.0 - 7200
    assert parse_time("1.5d", "--since", now=200_000.0) == 200_000.0 - 129_600
    assert parse_time("2026-03-01", "--since") > 1.7e9
    with pytest.raises(errors.UsageError, match="--until 'soon'"):
        parse_time("soon", "--until")
