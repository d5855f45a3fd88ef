"""Policy documents in the SQL stores: each tenant's versions, numbered from 1."""

from __future__ import annotations

from kernos import errors
from kernos.records import PolicyVersion
from kernos.store._tx import Transacting, Tx

__all__ = ["PolicyVersions"]

_TRIES = 5  # concurrent applies: a lost race for a version number tries the next one


class PolicyVersions(Transacting):
    """The policy half of :class:`~kernos.store.Store`, for the SQL stores."""

    async def put_policy(
        self, tenant_id: str, document: str, sha256: str, created_by: str
    ) -> PolicyVersion:
        """Store a new version of a tenant's policy; return it with its number.

        Raises:
            StoreError: concurrent applies kept taking the next number first.
        """
        params = {
            "tenant_id": tenant_id,
            "document": document,
            "sha256": sha256,
            "created_by": created_by,
        }

        def go(tx: Tx) -> PolicyVersion:
            # The next number is read and taken in one statement; on PostgreSQL a
            # concurrent apply may take it first, and the insert then does nothing.
            for _ in range(_TRIES):
                row = tx.one("insert_policy", {**params, "now": tx.now})
                if row is not None:
                    return PolicyVersion.from_row(row)
            raise errors.StoreError(
                f"could not number a new policy version of tenant {tenant_id!r}: "
                "concurrent applies kept winning; apply it again",
                tenant_id=tenant_id,
            )

        return await self._call(go)

    async def current_policy(self, tenant_id: str) -> PolicyVersion | None:
        """The tenant's newest policy version, or None if it has none."""

        def go(tx: Tx) -> PolicyVersion | None:
            row = tx.one("current_policy", {"tenant_id": tenant_id})
            return None if row is None else PolicyVersion.from_row(row)

        return await self._call(go, write=False)

    async def get_policy(self, tenant_id: str, version: int) -> PolicyVersion | None:
        """One version of the tenant's policy, or None."""

        def go(tx: Tx) -> PolicyVersion | None:
            row = tx.one("get_policy", {"tenant_id": tenant_id, "version": version})
            return None if row is None else PolicyVersion.from_row(row)

        return await self._call(go, write=False)

    async def list_policies(self, tenant_id: str, *, limit: int = 100) -> list[PolicyVersion]:
        """The tenant's policy versions, newest first."""
        params = {"tenant_id": tenant_id, "limit": limit}
        return await self._call(
            lambda tx: [PolicyVersion.from_row(row) for row in tx.all("list_policies", params)],
            write=False,
        )
