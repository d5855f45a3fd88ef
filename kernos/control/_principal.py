"""Who is calling: the authenticated identity every operation is checked against."""

from __future__ import annotations

from dataclasses import dataclass

from kernos.errors import PermissionDeniedError
from kernos.records import Role, Session

__all__ = ["Principal"]


@dataclass(frozen=True, kw_only=True, slots=True)
class Principal:
    """An authenticated caller acting in one tenant with one role.

    ``actor`` is how the audit log names the caller: ``user:<username>``,
    ``key:<key id>`` or ``system`` (the local CLI and the server itself).
    ``session`` is set for session-authenticated callers: their unsafe
    requests must carry the session's CSRF token.
    """

    tenant_id: str
    role: Role
    actor: str
    user_id: str | None = None
    key_id: str | None = None
    session: Session | None = None
    ip: str | None = None

    @classmethod
    def system(cls, tenant_id: str, *, ip: str | None = None) -> Principal:
        """The installation acting on its own behalf (local CLI, retention, bootstrap)."""
        return cls(tenant_id=tenant_id, role=Role.ADMIN, actor="system", ip=ip)

    def require(self, needed: Role, action: str) -> None:
        """Raise unless this caller's role includes ``needed``.

        Raises:
            PermissionDeniedError: naming the action and the role it needs.
        """
        if not self.role.includes(needed):
            raise PermissionDeniedError(
                f"{action} needs the {needed.value} role in tenant {self.tenant_id!r}; "
                f"this {self._what} has {self.role.value}",
                action=action,
                needed=needed.value,
                role=self.role.value,
            )

    @property
    def _what(self) -> str:
        if self.key_id is not None:
            return "API key"
        if self.user_id is not None:
            return "user"
        return "caller"
