"""Policy versions in the store: numbered per tenant, immutable, newest first.
Specified once and run on every backend."""

from __future__ import annotations

import asyncio
import hashlib
from typing import TYPE_CHECKING

from kernos.store import Store

if TYPE_CHECKING:
    from tests.conftest import MakeStore


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


async def test_versions_count_up_per_tenant(make_store: MakeStore) -> None:
    store: Store = await make_store()
    assert await store.current_policy("acme") is None
    assert await store.list_policies("acme") == []
    first = await store.put_policy("acme", "version: 1\n", _sha("version: 1\n"), "user:alice")
    second = await store.put_policy("acme", "version: 1\nrules: []\n", "b" * 64, "system")
    other = await store.put_policy("globex", "version: 1\n", "c" * 64, "key:k1")
    assert (first.version, second.version, other.version) == (1, 2, 1)
    assert first.tenant_id == "acme" and first.created_by == "user:alice"
    assert first.sha256 == _sha("version: 1\n") and first.created_at > 0
    assert await store.current_policy("acme") == second
    assert await store.get_policy("acme", 1) == first
    assert await store.get_policy("acme", 3) is None
    assert await store.get_policy("globex", 2) is None
    assert [p.version for p in await store.list_policies("acme")] == [2, 1]
    assert [p.version for p in await store.list_policies("acme", limit=1)] == [2]
    assert await store.list_policies("globex") == [other]


async def test_concurrent_applies_get_distinct_versions(make_store: MakeStore) -> None:
    stores = [await make_store() for _ in range(4)]
    put = [
        s.put_policy("acme", f"version: 1 # {i}\n", "a" * 64, "system")
        for i, s in enumerate(stores)
    ]
    versions = await asyncio.gather(*put)
    assert sorted(v.version for v in versions) == [1, 2, 3, 4]
    listed = await stores[0].list_policies("acme")
    assert {v.document for v in listed} == {f"version: 1 # {i}\n" for i in range(4)}
