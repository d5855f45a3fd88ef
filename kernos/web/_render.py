"""Templates, filters and the response headers every dashboard page carries."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import orjson
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.responses import HTMLResponse

__all__ = ["CSP", "page", "templates"]

HERE = Path(__file__).parent

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def when(value: float | None) -> str:
    """An epoch time as ``YYYY-MM-DD HH:MM:SS`` UTC, or an em dash."""
    if value is None:
        return "—"
    return dt.datetime.fromtimestamp(value, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def iso(value: float | None) -> str:
    """An epoch time as ISO 8601 (for ``<time datetime>``)."""
    if value is None:
        return ""
    return dt.datetime.fromtimestamp(value, dt.UTC).isoformat(timespec="seconds")


def duration(seconds: float | None) -> str:
    """A span of time, short: ``850 ms``, ``12.3 s``, ``4 m 05 s``, ``2 h 03 m``."""
    if seconds is None:
        return "—"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} m {int(seconds % 60):02d} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} m"


def money(value: float | None) -> str:
    """A cost in dollars: four decimals under a dollar, two above; an em dash if unknown."""
    if value is None:
        return "—"
    return f"${value:.4f}" if value < 1 else f"${value:,.2f}"


def pretty(value: Any) -> str:
    """A JSON value indented for reading (escaped by the template like any text)."""
    try:
        return orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode()
    except TypeError:
        return repr(value)


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
    )
    env.filters.update(when=when, iso=iso, duration=duration, pretty=pretty, money=money)
    return env


templates = _environment()


def page(name: str, context: dict[str, Any], *, status: int = 200) -> HTMLResponse:
    """Render template ``name`` with the dashboard's security headers."""
    html = templates.get_template(name).render(context)
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)
