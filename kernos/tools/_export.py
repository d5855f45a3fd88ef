"""Export a table or a text as CSV or PDF, into a workspace.

A table is a list of objects (the columns are their keys, in order of first
appearance, unless given) or a list of rows with an optional header. Cells
are JSON values: text as it is, numbers as written, ``true``/``false``, an
empty cell for null, and nested values as JSON text.

CSV cells that a spreadsheet would run as a formula (text starting with
``=``, ``+``, ``-``, ``@``, a tab or a carriage return) get a leading ``'``
unless ``escape_formulas=False``: an exported page from the web must not
become a formula on someone's desktop. Numbers are never touched.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from typing import Any

from kernos import errors
from kernos.tools._pdf import table_pdf, text_pdf
from kernos.tools._tool import Tool
from kernos.tools._workspace import Workspace

__all__ = ["Cell", "export_tools", "to_csv", "to_pdf"]

Cell = Any
"""One value of a table: any JSON value."""

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _table(
    rows: Sequence[Mapping[str, Any]] | Sequence[Sequence[Any]], columns: Sequence[str] | None
) -> tuple[list[str], list[list[Any]]]:
    objects = [row for row in rows if isinstance(row, Mapping)]
    if objects:
        if len(objects) != len(rows):
            raise errors.ToolError("rows must be all objects or all lists", reason="invalid")
        header = list(columns) if columns else list(dict.fromkeys(k for o in objects for k in o))
        return header, [[row.get(name) for name in header] for row in objects]
    lists: list[list[Any]] = []
    for row in rows:
        if isinstance(row, str | bytes) or not isinstance(row, Sequence):
            raise errors.ToolError(
                "each row must be an object or a list of cells", reason="invalid"
            )
        lists.append(list(row))
    return list(columns or []), lists


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(value, ensure_ascii=False, default=str)


def _csv_cell(value: Any, escape_formulas: bool) -> str:
    text = _text(value)
    if escape_formulas and isinstance(value, str) and text.startswith(_FORMULA_START):
        return "'" + text
    return text


def to_csv(
    rows: Sequence[Mapping[str, Any]] | Sequence[Sequence[Any]],
    columns: Sequence[str] | None = None,
    *,
    escape_formulas: bool = True,
) -> str:
    """A table as CSV text (RFC 4180: commas, double quotes, CRLF line ends).

    Args:
        rows: a list of objects, or a list of rows.
        columns: the columns (for objects: which keys, in order; for rows: the
            header line). Objects without it use every key, in order of first
            appearance; rows without it have no header line.
        escape_formulas: prefix text cells that spreadsheets run as formulas with ``'``.

    Raises:
        ToolError: objects and rows are mixed.
    """
    header, body = _table(rows, columns)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    if header:
        writer.writerow([_csv_cell(name, escape_formulas) for name in header])
    for row in body:
        writer.writerow([_csv_cell(cell, escape_formulas) for cell in row])
    return out.getvalue()


def to_pdf(
    *,
    text: str | None = None,
    rows: Sequence[Mapping[str, Any]] | Sequence[Sequence[Any]] | None = None,
    columns: Sequence[str] | None = None,
    title: str | None = None,
) -> bytes:
    """A PDF of a text or of a table (see :mod:`kernos.tools._pdf` for the fonts).

    Args:
        text: the text (give this or ``rows``).
        rows: the table, as for :func:`to_csv`.
        columns: as for :func:`to_csv`.
        title: a title at the top, also the document's title.

    Raises:
        ToolError: neither or both of ``text`` and ``rows``.
    """
    if (text is None) == (rows is None):
        raise errors.ToolError("give either text or rows, not both or neither", reason="invalid")
    if rows is None:
        return text_pdf(text or "", title=title)
    header, body = _table(rows, columns)
    return table_pdf([[_text(cell) for cell in row] for row in body], header, title=title)


def export_tools(workspace: Workspace) -> list[Tool[..., str]]:
    """The ``export_csv`` and ``export_pdf`` tools, writing into ``workspace``."""

    def export_csv(
        path: str,
        rows: list[dict[str, Cell]] | list[list[Cell]],
        columns: list[str] | None = None,
    ) -> str:
        """Write a table to a CSV file in the workspace.

        Args:
            path: the file to write, relative to the workspace root, e.g. "report.csv".
            rows: the table: a list of objects (one per row), or a list of lists of cells.
            columns: the columns, in order (for objects: which keys; for lists: the header).
        """
        data = to_csv(rows, columns).encode("utf-8")
        size = workspace.write_bytes(path, data)
        return f"wrote {len(rows)} rows to {path!r} ({size} bytes)"

    def export_pdf(
        path: str,
        title: str | None = None,
        text: str | None = None,
        rows: list[dict[str, Cell]] | list[list[Cell]] | None = None,
        columns: list[str] | None = None,
    ) -> str:
        """Write a text or a table to a PDF file in the workspace.

        Args:
            path: the file to write, relative to the workspace root, e.g. "report.pdf".
            title: a title printed at the top.
            text: the text to print (give text or rows).
            rows: a table: a list of objects (one per row), or a list of lists of cells.
            columns: the table's columns, in order.
        """
        data = to_pdf(text=text, rows=rows, columns=columns, title=title)
        size = workspace.write_bytes(path, data)
        return f"wrote {path!r} ({size} bytes)"

    return [Tool(export_csv), Tool(export_pdf)]
