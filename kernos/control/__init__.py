"""The control plane: who may do what, in which tenant, and the record of what they did.

This layer sits between the runtime and the faces (API, dashboard, CLI). Every
tenant-scoped operation the faces offer lives in :class:`Service`, which checks
the caller's role, confines the operation to the caller's tenant and writes the
audit record, so there is one code path from any face to the store.
"""

from kernos.control._approvals import ApprovalQuery, ApprovalService, may_decide
from kernos.control._auth import Authenticator, Credentials
from kernos.control._bootstrap import Bootstrap, ensure_first_admin
from kernos.control._delivery import DeliveryPolicy
from kernos.control._notifier import Notifier
from kernos.control._principal import Principal
from kernos.control._ratelimit import RateLimiter
from kernos.control._secrets import (
    hash_password,
    hash_secret,
    new_api_key,
    parse_api_key,
    verify_password,
)
from kernos.control._service import Service
from kernos.control._webhooks import verify_webhook

__all__ = [
    "ApprovalQuery",
    "ApprovalService",
    "Authenticator",
    "Bootstrap",
    "Credentials",
    "DeliveryPolicy",
    "Notifier",
    "Principal",
    "RateLimiter",
    "Service",
    "ensure_first_admin",
    "hash_password",
    "hash_secret",
    "may_decide",
    "new_api_key",
    "parse_api_key",
    "verify_password",
    "verify_webhook",
]
