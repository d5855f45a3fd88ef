"""The dashboard's pages: each reads through the Service as the signed-in user."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from starlette.responses import Response

from kernos.api._state import server_state
from kernos.control import Principal
from kernos.control._approvals import ApprovalQuery
from kernos.control._cursor import decode_cursor
from kernos.errors import UsageError
from kernos.records import Role, Run, RunStatus, RunUsage
from kernos.store import RunFilter
from kernos.web._approvals import VERDICTS, shown_request
from kernos.web._charts import lines, sparkline, stacked_bars
from kernos.web._entry import Stream, cause_chain, model_streams
from kernos.web._render import page, when
from kernos.web._session import viewer
from kernos.web._timeline import build_timeline, lane_rects

__all__ = ["base_context", "router"]

router = APIRouter(include_in_schema=False)

RANGES = {"1h": 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400}
PAGE_SIZE = 50
RUN_EVENTS = 10_000  # events read for streamed model text and forks (the first ones)
FRAGMENT_HEADER = "x-kernos-fragment"

SortKey = Callable[[Run, RunUsage, float], Any]


def _duration(run: Run, now: float) -> float:
    return (run.finished_at or now) - run.started_at if run.started_at else -1.0


SORTS: dict[str, SortKey] = {
    "status": lambda run, usage, now: run.status.value,
    "workflow": lambda run, usage, now: run.workflow,
    "started": lambda run, usage, now: run.started_at or 0.0,
    "duration": lambda run, usage, now: _duration(run, now),
    "steps": lambda run, usage, now: run.steps,
    "tokens": lambda run, usage, now: usage.tokens,
    "cost": lambda run, usage, now: usage.cost or 0.0,
}
"""The runs table's sortable columns (a page is sorted on its own; pages go newest first)."""
COLUMNS = [
    ("status", "Status", False),
    ("workflow", "Workflow", False),
    (None, "Run", False),
    ("started", "Started", False),
    ("duration", "Duration", True),
    ("steps", "Steps", True),
    ("tokens", "Tokens", True),
    ("cost", "Cost", True),
    (None, "Queue", False),
]


def base_context(request: Request, caller: Principal, section: str) -> dict[str, Any]:
    """What every page's layout needs: who is signed in, where, and may they act."""
    return {
        "caller": caller,
        "username": caller.actor.removeprefix("user:"),
        "section": section,
        "csrf": caller.session.csrf_token if caller.session else "",
        "can_act": caller.role.includes(Role.OPERATOR),
        "is_admin": caller.role.includes(Role.ADMIN),
        "fragment": request.headers.get(FRAGMENT_HEADER) == "1",
        "path": request.url.path,
    }


def _text(request: Request, name: str, limit: int = 200) -> str | None:
    value = request.query_params.get(name, "").strip()[:limit]
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise UsageError(f"{name} contains control characters")
    return value or None


def runs_filter(request: Request) -> tuple[RunFilter, dict[str, Any]]:
    """The runs page's filter from its query string, and the values to show in the form."""
    status = _text(request, "status")
    if status is not None and status not in {s.value for s in RunStatus}:
        status = None
    since = _text(request, "range")
    after = time.time() - RANGES[since] if since in RANGES else None
    cursor = _text(request, "cursor", 400)
    query = RunFilter(
        status=status,
        workflow=_text(request, "workflow"),
        queue=_text(request, "queue"),
        text=_text(request, "q"),
        created_after=after,
        limit=PAGE_SIZE,
        before=decode_cursor(cursor) if cursor else None,
    )
    shown = {
        "status": status or "",
        "workflow": query.workflow or "",
        "queue": query.queue or "",
        "q": query.text or "",
        "range": since if since in RANGES else "",
    }
    return query, shown


def _headers(params: dict[str, str], cursor: str | None, sort: str) -> list[dict[str, Any]]:
    """The runs table's column headers: each sortable one links to its sorted page."""
    here = params | ({"cursor": cursor} if cursor else {})
    headers = []
    for key, label, numeric in COLUMNS:
        header: dict[str, Any] = {"label": label, "numeric": numeric, "href": None, "aria": None}
        if key is not None:
            ascending = sort == key
            descending = sort == f"-{key}"
            wanted = key if descending or (not ascending and not numeric) else f"-{key}"
            header["href"] = "/runs?" + urlencode(here | {"sort": wanted})
            if ascending or descending:
                header["aria"] = "ascending" if ascending else "descending"
        headers.append(header)
    return headers


@router.get("/")
async def home() -> Response:
    """The dashboard starts at the runs list."""
    return Response(status_code=303, headers={"Location": "/runs"})


@router.get("/runs")
async def runs_page(request: Request) -> Response:
    """Runs, newest first: filters, search, a page at a time; live."""
    caller = await viewer(request)
    service = server_state(request).service
    query, shown = runs_filter(request)
    runs, cursor = await service.runs.page(caller, query)
    usage = await service.runs.usage(caller, runs)
    now = time.time()
    sort = _text(request, "sort") or ""
    if sort.lstrip("-") in SORTS:
        key = SORTS[sort.lstrip("-")]
        runs = sorted(runs, key=lambda run: key(run, usage[run.run_id], now))
        if sort.startswith("-"):
            runs.reverse()
    else:
        sort = ""
    workflows = [w.name for w in service.runs.workflows(caller)]
    # Suggestions only (any queue can be typed): counting every queue's runs would cost
    # the page a scan of the tenant's runs (40 ms at 100,000), more than the rest together.
    queues = sorted({run.queue for run in runs} | {"default"})
    params = {k: v for k, v in shown.items() if v}
    context = base_context(request, caller, "runs") | {
        "runs": runs,
        "usage": usage,
        "sort": sort,
        "next_cursor": cursor,
        "shown": shown,
        "params": params,
        "headers": _headers(params, _text(request, "cursor", 400), sort),
        "next_params": params
        | ({"cursor": cursor} if cursor else {})
        | ({"sort": sort} if sort else {}),
        "statuses": [s.value for s in RunStatus],
        "workflows": workflows,
        "queues": queues,
        "ranges": list(RANGES),
        "first_page": query.before is None,
        "now": now,
    }
    return page("_runs_table.html" if context["fragment"] else "runs.html", context)


@router.get("/runs/{run_id}")
async def run_page(request: Request, run_id: str) -> Response:
    """One run: its journal as a timeline, the selected entry, actions, relatives."""
    caller = await viewer(request)
    service = server_state(request).service
    run = await service.runs.get(caller, run_id[:200])
    entries = await service.runs.journal(caller, run.run_id)
    children, _ = await service.runs.page(caller, RunFilter(parent_id=run.run_id, limit=50))
    selected = None
    wanted = request.query_params.get("entry", "")
    if wanted.isdigit():
        selected = next((e for e in entries if e.seq == int(wanted)), None)
    timeline = build_timeline(run, entries)
    chosen_bar = next((b for b in timeline.bars if b.entry is selected), None)
    streams: list[Stream] = []
    if not run.status.terminal:  # model output still streaming lives in the events
        events = await service.runs.events(caller, run.run_id, after=0, limit=RUN_EVENTS)
        streams = model_streams(events, {e.seq for e in entries})
    newest, _ = await service.runs.page(caller, RunFilter(forked_from=run.run_id, limit=50))
    forks = newest[::-1]  # oldest first, in the order they were made
    context = base_context(request, caller, "runs") | {
        "run": run,
        "timeline": timeline,
        "children": children,
        "selected": selected,
        "selected_bar": chosen_bar,
        "causes": cause_chain(selected.error) if selected is not None else [],
        "run_causes": cause_chain(run.error),
        "streams": streams,
        "forks": forks,
        "lane_rects": lane_rects,
        "now": time.time(),
    }
    return page("_run_live.html" if context["fragment"] else "run.html", context)


@router.get("/workers")
async def workers_page(request: Request) -> Response:
    """The worker registry."""
    caller = await viewer(request)
    workers = await server_state(request).service.runs.workers(caller)
    context = base_context(request, caller, "workers") | {"workers": workers, "now": time.time()}
    return page("workers.html", context)


@router.get("/queues")
async def queues_page(request: Request) -> Response:
    """Queues with their limits, the tenant's runs in each state and their throughput."""
    caller = await viewer(request)
    service = server_state(request).service
    queues = await service.runs.queues(caller)
    throughput = await service.insights.throughput(caller, hours=24)
    names = sorted({q.name for q in queues} | set(throughput))
    context = base_context(request, caller, "queues") | {
        "queues": queues,
        "names": names,
        "throughput": {name: throughput.get(name, [0] * 24) for name in names},
        "sparkline": sparkline,
    }
    return page("queues.html", context)


@router.get("/insights")
async def insights_page(request: Request) -> Response:
    """Charts: runs per hour by status, p50/p95 duration, tokens and cost per day."""
    caller = await viewer(request)
    charts = await server_state(request).service.insights.charts(caller)
    hours = [when(h)[11:16] for h in charts.hours]
    days = [when(d)[5:10] for d in charts.days]
    order = ["succeeded", "failed", "cancelled", "running", "waiting", "paused", "pending"]
    costs = [c or 0.0 for c in charts.cost]
    context = base_context(request, caller, "insights") | {
        "charts": charts,
        "hours": hours,
        "days": days,
        "statuses": order,
        "runs_chart": stacked_bars(hours, {s: charts.runs[s] for s in order}),
        "duration_chart": lines(hours, {"p50": charts.p50, "p95": charts.p95}, fmt="{} s"),
        "tokens_chart": stacked_bars(days, {"tokens": charts.tokens}, every=2),
        "cost_chart": stacked_bars(days, {"cost": costs}, every=2, fmt="${}"),
    }
    return page("insights.html", context)


APPROVAL_TABS = ["pending", "approved", "rejected", "expired", "cancelled"]


async def approvals_context(
    request: Request, caller: Principal, *, notice: str | None = None
) -> dict[str, Any]:
    """What the approvals inbox shows: one tab of the tenant's requests, and who may decide."""
    status = _text(request, "status") or "pending"
    if status not in APPROVAL_TABS and status != "all":
        status = "pending"
    cursor = _text(request, "cursor", 400)
    query = ApprovalQuery(
        status=None if status == "all" else status, limit=PAGE_SIZE, cursor=cursor
    )
    requests, next_cursor = await server_state(request).service.approvals.page(caller, query)
    return base_context(request, caller, "approvals") | {
        "requests": [shown_request(r, caller) for r in requests],
        "status": status,
        "tabs": [*APPROVAL_TABS, "all"],
        "next_cursor": next_cursor,
        "notice": notice or _decided(request),
    }


def _decided(request: Request) -> str | None:
    decided, verdict = _text(request, "decided"), _text(request, "verdict")
    if decided is None or verdict not in VERDICTS:
        return None
    return f"Request {decided} {VERDICTS[verdict]}."


@router.get("/approvals")
async def approvals_page(request: Request) -> Response:
    """The approvals inbox: pending requests live, what exactly each asks, and decisions."""
    caller = await viewer(request)
    context = await approvals_context(request, caller)
    return page("_approvals_list.html" if context["fragment"] else "approvals.html", context)


@router.get("/audit")
async def audit_page(request: Request) -> Response:
    """The tenant's audit log (admins)."""
    caller = await viewer(request)
    before = request.query_params.get("before", "")
    records = await server_state(request).service.admin.audit_log(
        caller,
        actor=_text(request, "actor"),
        action=_text(request, "action"),
        before_id=int(before) if before.isdigit() else None,
        limit=100,
    )
    context = base_context(request, caller, "audit") | {
        "records": records,
        "actor": _text(request, "actor") or "",
        "action": _text(request, "action") or "",
    }
    return page("audit.html", context)


@router.get("/keys")
async def keys_page(request: Request) -> Response:
    """The tenant's API keys (admins); never their secrets."""
    caller = await viewer(request)
    keys = await server_state(request).service.admin.keys(caller)
    context = base_context(request, caller, "keys") | {
        "keys": keys,
        "roles": [r.value for r in Role],
        "now": time.time(),
    }
    return page("keys.html", context)


@router.get("/users")
async def users_page(request: Request) -> Response:
    """The tenant's users and roles (admins)."""
    caller = await viewer(request)
    members = await server_state(request).service.admin.members(caller)
    context = base_context(request, caller, "users") | {
        "members": members,
        "roles": [r.value for r in Role],
    }
    return page("users.html", context)


@router.get("/settings")
async def settings_page(request: Request) -> Response:
    """Which LLM providers are configured (whether a key is set, never the key)."""
    caller = await viewer(request)
    tenant = await server_state(request).service.admin.tenant(caller)
    context = base_context(request, caller, "settings") | {
        "providers": providers(),
        "tenant": tenant,
    }
    return page("settings.html", context)


_PROVIDERS = [
    ("OpenAI", "OPENAI_API_KEY", "OPENAI_BASE_URL"),
    ("Anthropic", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL"),
    ("Ollama", None, "OLLAMA_HOST"),
]


def providers() -> list[dict[str, Any]]:
    """Each known provider and whether its credentials are set in the environment."""
    import os

    found = []
    for name, key_var, url_var in _PROVIDERS:
        found.append(
            {
                "name": name,
                "key_var": key_var,
                "configured": bool(os.environ.get(key_var)) if key_var else None,
                "url_var": url_var,
                "custom_url": bool(os.environ.get(url_var)),
            }
        )
    return found
