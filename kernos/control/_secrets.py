"""Secrets: password hashes, API keys and session tokens.

Passwords are hashed with argon2id (memory-hard: they are low-entropy and must
resist offline guessing). API keys and session tokens are 256-bit random
secrets, so a single SHA-256 is enough to store them safely and is cheap to
check on every request. Only hashes are ever stored.

An API key reads ``kn_<key id>_<secret>``: the key id locates the row, the
secret proves possession. Both parts are URL-safe.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from functools import lru_cache
from typing import TYPE_CHECKING

from kernos.errors import AuthenticationError

if TYPE_CHECKING:
    from argon2 import PasswordHasher

__all__ = [
    "constant_time_equal",
    "hash_password",
    "hash_secret",
    "new_api_key",
    "new_token",
    "parse_api_key",
    "verify_password",
]

_KEY_PATTERN = re.compile(r"^kn_([A-Za-z0-9]{12})_([A-Za-z0-9_-]{43})$")


@lru_cache(maxsize=1)
def _hasher() -> PasswordHasher:
    from argon2 import PasswordHasher

    return PasswordHasher()  # argon2id with the library's RFC 9106 "low memory" profile


def hash_password(password: str) -> str:
    """Return an argon2id hash of ``password`` (salted; different every call)."""
    return _hasher().hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """Whether ``password`` matches ``password_hash``; never raises on a mismatch."""
    from argon2.exceptions import InvalidHashError, VerificationError

    try:
        return _hasher().verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def hash_secret(secret: str) -> str:
    """SHA-256 hex digest of a high-entropy secret (API key or session token)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def constant_time_equal(a: str, b: str) -> bool:
    """Compare two strings without leaking where they differ through timing."""
    return hmac.compare_digest(a.encode(), b.encode())


def new_token() -> str:
    """A fresh 256-bit URL-safe secret."""
    return secrets.token_urlsafe(32)


def new_api_key() -> tuple[str, str]:
    """Return ``(key_id, full key)``; the full key is shown once and never stored."""
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    key_id = "".join(secrets.choice(alphabet) for _ in range(12))
    return key_id, f"kn_{key_id}_{new_token()}"


def parse_api_key(key: str) -> tuple[str, str]:
    """Split a full API key into ``(key_id, secret)``.

    Raises:
        AuthenticationError: the text is not shaped like a Kernos API key.
    """
    match = _KEY_PATTERN.match(key)
    if match is None:
        raise AuthenticationError(
            "malformed API key: expected 'kn_<12 characters>_<43 characters>' as printed "
            "when the key was created"
        )
    return match.group(1), match.group(2)
