"""The control plane's records in the store: tenants, users, memberships, API keys,
sessions, audit and bulk jobs. Specified once and run on every backend."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from store_support import T0

from kernos.records import (
    DEFAULT_TENANT,
    ApiKey,
    AuditRecord,
    BulkJob,
    Membership,
    Role,
    Session,
    Tenant,
    User,
)
from kernos.store import Store

if TYPE_CHECKING:
    from tests.conftest import MakeStore


@pytest.fixture
async def store(make_store: MakeStore) -> Store:
    return await make_store()


def user(user_id: str, username: str, **fields: Any) -> User:
    return User(
        user_id=user_id, username=username, password_hash="$argon2id$x", created_at=T0, **fields
    )


def api_key(key_id: str, **fields: Any) -> ApiKey:
    values: dict[str, Any] = {
        "tenant_id": "acme",
        "name": key_id,
        "role": Role.OPERATOR,
        "secret_hash": f"hash-{key_id}",
        "created_by": "user:ann",
        "created_at": T0,
    }
    return ApiKey(key_id=key_id, **{**values, **fields})


def audit(action: str, **fields: Any) -> AuditRecord:
    values: dict[str, Any] = {
        "audit_id": 0,
        "tenant_id": "acme",
        "at": T0,
        "actor": "user:ann",
        "object_type": "run",
        "object_id": "r1",
    }
    return AuditRecord(action=action, **{**values, **fields})


# -- tenants -----------------------------------------------------------------------------


async def test_tenants(store: Store) -> None:
    acme = Tenant(tenant_id="acme", name="Acme", created_at=T0)
    assert await store.create_tenant(acme) is True
    assert await store.create_tenant(Tenant(tenant_id="acme", name="Other", created_at=0)) is False

    assert await store.get_tenant("acme") == acme
    assert await store.get_tenant("nobody") is None
    assert [t.tenant_id for t in await store.list_tenants()] == ["acme", DEFAULT_TENANT]

    kept = await store.set_retention("acme", 30, "archive")
    assert kept == Tenant(
        tenant_id="acme", name="Acme", created_at=T0, retention_days=30, retention_action="archive"
    )
    assert await store.get_tenant("acme") == kept
    cleared = await store.set_retention("acme", None, "delete")
    assert cleared is not None and cleared.retention_days is None
    assert await store.set_retention("nobody", 1, "delete") is None


# -- users and memberships -----------------------------------------------------------------


async def test_users(store: Store) -> None:
    assert await store.count_users() == 0
    ann = user("u1", "ann")
    assert await store.create_user(ann) is True
    assert await store.create_user(user("u2", "ann")) is False  # the username is taken
    assert await store.count_users() == 1

    assert await store.get_user("u1") == ann
    assert await store.find_user("ann") == ann
    assert await store.get_user("u2") is None
    assert await store.find_user("bob") is None

    changed = await store.update_user("u1", password_hash="$argon2id$new")
    assert changed == User(
        user_id="u1", username="ann", password_hash="$argon2id$new", created_at=T0
    )
    disabled = await store.update_user("u1", disabled=True)
    assert disabled is not None
    assert (disabled.password_hash, disabled.disabled) == ("$argon2id$new", True)
    assert await store.update_user("u1") == disabled  # nothing asked, nothing changed
    enabled = await store.update_user("u1", disabled=False)
    assert enabled is not None and enabled.disabled is False
    assert await store.update_user("nobody", disabled=True) is None


async def test_memberships(store: Store) -> None:
    for user_id, name in (("u1", "zoe"), ("u2", "ann"), ("u3", "bob")):
        await store.create_user(user(user_id, name))
    await store.set_membership(
        Membership(user_id="u1", tenant_id="acme", role=Role.VIEWER, created_at=T0)
    )
    await store.set_membership(
        Membership(user_id="u1", tenant_id=DEFAULT_TENANT, role=Role.ADMIN, created_at=T0)
    )
    await store.set_membership(
        Membership(user_id="u2", tenant_id="acme", role=Role.OPERATOR, created_at=T0 + 1)
    )
    # A second role in the same tenant replaces the first.
    await store.set_membership(
        Membership(user_id="u1", tenant_id="acme", role=Role.ADMIN, created_at=T0 + 5)
    )

    assert [(m.tenant_id, m.role) for m in await store.memberships_of("u1")] == [
        ("acme", Role.ADMIN),
        (DEFAULT_TENANT, Role.ADMIN),
    ]
    members = await store.members_of("acme")
    assert [(u.username, m.role, m.user_id) for u, m in members] == [
        ("ann", Role.OPERATOR, "u2"),
        ("zoe", Role.ADMIN, "u1"),
    ]
    assert members[0] == (
        user("u2", "ann"),
        Membership(user_id="u2", tenant_id="acme", role=Role.OPERATOR, created_at=T0 + 1),
    )
    assert await store.memberships_of("u3") == []

    assert await store.remove_membership("u1", "acme") is True
    assert await store.remove_membership("u1", "acme") is False
    assert [u.username for u, _ in await store.members_of("acme")] == ["ann"]


# -- API keys -------------------------------------------------------------------------------


async def test_api_keys(store: Store) -> None:
    first = api_key("k1")
    await store.create_api_key(first)
    await store.create_api_key(api_key("k2", created_at=T0 + 1, rotated_from="k1"))
    await store.create_api_key(api_key("k3", tenant_id="beta", role=Role.VIEWER))

    assert await store.get_api_key("k1") == first
    assert await store.get_api_key("nope") is None
    assert [k.key_id for k in await store.list_api_keys("acme")] == ["k2", "k1"]
    assert [k.role for k in await store.list_api_keys("beta")] == [Role.VIEWER]

    used = await store.update_api_key("k1", last_used_at=T0 + 5)
    assert used is not None
    assert (used.last_used_at, used.expires_at, used.revoked_at) == (T0 + 5, None, None)
    revoked = await store.update_api_key("k2", revoked_at=T0 + 6)
    assert revoked is not None and revoked.revoked_at == T0 + 6
    assert revoked.rotated_from == "k1"
    assert await store.update_api_key("nope", revoked_at=T0) is None


async def test_api_key_expiry_only_moves_earlier(store: Store) -> None:
    await store.create_api_key(api_key("k1"))

    async def expires(at: float | None) -> float | None:
        key = await store.update_api_key("k1", expires_at=at)
        assert key is not None
        return key.expires_at

    assert await expires(T0 + 100) == T0 + 100  # none yet: set
    assert await expires(T0 + 500) == T0 + 100  # later: ignored
    assert await expires(T0 + 50) == T0 + 50  # earlier: moved
    assert await expires(None) == T0 + 50  # not asked: unchanged
    key = await store.get_api_key("k1")
    assert key is not None
    assert key.usable(T0 + 49) and not key.usable(T0 + 50)


# -- sessions ----------------------------------------------------------------------------------


async def test_sessions(store: Store) -> None:
    def session(token_hash: str, expires_at: float) -> Session:
        return Session(
            token_hash=token_hash,
            user_id="u1",
            tenant_id="acme",
            csrf_token=f"csrf-{token_hash}",
            created_at=T0,
            expires_at=expires_at,
            ip="10.0.0.1",
        )

    for token_hash, expires_at in (("s1", T0 + 10), ("s2", T0 + 20), ("s3", T0 + 30)):
        await store.create_session(session(token_hash, expires_at))

    assert await store.get_session("s1") == session("s1", T0 + 10)
    assert await store.get_session("nope") is None
    await store.delete_session("s3")
    await store.delete_session("s3")  # signing out twice is harmless
    assert await store.get_session("s3") is None

    assert await store.delete_expired_sessions(T0 + 20) == 1  # s2 expires exactly then: kept
    assert await store.get_session("s1") is None
    assert await store.get_session("s2") is not None
    assert await store.delete_expired_sessions(T0 + 20) == 0


# -- audit -----------------------------------------------------------------------------------


async def test_audit_appends_and_lists_newest_first(store: Store) -> None:
    await store.append_audit([])
    await store.append_audit(
        [
            audit("run.start", at=T0, detail={"workflow": "wf", "args": [1, 2]}),
            audit("run.cancel", at=T0 + 1, outcome="denied", ip="10.0.0.2"),
            audit("key.rotate", at=T0 + 2, actor="key:k1", object_type="key", object_id="k1"),
            audit("run.start", at=T0 + 3, tenant_id="beta"),
            audit("runs.bulk", at=T0 + 4, object_id=None),
        ]
    )

    listed = await store.list_audit("acme")
    assert [r.action for r in listed] == ["runs.bulk", "key.rotate", "run.cancel", "run.start"]
    ids = [r.audit_id for r in listed]
    assert ids == sorted(ids, reverse=True) and all(i > 0 for i in ids)
    oldest = listed[-1]
    assert oldest == audit(
        "run.start", audit_id=oldest.audit_id, at=T0, detail={"workflow": "wf", "args": [1, 2]}
    )
    assert (listed[2].outcome, listed[2].ip) == ("denied", "10.0.0.2")
    assert listed[0].object_id is None
    assert [r.tenant_id for r in await store.list_audit("beta")] == ["beta"]


async def test_audit_filters_and_pages(store: Store) -> None:
    await store.append_audit(
        [
            audit("run.start", at=T0),
            audit("run.cancel", at=T0 + 1, object_id="r2"),
            audit("key.rotate", at=T0 + 2, actor="key:k1", object_type="key", object_id="k1"),
            audit("runs.bulk", at=T0 + 3),
            audit("run.start", at=T0 + 4, actor="user:bob"),
        ]
    )

    async def actions(**filters: Any) -> list[str]:
        return [r.action for r in await store.list_audit("acme", **filters)]

    # "run." is a prefix of run.start and run.cancel, not of runs.bulk.
    assert await actions(action="run.") == ["run.start", "run.cancel", "run.start"]
    assert await actions(action="run") == ["run.start", "runs.bulk", "run.cancel", "run.start"]
    assert await actions(action="key.rotate") == ["key.rotate"]
    assert await actions(action="Key.") == []
    assert await actions(actor="user:bob") == ["run.start"]
    assert await actions(object_id="r2") == ["run.cancel"]
    assert await actions(since=T0 + 1, until=T0 + 3) == ["key.rotate", "run.cancel"]

    first = await store.list_audit("acme", limit=2)
    second = await store.list_audit("acme", limit=2, before_id=first[-1].audit_id)
    third = await store.list_audit("acme", limit=2, before_id=second[-1].audit_id)
    assert [r.at for r in first + second + third] == [T0 + 4, T0 + 3, T0 + 2, T0 + 1, T0]


# -- bulk jobs ---------------------------------------------------------------------------------


async def test_bulk_jobs(store: Store) -> None:
    job = BulkJob(
        job_id="j1",
        tenant_id="acme",
        action="cancel",
        filter={"status": "running", "workflow": "wf"},
        state="running",
        total=3,
        done=0,
        failed=0,
        created_by="user:ann",
        created_at=T0,
    )
    await store.save_bulk_job(job)
    assert await store.get_bulk_job("j1") == job
    assert await store.get_bulk_job("nope") is None

    progressed = BulkJob(
        **{
            **job.to_dict(),
            "state": "done",
            "done": 2,
            "failed": 1,
            "finished_at": T0 + 9,
            "results": [{"run_id": "r1", "ok": True}],
        }
    )
    await store.save_bulk_job(progressed)
    assert await store.get_bulk_job("j1") == progressed

    for i, state in ((2, "running"), (3, "running"), (4, "done")):
        await store.save_bulk_job(
            BulkJob(**{**job.to_dict(), "job_id": f"j{i}", "created_at": T0 + i, "state": state})
        )
    await store.save_bulk_job(BulkJob(**{**job.to_dict(), "job_id": "b1", "tenant_id": "beta"}))
    assert [j.job_id for j in await store.list_bulk_jobs("acme")] == ["j4", "j3", "j2", "j1"]
    assert [j.job_id for j in await store.list_bulk_jobs("acme", limit=2)] == ["j4", "j3"]

    assert await store.interrupt_bulk_jobs(T0 + 20) == 3  # j2, j3 and beta's b1
    interrupted = await store.get_bulk_job("j2")
    assert interrupted is not None
    assert (interrupted.state, interrupted.finished_at) == ("interrupted", T0 + 20)
    unchanged = await store.get_bulk_job("j4")
    assert unchanged is not None and unchanged.state == "done"
    assert await store.interrupt_bulk_jobs(T0 + 30) == 0
