"""Tenants in the runtime: a run's children, forks and the runs it enqueues belong
to its tenant; listings, queues and purge through the app. Every test runs on
SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from runtime_support import new_app, run_status

import kernos
from kernos import errors
from kernos.records import DEFAULT_TENANT, RunStatus
from kernos.runtime._queues import queues as declared_queues
from kernos.store import RunFilter

# Queue declarations are global and every app opened in this process stores
# them: keep this module's out of the other tests' stores.
LATER = kernos.Queue("rt_tenants.later")
declared_queues.pop(LATER.name)


@pytest.fixture
async def app(store_url: str) -> AsyncIterator[kernos.Kernos]:
    async with new_app(store_url) as app:
        yield app


@kernos.step
async def double(x: int) -> int:
    return 2 * x


@kernos.workflow(name="rt_tenants.leaf")
async def leaf(x: int) -> int:
    return await double(x)


@kernos.workflow(name="rt_tenants.parent")
async def parent(x: int) -> int:
    await LATER.enqueue(leaf, x + 1)  # run id: <this run>.0
    await LATER.enqueue(leaf, x + 2, tenant="elsewhere", run_id=f"{x}-other")
    return await leaf.run_child(x)


async def test_children_enqueued_runs_and_forks_inherit_the_tenant(app: kernos.Kernos) -> None:
    handle = await app.start(parent, 5, run_id="p", tenant="acme")
    assert await handle.result(timeout=10) == 10

    assert (await app.get_run("p")).tenant == "acme"
    child = await app.get_run("p.2")
    assert (child.parent_id, child.tenant) == ("p", "acme")
    queued = await run_status(app, "p.0", RunStatus.SUCCEEDED)
    assert (queued.queue, queued.tenant) == (LATER.name, "acme")
    assert (await app.get_run("5-other")).tenant == "elsewhere"  # named explicitly

    fork = await app.fork("p", 2, new_run_id="p-fork")
    assert await fork.result(timeout=10) == 10
    assert (await app.get_run("p-fork")).tenant == "acme"
    assert (await app.get_run("p-fork.2")).tenant == "acme"  # the fork's own child


async def test_start_and_enqueue_default_to_the_default_tenant(app: kernos.Kernos) -> None:
    started = await app.start(leaf, 1, run_id="plain")
    queued = await app.enqueue(LATER.name, leaf, (2,), run_id="queued")
    beta = await app.enqueue(LATER.name, leaf, (3,), run_id="beta", tenant="beta")
    via_queue = await LATER.enqueue(leaf, 4, run_id="via-queue", tenant="beta")
    for handle in (started, queued, beta, via_queue):
        await handle.result(timeout=10)

    assert (await app.get_run("plain")).tenant == DEFAULT_TENANT
    assert (await app.get_run("queued")).tenant == DEFAULT_TENANT
    assert (await app.get_run("beta")).tenant == "beta"
    assert (await app.get_run("via-queue")).tenant == "beta"


async def test_list_count_queues_and_purge_through_the_app(app: kernos.Kernos) -> None:
    for run_id, tenant in (("a1", "acme"), ("a2", "acme"), ("b1", "beta")):
        await (await app.start(leaf, 1, run_id=run_id, tenant=tenant)).result(timeout=10)

    assert [r.run_id for r in await app.list_runs(tenant="acme", text="A")] == ["a2", "a1"]
    assert [r.run_id for r in await app.list_runs(tenant="beta", status="succeeded")] == ["b1"]
    assert await app.list_runs(queue="nowhere") == []
    assert await app.count_matching(RunFilter(tenant="acme")) == 2
    assert await app.count_matching(RunFilter(workflow="rt_tenants.leaf")) == 3
    assert all(q.pending == q.running == 0 for q in await app.queues(tenant="acme"))

    counts = await app.purge("a1")
    assert counts["runs"] == 1 and counts["journal"] == 1 and counts["events"] >= 2
    with pytest.raises(errors.RunNotFoundError):
        await app.get_run("a1")
    assert [r.run_id for r in await app.list_runs(tenant="acme")] == ["a2"]
