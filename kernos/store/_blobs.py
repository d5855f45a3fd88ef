"""Out-of-line storage of large values, so journal rows stay small and fast.

A value whose JSON text exceeds the threshold is stored once under its SHA-256
(in the ``kernos_blobs`` table, or as a file in a directory when one is
configured) and the journal holds a reference ``{"$kernos_blob": "<sha256>"}``.
Reads resolve references transparently.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kernos.errors import StoreError

__all__ = ["Blobs"]

_PREFIX = '{"$kernos_blob":"'
Execute = Callable[[str, dict[str, Any]], Any]


class Blobs:
    """Moves large JSON texts out of line and back."""

    def __init__(self, threshold: int, directory: str | os.PathLike[str] | None) -> None:
        self.threshold = threshold
        self.directory = Path(directory) if directory is not None else None
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)

    def externalize(self, text: str | None, execute: Execute, now: float) -> str | None:
        """Return ``text``, or a reference to it once stored out of line."""
        if text is None or len(text) <= self.threshold:
            return text
        blob_id = hashlib.sha256(text.encode()).hexdigest()
        if self.directory is not None:
            self._write_file(blob_id, text)
        else:
            execute("put_blob", {"blob_id": blob_id, "data": text, "size": len(text), "now": now})
        return f'{_PREFIX}{blob_id}"}}'

    def resolve(self, text: str | None, execute: Execute) -> str | None:
        """Return the stored text a reference points to; other texts pass through."""
        if text is None or not text.startswith(_PREFIX):
            return text
        blob_id = text[len(_PREFIX) : -2]
        if self.directory is not None:
            path = self.directory / blob_id
            try:
                return path.read_text()
            except FileNotFoundError as exc:
                raise StoreError(
                    f"blob {blob_id} is missing from {self.directory}; was the blob "
                    "directory moved or cleaned?",
                    blob_id=blob_id,
                ) from exc
        row = execute("get_blob", {"blob_id": blob_id}).fetchone()
        if row is None:
            raise StoreError(
                f"blob {blob_id} referenced by the journal is missing", blob_id=blob_id
            )
        return str(row["data"])

    def _write_file(self, blob_id: str, text: str) -> None:
        assert self.directory is not None
        path = self.directory / blob_id
        if path.exists():
            return
        # Write, fsync and rename, so a reader never sees half a blob and the
        # blob is durable before the journal row that references it commits.
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-")
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
