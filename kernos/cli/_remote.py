"""The client over HTTP: the REST API of ``kernos up``, its errors made typed again.

Problem-details answers become the errors the Service raised on the server
(401 AuthenticationError, 403 PermissionDeniedError, 404 NotFoundError, 409
ConflictError, 422 UsageError with the field errors, 429 RateLimitedError), so
a command handles a server exactly as it handles a local store. The API key
travels in the Authorization header only: never in a URL, a message or a log.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

import orjson

from kernos import errors, records, runtime
from kernos.cli import _render as render
from kernos.cli._client import AuditQuery, Client, EventQuery, Identity, Member, run_failure
from kernos.cli._settings import API_PATH, Remote
from kernos.cli._sse import frames
from kernos.store import RunFilter

if TYPE_CHECKING:
    import httpx

    from kernos.control._policies import PolicyTestRow

__all__ = ["RemoteClient", "error_from_response"]

R = TypeVar("R")

TIMEOUT = 30.0  # seconds for one request
STREAM_READ_TIMEOUT = 60.0  # seconds of silence (heartbeats come every 15) before reconnecting
MAX_BACKOFF = 10.0  # seconds between reconnection attempts, at most
POLL_MAX = 1.0  # seconds between polls of a run or a bulk job, at most

_STATUS_ERRORS: dict[int, type[errors.KernosError]] = {
    401: errors.AuthenticationError,
    403: errors.PermissionDeniedError,
    404: errors.NotFoundError,
    409: errors.ConflictError,
    422: errors.UsageError,
    429: errors.RateLimitedError,
}


def _build(cls: type[R], data: Mapping[str, Any], **values: Any) -> R:
    """A record from the fields of ``data`` it knows, then ``values``."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    known = {k: v for k, v in data.items() if k in names}
    return cls(**(known | values))


# Fields a run has in the store but the API does not show.
_RUN_HIDDEN = {
    "parent_seq": None,
    "owner": None,
    "lease_epoch": 0,
    "lease_expires_at": None,
    "deadline": None,
    "timeout": None,
}


def run_from(data: Mapping[str, Any]) -> records.Run:
    """A run from its API form."""
    return _build(records.Run, _RUN_HIDDEN | dict(data), status=records.RunStatus(data["status"]))


def _entry(data: Mapping[str, Any]) -> records.JournalEntry:
    return _build(
        records.JournalEntry,
        data,
        kind=records.EntryKind(data["kind"]),
        status=records.EntryStatus(data["status"]),
    )


def _queue(data: Mapping[str, Any]) -> records.QueueStats:
    spec = data.get("spec")
    return _build(records.QueueStats, data, spec=_build(records.QueueSpec, spec) if spec else None)


def approval_from(data: Mapping[str, Any]) -> records.ApprovalRequest:
    """An approval request from its API form."""
    return _build(
        records.ApprovalRequest,
        data,
        kind=records.ApprovalKind(data["kind"]),
        status=records.ApprovalStatus(data["status"]),
    )


def _webhook(data: Mapping[str, Any]) -> records.Webhook:
    # The API never sends a webhook's secret; the record's field stays empty here.
    return _build(
        records.Webhook,
        data,
        kinds=tuple(data["kinds"]),
        format=records.WebhookFormat(data["format"]),
        secret="",
    )


def _webhook_delivery(data: Mapping[str, Any]) -> records.WebhookDelivery:
    return _build(
        records.WebhookDelivery,
        data,
        status=records.DeliveryStatus(data["status"]),
        payload="",
    )


def _key(data: Mapping[str, Any]) -> records.ApiKey:
    # The API never sends a key's hash; the record's field stays empty here.
    return _build(records.ApiKey, data, role=records.Role(data["role"]), secret_hash="")


def _job(data: Mapping[str, Any]) -> records.BulkJob:
    # The API shows a job to its own tenant only and leaves the tenant out.
    return _build(records.BulkJob, {"tenant_id": ""} | dict(data))


def _member(data: Mapping[str, Any]) -> Member:
    return _build(Member, data, role=records.Role(data["role"]))


def _report(data: Mapping[str, Any]) -> runtime.ReplayReport:
    divergence = data.get("divergence")
    return _build(
        runtime.ReplayReport,
        data,
        divergence=_build(runtime.Divergence, divergence) if divergence else None,
    )


def _filter_params(query: RunFilter) -> dict[str, Any]:
    if query.parent_id is not None:
        raise errors.UsageError(
            "the server does not list runs by parent; `kernos runs show RUN` shows a run's "
            "children, or pass --store to query a store directly"
        )
    values = {
        "status": query.status,
        "workflow": query.workflow,
        "queue": query.queue,
        "created_after": query.created_after,
        "created_before": query.created_before,
        "q": query.text,
    }
    return {name: value for name, value in values.items() if value is not None}


def _path(*parts: str) -> str:
    return "/" + "/".join(quote(part, safe="") for part in parts)


def _field_errors(items: Any) -> str:
    if not isinstance(items, list):
        return ""
    described = []
    for item in items[:5]:
        if not isinstance(item, dict):
            continue
        loc = [str(part) for part in item.get("loc", ()) if part != "body"]
        described.append(f"{'.'.join(loc) or 'request'}: {item.get('msg', 'invalid')}")
    return "; ".join(described)


def error_from_response(response: httpx.Response, where: str) -> errors.KernosError:
    """The typed error for an error answer (problem details, or anything else)."""
    status = response.status_code
    try:
        body = orjson.loads(response.content) if response.content else {}
    except orjson.JSONDecodeError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    detail = str(body.get("detail") or f"HTTP {status} {response.reason_phrase}".strip())
    code = str(body.get("type", "")).rpartition("/")[2] or None
    facts: dict[str, Any] = {"status": status, "problem": code}
    if status == 422 and "errors" in body:
        facts["errors"] = body["errors"]
        more = _field_errors(body["errors"])
        if more and more not in detail:
            detail = f"{detail} ({more})"
    if status == 401:
        detail = (
            f"{detail}; the server at {where} refused the API key (check --api-key, "
            "$KERNOS_API_KEY or the config file)"
        )
    if status == 429:
        retry_after = response.headers.get("retry-after", "1")
        facts["retry_after"] = float(retry_after) if retry_after.isdigit() else 1.0
        detail = f"{detail}; retry after {retry_after}s"
    cls = _STATUS_ERRORS.get(status)
    if cls is None:
        if status >= 500:
            return errors.RuntimeFailure(f"the server at {where} failed: {detail}", **facts)
        cls = errors.UsageError
    return cls(detail, **facts)


class RemoteClient(Client):
    """Every command's operations as requests to a server's REST API."""

    remote = True

    def __init__(self, target: Remote, *, transport: httpx.AsyncBaseTransport | None = None):
        import httpx

        from kernos import __version__

        self.where = target.url
        self.http = httpx.AsyncClient(
            base_url=target.url + API_PATH,
            headers={
                "Authorization": f"Bearer {target.api_key}",
                "User-Agent": f"kernos-cli/{__version__}",
            },
            timeout=TIMEOUT,
            transport=transport,
        )

    async def __aenter__(self) -> RemoteClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.http.aclose()

    # -- HTTP -------------------------------------------------------------------------

    def _unreachable(self, exc: Exception) -> errors.KernosError:
        import httpx

        if isinstance(exc, httpx.ConnectError):
            message = f"cannot reach the Kernos server at {self.where}: is `kernos up` running?"
        elif isinstance(exc, httpx.TimeoutException):
            message = f"the Kernos server at {self.where} did not answer in time"
        else:
            message = (
                f"the request to the Kernos server at {self.where} failed: "
                f"{type(exc).__name__}: {exc}"
            )
        return errors.RuntimeFailure(message, url=self.where)

    async def _send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        import httpx

        try:
            response = await self.http.request(
                method,
                path,
                params=params,
                content=orjson.dumps(body) if body is not None else None,
                headers={"Content-Type": "application/json", **(headers or {})}
                if body is not None
                else headers,
            )
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from exc
        if response.status_code >= 400:
            raise error_from_response(response, self.where)
        return response

    async def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self._send(method, path, **kwargs)
        return orjson.loads(response.content) if response.content else None

    async def _lines(self, path: str, params: Mapping[str, Any]) -> AsyncIterator[str]:
        import httpx

        timeout = httpx.Timeout(TIMEOUT, read=STREAM_READ_TIMEOUT)
        try:
            async with self.http.stream("GET", path, params=params, timeout=timeout) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise error_from_response(response, self.where)
                async for line in response.aiter_lines():
                    yield line
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from exc

    # -- runs -------------------------------------------------------------------

    async def list_runs(
        self, query: RunFilter, *, limit: int, cursor: str | None
    ) -> tuple[list[records.Run], str | None]:
        params = _filter_params(query) | {"limit": limit}
        if cursor:
            params["cursor"] = cursor
        page = await self._json("GET", "/runs", params=params)
        return [run_from(item) for item in page["items"]], page.get("next_cursor")

    async def count_runs(self, query: RunFilter) -> int | None:
        # A dry run of a bulk action counts without touching anything; it needs
        # the operator role, so a viewer just goes without a total.
        try:
            return await self.bulk_count("cancel", query)
        except errors.PermissionDeniedError:
            return None

    async def export_runs(self, query: RunFilter) -> AsyncGenerator[records.Run, None]:
        params = _filter_params(query) | {"format": "jsonl"}
        async for line in self._lines("/runs/export", params):
            if line.strip():
                yield run_from(orjson.loads(line))

    async def get_run(self, run_id: str) -> records.Run:
        return run_from(await self._json("GET", _path("runs", run_id)))

    async def journal(self, run_id: str) -> list[records.JournalEntry]:
        return [_entry(item) for item in await self._json("GET", _path("runs", run_id, "journal"))]

    async def children(self, run_id: str, *, limit: int) -> list[records.Run]:
        # The journal names each child run; the API lists runs by tenant, not parent.
        ids: list[str] = []
        for entry in await self.journal(run_id):
            detail = entry.detail if isinstance(entry.detail, dict) else {}
            child = detail.get("child_id")
            if entry.kind is records.EntryKind.CHILD and isinstance(child, str):
                ids.append(child)
        found = await asyncio.gather(*(self.get_run(child) for child in ids[:limit]))
        return sorted(found, key=lambda run: run.created_at, reverse=True)

    async def run_events(self, run_id: str, *, after: int, limit: int) -> list[records.Event]:
        params = {"after": after, "limit": min(limit, 5000)}
        items = await self._json("GET", _path("runs", run_id, "events"), params=params)
        return [_build(records.Event, item) for item in items]

    async def checkpoints(self, run_id: str) -> list[records.Checkpoint]:
        items = await self._json("GET", _path("runs", run_id, "checkpoints"))
        return [_build(records.Checkpoint, item) for item in items]

    async def start_run(
        self,
        workflow: str,
        input: dict[str, Any],
        *,
        queue: str,
        priority: int,
        idempotency_key: str | None,
        delay: float | None,
    ) -> tuple[records.Run, bool]:
        body: dict[str, Any] = {
            "workflow": workflow,
            "input": input,
            "queue": queue,
            "priority": priority,
        }
        if delay is not None:
            body["delay"] = delay
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        response = await self._send("POST", "/runs", body=body, headers=headers)
        return run_from(orjson.loads(response.content)), response.status_code == 201

    async def cancel(self, run_id: str, reason: str) -> list[str]:
        done = await self._json("POST", _path("runs", run_id, "cancel"), body={"reason": reason})
        cancelled: list[str] = done["cancelled"]
        return cancelled

    async def fork(
        self, run_id: str, at: int | str, *, patch: Any, patched: bool, new_run_id: str | None
    ) -> records.Run:
        if new_run_id is not None:
            raise errors.UsageError(
                "--id needs a local store (--store): a server names forks itself"
            )
        body = {"at": at, "patch": patch, "patched": patched}
        return run_from(await self._json("POST", _path("runs", run_id, "fork"), body=body))

    async def replay(self, run_id: str) -> runtime.ReplayReport:
        return _report(await self._json("POST", _path("runs", run_id, "replay")))

    async def wait(self, run_id: str, *, timeout: float | None) -> records.Run:
        loop = asyncio.get_running_loop()
        give_up = None if timeout is None else loop.time() + timeout
        pause = 0.1
        while True:
            run = await self.get_run(run_id)
            if run.status is records.RunStatus.SUCCEEDED:
                return run
            if run.status.terminal:
                raise run_failure(run)
            if give_up is not None and loop.time() + pause > give_up:
                raise TimeoutError(f"run {run_id!r} is still {run.status.value}")
            await asyncio.sleep(pause)
            pause = min(pause * 1.5, POLL_MAX)

    # -- fleet ------------------------------------------------------------------------

    async def queues(self) -> list[records.QueueStats]:
        return [_queue(item) for item in await self._json("GET", "/queues")]

    async def workers(self) -> list[records.Worker]:
        return [_build(records.Worker, item) for item in await self._json("GET", "/workers")]

    # -- events -----------------------------------------------------------------------

    async def tail(
        self,
        query: EventQuery,
        *,
        after: int | None,
        on_connected: Callable[[], None] | None = None,
    ) -> AsyncGenerator[records.Event, None]:
        import httpx

        params: dict[str, Any] = {"run_id": query.run_id, "workflow": query.workflow}
        params = {name: value for name, value in params.items() if value is not None}
        if query.kinds:
            params["kind"] = list(query.kinds)
        resume = _Resume(position=after)
        failures = 0
        while True:
            headers = {"Accept": "text/event-stream"}
            if resume.position is not None:
                headers["Last-Event-ID"] = str(resume.position)
            timeout = httpx.Timeout(TIMEOUT, read=STREAM_READ_TIMEOUT)
            try:
                async with self.http.stream(
                    "GET", "/events", params=params, headers=headers, timeout=timeout
                ) as response:
                    if response.status_code >= 400:
                        await response.aread()
                        error = error_from_response(response, self.where)
                        if not resume.connected or response.status_code < 500:
                            raise error
                        resume.why = str(error)
                    else:
                        if not resume.connected and on_connected is not None:
                            on_connected()
                        resume.connected = True
                        async for event in _read_events(response, resume):
                            failures = 0
                            yield event
            except httpx.HTTPError as exc:
                if not resume.connected:
                    raise self._unreachable(exc) from exc
                resume.why = str(self._unreachable(exc))
            failures += 1
            delay = min(MAX_BACKOFF, 0.5 * 2 ** (failures - 1)) * random.uniform(0.8, 1.2)
            since = f" after event {resume.position}" if resume.position is not None else ""
            render.note(f"{resume.why}; reconnecting in {delay:.1f}s{since}")
            await asyncio.sleep(delay)

    # -- administration -----------------------------------------------------------------

    async def whoami(self) -> Identity:
        me = await self._json("GET", "/auth/me")
        return Identity(
            actor=me["actor"], tenant=me["tenant"], role=records.Role(me["role"]), where=self.where
        )

    async def keys(self) -> list[records.ApiKey]:
        return [_key(item) for item in await self._json("GET", "/keys")]

    async def create_key(
        self, name: str, role: records.Role, *, expires_in: float | None
    ) -> tuple[records.ApiKey, str]:
        body = {"name": name, "role": role.value, "expires_in": expires_in}
        created = await self._json("POST", "/keys", body=body)
        return _key(created["key"]), created["secret"]

    async def revoke_key(self, key_id: str) -> records.ApiKey:
        return _key(await self._json("POST", _path("keys", key_id, "revoke")))

    async def rotate_key(self, key_id: str, *, overlap: float) -> tuple[records.ApiKey, str]:
        body = {"overlap_s": overlap}
        created = await self._json("POST", _path("keys", key_id, "rotate"), body=body)
        return _key(created["key"]), created["secret"]

    async def users(self) -> list[Member]:
        return [_member(item) for item in await self._json("GET", "/users")]

    async def create_user(self, username: str, password: str, role: records.Role) -> Member:
        body = {"username": username, "password": password, "role": role.value}
        return _member(await self._json("POST", "/users", body=body))

    async def update_user(
        self,
        username: str,
        *,
        role: records.Role | None,
        disabled: bool | None,
        password: str | None,
    ) -> Member:
        changes = {"role": role.value if role else None, "disabled": disabled, "password": password}
        body = {name: value for name, value in changes.items() if value is not None}
        return _member(await self._json("PATCH", _path("users", username), body=body))

    async def remove_user(self, username: str) -> None:
        await self._send("DELETE", _path("users", username))

    async def tenants(self) -> list[records.Tenant]:
        return [_build(records.Tenant, item) for item in await self._json("GET", "/tenants")]

    async def create_tenant(self, tenant_id: str, name: str) -> records.Tenant:
        body = {"tenant_id": tenant_id, "name": name}
        return _build(records.Tenant, await self._json("POST", "/tenants", body=body))

    async def add_member(self, tenant_id: str, username: str, role: records.Role) -> None:
        body = {"username": username, "role": role.value}
        await self._send("POST", _path("tenants", tenant_id, "members"), body=body)

    async def audit(self, query: AuditQuery) -> tuple[list[records.AuditRecord], int | None]:
        fields = {
            "actor": query.actor,
            "action": query.action,
            "object_id": query.object_id,
            "since": query.since,
            "until": query.until,
            "before_id": query.before_id,
            "limit": query.limit,
        }
        params = {name: value for name, value in fields.items() if value is not None}
        page = await self._json("GET", "/audit", params=params)
        found = [_build(records.AuditRecord, item) for item in page["items"]]
        return found, page.get("next_before_id")

    # -- bulk actions ---------------------------------------------------------------------

    async def bulk_count(self, action: str, query: RunFilter) -> int:
        body = {"action": action, "filter": _filter_params(query), "dry_run": True}
        count: int = (await self._json("POST", "/runs/bulk", body=body))["count"]
        return count

    async def bulk_start(self, action: str, query: RunFilter) -> records.BulkJob:
        body = {"action": action, "filter": _filter_params(query), "dry_run": False}
        return _job(await self._json("POST", "/runs/bulk", body=body))

    async def bulk_job(self, job_id: str) -> records.BulkJob:
        return _job(await self._json("GET", _path("bulk", job_id)))

    async def bulk_jobs(self) -> list[records.BulkJob]:
        return [_job(item) for item in await self._json("GET", "/bulk")]

    # -- webhooks ----------------------------------------------------------------------

    async def webhooks(self) -> list[records.Webhook]:
        return [_webhook(item) for item in await self._json("GET", "/webhooks")]

    async def create_webhook(
        self, url: str, *, kinds: list[str], format: records.WebhookFormat
    ) -> tuple[records.Webhook, str]:
        body: dict[str, Any] = {"url": url, "format": format.value}
        if kinds:
            body["kinds"] = kinds
        created = await self._json("POST", "/webhooks", body=body)
        return _webhook(created["webhook"]), created["secret"]

    async def delete_webhook(self, webhook_id: str) -> None:
        await self._json("DELETE", _path("webhooks", webhook_id))

    async def rotate_webhook(self, webhook_id: str) -> tuple[records.Webhook, str]:
        created = await self._json("POST", _path("webhooks", webhook_id, "rotate"))
        return _webhook(created["webhook"]), created["secret"]

    async def webhook_deliveries(
        self, webhook_id: str, *, status: records.DeliveryStatus | None, limit: int
    ) -> list[records.WebhookDelivery]:
        params: dict[str, Any] = {"limit": limit}
        if status is not None:
            params["status"] = status.value
        page = await self._json("GET", _path("webhooks", webhook_id, "deliveries"), params=params)
        return [_webhook_delivery(item) for item in page["items"]]

    async def test_webhook(self, webhook_id: str) -> records.WebhookDelivery:
        return _webhook_delivery(await self._json("POST", _path("webhooks", webhook_id, "test")))

    # -- approvals ---------------------------------------------------------------------

    async def approvals(
        self,
        *,
        status: str | None,
        run_id: str | None,
        mine: bool,
        limit: int,
        cursor: str | None,
    ) -> tuple[list[records.ApprovalRequest], str | None]:
        fields = {"status": status, "run_id": run_id, "limit": limit, "cursor": cursor}
        params = {name: value for name, value in fields.items() if value is not None}
        if mine:
            params["mine"] = "true"
        page = await self._json("GET", "/approvals", params=params)
        return [approval_from(item) for item in page["items"]], page.get("next_cursor")

    async def approval(self, approval_id: str) -> records.ApprovalRequest:
        return approval_from(await self._json("GET", _path("approvals", approval_id)))

    async def decide(
        self,
        approval_id: str,
        decision: str,
        *,
        comment: str | None,
        edits: Any,
        args_hash: str | None,
        level: int | None,
    ) -> records.ApprovalRequest:
        fields = {
            "decision": decision,
            "comment": comment,
            "edits": edits,
            "args_hash": args_hash,
            "level": level,
        }
        body = {name: value for name, value in fields.items() if value is not None}
        path = _path("approvals", approval_id, "decision")
        return approval_from(await self._json("POST", path, body=body))

    # -- policy -----------------------------------------------------------------------

    async def policy(self, version: int | None) -> records.PolicyVersion:
        params = {"version": version} if version is not None else None
        return _build(records.PolicyVersion, await self._json("GET", "/policy", params=params))

    async def policy_versions(self) -> list[records.PolicyVersion]:
        found = await self._json("GET", "/policy/versions")
        return [_build(records.PolicyVersion, item, document="") for item in found]

    async def apply_policy(self, document: str) -> records.PolicyVersion:
        body = {"document": document}
        return _build(records.PolicyVersion, await self._json("PUT", "/policy", body=body))

    async def test_policy(self, document: str, run_id: str) -> list[PolicyTestRow]:
        from kernos.control._policies import PolicyTestRow

        body = {"document": document, "run_id": run_id}
        rows = await self._json("POST", "/policy/test", body=body)
        return [_build(PolicyTestRow, row) for row in rows]


def _object(data: str) -> dict[str, Any] | None:
    """The JSON object in a frame's data, or None."""
    if not data:
        return None
    try:
        item = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    return item if isinstance(item, dict) else None


@dataclasses.dataclass(slots=True)
class _Resume:
    """Where a followed stream is: the last event id seen, and why it last ended."""

    position: int | None
    connected: bool = False
    why: str = ""


async def _read_events(
    response: httpx.Response, resume: _Resume
) -> AsyncGenerator[records.Event, None]:
    """The events of one connection's frames, keeping ``resume`` up to date."""
    resume.why = "the server closed the stream"
    async for frame in frames(response.aiter_lines()):
        if frame.id is not None and frame.id.isdigit():
            resume.position = int(frame.id)
        item = _object(frame.data)
        if item is None:
            continue
        if frame.event == "error" or "event_id" not in item:
            # The server ended the stream on purpose (slow consumer, shutdown)
            # and says where this subscription stopped.
            last = item.get("last_event_id")
            if isinstance(last, int) and (resume.position is None or last > resume.position):
                resume.position = last
            resume.why = f"the server ended the stream: {item.get('detail')}"
            continue
        yield _build(records.Event, item)
