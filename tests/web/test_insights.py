"""Runs' tokens and cost, sorting, charts, queue throughput, retries and causes, over HTTP
on both stores (the figures come from SQL that differs per dialect)."""

from __future__ import annotations

import asyncio

from web_support import Page, Site

from kernos.control import Principal
from kernos.records import EntryKind, Event, RunStatus
from kernos.web._entry import cause_chain, model_streams


async def _finished(site: Site, run_id: str) -> None:
    for _ in range(400):
        if (await site.app.get_run(run_id)).status.terminal:
            return
        await asyncio.sleep(0.025)
    raise AssertionError(f"run {run_id} did not finish")


def _cell(page: Page, html: str, run_id: str, column: str) -> str:
    """The text of ``column`` in the row of ``run_id`` (parsed again for that row)."""
    start = html.index(f'data-run="{run_id}"')
    row = html[start : html.index("</tr>", start)]
    cell = row.index(f'data-col="{column}"')
    return Page("<td " + row[cell : row.index("</td>", cell)]).text.strip()


async def test_runs_show_tokens_and_cost_and_sort_by_them(site: Site) -> None:
    system = Principal.system("default")
    site.fake.reply("Rayleigh scattering.", input_tokens=1200, output_tokens=300)
    asked, _ = await site.service.runs.start(system, "web_llm", {})
    echoed, _ = await site.service.runs.start(system, "web_echo", {"text": "no model"})
    await _finished(site, asked.run_id)
    await _finished(site, echoed.run_id)
    [entry] = [e for e in await site.app.journal(asked.run_id) if e.kind is EntryKind.LLM]
    assert isinstance(entry.detail, dict)
    cost = entry.detail["cost"]
    assert isinstance(cost, float) and cost > 0
    async with site.signed_in() as client:
        html = (await client.get("/runs")).text
        page = Page(html)
        assert _cell(page, html, asked.run_id, "tokens") == "1500"
        assert _cell(page, html, asked.run_id, "cost") == f"${cost:.4f}"
        assert _cell(page, html, echoed.run_id, "tokens") == "—"
        by_tokens = Page((await client.get("/runs?sort=-tokens")).text)
        order = [r["data-run"] for r in by_tokens.find("tr") if r.get("data-run")]
        assert order[0] == asked.run_id
        ascending = Page((await client.get("/runs?sort=tokens")).text)
        assert [r["data-run"] for r in ascending.find("tr") if r.get("data-run")][-1] == (
            asked.run_id
        )
        assert by_tokens.find("th", aria_sort="descending")


async def test_charts_and_queue_throughput(site: Site) -> None:
    system = Principal.system("default")
    done = []
    for text in ["a", "b", "c"]:
        run, _ = await site.service.runs.start(system, "web_echo", {"text": text})
        done.append(run.run_id)
    site.fake.reply("Because.", input_tokens=100, output_tokens=50)
    asked, _ = await site.service.runs.start(system, "web_llm", {}, queue="models")
    failed, _ = await site.service.runs.start(system, "web_flaky", {})
    for run_id in [*done, asked.run_id, failed.run_id]:
        await _finished(site, run_id)
    charts = await site.service.insights.charts(system)
    assert sum(charts.runs["succeeded"]) == 4 and sum(charts.runs["failed"]) == 1
    assert charts.finished == 5 and charts.p50[-1] is not None and charts.p95[-1] is not None
    assert charts.p50[-1] <= charts.p95[-1]
    assert charts.tokens[-1] == 150 and (charts.cost[-1] or 0) > 0
    async with site.signed_in() as client:
        html = (await client.get("/insights")).text
        page = Page(html)
        charts_drawn = page.find("svg", role="img")
        assert {c.get("data-chart") for c in charts_drawn} == {"runs", "duration", "tokens", "cost"}
        assert len(page.find("title")) >= 5 and len(page.find("desc")) == 4
        assert len(page.find("rect", **{"class": "st-succeeded"})) == 1  # this hour's bar
        assert "succeeded 4" in page.text and "failed 1" in page.text
        queues = Page((await client.get("/queues")).text)
        lines = {s.get("data-sparkline") for s in queues.find("svg")}
        assert {"default", "models"} <= lines
        assert "default: 4 runs finished in the last 24 hours" in queues.text
        assert "models: 1 runs finished in the last 24 hours" in queues.text


async def test_an_entry_shows_each_retry_and_the_cause_chain(site: Site) -> None:
    run, _ = await site.service.runs.start(Principal.system("default"), "web_flaky", {})
    await _finished(site, run.run_id)
    assert (await site.app.get_run(run.run_id)).status is RunStatus.FAILED
    async with site.signed_in() as client:
        html = (await client.get(f"/runs/{run.run_id}?entry=0")).text
        page = Page(html)
        assert page.find("table", data_testid="entry-attempts")
        start = html.index('data-testid="entry-attempts"')
        attempts = Page(html[start : html.index("</table>", start)])
        assert len([r for r in attempts.find("tr")]) == 4  # a header and three attempts
        assert attempts.text.count("connection to http://upstream.invalid refused") == 3
        start = html.index('data-testid="entry-causes"')
        causes = Page(html[start : html.index("</ol>", start)])
        assert "web_support.Flaky" in causes.text and "the upstream service is down" in causes.text
        assert "caused by builtins.ConnectionError" in causes.text
        assert page.find("svg", data_lanes="1")


def test_streamed_text_of_calls_in_flight_only_latest_attempt() -> None:
    def delta(event_id: int, seq: int, attempt: int, index: int, text: str) -> Event:
        data = {"seq": seq, "attempt": attempt, "index": index, "text": text}
        return Event(event_id=event_id, run_id="r", kind="llm.delta", at=0.0, data=data)

    events = [
        delta(1, 0, 1, 0, "done "),
        delta(2, 2, 1, 0, "first try"),
        delta(3, 2, 2, 0, "Hel"),
        delta(4, 2, 2, 1, "lo"),
        delta(5, 2, 2, 3, " (after a gap)"),
        Event(event_id=6, run_id="r", kind="step.completed", at=0.0, data={"seq": 1}),
    ]
    [stream] = model_streams(events, written={0, 1})
    assert (stream.seq, stream.attempt, stream.text, stream.next_index) == (2, 2, "Hello", 2)


def test_cause_chain_reads_nested_causes() -> None:
    error = {"type": "a.B", "message": "outer", "cause": {"type": "c.D", "message": "inner"}}
    assert [c["type"] for c in cause_chain(error)] == ["a.B", "c.D"]
    assert cause_chain(None) == []
