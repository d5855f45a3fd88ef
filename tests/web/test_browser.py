"""The dashboard in a real browser (Debian's headless chromium through Playwright):
sign in, start a run and watch it finish live, open an entry, fork, cancel, model
output streaming in, the viewer's view (no buttons, a forged form refused),
untrusted output, keyboard shortcuts, the theme toggle, and screenshots of the
main pages in both themes and at 360 px.

One browser and one server (on SQLite: nothing here depends on the store) serve
the whole module; each test signs in with a fresh browser context.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect
from web_support import SEND_EMAIL, Site, live_site

from kernos.agents._toolcalls import tool_args_hash
from kernos.control import Principal
from kernos.control._approvals import ApprovalQuery
from kernos.records import EntryKind, Role
from kernos.testing import FakeToolCall

pytestmark = pytest.mark.asyncio(loop_scope="module")

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).parent / "artifacts"
TIMEOUT_MS = 10_000
CHROMIUM_PRESENT = Path(CHROMIUM).exists()
ANSWER = (
    "The sky looks blue because air molecules scatter short wavelengths of sunlight "
    "far more than long ones, so blue light reaches your eyes from every direction. "
) * 3


WIDEST = """Array.from(document.querySelectorAll("body *"))
  .filter((e) => e.getBoundingClientRect().right > 360 && !e.closest(".grid"))
  .map((e) => e.outerHTML.slice(0, 60)).slice(-3).join(", ")"""
"""The innermost elements sticking out past 360 px (tables scroll inside themselves)."""


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def site(
    sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Site]:
    """One server with the dashboard for the module, on a copy of the migrated template."""
    path = tmp_path_factory.mktemp("browser") / "kernos.db"
    shutil.copyfile(sqlite_template, path)
    async with live_site(f"sqlite:///{path}") as server:
        yield server


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    """Headless chromium from the system (``make test`` installs Debian's package)."""
    if not CHROMIUM_PRESENT:
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (make test does)")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield browser
        await browser.close()


async def _sign_in(context: BrowserContext, site: Site, user: str, password: str) -> Page:
    page = await context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.on("dialog", lambda dialog: dialog.accept())  # confirmations (and any alert)
    await page.goto(site.url + "/runs")
    await expect(page).to_have_url(site.url + "/login?next=%2Fruns")
    await page.get_by_label("Username").fill(user)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page).to_have_url(site.url + "/runs")
    await expect(page.get_by_test_id("user")).to_have_text(user)
    await expect(page.get_by_test_id("tenant")).to_have_text("default")
    return page


def _api(site: Site) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {site.admin_key}"}
    return httpx.AsyncClient(base_url=site.url + "/api/v1", headers=headers)


async def test_operate_runs_live(site: Site, browser: Browser) -> None:
    context = await browser.new_context()
    page = await _sign_in(context, site, "admin", site.admin_password)
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: dialogs.append(dialog.message))

    # A run started elsewhere appears in the list without a reload.
    await page.evaluate("window.kernosMarker = 1")
    await expect(page.locator("#live")).to_have_attribute("data-stream", "open")
    async with _api(site) as api:
        started = await api.post("/runs", json={"workflow": "web_echo", "input": {}})
        other = started.json()["run_id"]
        await expect(page.locator(f'tr[data-run="{other}"]')).to_be_visible()
        assert await page.evaluate("window.kernosMarker") == 1

        # Start a run from the form; it waits for a message; the page follows it live.
        await page.get_by_text("Start a run").click()
        start = page.get_by_test_id("start-form")
        await start.get_by_label("Workflow").select_option("web_wait")
        await start.get_by_role("button", name="Start").click()
        await expect(page.locator("h1 .pill")).to_have_text("waiting")
        run_id = page.url.rsplit("/", 1)[1]
        await page.evaluate("window.kernosMarker = 2")
        await api.post(f"/runs/{run_id}/messages", json={"payload": {"ok": True}})
        await expect(page.locator("h1 .pill")).to_have_text("succeeded")
        assert await page.evaluate("window.kernosMarker") == 2

    # Open an entry and fork from it with an edited result.
    await page.locator('.entries a[data-entry="0"]').click()
    await expect(page.get_by_test_id("entry-output")).to_contain_text("waiting")
    await page.get_by_label("Replace this entry's result").check()
    await page.get_by_label("New result (JSON)").fill('"edited"')
    await page.get_by_role("button", name="Fork from #0").click()
    await expect(page.get_by_text("Forked from")).to_be_visible()
    fork_id = page.url.rsplit("/", 1)[1]
    assert fork_id != run_id
    await expect(page.locator(f'a[href="/runs/{run_id}"]')).to_be_visible()

    # Cancel the fork (it waits for a message again), after the confirmation.
    await expect(page.locator("h1 .pill")).to_have_text("waiting")
    await page.get_by_role("button", name="Cancel").click()
    await expect(page.locator("h1 .pill")).to_have_text("cancelled")
    assert (await site.app.get_run(fork_id)).status.value == "cancelled"
    assert "Cancel this run and its unfinished children?" in dialogs

    # The original links to its fork.
    await page.goto(f"{site.url}/runs/{run_id}")
    await expect(page.locator(f'a[href="/runs/{fork_id}"]').first).to_be_visible()
    await context.close()


async def test_model_output_streams_live_then_the_call_opens(site: Site, browser: Browser) -> None:
    context = await browser.new_context()
    page = await _sign_in(context, site, "admin", site.admin_password)
    site.fake.reply(ANSWER, chunk_size=6, chunk_delay=0.03, input_tokens=40, output_tokens=120)
    run, _ = await site.service.runs.start(Principal.system("default"), "web_llm", {})
    await page.goto(f"{site.url}/runs/{run.run_id}")
    await page.evaluate("window.kernosMarker = 3")
    # Text arrives piece by piece while the call is still running, without a reload.
    await page.wait_for_function(
        """() => { const box = document.querySelector('pre[data-stream-seq="0"]');
                   return box !== null && Number(box.dataset.nextIndex) >= 3; }"""
    )
    assert not (await site.app.get_run(run.run_id)).status.terminal
    assert ANSWER.startswith(await page.locator('pre[data-stream-seq="0"]').inner_text())
    await expect(page.locator("h1 .pill")).to_have_text("succeeded", timeout=20_000)
    assert await page.locator("pre[data-stream-seq]").count() == 0  # the entry replaced it
    assert await page.evaluate("window.kernosMarker") == 3

    # The call's entry: prompt, response, tokens and cost.
    await page.locator('.entries a[data-entry="0"]').click()
    entry = page.locator("#entry")
    await expect(entry).to_contain_text("Request and usage")
    await expect(entry.get_by_test_id("entry-detail")).to_contain_text("Why is the sky blue?")
    await expect(entry.get_by_test_id("entry-output")).to_contain_text("air molecules scatter")
    await expect(entry.locator("dd", has_text="160")).to_be_visible()  # tokens
    await expect(entry.locator("dt", has_text="Cost")).to_be_visible()
    await context.close()


async def test_viewer_sees_no_actions_cannot_forge_one_and_output_is_text(
    site: Site, browser: Browser
) -> None:
    password = await site.user("vera", Role.VIEWER)
    system = Principal.system("default")
    # An agent reads a page carrying a script and markup (the tool's output is untrusted).
    site.fake.reply(tool_calls=[FakeToolCall(name="read_page", arguments={"url": "http://x"})])
    site.fake.reply("The page says hello.")
    read, _ = await site.service.runs.start(system, "agent:web_reader", {"task": "read x"})
    waiting, _ = await site.service.runs.start(system, "web_wait", {})
    context = await browser.new_context()
    page = await _sign_in(context, site, "vera", password)
    alerts: list[str] = []
    page.on("dialog", lambda dialog: alerts.append(dialog.message))
    await page.goto(f"{site.url}/runs/{read.run_id}")
    await expect(page.locator("h1 .pill")).to_have_text("succeeded")
    [tool] = [e for e in await site.app.journal(read.run_id) if e.kind is EntryKind.TOOL]
    await page.locator(f'.entries a[data-entry="{tool.seq}"]').click()
    output = page.get_by_test_id("entry-output")
    await expect(output).to_contain_text('<script>alert(\\"x\\")</script>')
    assert await page.locator("#entry img, #entry b, #entry script").count() == 0
    assert alerts == []

    await page.goto(f"{site.url}/runs/{waiting.run_id}")
    await expect(page.locator("h1 .pill")).to_have_text("waiting")
    for name in ["Cancel", "Pause", "Replay", "Send message"]:
        assert await page.get_by_role("button", name=name).count() == 0
    assert await page.locator("button[data-action]").count() == 0
    # The form a viewer does not get, posted anyway with the viewer's own CSRF token.
    status = await page.evaluate(
        """async (runId) => {
             const token = document.querySelector('input[name="csrf_token"]').value;
             const body = new URLSearchParams({csrf_token: token, reason: "forged"});
             const r = await fetch(`/runs/${runId}/cancel`, {method: "POST", body});
             return r.status;
           }""",
        waiting.run_id,
    )
    assert status == 403
    assert not (await site.app.get_run(waiting.run_id)).status.terminal
    await page.goto(site.url + "/runs")
    assert await page.get_by_text("Start a run").count() == 0
    await context.close()


async def test_approvals_inbox_is_live_and_approves_with_edits(
    site: Site, browser: Browser
) -> None:
    system = Principal.system("default")
    context = await browser.new_context()
    page = await _sign_in(context, site, "admin", site.admin_password)
    await page.goto(site.url + "/approvals")
    await expect(page.get_by_test_id("approvals-empty")).to_be_visible()
    await expect(page.locator("#live")).to_have_attribute("data-stream", "open")
    await page.evaluate("window.kernosMarker = 4")

    # New requests appear without a reload, each with the exact call it asks about.
    mine, _ = await site.service.runs.start(system, "web_gated", {})
    other, _ = await site.service.runs.start(system, "web_gated", {"to": "dev@example.com"})
    cards = page.locator("li[data-approval]")
    await expect(cards).to_have_count(2)
    assert await page.evaluate("window.kernosMarker") == 4
    card = cards.filter(has=page.locator(f'a[href^="/runs/{mine.run_id}"]'))
    await expect(card.get_by_test_id("approval-tool")).to_have_text("send_email")
    await expect(card.get_by_test_id("approval-arguments")).to_contain_text(
        '"to": "ops@example.com"'
    )
    await expect(card.get_by_test_id("approval-hash")).to_have_text(
        tool_args_hash("send_email", SEND_EMAIL)
    )

    # Edit the arguments, comment, approve: the run goes on with the edited call.
    await card.get_by_text("Edit the arguments, then approve").click()
    edited = {**SEND_EMAIL, "subject": "Deploy v2 (reviewed)"}
    await card.get_by_label("Arguments (JSON)").fill(json.dumps(edited))
    await card.get_by_label("Comment").fill("reviewed the subject")
    await card.get_by_role("button", name="Approve with edits").click()
    await expect(page.get_by_test_id("approvals-notice")).to_contain_text("approved with edits")
    await expect(cards).to_have_count(1)
    for _ in range(400):
        run = await site.app.get_run(mine.run_id)
        if run.status.terminal:
            break
        await asyncio.sleep(0.025)
    assert run.output == {"decision": "approved", "sent": edited, "comment": "reviewed the subject"}

    # Someone else decides the other one: it leaves the inbox without a reload.
    await page.evaluate("window.kernosMarker = 5")
    [pending] = (await site.service.approvals.page(system, ApprovalQuery(run_id=other.run_id)))[0]
    async with _api(site) as api:
        decided = await api.post(
            f"/approvals/{pending.approval_id}/decision",
            json={"decision": "reject", "comment": "no"},
        )
        assert decided.status_code == 200, decided.text
    await expect(cards).to_have_count(0)
    await expect(page.get_by_test_id("approvals-empty")).to_be_visible()
    assert await page.evaluate("window.kernosMarker") == 5
    await context.close()


async def test_keyboard_shortcuts_and_theme_toggle(site: Site, browser: Browser) -> None:
    for text in ["one", "two", "three"]:
        await site.service.runs.start(Principal.system("default"), "web_echo", {"text": text})
    context = await browser.new_context(color_scheme="light")
    page = await _sign_in(context, site, "admin", site.admin_password)
    rows = page.locator("table.runs tbody tr")
    await page.keyboard.press("j")
    await expect(rows.nth(0)).to_have_class("cursor")
    await page.keyboard.press("j")
    await expect(rows.nth(1)).to_have_class("cursor")
    await page.keyboard.press("k")
    await expect(rows.nth(0)).to_have_class("cursor")
    first = await rows.nth(0).get_attribute("data-run")
    await page.keyboard.press("Enter")
    await expect(page).to_have_url(f"{site.url}/runs/{first}")
    await page.go_back()
    await page.keyboard.press("/")
    await expect(page.get_by_label("Search")).to_be_focused()
    await page.keyboard.press("Escape")
    await page.locator("body").click(position={"x": 5, "y": 300})
    await page.keyboard.press("?")
    await expect(page.locator("dialog#help")).to_be_visible()
    await page.get_by_role("button", name="Close").click()

    light = await page.evaluate("getComputedStyle(document.body).backgroundColor")
    await page.get_by_label("Toggle dark or light theme").click()
    dark = await page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert (light, dark) == ("rgb(247, 247, 248)", "rgb(18, 20, 23)")
    await page.reload()  # the choice is remembered over the system's
    assert await page.evaluate("getComputedStyle(document.body).backgroundColor") == dark
    await context.close()


async def test_screenshots_in_both_themes_and_at_360_px(site: Site, browser: Browser) -> None:
    system = Principal.system("default")
    done, _ = await site.service.runs.start(system, "web_echo", {"text": "a screenshot"})
    await site.service.runs.start(system, "web_wait", {})
    flaky, _ = await site.service.runs.start(system, "web_flaky", {})
    await site.service.runs.start(system, "web_gated", {"to": "screenshots@example.com"})
    ARTIFACTS.mkdir(exist_ok=True)
    for theme in ["light", "dark"]:
        context = await browser.new_context(
            color_scheme=theme, viewport={"width": 1200, "height": 800}
        )
        page = await _sign_in(context, site, "admin", site.admin_password)
        background = await page.evaluate("getComputedStyle(document.body).backgroundColor")
        assert background == ("rgb(247, 247, 248)" if theme == "light" else "rgb(18, 20, 23)")
        for name, path in [
            ("runs", "/runs"),
            ("run", f"/runs/{done.run_id}?entry=0"),
            ("run-error", f"/runs/{flaky.run_id}?entry=0"),
            ("insights", "/insights"),
            ("approvals", "/approvals"),
            ("workers", "/workers"),
            ("queues", "/queues"),
            ("audit", "/audit"),
            ("settings", "/settings"),
        ]:
            await page.goto(site.url + path)
            await page.screenshot(path=ARTIFACTS / f"{name}-{theme}.png", full_page=True)
        await page.set_viewport_size({"width": 360, "height": 740})
        for name, path in [
            ("runs", "/runs"),
            ("run", f"/runs/{done.run_id}?entry=0"),
            ("insights", "/insights"),
            ("approvals", "/approvals"),
            ("queues", "/queues"),
        ]:
            await page.goto(site.url + path)
            # Nothing wider than the screen: wide tables scroll inside themselves.
            width = await page.evaluate("document.documentElement.scrollWidth")
            assert width <= 360, f"{path} is {width} px wide at 360 px: " + await page.evaluate(
                WIDEST
            )
            await page.screenshot(path=ARTIFACTS / f"{name}-{theme}-360.png", full_page=True)
        await context.close()
