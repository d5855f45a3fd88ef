"""The control plane's records in the SQL stores: tenants, users, memberships,
API keys, sessions, the audit record and bulk jobs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from kernos.records import (
    ApiKey,
    AuditRecord,
    BulkJob,
    Membership,
    Role,
    Session,
    Tenant,
    User,
)
from kernos.store._tx import Transacting, Tx
from kernos.types import JSON

__all__ = ["ControlPlane", "audit_params"]

_LAST_ID = 2**63 - 1  # above any audit id: the first page's cursor


def _json(value: JSON | None) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


class ControlPlane(Transacting):
    """The control-plane half of :class:`~kernos.store.Store`, for the SQL stores."""

    # -- tenants --------------------------------------------------------------

    async def create_tenant(self, tenant: Tenant) -> bool:
        """Create a tenant; False (changing nothing) if its id exists."""
        params = tenant.to_dict()
        return await self._call(lambda tx: tx.one("insert_tenant", params) is not None)

    async def get_tenant(self, tenant_id: str) -> Tenant | None:
        """Return a tenant, or None."""

        def go(tx: Tx) -> Tenant | None:
            row = tx.one("get_tenant", {"tenant_id": tenant_id})
            return None if row is None else Tenant.from_row(row)

        return await self._call(go, write=False)

    async def list_tenants(self) -> list[Tenant]:
        """Every tenant, by id."""
        return await self._call(
            lambda tx: [Tenant.from_row(row) for row in tx.all("list_tenants", {})], write=False
        )

    async def set_retention(self, tenant_id: str, days: int | None, action: str) -> Tenant | None:
        """Set a tenant's retention policy; return it, or None if it does not exist."""
        params = {"tenant_id": tenant_id, "days": days, "action": action}

        def go(tx: Tx) -> Tenant | None:
            row = tx.one("set_retention", params)
            return None if row is None else Tenant.from_row(row)

        return await self._call(go)

    # -- users and memberships ----------------------------------------------------

    async def create_user(self, user: User) -> bool:
        """Create a user; False (changing nothing) if the username is taken."""
        params = {
            "user_id": user.user_id,
            "username": user.username,
            "password_hash": user.password_hash,
            "created_at": user.created_at,
            "disabled": int(user.disabled),
        }
        return await self._call(lambda tx: tx.one("insert_user", params) is not None)

    async def get_user(self, user_id: str) -> User | None:
        """Return a user by id, or None."""
        return await self._call(lambda tx: _user(tx, "get_user", {"user_id": user_id}), write=False)

    async def find_user(self, username: str) -> User | None:
        """Return a user by username, or None."""
        return await self._call(
            lambda tx: _user(tx, "find_user", {"username": username}), write=False
        )

    async def count_users(self) -> int:
        """How many users exist."""
        return await self._call(lambda tx: int(tx.one("count_users", {})["n"]), write=False)

    async def update_user(
        self, user_id: str, *, password_hash: str | None = None, disabled: bool | None = None
    ) -> User | None:
        """Change a user's password hash and/or disabled flag; None if no such user."""
        params = {
            "user_id": user_id,
            "password_hash": password_hash,
            "disabled": None if disabled is None else int(disabled),
        }
        return await self._call(lambda tx: _user(tx, "update_user", params))

    async def set_membership(self, membership: Membership) -> None:
        """Give a user a role in a tenant (replacing any role they had there)."""
        params = membership.to_dict()
        await self._call(lambda tx: tx.execute("upsert_membership", params))

    async def remove_membership(self, user_id: str, tenant_id: str) -> bool:
        """Take a user out of a tenant; False if they were not a member."""
        params = {"user_id": user_id, "tenant_id": tenant_id}
        return await self._call(lambda tx: tx.execute("delete_membership", params).rowcount > 0)

    async def memberships_of(self, user_id: str) -> list[Membership]:
        """Every tenant a user belongs to, with the role, by tenant id."""
        return await self._call(
            lambda tx: [
                Membership.from_row(row) for row in tx.all("memberships_of", {"user_id": user_id})
            ],
            write=False,
        )

    async def members_of(self, tenant_id: str) -> list[tuple[User, Membership]]:
        """Every user of a tenant, by username."""

        def go(tx: Tx) -> list[tuple[User, Membership]]:
            return [
                (
                    User.from_row(row),
                    Membership(
                        user_id=row["user_id"],
                        tenant_id=row["tenant_id"],
                        role=Role(row["role"]),
                        created_at=row["member_since"],
                    ),
                )
                for row in tx.all("members_of", {"tenant_id": tenant_id})
            ]

        return await self._call(go, write=False)

    # -- API keys ------------------------------------------------------------------

    async def create_api_key(self, key: ApiKey) -> None:
        """Store a new API key (its secret's hash only)."""
        params = {**key.to_dict(), "secret_hash": key.secret_hash}
        await self._call(lambda tx: tx.execute("insert_api_key", params))

    async def get_api_key(self, key_id: str) -> ApiKey | None:
        """Return a key by id, or None."""
        return await self._call(
            lambda tx: _api_key(tx, "get_api_key", {"key_id": key_id}), write=False
        )

    async def list_api_keys(self, tenant_id: str) -> list[ApiKey]:
        """Every key of a tenant, newest first, revoked ones included."""
        return await self._call(
            lambda tx: [
                ApiKey.from_row(row) for row in tx.all("list_api_keys", {"tenant_id": tenant_id})
            ],
            write=False,
        )

    async def update_api_key(
        self,
        key_id: str,
        *,
        revoked_at: float | None = None,
        expires_at: float | None = None,
        last_used_at: float | None = None,
    ) -> ApiKey | None:
        """Set the given timestamps on a key; ``expires_at`` only ever moves earlier."""
        params = {
            "key_id": key_id,
            "revoked_at": revoked_at,
            "expires_at": expires_at,
            "last_used_at": last_used_at,
        }
        return await self._call(lambda tx: _api_key(tx, "update_api_key", params))

    # -- sessions ----------------------------------------------------------------------

    async def create_session(self, session: Session) -> None:
        """Store a new session."""
        params = {
            "token_hash": session.token_hash,
            "user_id": session.user_id,
            "tenant_id": session.tenant_id,
            "csrf_token": session.csrf_token,
            "created_at": session.created_at,
            "expires_at": session.expires_at,
            "ip": session.ip,
        }
        await self._call(lambda tx: tx.execute("insert_session", params))

    async def get_session(self, token_hash: str) -> Session | None:
        """Return a session by its token's hash, or None (expired ones included)."""

        def go(tx: Tx) -> Session | None:
            row = tx.one("get_session", {"token_hash": token_hash})
            return None if row is None else Session.from_row(row)

        return await self._call(go, write=False)

    async def delete_session(self, token_hash: str) -> None:
        """End a session (sign out); ending one that does not exist does nothing."""
        await self._call(lambda tx: tx.execute("delete_session", {"token_hash": token_hash}))

    async def delete_expired_sessions(self, now: float) -> int:
        """Delete sessions that expired before ``now``; return how many."""
        return await self._call(
            lambda tx: int(tx.execute("delete_expired_sessions", {"now": now}).rowcount)
        )

    # -- audit ---------------------------------------------------------------------

    async def append_audit(self, records: Sequence[AuditRecord]) -> None:
        """Append audit records in one transaction; the store assigns their ids."""
        params = [audit_params(record) for record in records]
        if params:
            await self._call(lambda tx: tx.many("insert_audit", params))

    async def list_audit(
        self,
        tenant_id: str,
        *,
        actor: str | None = None,
        action: str | None = None,
        object_id: str | None = None,
        since: float | None = None,
        until: float | None = None,
        before_id: int | None = None,
        limit: int = 100,
    ) -> list[AuditRecord]:
        """A tenant's audit records, newest first.

        ``action`` matches a prefix ("run." matches "run.start"), ``since`` is
        inclusive and ``until`` exclusive; ``before_id`` is the ``audit_id`` of
        the last record of the previous page.
        """
        params: dict[str, Any] = {
            "tenant_id": tenant_id,
            "actor": actor,
            "action": action,
            "object_id": object_id,
            "since": since,
            "until": until,
            "before_id": before_id if before_id is not None else _LAST_ID,
            "limit": limit,
        }

        def go(tx: Tx) -> list[AuditRecord]:
            tx.store._plan_for_values(tx)
            return [AuditRecord.from_row(row, tx.decode) for row in tx.all("list_audit", params)]

        return await self._call(go, write=False)

    # -- bulk jobs -----------------------------------------------------------------

    async def save_bulk_job(self, job: BulkJob) -> None:
        """Insert or replace a bulk job's record."""
        params = {**job.to_dict(), "filter": _json(job.filter), "results": _json(job.results)}
        await self._call(lambda tx: tx.execute("upsert_bulk_job", params))

    async def get_bulk_job(self, job_id: str) -> BulkJob | None:
        """Return a bulk job, or None."""

        def go(tx: Tx) -> BulkJob | None:
            row = tx.one("get_bulk_job", {"job_id": job_id})
            return None if row is None else BulkJob.from_row(row, tx.decode)

        return await self._call(go, write=False)

    async def list_bulk_jobs(self, tenant_id: str, *, limit: int = 50) -> list[BulkJob]:
        """A tenant's bulk jobs, newest first."""
        params = {"tenant_id": tenant_id, "limit": limit}
        return await self._call(
            lambda tx: [
                BulkJob.from_row(row, tx.decode) for row in tx.all("list_bulk_jobs", params)
            ],
            write=False,
        )

    async def interrupt_bulk_jobs(self, now: float) -> int:
        """Mark jobs still ``running`` as ``interrupted``; return how many."""
        return await self._call(
            lambda tx: int(tx.execute("interrupt_bulk_jobs", {"now": now}).rowcount)
        )


def audit_params(record: AuditRecord) -> dict[str, Any]:
    """The parameters of ``insert_audit`` for one record."""
    return {
        "tenant_id": record.tenant_id,
        "at": record.at,
        "actor": record.actor,
        "action": record.action,
        "object_type": record.object_type,
        "object_id": record.object_id,
        "ip": record.ip,
        "outcome": record.outcome,
        "detail": _json(record.detail),
    }


def _user(tx: Tx, query: str, params: dict[str, Any]) -> User | None:
    row = tx.one(query, params)
    return None if row is None else User.from_row(row)


def _api_key(tx: Tx, query: str, params: dict[str, Any]) -> ApiKey | None:
    row = tx.one(query, params)
    return None if row is None else ApiKey.from_row(row)
