"""The dashboard in a real browser (Debian's headless chromium through Playwright):
sign in, start a run and watch it finish live, open an entry, fork, cancel, the
viewer's view, untrusted output, and screenshots of the main pages in both themes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect
from web_support import INJECTION, Site

from kernos.control import Principal
from kernos.records import Role

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).parent / "artifacts"
TIMEOUT_MS = 10_000
CHROMIUM_PRESENT = Path(CHROMIUM).exists()


@pytest.fixture
def backend() -> str:
    """Browser tests run on SQLite only: what they check does not depend on the store."""
    return "sqlite"


@pytest.fixture
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


async def test_operate_runs_live(site: Site, browser: Browser) -> None:
    context = await browser.new_context()
    page = await _sign_in(context, site, "admin", site.admin_password)
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: dialogs.append(dialog.message))

    # A run started elsewhere appears in the list without a reload.
    await page.evaluate("window.kernosMarker = 1")
    await expect(page.locator("#live")).to_have_attribute("data-stream", "open")
    api = httpx.AsyncClient(
        base_url=site.url + "/api/v1", headers={"Authorization": f"Bearer {site.admin_key}"}
    )
    async with api:
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
    await page.locator('a[data-entry="0"]').click()
    await expect(page.get_by_test_id("entry-output")).to_contain_text("waiting")
    await page.get_by_label("Replace this entry's result").check()
    await page.get_by_label("New result (JSON)").fill('"edited"')
    await page.get_by_role("button", name="Fork from #0").click()
    await expect(page.get_by_text("Forked from")).to_be_visible()
    assert page.url.rsplit("/", 1)[1] != run_id

    # Cancel a waiting run, after the confirmation.
    fork_id = page.url.rsplit("/", 1)[1]
    await expect(page.locator("h1 .pill")).to_have_text("waiting")
    await page.get_by_role("button", name="Cancel").click()
    await expect(page.locator("h1 .pill")).to_have_text("cancelled")
    assert (await site.app.get_run(fork_id)).status.value == "cancelled"
    assert "Cancel this run and its unfinished children?" in dialogs
    await context.close()


async def test_viewer_and_untrusted_output(site: Site, browser: Browser) -> None:
    password = await site.user("vera", Role.VIEWER)
    run, _ = await site.service.runs.start(
        Principal.system("default"), "web_echo", {"text": INJECTION}
    )
    context = await browser.new_context()
    page = await _sign_in(context, site, "vera", password)
    alerts: list[str] = []
    page.on("dialog", lambda dialog: alerts.append(dialog.message))
    await page.goto(f"{site.url}/runs/{run.run_id}")
    await expect(page.locator("h1 .pill")).to_have_text("succeeded")
    await page.locator('a[data-entry="0"]').click()
    output = page.get_by_test_id("entry-output")
    await expect(output).to_contain_text('<script>alert(\\"x\\")</script>')
    assert await page.locator("#entry img, #entry b, #entry script").count() == 0
    assert alerts == []
    for name in ["Cancel", "Pause", "Replay", "Send message"]:
        assert await page.get_by_role("button", name=name).count() == 0
    assert await page.get_by_text("Start a run").count() == 0
    await context.close()


async def test_screenshots_in_both_themes(site: Site, browser: Browser) -> None:
    system = Principal.system("default")
    done, _ = await site.service.runs.start(system, "web_echo", {"text": "a screenshot"})
    await site.service.runs.start(system, "web_wait", {})
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
            ("workers", "/workers"),
            ("queues", "/queues"),
            ("audit", "/audit"),
            ("settings", "/settings"),
        ]:
            await page.goto(site.url + path)
            await page.screenshot(path=ARTIFACTS / f"{name}-{theme}.png", full_page=True)
        await page.set_viewport_size({"width": 360, "height": 740})
        await page.goto(site.url + "/runs")
        await page.screenshot(path=ARTIFACTS / f"runs-{theme}-360.png", full_page=True)
        await context.close()
