"""The approvals inbox over HTTP: what is asked, deciding with a comment and edits,
a conflict when someone decided first, and a viewer who cannot decide."""

from __future__ import annotations

import asyncio

from web_support import SEND_EMAIL, Page, Site, hidden

from kernos.agents._toolcalls import tool_args_hash
from kernos.control import Principal
from kernos.control._approvals import ApprovalQuery
from kernos.records import ApprovalRequest, ApprovalStatus, Role


async def _pending(site: Site, run_id: str) -> ApprovalRequest:
    system = Principal.system("default")
    for _ in range(400):
        query = ApprovalQuery(run_id=run_id, status="pending")
        for request in (await site.service.approvals.page(system, query))[0]:
            return request
        await asyncio.sleep(0.025)
    raise AssertionError(f"run {run_id} asked for no approval")


async def _output(site: Site, run_id: str) -> object:
    for _ in range(400):
        run = await site.app.get_run(run_id)
        if run.status.terminal:
            return run.output
        await asyncio.sleep(0.025)
    raise AssertionError(f"run {run_id} did not finish")


def _card(html: str, approval_id: str) -> str:
    start = html.index(f'data-approval="{approval_id}"')
    return html[start : html.index("</li>", start)]


async def test_the_inbox_shows_the_exact_call_and_approves_it_with_edits(site: Site) -> None:
    run, _ = await site.service.runs.start(Principal.system("default"), "web_gated", {})
    request = await _pending(site, run.run_id)
    async with site.signed_in() as client:
        html = (await client.get("/approvals")).text
        card = Page(_card(html, request.approval_id))
        assert "send_email" in card.text and "the policy gates email" in card.text
        assert '"body": "<b>ship</b> it"' in card.text  # the arguments, as text
        assert not card.find("b")
        assert tool_args_hash("send_email", SEND_EMAIL) in card.text
        assert card.find("input", name="args_hash", value=request.args_hash)
        edits = card.find("textarea", name="edits")
        assert edits and [b.get("value") for b in card.find("button")] == [
            "edit",
            "approve",
            "reject",
        ]
        csrf = hidden(html, "csrf_token")
        edited = {**SEND_EMAIL, "subject": "Deploy v2 (reviewed)"}
        decided = await client.post(
            f"/approvals/{request.approval_id}/decide",
            data={
                "csrf_token": csrf,
                "decision": "edit",
                "edits": '{"to": "ops@example.com", "subject": "Deploy v2 (reviewed)", '
                '"body": "<b>ship</b> it"}',
                "comment": "tone it down",
                "args_hash": request.args_hash or "",
                "level": "0",
            },
        )
        assert decided.status_code == 303, decided.text
        assert await _output(site, run.run_id) == {
            "decision": "approved",
            "sent": edited,
            "comment": "tone it down",
        }
        after = await client.get(decided.headers["location"])
        assert f"Request {request.approval_id} approved with edits." in Page(after.text).text
        assert f'data-approval="{request.approval_id}"' not in after.text  # no longer pending
        done = Page((await client.get("/approvals?status=approved")).text)
        assert "approved with edits by user:admin" in done.text and "tone it down" in done.text


async def test_a_decision_after_someone_elses_is_a_clear_conflict(site: Site) -> None:
    password = await site.user("otto", Role.OPERATOR)
    run, _ = await site.service.runs.start(Principal.system("default"), "web_gated", {})
    request = await _pending(site, run.run_id)
    async with site.signed_in() as admin, site.signed_in("otto", password) as otto:
        stale = (await otto.get("/approvals")).text  # otto looks, then admin decides
        assert f'data-approval="{request.approval_id}"' in stale
        admin_csrf = hidden((await admin.get("/approvals")).text, "csrf_token")
        first = await admin.post(
            f"/approvals/{request.approval_id}/decide",
            data={"csrf_token": admin_csrf, "decision": "reject", "comment": "not today"},
        )
        assert first.status_code == 303
        late = await otto.post(
            f"/approvals/{request.approval_id}/decide",
            data={
                "csrf_token": hidden(stale, "csrf_token"),
                "decision": "approve",
                "args_hash": request.args_hash or "",
                "level": "0",
            },
        )
        assert late.status_code == 409
        notice = Page(late.text).find("p", data_testid="approvals-notice")
        assert notice and notice[0].get("role") == "alert"
        assert "someone else decided first" in Page(late.text).text
        assert "is rejected" in Page(late.text).text
    assert await _output(site, run.run_id) == {
        "decision": "rejected",
        "sent": SEND_EMAIL,
        "comment": "not today",
    }


async def test_a_viewer_sees_requests_but_no_decision_and_cannot_forge_one(site: Site) -> None:
    password = await site.user("vera", Role.VIEWER)
    run, _ = await site.service.runs.start(Principal.system("default"), "web_gated", {})
    request = await _pending(site, run.run_id)
    async with site.signed_in("vera", password) as client:
        html = (await client.get("/approvals")).text
        card = Page(_card(html, request.approval_id))
        assert "send_email" in card.text
        assert not card.find("form") and not card.find("button")
        forged = await client.post(
            f"/approvals/{request.approval_id}/decide",
            data={"csrf_token": hidden(html, "csrf_token"), "decision": "approve"},
        )
        assert forged.status_code == 403
        no_token = await client.post(
            f"/approvals/{request.approval_id}/decide", data={"decision": "approve"}
        )
        assert no_token.status_code == 403
    still = await site.service.approvals.get(Principal.system("default"), request.approval_id)
    assert still.status is ApprovalStatus.PENDING
