"""kernos.approval(): a durable wait settled by a compare-and-set on the request's row.

Decisions here go straight to the store (the control plane's checks are tested
in test_decisions.py); every test runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio

import pytest
from approvals_support import Clock, escalating, new_app, pending_request, simple, waiting_at_level

import kernos
from kernos import errors
from kernos.records import ApprovalStatus, EntryKind, EntryStatus, RunStatus
from kernos.store import approval_id_for


def human(decision: str, by: str = "user:bob", **extra: object) -> dict[str, object]:
    return {
        "decision": decision,
        "by": by,
        "at": 1.0,
        "edited": False,
        "by_default": False,
        **extra,
    }


async def test_a_pending_approval_holds_no_worker_and_survives_a_restart(store_url: str) -> None:
    async with new_app(store_url) as first:
        handle = await first.start(simple, "deploy?")
        request = await pending_request(first, handle.run_id)
        assert request.approval_id == approval_id_for(handle.run_id, 0)
        assert (request.title, request.details, request.assignees) == (
            "deploy?",
            {"plan": "v2"},
            [["operator"]],
        )
        run = await first.get_run(handle.run_id)
        assert run.owner is None  # suspended: no worker holds it
    async with new_app(store_url) as second:  # a new process on the same store
        again = await pending_request(second, handle.run_id)
        assert again.approval_id == request.approval_id  # recovery re-found it
        decided = await second.store.decide_approval(
            request.approval_id,
            level=0,
            status=ApprovalStatus.APPROVED,
            decision=human("approved", comment="ship it", value={"plan": "v3"}, edited=True),
            decided_by="user:bob",
        )
        assert decided is not None and decided.status is ApprovalStatus.APPROVED
        result = await second.handle(handle.run_id).result(timeout=15)
    assert result == {
        "decision": "approved",
        "by": "user:bob",
        "value": {"plan": "v3"},
        "comment": "ship it",
        "by_default": False,
    }
    async with new_app(store_url, worker=False) as reader:
        journal = await reader.journal(handle.run_id)
        entry = journal[0]
        assert (entry.kind, entry.status, entry.name) == (
            EntryKind.APPROVAL,
            EntryStatus.OK,
            "deploy?",
        )
        assert entry.output["decision"] == "approved"
        assert entry.output["approval_id"] == request.approval_id
        kinds = [e.kind for e in await reader.events(handle.run_id)]
        assert kinds.count("approval.requested") == 1  # the restart did not ask again
        assert kinds.count("approval.decided") == 1
        report = await reader.replay(handle.run_id)
        assert report.identical


async def test_only_the_first_decision_counts(store_url: str) -> None:
    async with new_app(store_url) as app:
        handle = await app.start(simple)
        request = await pending_request(app, handle.run_id)
        outcomes = await asyncio.gather(
            *(
                app.store.decide_approval(
                    request.approval_id,
                    level=0,
                    status=ApprovalStatus.APPROVED if i % 2 else ApprovalStatus.REJECTED,
                    decision=human("approved" if i % 2 else "rejected", by=f"user:u{i}"),
                    decided_by=f"user:u{i}",
                )
                for i in range(10)
            )
        )
        winners = [o for o in outcomes if o is not None]
        assert len(winners) == 1
        result = await handle.result(timeout=15)
        assert result["by"] == winners[0].decided_by
        assert result["decision"] == winners[0].status.value
        await app.purge(handle.run_id)  # a purged run leaves no request behind
        assert await app.store.get_approval(request.approval_id) is None


async def test_a_message_on_the_topic_cannot_forge_a_decision(store_url: str) -> None:
    async with new_app(store_url) as app:
        handle = await app.start(simple)
        request = await pending_request(app, handle.run_id)
        await app.send(
            handle.run_id, {"decision": "approved"}, topic=f"kernos.approval.{request.approval_id}"
        )
        await asyncio.sleep(0.3)
        still = await pending_request(app, handle.run_id)  # woke, re-read the row, waits again
        assert still.status is ApprovalStatus.PENDING
        await app.cancel(handle.run_id)
        cancelled = await app.store.get_approval(request.approval_id)
        assert cancelled is not None and cancelled.status is ApprovalStatus.CANCELLED
        late = await app.store.decide_approval(
            request.approval_id,
            level=0,
            status=ApprovalStatus.APPROVED,
            decision=human("approved"),
            decided_by="user:bob",
        )
        assert late is None


@pytest.mark.parametrize("default", ["reject", "approve", "fail"])
async def test_timeouts_escalate_then_apply_the_default(
    store_url: str, clock: Clock, default: str
) -> None:
    async with new_app(store_url, clock=clock) as app:
        handle = await app.start(escalating, default)
        first = await waiting_at_level(app, handle.run_id, 0)
        assert first.current_assignees == ["alice"]
        assert first.deadline == pytest.approx(first.created_at + 3600)
        clock.advance(3601)
        app.engine.poke()
        second = await waiting_at_level(app, handle.run_id, 1)
        assert second.current_assignees == ["admin"]
        assert second.history[0]["level"] == 1
        # The first level's assignee decides too late: the CAS on level 0 fails.
        late = await app.store.decide_approval(
            first.approval_id,
            level=0,
            status=ApprovalStatus.APPROVED,
            decision=human("approved", by="user:alice"),
            decided_by="user:alice",
        )
        assert late is None
        entry = (await app.journal(handle.run_id))[0]
        assert entry.status is EntryStatus.PENDING
        assert entry.detail["level"] == 1 and entry.detail["escalations"][0]["level"] == 1
        clock.advance(86401)
        app.engine.poke()
        if default == "fail":
            with pytest.raises(errors.RunFailedError) as failed:
                await handle.result(timeout=15)
            assert failed.value.error_type == "kernos.errors.ApprovalExpiredError"
        else:
            result = await handle.result(timeout=15)
            expected = "approved" if default == "approve" else "rejected"
            assert result == {"decision": expected, "by_default": True, "level": 1}
        expired = await app.store.get_approval(first.approval_id)
        assert expired is not None and expired.status is ApprovalStatus.EXPIRED
        kinds = [e.kind for e in await app.events(handle.run_id)]
        assert kinds.count("approval.escalated") == 1
        assert kinds.count("approval.decided") == 1
        audit = await app.store.list_audit("default", object_id=first.approval_id)
        assert [(a.actor, a.action) for a in reversed(audit)] == [
            ("system", "approval.escalate"),
            ("system", "approval.expire"),
        ]
        run = await app.get_run(handle.run_id)
        assert run.status is (RunStatus.FAILED if default == "fail" else RunStatus.SUCCEEDED)


async def test_a_decision_racing_the_timeout_has_one_outcome(store_url: str, clock: Clock) -> None:
    async with new_app(store_url, clock=clock) as app:
        handle = await app.start(escalating, "reject")
        first = await waiting_at_level(app, handle.run_id, 0)
        clock.advance(3601)
        decide = app.store.decide_approval(
            first.approval_id,
            level=0,
            status=ApprovalStatus.APPROVED,
            decision=human("approved", by="user:alice"),
            decided_by="user:alice",
        )
        app.engine.poke()
        decided = await decide
        if decided is not None:  # the decision won: the run sees it, nothing escalated
            assert (await handle.result(timeout=15))["decision"] == "approved"
            kinds = [e.kind for e in await app.events(handle.run_id)]
            assert "approval.escalated" not in kinds
        else:  # the timeout won: level 1 waits for an admin
            second = await waiting_at_level(app, handle.run_id, 1)
            assert second.status is ApprovalStatus.PENDING
            await app.cancel(handle.run_id)


def test_invalid_arguments_are_refused_before_anything_is_written() -> None:
    with pytest.raises(errors.NotInWorkflowError):
        kernos.approval("outside")
    with pytest.raises(errors.UsageError):
        kernos.approval("x", default="maybe")  # type: ignore[arg-type]
    with pytest.raises(errors.UsageError):
        kernos.approval("x", escalation=[kernos.Escalate(to="admin", after=5)])
