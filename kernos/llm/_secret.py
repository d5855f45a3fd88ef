"""API keys that never show: not in repr, str, logs, error messages or pickles."""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Any, NoReturn

__all__ = ["Secret", "redact"]

_MASK = "**********"

# Key-shaped tokens a provider may echo back (OpenAI, Anthropic, generic bearer keys).
_KEY_PATTERN = re.compile(r"\b(sk|pk|rk|key)-[A-Za-z0-9_*\-]{6,}", re.IGNORECASE)


class Secret:
    """A secret string: ``reveal()`` is the only way to read it.

    ``repr`` and ``str`` print a mask, pickling and copying to JSON refuse, and
    :meth:`fingerprint` identifies the key (e.g. to share a rate limiter)
    without disclosing it.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret itself, for the one place that must send it."""
        return self._value

    def fingerprint(self) -> str:
        """A short, stable, one-way identifier of the secret."""
        return hashlib.sha256(self._value.encode()).hexdigest()[:12]

    def __repr__(self) -> str:
        return f"Secret('{_MASK}')"

    def __str__(self) -> str:
        return _MASK

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(self.fingerprint())

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self) -> NoReturn:
        raise TypeError("a Secret cannot be pickled or journaled")

    def __deepcopy__(self, memo: dict[int, Any]) -> Secret:
        return self


def redact(text: str, *secrets: Secret | None) -> str:
    """``text`` with every given secret, and anything shaped like an API key, masked."""
    for secret in secrets:
        if secret:
            value = secret.reveal()
            if len(value) >= 4 and value in text:
                text = text.replace(value, _MASK)
    return _KEY_PATTERN.sub(lambda m: f"{m.group(1)}-{_MASK}", text)
