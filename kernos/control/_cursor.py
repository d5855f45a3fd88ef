"""Opaque page cursors: clients pass back what they were given, nothing else."""

from __future__ import annotations

import base64

import orjson

from kernos.errors import UsageError

__all__ = ["decode_cursor", "encode_cursor"]


def encode_cursor(created_at: float, run_id: str) -> str:
    """The cursor that continues a newest-first listing after this run."""
    return base64.urlsafe_b64encode(orjson.dumps([created_at, run_id])).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str]:
    """Read a cursor made by :func:`encode_cursor`.

    Raises:
        UsageError: the cursor was not made by this server (or was edited).
    """
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        created_at, run_id = orjson.loads(base64.urlsafe_b64decode(padded.encode()))
        if not isinstance(run_id, str) or not isinstance(created_at, int | float):
            raise ValueError(cursor)
        if any(ord(c) < 32 or ord(c) == 127 for c in run_id):  # never in a run id
            raise ValueError(cursor)
    except (ValueError, TypeError, orjson.JSONDecodeError) as error:
        raise UsageError(
            "invalid cursor: pass back the 'next_cursor' of the previous page unchanged",
            field="cursor",
        ) from error
    return float(created_at), run_id
