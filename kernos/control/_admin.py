"""Tenant administration: users, API keys, tenants, retention settings and the audit log."""

from __future__ import annotations

import re
import time
import uuid

from kernos.control._audit import Auditor
from kernos.control._auth import forget_api_key
from kernos.control._principal import Principal
from kernos.control._secrets import hash_password, hash_secret, new_api_key, parse_api_key
from kernos.errors import ConflictError, NotFoundError, PermissionDeniedError, UsageError
from kernos.records import (
    DEFAULT_TENANT,
    ApiKey,
    AuditRecord,
    Membership,
    Role,
    Tenant,
    User,
)
from kernos.store import Store

__all__ = ["AdminService"]

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
MIN_PASSWORD = 12


def check_name(value: str, what: str) -> str:
    """``value`` if it is a valid user or tenant name, else a UsageError that says the rule."""
    if not _NAME.match(value):
        raise UsageError(
            f"invalid {what} {value!r}: use 1-63 lowercase letters, digits, '.', '_' or '-', "
            "starting with a letter or digit",
            field=what,
        )
    return value


def check_password(password: str) -> str:
    """``password`` if it is long enough, else a UsageError."""
    if len(password) < MIN_PASSWORD:
        raise UsageError(
            f"password too short: use at least {MIN_PASSWORD} characters", field="password"
        )
    return password


class AdminService:
    """Users, keys and tenant settings, for a tenant's admins; installation-wide
    operations (creating tenants, adding members across tenants) for the admins of
    the default tenant."""

    def __init__(self, store: Store, auditor: Auditor) -> None:
        self.store = store
        self.audit = auditor

    # -- users -----------------------------------------------------------------

    async def members(self, principal: Principal) -> list[tuple[User, Membership]]:
        """The tenant's users with their roles."""
        principal.require(Role.ADMIN, "listing users")
        return await self.store.members_of(principal.tenant_id)

    async def create_user(
        self, principal: Principal, username: str, password: str, role: Role
    ) -> tuple[User, Membership]:
        """Create a user who belongs to the caller's tenant with ``role``.

        Raises:
            ConflictError: the username is taken.
            UsageError: invalid username or a password that is too short.
        """
        async with self.audit.audited(principal, "user.create", "user", username) as note:
            principal.require(Role.ADMIN, "creating users")
            note.detail["role"] = role.value
            check_name(username, "username")
            check_password(password)
            now = time.time()
            user = User(
                user_id=uuid.uuid4().hex,
                username=username,
                password_hash=hash_password(password),
                created_at=now,
            )
            if not await self.store.create_user(user):
                raise ConflictError(f"username {username!r} is taken", username=username)
            membership = Membership(
                user_id=user.user_id, tenant_id=principal.tenant_id, role=role, created_at=now
            )
            await self.store.set_membership(membership)
            return user, membership

    async def _member(self, principal: Principal, username: str) -> tuple[User, Membership]:
        user = await self.store.find_user(username)
        if user is not None:
            for membership in await self.store.memberships_of(user.user_id):
                if membership.tenant_id == principal.tenant_id:
                    return user, membership
        raise NotFoundError(
            f"no user {username!r} in tenant {principal.tenant_id!r}",
            object_type="user",
            object_id=username,
        )

    async def update_user(
        self,
        principal: Principal,
        username: str,
        *,
        role: Role | None = None,
        disabled: bool | None = None,
        password: str | None = None,
    ) -> tuple[User, Membership]:
        """Change a member's role, disable or enable them, or set a new password."""
        async with self.audit.audited(principal, "user.update", "user", username) as note:
            principal.require(Role.ADMIN, "changing users")
            user, membership = await self._member(principal, username)
            if role is not None and role is not membership.role:
                note.detail["role"] = role.value
                await self._keep_an_admin(principal, user, demoting=role is not Role.ADMIN)
                membership = Membership(
                    user_id=user.user_id,
                    tenant_id=principal.tenant_id,
                    role=role,
                    created_at=membership.created_at,
                )
                await self.store.set_membership(membership)
            if disabled is not None or password is not None:
                if disabled:
                    await self._keep_an_admin(principal, user, demoting=True)
                note.detail.update(disabled=disabled, password_changed=password is not None)
                changed = await self.store.update_user(
                    user.user_id,
                    disabled=disabled,
                    password_hash=hash_password(check_password(password)) if password else None,
                )
                user = changed or user
            return user, membership

    async def remove_user(self, principal: Principal, username: str) -> None:
        """Take a user out of the caller's tenant (the account itself stays)."""
        async with self.audit.audited(principal, "user.remove", "user", username):
            principal.require(Role.ADMIN, "removing users")
            user, _ = await self._member(principal, username)
            await self._keep_an_admin(principal, user, demoting=True)
            await self.store.remove_membership(user.user_id, principal.tenant_id)

    async def _keep_an_admin(self, principal: Principal, user: User, *, demoting: bool) -> None:
        if not demoting:
            return
        admins = [
            u
            for u, m in await self.store.members_of(principal.tenant_id)
            if m.role is Role.ADMIN and not u.disabled
        ]
        if [u.user_id for u in admins] == [user.user_id]:
            raise ConflictError(
                f"{user.username!r} is the last admin of tenant {principal.tenant_id!r}; "
                "make someone else admin first"
            )

    async def change_own_password(self, principal: Principal, current: str, new: str) -> None:
        """Let a signed-in user change their own password."""
        from kernos.control._secrets import verify_password

        async with self.audit.audited(principal, "user.password", "user", principal.actor):
            if principal.user_id is None:
                raise PermissionDeniedError("only a signed-in user can change their password")
            user = await self.store.get_user(principal.user_id)
            if user is None or not verify_password(user.password_hash, current):
                raise PermissionDeniedError("the current password is wrong")
            await self.store.update_user(
                user.user_id, password_hash=hash_password(check_password(new))
            )

    # -- API keys ---------------------------------------------------------------

    async def keys(self, principal: Principal) -> list[ApiKey]:
        """The tenant's API keys (never their secrets), newest first."""
        principal.require(Role.ADMIN, "listing API keys")
        return await self.store.list_api_keys(principal.tenant_id)

    async def create_key(
        self,
        principal: Principal,
        name: str,
        role: Role,
        *,
        expires_in: float | None = None,
        rotated_from: str | None = None,
    ) -> tuple[ApiKey, str]:
        """Make an API key; return it and its full secret text (shown once, never stored)."""
        async with self.audit.audited(principal, "key.create", "api_key", None) as note:
            principal.require(Role.ADMIN, "creating API keys")
            if not name.strip() or len(name) > 100:
                raise UsageError("a key's name must be 1 to 100 characters", field="name")
            if expires_in is not None and expires_in <= 0:
                raise UsageError(
                    "expires_in must be a positive number of seconds", field="expires_in"
                )
            key_id, full_key = new_api_key()
            note.object_id = key_id
            note.detail.update(name=name, role=role.value, rotated_from=rotated_from)
            now = time.time()
            key = ApiKey(
                key_id=key_id,
                tenant_id=principal.tenant_id,
                name=name,
                role=role,
                secret_hash=hash_secret(parse_api_key(full_key)[1]),
                created_by=principal.actor,
                created_at=now,
                expires_at=now + expires_in if expires_in is not None else None,
                rotated_from=rotated_from,
            )
            await self.store.create_api_key(key)
            return key, full_key

    async def _key(self, principal: Principal, key_id: str) -> ApiKey:
        key = await self.store.get_api_key(key_id)
        if key is None or key.tenant_id != principal.tenant_id:
            raise NotFoundError(
                f"no API key {key_id!r} in tenant {principal.tenant_id!r}",
                object_type="api_key",
                object_id=key_id,
            )
        return key

    async def revoke_key(self, principal: Principal, key_id: str) -> ApiKey:
        """Revoke a key at once; requests with it fail from now on."""
        async with self.audit.audited(principal, "key.revoke", "api_key", key_id):
            principal.require(Role.ADMIN, "revoking API keys")
            key = await self._key(principal, key_id)
            if key.revoked_at is not None:
                return key
            revoked = await self.store.update_api_key(key_id, revoked_at=time.time())
            forget_api_key(key_id)
            assert revoked is not None
            return revoked

    async def rotate_key(
        self, principal: Principal, key_id: str, *, overlap: float = 24 * 3600.0
    ) -> tuple[ApiKey, str]:
        """Replace a key: a new one now, the old one keeps working for ``overlap`` seconds."""
        async with self.audit.audited(principal, "key.rotate", "api_key", key_id) as note:
            principal.require(Role.ADMIN, "rotating API keys")
            if overlap < 0:
                raise UsageError("overlap must be 0 or more seconds", field="overlap")
            old = await self._key(principal, key_id)
            if not old.usable(time.time()):
                raise ConflictError(f"API key {key_id} is revoked or expired; create a new one")
            new, secret = await self.create_key(principal, old.name, old.role, rotated_from=key_id)
            note.detail.update(replacement=new.key_id, overlap_s=overlap)
            await self.store.update_api_key(key_id, expires_at=time.time() + overlap)
            forget_api_key(key_id)
        return new, secret

    # -- tenants -----------------------------------------------------------------

    @staticmethod
    def _installation_admin(principal: Principal, action: str) -> None:
        if principal.tenant_id != DEFAULT_TENANT or not principal.role.includes(Role.ADMIN):
            raise PermissionDeniedError(
                f"{action} needs the admin role in the {DEFAULT_TENANT!r} tenant",
                action=action,
            )

    async def tenants(self, principal: Principal) -> list[Tenant]:
        """Every tenant for installation admins; otherwise just the caller's."""
        principal.require(Role.VIEWER, "listing tenants")
        if principal.tenant_id == DEFAULT_TENANT and principal.role.includes(Role.ADMIN):
            return await self.store.list_tenants()
        return [await self.tenant(principal)]

    async def tenant(self, principal: Principal) -> Tenant:
        """The caller's tenant."""
        principal.require(Role.VIEWER, "reading the tenant")
        tenant = await self.store.get_tenant(principal.tenant_id)
        if tenant is None:
            raise NotFoundError(
                f"tenant {principal.tenant_id!r} no longer exists", object_type="tenant"
            )
        return tenant

    async def create_tenant(self, principal: Principal, tenant_id: str, name: str) -> Tenant:
        """Create a tenant (installation admins only)."""
        async with self.audit.audited(principal, "tenant.create", "tenant", tenant_id):
            self._installation_admin(principal, "creating tenants")
            check_name(tenant_id, "tenant id")
            tenant = Tenant(tenant_id=tenant_id, name=name or tenant_id, created_at=time.time())
            if not await self.store.create_tenant(tenant):
                raise ConflictError(f"tenant {tenant_id!r} exists", tenant_id=tenant_id)
            return tenant

    async def add_member(
        self, principal: Principal, tenant_id: str, username: str, role: Role
    ) -> Membership:
        """Give an existing user a role in any tenant (installation admins only)."""
        async with self.audit.audited(principal, "tenant.member", "user", username) as note:
            self._installation_admin(principal, "adding members to tenants")
            note.detail.update(tenant=tenant_id, role=role.value)
            if await self.store.get_tenant(tenant_id) is None:
                raise NotFoundError(f"no tenant {tenant_id!r}", object_type="tenant")
            user = await self.store.find_user(username)
            if user is None:
                raise NotFoundError(f"no user {username!r}", object_type="user")
            membership = Membership(
                user_id=user.user_id, tenant_id=tenant_id, role=role, created_at=time.time()
            )
            await self.store.set_membership(membership)
            return membership

    async def set_retention(self, principal: Principal, days: int | None, action: str) -> Tenant:
        """Set the caller's tenant's retention: finished runs older than ``days`` are
        deleted (``action="delete"``) or archived then deleted (``"archive"``)."""
        async with self.audit.audited(
            principal, "tenant.retention", "tenant", principal.tenant_id
        ) as note:
            principal.require(Role.ADMIN, "setting retention")
            if action not in ("delete", "archive"):
                raise UsageError("retention action must be 'delete' or 'archive'", field="action")
            if days is not None and days < 1:
                raise UsageError(
                    "retention days must be 1 or more (or null for none)", field="days"
                )
            note.detail.update(days=days, action=action)
            tenant = await self.store.set_retention(principal.tenant_id, days, action)
            if tenant is None:
                raise NotFoundError(f"tenant {principal.tenant_id!r} no longer exists")
            return tenant

    # -- audit ------------------------------------------------------------------------

    async def audit_log(
        self,
        principal: Principal,
        *,
        actor: str | None = None,
        action: str | None = None,
        object_id: str | None = None,
        since: float | None = None,
        until: float | None = None,
        before_id: int | None = None,
        limit: int = 100,
    ) -> list[AuditRecord]:
        """The tenant's audit records, newest first."""
        principal.require(Role.ADMIN, "reading the audit log")
        return await self.store.list_audit(
            principal.tenant_id,
            actor=actor,
            action=action,
            object_id=object_id,
            since=since,
            until=until,
            before_id=before_id,
            limit=limit,
        )
