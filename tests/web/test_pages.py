"""The dashboard over HTTP: sign-in, pages, CSRF, roles, escaping, security headers."""

from __future__ import annotations

import asyncio

import httpx
import orjson
from web_support import INJECTION, Page, Site, hidden

from kernos.control import Principal
from kernos.records import EntryKind, Role
from kernos.testing import FakeToolCall


async def _finished(site: Site, run_id: str) -> None:
    for _ in range(400):
        run = await site.app.get_run(run_id)
        if run.status.terminal:
            return
        await asyncio.sleep(0.025)
    raise AssertionError(f"run {run_id} did not finish")


async def test_pages_need_sign_in_and_show_who_is_signed_in(site: Site) -> None:
    async with httpx.AsyncClient(base_url=site.url) as anonymous:
        response = await anonymous.get("/runs?status=failed")
        assert response.status_code == 303
        assert response.headers["location"] == "/login?next=%2Fruns%3Fstatus%3Dfailed"
    async with site.signed_in() as client:
        page = await client.get("/runs")
        assert page.status_code == 200
        parsed = Page(page.text)
        assert "admin" in parsed.text and "default" in parsed.text
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        for path in ["/workers", "/queues", "/approvals", "/audit", "/keys", "/users", "/settings"]:
            other = await client.get(path)
            assert other.status_code == 200, path
            assert not Page(other.text).find("script", src=None), "an inline script"
            assert 'style="' not in other.text


async def test_wrong_password_and_missing_csrf_are_refused(site: Site) -> None:
    async with httpx.AsyncClient(base_url=site.url) as client:
        form = await client.get("/login")
        token = hidden(form.text, "csrf_token")
        wrong = await client.post(
            "/login", data={"csrf_token": token, "username": "admin", "password": "nope"}
        )
        assert wrong.status_code == 401
        assert "wrong username or password" in Page(wrong.text).text
        forged = await client.post(
            "/login", data={"csrf_token": "x", "username": "admin", "password": "x"}
        )
        assert forged.status_code == 403
    async with site.signed_in() as client:
        run, _ = await site.service.runs.start(_system(), "web_wait", {})
        refused = await client.post(f"/runs/{run.run_id}/cancel", data={"reason": "no token"})
        assert refused.status_code == 403
        assert not (await site.app.get_run(run.run_id)).status.terminal


def _system() -> Principal:
    return Principal.system("default")


async def test_start_cancel_and_fork_through_forms(site: Site) -> None:
    async with site.signed_in() as client:
        runs = await client.get("/runs")
        csrf = hidden(runs.text, "csrf_token")
        started = await client.post(
            "/runs", data={"csrf_token": csrf, "workflow": "web_echo", "input": '{"text": "hi"}'}
        )
        assert started.status_code == 303
        run_id = started.headers["location"].removeprefix("/runs/")
        await _finished(site, run_id)
        detail = await client.get(f"/runs/{run_id}?entry=0")
        parsed = Page(detail.text)
        assert "succeeded" in parsed.text and "web_echo" in parsed.text
        forked = await client.post(
            f"/runs/{run_id}/fork",
            data={"csrf_token": csrf, "seq": "0", "edit": "on", "patch": '"edited"'},
        )
        assert forked.status_code == 303
        fork_id = forked.headers["location"].removeprefix("/runs/")
        assert fork_id != run_id
        await _finished(site, fork_id)
        assert (await site.app.get_run(fork_id)).output == "edited"
        again = await client.post(f"/runs/{run_id}/fork", data={"csrf_token": csrf, "seq": "0"})
        second = again.headers["location"].removeprefix("/runs/")
        original = (await client.get(f"/runs/{run_id}")).text
        start = original.index('data-testid="forks"')
        forks = Page(original[start : original.index("</section>", start)])
        assert [a["href"] for a in forks.find("a")] == [f"/runs/{fork_id}", f"/runs/{second}"]
        back = Page((await client.get(f"/runs/{fork_id}")).text)
        assert back.find("a", href=f"/runs/{run_id}")  # forked from
        waiting = await client.post("/runs", data={"csrf_token": csrf, "workflow": "web_wait"})
        wait_id = waiting.headers["location"].removeprefix("/runs/")
        cancelled = await client.post(f"/runs/{wait_id}/cancel", data={"csrf_token": csrf})
        assert cancelled.status_code == 303
        assert (await site.app.get_run(wait_id)).status.value == "cancelled"
        replay = await client.post(f"/runs/{run_id}/replay", data={"csrf_token": csrf})
        assert replay.status_code == 200 and "identical" in Page(replay.text).text


async def test_a_viewer_sees_no_actions_and_cannot_act(site: Site) -> None:
    password = await site.user("vera", Role.VIEWER)
    run, _ = await site.service.runs.start(_system(), "web_wait", {})
    async with site.signed_in("vera", password) as client:
        page = await client.get(f"/runs/{run.run_id}")
        assert page.status_code == 200
        parsed = Page(page.text)
        assert not parsed.find("button", data_action="cancel")
        assert not parsed.find("form", action="/runs")
        csrf = hidden(page.text, "csrf_token")  # the sign-out form's
        refused = await client.post(f"/runs/{run.run_id}/cancel", data={"csrf_token": csrf})
        assert refused.status_code == 403
        assert not (await site.app.get_run(run.run_id)).status.terminal
        assert (await client.get("/keys")).status_code == 403
        assert not Page((await client.get("/runs")).text).find("a", href="/keys")


async def test_untrusted_tool_output_renders_as_text(site: Site) -> None:
    # An agent reads a page whose text carries a script and markup; its tool entry shows it.
    site.fake.reply(tool_calls=[FakeToolCall(name="read_page", arguments={"url": "http://x"})])
    site.fake.reply("The page says hello.")
    run, _ = await site.service.runs.start(_system(), "agent:web_reader", {"task": "read x"})
    await _finished(site, run.run_id)
    [tool] = [e for e in await site.app.journal(run.run_id) if e.kind is EntryKind.TOOL]
    assert isinstance(tool.output, dict) and tool.output["content"] == INJECTION
    async with site.signed_in() as client:
        page = await client.get(f"/runs/{run.run_id}?entry={tool.seq}")
        parsed = Page(page.text)
        assert not parsed.find("img") and not parsed.find("b")
        assert [s for s in parsed.find("script") if s.get("src") != "/static/kernos.js"] == []
        assert orjson.dumps(INJECTION).decode() in parsed.text  # shown, as JSON text
        assert "&lt;script&gt;" in page.text


async def test_runs_list_filters_and_pages(site: Site) -> None:
    for i in range(3):
        await site.service.runs.start(_system(), "web_echo", {"text": str(i)})
    waiting, _ = await site.service.runs.start(_system(), "web_wait", {})
    async with site.signed_in() as client:
        only_wait = Page((await client.get("/runs?workflow=web_wait")).text)
        rows = only_wait.find("tr")
        assert [r.get("data-run") for r in rows if r.get("data-run")] == [waiting.run_id]
        search = Page((await client.get(f"/runs?q={waiting.run_id[:10]}")).text)
        assert [r.get("data-run") for r in search.find("tr") if r.get("data-run")] == [
            waiting.run_id
        ]
        static = await client.get("/static/kernos.css")
        assert static.status_code == 200 and static.headers["content-type"].startswith("text/css")
        assert (await client.get("/static/..%2Fmount.py")).status_code == 404
