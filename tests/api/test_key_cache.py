"""The API key cache: one store read per key per ``KEY_CACHE_TTL_S``, revocation and
rotation through this process felt by the very next request, and a change made by
another process (straight in the store) felt once the cached record has aged out."""

from __future__ import annotations

import time

import pytest
from api_support import Live
from routes_support import assert_problem

from kernos.control import Principal, parse_api_key
from kernos.control import _auth as auth
from kernos.records import Role


async def test_revoke_and_rotate_here_apply_to_the_next_request(
    live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(auth, "KEY_CACHE_TTL_S", 3600.0)  # only invalidation can help
    revocable = await live.key(Role.VIEWER, name="revocable")
    rotating = await live.key(Role.VIEWER, name="rotating")
    async with live.client(live.admin_key) as admin:
        for secret in (revocable, rotating):
            async with live.client(secret) as caller:
                assert (await caller.get("/auth/me")).status_code == 200  # now cached
        key_id = parse_api_key(revocable)[0]
        assert (await admin.post(f"/keys/{key_id}/revoke")).status_code == 200
        async with live.client(revocable) as caller:
            assert_problem(await caller.get("/auth/me"), 401, "unauthenticated")
        key_id = parse_api_key(rotating)[0]
        rotated = await admin.post(f"/keys/{key_id}/rotate", json={"overlap_s": 0})
        assert rotated.status_code == 201
        async with live.client(rotating) as caller:
            assert_problem(await caller.get("/auth/me"), 401, "unauthenticated")


async def test_a_change_by_another_process_applies_when_the_record_ages_out(
    live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = await live.key(Role.VIEWER, name="elsewhere")
    key_id = parse_api_key(secret)[0]
    monkeypatch.setattr(auth, "KEY_CACHE_TTL_S", 3600.0)
    async with live.client(secret) as caller:
        assert (await caller.get("/auth/me")).status_code == 200
        # Revoked by another process: straight in the store, no in-process signal.
        await live.app.store.update_api_key(key_id, revoked_at=time.time())
        assert (await caller.get("/auth/me")).status_code == 200  # the documented delay
        monkeypatch.setattr(auth, "KEY_CACHE_TTL_S", 0.0)  # the record has aged out
        assert_problem(await caller.get("/auth/me"), 401, "unauthenticated")
        monkeypatch.setattr(auth, "KEY_CACHE_TTL_S", 3600.0)
        assert_problem(await caller.get("/auth/me"), 401, "unauthenticated")


async def test_the_cache_saves_store_reads_and_still_checks_every_secret(live: Live) -> None:
    secret = await live.key(Role.VIEWER, name="counted")
    key_id, _ = parse_api_key(secret)
    reads: list[str] = []
    original = live.app.store.get_api_key

    async def counted(wanted: str) -> object:
        reads.append(wanted)
        return await original(wanted)

    live.app.store.get_api_key = counted  # type: ignore[method-assign]
    async with live.client(secret) as caller:
        for _ in range(5):
            assert (await caller.get("/auth/me")).status_code == 200
    assert reads.count(key_id) <= 2  # one read, another if a second passed meanwhile
    forged = secret[:-4] + ("aaaa" if not secret.endswith("aaaa") else "bbbb")
    async with live.client(forged) as caller:
        assert_problem(await caller.get("/auth/me"), 401, "unauthenticated")
    unknown = "kn_" + "0" * 12 + "_" + "x" * 43
    async with live.client(unknown) as caller:
        assert_problem(await caller.get("/auth/me"), 401)
        assert_problem(await caller.get("/auth/me"), 401)
    assert len(auth._authenticators) >= 1
    for authenticator in auth._authenticators:
        assert "0" * 12 not in authenticator._keys  # unknown ids are not remembered
    system = Principal.system("default")
    await live.service.admin.revoke_key(system, key_id)
    async with live.client(secret) as caller:
        assert_problem(await caller.get("/auth/me"), 401, "unauthenticated")
