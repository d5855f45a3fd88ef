"""A small PDF writer: text and tables on A4 pages, in Courier.

Courier is one of the fourteen fonts every PDF reader has, so nothing is
embedded, and it is monospaced, so lines wrap and table columns line up
exactly without font metrics. Text is encoded in WinAnsi (Windows-1252):
accented Latin letters print as they are, other characters are reduced to
their base letter where Unicode decomposes them (``ő`` -> ``o``) and shown as
``?`` otherwise. The output is deterministic (no dates, no random ids), so
the same input always gives the same bytes.
"""

from __future__ import annotations

import math
import textwrap
import unicodedata
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["table_pdf", "text_pdf"]

PAGE_WIDTH, PAGE_HEIGHT = 595.28, 841.89  # A4 in points
MARGIN = 56.0
CHAR_WIDTH = 0.6  # Courier's advance, in ems
TEXT_SIZE = 10.0
TITLE_SIZE = 15.0
MIN_TABLE_SIZE = 6.0
MIN_COLUMN = 4
SEPARATOR = " | "

_REGULAR, _BOLD = "F1", "F2"


@dataclass
class _Page:
    ops: list[bytes] = field(default_factory=list)


class _Layout:
    """Places lines top to bottom, starting a new page when one is full."""

    def __init__(self) -> None:
        self.pages: list[_Page] = []
        self.y = 0.0
        self.new_page()

    def new_page(self) -> None:
        self.pages.append(_Page())
        self.y = PAGE_HEIGHT - MARGIN

    def room(self, height: float) -> bool:
        return self.y - height >= MARGIN

    def line(self, text: str, *, size: float, font: str = _REGULAR) -> None:
        leading = size * 1.3
        if not self.room(leading):
            self.new_page()
        self.y -= leading
        self.pages[-1].ops.append(
            b"BT /%s %s Tf %s %s Td (%s) Tj ET"
            % (font.encode(), _num(size), _num(MARGIN), _num(self.y + size * 0.25), _escape(text))
        )

    def rule(self, width: float) -> None:
        self.y -= 2
        self.pages[-1].ops.append(
            b"0.5 w %s %s m %s %s l S"
            % (_num(MARGIN), _num(self.y), _num(MARGIN + width), _num(self.y))
        )
        self.y -= 2

    def space(self, height: float) -> None:
        if self.room(height):
            self.y -= height


def text_pdf(text: str, *, title: str | None = None) -> bytes:
    """A PDF of plain text, wrapped to the page; blank lines are kept.

    Args:
        text: the text.
        title: printed in bold at the top, and set as the document's title.
    """
    layout = _Layout()
    width = _chars(TEXT_SIZE)
    if title:
        for line in _wrap(title, _chars(TITLE_SIZE)):
            layout.line(line, size=TITLE_SIZE, font=_BOLD)
        layout.space(TEXT_SIZE)
    for line in _wrap(text, width):
        layout.line(line, size=TEXT_SIZE)
    return _document(layout.pages, title)


def table_pdf(
    rows: Sequence[Sequence[str]], header: Sequence[str] = (), *, title: str | None = None
) -> bytes:
    """A PDF of a table: columns sized to their content, cells wrapped to fit.

    The font shrinks (down to 6 pt) so that wide tables fit the page width;
    the header is repeated at the top of every page.

    Args:
        rows: the rows, cells already as text.
        header: the column names (none: no header row).
        title: printed in bold at the top, and set as the document's title.
    """
    columns = max([len(header), *(len(row) for row in rows)], default=0)
    if columns == 0:
        return text_pdf("(empty table)", title=title)
    header_cells = [*header, *[""] * (columns - len(header))] if header else []
    body = [[*row, *[""] * (columns - len(row))] for row in rows]
    natural = [
        max(len(_clean(cell)) for cell in column) or 1
        for column in zip(*([header_cells] if header else []), *body, strict=True)
    ]
    needed = sum(natural) + len(SEPARATOR) * (columns - 1)
    size = max(MIN_TABLE_SIZE, min(TEXT_SIZE, (PAGE_WIDTH - 2 * MARGIN) / (needed * CHAR_WIDTH)))
    widths = _fit(natural, _chars(size) - len(SEPARATOR) * (columns - 1))
    line_width = (sum(widths) + len(SEPARATOR) * (columns - 1)) * size * CHAR_WIDTH

    layout = _Layout()
    if title:
        for line in _wrap(title, _chars(TITLE_SIZE)):
            layout.line(line, size=TITLE_SIZE, font=_BOLD)
        layout.space(size)

    def write_header() -> None:
        for line in _row_lines(header_cells, widths):
            layout.line(line, size=size, font=_BOLD)
        layout.rule(line_width)

    if header:
        write_header()
    for row in body:
        lines = _row_lines(row, widths)
        height = len(lines) * size * 1.3
        if not layout.room(height) and height <= PAGE_HEIGHT - 2 * MARGIN:
            # Rows are not split across pages unless taller than a page.
            layout.new_page()
            if header:
                write_header()
        for line in lines:
            layout.line(line, size=size)
    return _document(layout.pages, title)


def _fit(natural: list[int], available: int) -> list[int]:
    widths = list(natural)
    floor = max(1, min(MIN_COLUMN, available // max(1, len(widths))))
    while sum(widths) > available and max(widths) > floor:
        widest = widths.index(max(widths))
        widths[widest] -= 1
    return widths


def _row_lines(cells: Sequence[str], widths: Sequence[int]) -> list[str]:
    wrapped = [_wrap(cell, width) or [""] for cell, width in zip(cells, widths, strict=True)]
    height = max(len(parts) for parts in wrapped)
    lines = []
    for index in range(height):
        parts = [
            (parts[index] if index < len(parts) else "").ljust(width)
            for parts, width in zip(wrapped, widths, strict=True)
        ]
        lines.append(SEPARATOR.join(parts).rstrip())
    return lines


def _chars(size: float) -> int:
    return max(1, math.floor((PAGE_WIDTH - 2 * MARGIN) / (size * CHAR_WIDTH)))


def _wrap(text: str, width: int) -> list[str]:
    lines: list[str] = []
    for paragraph in _clean(text, keep_newlines=True).split("\n"):
        lines.extend(textwrap.wrap(paragraph, width, drop_whitespace=True) or [""])
    return lines


def _clean(text: str, *, keep_newlines: bool = False) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n").expandtabs(4)
    if not keep_newlines:
        text = text.replace("\n", " ")
    out = []
    for char in text:
        if char == "\n" or _encodable(char):
            out.append(char)
            continue
        base = "".join(c for c in unicodedata.normalize("NFKD", char) if _encodable(c))
        out.append(base if base.strip() else "?")
    return "".join(out)


def _encodable(char: str) -> bool:
    if char < " " or "\x7f" <= char < "\xa0":
        return False
    try:
        char.encode("cp1252")
    except UnicodeEncodeError:
        return False
    return True


def _escape(text: str) -> bytes:
    raw = text.encode("cp1252", errors="replace")
    return raw.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)")


def _num(value: float) -> bytes:
    return (b"%.2f" % value).rstrip(b"0").rstrip(b".")


def _document(pages: list[_Page], title: str | None) -> bytes:
    objects: list[bytes] = []  # object n is objects[n - 1]

    def add(body: bytes) -> int:
        objects.append(body)
        return len(objects)

    catalog = add(b"")  # filled in below, once the page tree's number is known
    info = add(
        b"<< /Producer (Kernos) /Title (%s) >>" % _escape(_clean(title or ""))
        if title
        else b"<< /Producer (Kernos) >>"
    )
    regular = add(
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Courier /Encoding /WinAnsiEncoding >>"
    )
    bold = add(
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Courier-Bold /Encoding /WinAnsiEncoding >>"
    )
    tree = len(objects) + 1 + 2 * len(pages)
    kids = []
    total = len(pages)
    for number, page in enumerate(pages, 1):
        footer = b"BT /F1 8 Tf %s %s Td (%s) Tj ET" % (
            _num(PAGE_WIDTH - MARGIN - 8 * CHAR_WIDTH * len(f"{number} / {total}")),
            _num(MARGIN / 2),
            f"{number} / {total}".encode(),
        )
        stream = zlib.compress(b"\n".join([*page.ops, footer]))
        content = add(
            b"<< /Length %d /Filter /FlateDecode >>\nstream\n%s\nendstream" % (len(stream), stream)
        )
        kids.append(
            add(
                b"<< /Type /Page /Parent %d 0 R /MediaBox [0 0 %s %s] /Contents %d 0 R "
                b"/Resources << /Font << /F1 %d 0 R /F2 %d 0 R >> >> >>"
                % (tree, _num(PAGE_WIDTH), _num(PAGE_HEIGHT), content, regular, bold)
            )
        )
    refs = b" ".join(b"%d 0 R" % kid for kid in kids)
    if add(b"<< /Type /Pages /Kids [%s] /Count %d >>" % (refs, len(kids))) != tree:
        raise RuntimeError("PDF object numbering went wrong")
    objects[catalog - 1] = b"<< /Type /Catalog /Pages %d 0 R >>" % tree

    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root %d 0 R /Info %d 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        catalog,
        info,
        xref,
    )
    return bytes(out)
