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

__all__ = ["REFERENCE_LIKE", "Blobs"]

_PREFIX = '{"$kernos_blob":"'
REFERENCE_LIKE = _PREFIX + "%"
"""A LIKE pattern that every blob reference matches (``_`` matches itself too)."""
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
        return self.reference(blob_id)

    @staticmethod
    def reference(blob_id: str) -> str:
        """The text that stands for blob ``blob_id`` in a row."""
        return f'{_PREFIX}{blob_id}"}}'

    @staticmethod
    def referenced_id(text: str | None) -> str | None:
        """The id of the blob ``text`` stands for, or None if it is a plain value."""
        if text is None or not text.startswith(_PREFIX):
            return None
        return text[len(_PREFIX) : -2]

    def delete(self, blob_id: str, execute: Execute) -> None:
        """Delete a blob from the table; a blob file is left for :meth:`remove_files`.

        Files are removed only after the deleting transaction commits: a
        rollback must not leave rows that point at a removed file.
        """
        if self.directory is None:
            execute("delete_blob", {"blob_id": blob_id})

    def remove_files(self, blob_ids: list[str]) -> None:
        """Remove the files of deleted blobs (nothing to do without a blob directory)."""
        if self.directory is None:
            return
        for blob_id in blob_ids:
            (self.directory / blob_id).unlink(missing_ok=True)

    def resolve(self, text: str | None, execute: Execute) -> str | None:
        """Return the stored text a reference points to; other texts pass through."""
        blob_id = self.referenced_id(text)
        if blob_id is None:
            return text
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
