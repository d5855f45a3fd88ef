"""First start: the installation's first admin user and API key, shown once."""

from __future__ import annotations

import secrets
import time
import uuid
from dataclasses import dataclass

from kernos.control._secrets import hash_password, hash_secret, new_api_key, parse_api_key
from kernos.records import DEFAULT_TENANT, ApiKey, AuditRecord, Membership, Role, User
from kernos.store import Store

__all__ = ["Bootstrap", "ensure_first_admin"]


@dataclass(frozen=True, kw_only=True, slots=True)
class Bootstrap:
    """The secrets made on first start; print them once, they are stored only as hashes."""

    username: str
    password: str
    api_key: str


async def ensure_first_admin(store: Store, *, username: str = "admin") -> Bootstrap | None:
    """Create the first admin (default tenant) and an admin API key if no user exists.

    Returns the new secrets, or None when users already exist (or another
    process created the first admin at the same moment).
    """
    if await store.count_users() > 0:
        return None
    now = time.time()
    password = secrets.token_urlsafe(18)
    user = User(
        user_id=uuid.uuid4().hex,
        username=username,
        password_hash=hash_password(password),
        created_at=now,
    )
    if not await store.create_user(user):
        return None
    await store.set_membership(
        Membership(user_id=user.user_id, tenant_id=DEFAULT_TENANT, role=Role.ADMIN, created_at=now)
    )
    key_id, full_key = new_api_key()
    await store.create_api_key(
        ApiKey(
            key_id=key_id,
            tenant_id=DEFAULT_TENANT,
            name="first admin key",
            role=Role.ADMIN,
            secret_hash=hash_secret(parse_api_key(full_key)[1]),
            created_by="system",
            created_at=now,
        )
    )
    await store.append_audit(
        [
            AuditRecord(
                audit_id=0,
                tenant_id=DEFAULT_TENANT,
                at=now,
                actor="system",
                action="install.bootstrap",
                object_type="user",
                object_id=username,
                detail={"key_id": key_id},
            )
        ]
    )
    return Bootstrap(username=username, password=password, api_key=full_key)
