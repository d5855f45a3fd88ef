"""Turning credentials into a :class:`Principal`: API keys, sessions, sign-in."""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, replace

from kernos.control._audit import Auditor
from kernos.control._principal import Principal
from kernos.control._ratelimit import RateLimiter
from kernos.control._secrets import (
    constant_time_equal,
    hash_password,
    hash_secret,
    new_token,
    parse_api_key,
    verify_password,
)
from kernos.errors import AuthenticationError
from kernos.records import DEFAULT_TENANT, ApiKey, Role, Session, User
from kernos.store import Store

__all__ = ["KEY_CACHE_TTL_S", "Authenticator", "Credentials", "forget_api_key"]

_TOUCH_EVERY_S = 60.0  # how stale a key's last_used_at may get before it is rewritten
KEY_CACHE_TTL_S = 1.0
"""How long an API key's record is trusted without reading the store again.

Revoking or rotating a key through any service of this process takes effect
at once (``forget_api_key``); done by another process sharing the store, it
takes effect here within this many seconds."""
_KEY_CACHE_MAX = 10_000  # keys remembered at once; past this the cache starts over

_authenticators: weakref.WeakSet[Authenticator] = weakref.WeakSet()


def forget_api_key(key_id: str) -> None:
    """Make every authenticator of this process read ``key_id`` from the store next time.

    Called after a key is revoked or rotated, so the change applies to the
    very next request instead of after ``KEY_CACHE_TTL_S``.
    """
    for authenticator in list(_authenticators):
        authenticator.forget_key(key_id)


@dataclass(frozen=True, kw_only=True, slots=True)
class Credentials:
    """What a request presented: at most one of the three is used, in this order.

    ``api_key`` comes from ``X-API-Key``; ``bearer`` from ``Authorization:
    Bearer`` (an API key or a session token); ``session`` from the session cookie.
    """

    api_key: str | None = None
    bearer: str | None = None
    session: str | None = None
    ip: str | None = None


class Authenticator:
    """Checks credentials against the store and signs users in and out.

    Sign-in attempts are rate-limited per IP address and per username; a wrong
    password and an unknown user take the same time and give the same answer.
    With an ``auditor``, every sign-in and every refused one (wrong password,
    unknown user, no membership) is recorded, the refused ones in the default
    tenant.
    """

    def __init__(
        self,
        store: Store,
        *,
        auditor: Auditor | None = None,
        session_ttl: float = 12 * 3600.0,
        token_ttl: float = 3600.0,
        login_limit: tuple[int, float] = (10, 60.0),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.auditor = auditor
        self.session_ttl = session_ttl
        self.token_ttl = token_ttl
        self.clock = clock
        self._login_by_ip = RateLimiter(*login_limit)
        self._login_by_user = RateLimiter(*login_limit)
        self._decoy_hash: str | None = None
        # key id -> (record, monotonic time it was read): one store round trip per
        # key per KEY_CACHE_TTL_S instead of one per request.
        self._keys: dict[str, tuple[ApiKey, float]] = {}
        self._forgotten = 0  # bumped by forget_key: a read begun before it is not cached
        _authenticators.add(self)

    def forget_key(self, key_id: str) -> None:
        """Drop ``key_id`` from the key cache: the next request reads it from the store."""
        self._keys.pop(key_id, None)
        self._forgotten += 1

    async def authenticate(self, credentials: Credentials) -> Principal:
        """Return who presented ``credentials``.

        Raises:
            AuthenticationError: none presented, or malformed, unknown, forged,
                expired or revoked; the message says which where that reveals
                nothing to someone without the secret.
        """
        ip = credentials.ip
        if credentials.api_key is not None:
            return await self._by_key(credentials.api_key, ip)
        if credentials.bearer is not None:
            if credentials.bearer.startswith("kn_"):
                return await self._by_key(credentials.bearer, ip)
            return await self._by_session(credentials.bearer, ip)
        if credentials.session is not None:
            return await self._by_session(credentials.session, ip)
        raise AuthenticationError(
            "missing credentials: send 'Authorization: Bearer <API key or token>' or "
            "'X-API-Key: <API key>', or sign in at /api/v1/auth/login"
        )

    async def _by_key(self, text: str, ip: str | None) -> Principal:
        key_id, secret = parse_api_key(text.strip())
        key = await self._api_key(key_id)
        if key is None or not constant_time_equal(key.secret_hash, hash_secret(secret)):
            raise AuthenticationError("invalid API key: no key matches it; check for typos")
        now = self.clock()
        if key.revoked_at is not None:
            raise AuthenticationError(
                f"API key {key_id} was revoked; ask an admin for a new key", key_id=key_id
            )
        if key.expires_at is not None and now >= key.expires_at:
            raise AuthenticationError(
                f"API key {key_id} expired; use the key that replaced it or ask an admin",
                key_id=key_id,
            )
        if key.last_used_at is None or now - key.last_used_at > _TOUCH_EVERY_S:
            cached = self._keys.get(key_id)
            if cached is not None and cached[0] is key:  # so concurrent requests skip the write
                self._keys[key_id] = (replace(key, last_used_at=now), cached[1])
            await self.store.update_api_key(key_id, last_used_at=now)
        return Principal(
            tenant_id=key.tenant_id, role=key.role, actor=f"key:{key_id}", key_id=key_id, ip=ip
        )

    async def _api_key(self, key_id: str) -> ApiKey | None:
        # Unknown ids are not remembered: a key made by another process works
        # at once, and guessed ids cannot fill the cache.
        cached = self._keys.get(key_id)
        read_at = time.monotonic()
        if cached is not None and read_at - cached[1] < KEY_CACHE_TTL_S:
            return cached[0]
        forgotten = self._forgotten
        key = await self.store.get_api_key(key_id)
        if key is None or forgotten != self._forgotten:
            self._keys.pop(key_id, None)
            return key
        if len(self._keys) >= _KEY_CACHE_MAX:
            self._keys.clear()
        self._keys[key_id] = (key, read_at)
        return key

    async def _by_session(self, token: str, ip: str | None) -> Principal:
        session = await self.store.get_session(hash_secret(token))
        if session is None or self.clock() >= session.expires_at:
            raise AuthenticationError("session expired or signed out; sign in again")
        user = await self.store.get_user(session.user_id)
        role = await self._role(user, session.tenant_id)
        if user is None or role is None:
            raise AuthenticationError("this account can no longer use this tenant; sign in again")
        return Principal(
            tenant_id=session.tenant_id,
            role=role,
            actor=f"user:{user.username}",
            user_id=user.user_id,
            session=session,
            ip=ip,
        )

    async def _role(self, user: User | None, tenant_id: str) -> Role | None:
        if user is None or user.disabled:
            return None
        for membership in await self.store.memberships_of(user.user_id):
            if membership.tenant_id == tenant_id:
                return membership.role
        return None

    async def login(
        self,
        username: str,
        password: str,
        *,
        tenant_id: str | None = None,
        ip: str | None = None,
        short_lived: bool = False,
    ) -> tuple[Session, str, User]:
        """Sign a user in; return the session, its secret token and the user.

        ``short_lived`` makes a token for scripts (``token_ttl``) instead of a
        dashboard session (``session_ttl``). Without ``tenant_id`` the user's
        only tenant is used, or the default tenant if they belong to several.

        Raises:
            RateLimitedError: too many attempts from this address or for this user.
            AuthenticationError: wrong username or password (one message for both),
                or no membership in the tenant.
        """
        self._login_by_ip.check(ip or "?", "sign-in attempts from this address")
        self._login_by_user.check(username.lower(), "sign-in attempts for this user")
        try:
            session, token, user, role = await self._login(
                username, password, tenant_id, ip, short_lived
            )
        except AuthenticationError as error:
            anonymous = Principal(tenant_id=DEFAULT_TENANT, role=Role.VIEWER, actor="anonymous")
            await self._audit(anonymous, ip, username, "denied", {"reason": error.code})
            raise
        caller = Principal(tenant_id=session.tenant_id, role=role, actor=f"user:{user.username}")
        await self._audit(caller, ip, user.username, "ok", None)
        return session, token, user

    async def _audit(
        self,
        principal: Principal,
        ip: str | None,
        username: str,
        outcome: str,
        detail: dict[str, str] | None,
    ) -> None:
        if self.auditor is not None:
            await self.auditor.record(
                replace(principal, ip=ip),
                "auth.login",
                "user",
                username,
                outcome=outcome,
                detail=detail,
            )

    async def _login(
        self,
        username: str,
        password: str,
        tenant_id: str | None,
        ip: str | None,
        short_lived: bool,
    ) -> tuple[Session, str, User, Role]:
        user = await self.store.find_user(username)
        if user is None:
            verify_password(self._decoy(), password)  # same cost as a real check
            raise AuthenticationError("wrong username or password")
        if not verify_password(user.password_hash, password) or user.disabled:
            raise AuthenticationError("wrong username or password")
        memberships = await self.store.memberships_of(user.user_id)
        if tenant_id is None:
            tenants = [m.tenant_id for m in memberships]
            tenant_id = tenants[0] if len(tenants) == 1 else "default"
        roles = {m.tenant_id: m.role for m in memberships}
        if tenant_id not in roles:
            raise AuthenticationError(
                f"user {username!r} is not a member of tenant {tenant_id!r}", tenant_id=tenant_id
            )
        token = new_token()
        now = self.clock()
        session = Session(
            token_hash=hash_secret(token),
            user_id=user.user_id,
            tenant_id=tenant_id,
            csrf_token=new_token(),
            created_at=now,
            expires_at=now + (self.token_ttl if short_lived else self.session_ttl),
            ip=ip,
        )
        await self.store.create_session(session)
        return session, token, user, roles[tenant_id]

    async def logout(self, session: Session) -> None:
        """End a session."""
        await self.store.delete_session(session.token_hash)

    def _decoy(self) -> str:
        if self._decoy_hash is None:
            self._decoy_hash = hash_password(new_token())
        return self._decoy_hash
