"""Export: CSV and PDF of tables and text, written into a workspace.

PDFs are checked structurally by a small reader below (header, every xref
offset pointing at its object, trailer, page count, the text drawn in the
content streams); when poppler's ``pdftotext`` is installed, it must read
them too.
"""

from __future__ import annotations

import csv
import io
import re
import shutil
import subprocess
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from kernos import errors
from kernos.tools import Workspace, export_tools, to_csv, to_pdf

ROWS = [
    {"name": "Ada", "score": 3.5, "ok": True},
    {"name": '=HYPERLINK("http://evil")', "score": -2, "note": None},
    {"name": 'comma, "quote"\nnewline', "score": 0, "tags": ["a", "b"]},
]


def read_pdf(data: bytes) -> tuple[int, str]:
    """Check a PDF's structure; return its page count and the text it draws."""
    assert data.startswith(b"%PDF-1.")
    assert data.rstrip().endswith(b"%%EOF")
    startxref = int(re.findall(rb"startxref\s+(\d+)", data)[-1])
    assert data[startxref:].startswith(b"xref")
    table = re.match(rb"xref\s+0 (\d+)\s+", data[startxref:])
    assert table is not None
    count = int(table.group(1))
    entries = data[startxref + table.end() :].split(b"\n")[:count]
    assert entries[0].startswith(b"0000000000 65535 f")
    for number, entry in enumerate(entries[1:], 1):
        offset = int(entry[:10])
        assert data[offset:].startswith(b"%d 0 obj" % number), number
    trailer = data[data.rindex(b"trailer") :]
    assert b"/Size %d" % count in trailer and b"/Root" in trailer
    pages = int(re.search(rb"/Type /Pages /Kids \[[^\]]*\] /Count (\d+)", data).group(1))  # type: ignore[union-attr]
    text = []
    for stream in re.findall(rb"stream\n(.*?)\nendstream", data, re.DOTALL):
        content = zlib.decompress(stream)
        for literal in re.findall(rb"\((.*?)(?<!\\)\) Tj", content):
            text.append(re.sub(rb"\\(.)", rb"\1", literal).decode("cp1252"))
    return pages, "\n".join(text)


def pdftotext(data: bytes, tmp_path: Path) -> str | None:
    if shutil.which("pdftotext") is None:
        return None
    path = tmp_path / "check.pdf"
    path.write_bytes(data)
    done = subprocess.run(
        ["pdftotext", "-layout", str(path), "-"], capture_output=True, check=True, timeout=60
    )
    assert not done.stderr, done.stderr
    return done.stdout.decode()


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[Workspace]:
    with Workspace(tmp_path / "ws", create=True) as ws:
        yield ws


def test_csv_of_objects() -> None:
    text = to_csv(ROWS)
    assert text.endswith("\r\n")
    parsed = list(csv.reader(io.StringIO(text)))
    assert parsed[0] == ["name", "score", "ok", "note", "tags"]
    assert parsed[1] == ["Ada", "3.5", "true", "", ""]
    assert parsed[2] == ['\'=HYPERLINK("http://evil")', "-2", "", "", ""]  # a number keeps its sign
    assert parsed[3] == ['comma, "quote"\nnewline', "0", "", "", '["a", "b"]']
    assert to_csv(ROWS, ["score", "name"]).startswith("score,name\r\n3.5,Ada\r\n")
    assert to_csv(ROWS[1:2], ["name"], escape_formulas=False).startswith('name\r\n"=HYPERLINK(')


def test_csv_of_rows() -> None:
    assert to_csv([[1, "x"], ["+1", None]]) == "1,x\r\n'+1,\r\n"
    assert to_csv([[1, 2]], ["a", "b"]) == "a,b\r\n1,2\r\n"
    assert to_csv([]) == ""
    with pytest.raises(errors.ToolError):
        to_csv([{"a": 1}, [1]])  # type: ignore[list-item]


def test_pdf_of_text_is_valid_and_keeps_unicode(tmp_path: Path) -> None:
    body = "Première ligne (avec parenthèses) \\ et €.\n\nŐrület, 漢字, emoji 😀, tab\tend.\n"
    long = "word " * 3000
    data = to_pdf(text=body + long, title="Rapport ünïcødé")
    pages, text = read_pdf(data)
    assert pages > 1
    assert "Rapport ünïcødé" in text
    assert "Première ligne (avec parenthèses) \\ et €." in text
    assert "Orület, ??, emoji ?, tab    end." in text  # decomposed, or replaced
    assert "word word" in text
    assert to_pdf(text=body, title="x") == to_pdf(text=body, title="x")  # deterministic
    extracted = pdftotext(data, tmp_path)
    if extracted is not None:
        assert "Première ligne" in extracted and "Rapport ünïcødé" in extracted


def test_pdf_of_a_table_lines_up_columns_and_repeats_the_header(tmp_path: Path) -> None:
    rows = [[i, f"item {i}", "lorem ipsum " * (i % 4), i * 1.5] for i in range(150)]
    data = to_pdf(rows=rows, columns=["id", "name", "notes", "price"], title="Items")
    pages, text = read_pdf(data)
    assert pages >= 2
    lines = text.split("\n")
    headers = [line for line in lines if line.startswith("id ")]
    assert len(headers) == pages
    bars = {line.index("|") for line in lines if "|" in line}
    assert len(bars) == 1  # every row's first separator in the same column
    assert any(line.startswith("149 ") for line in lines)
    objects = read_pdf(to_pdf(rows=ROWS))[1]
    assert "name" in objects and "Ada" in objects
    extracted = pdftotext(data, tmp_path)
    if extracted is not None:
        assert "item 149" in extracted
    with pytest.raises(errors.ToolError):
        to_pdf(text="a", rows=[[1]])
    with pytest.raises(errors.ToolError):
        to_pdf()


async def test_export_tools_write_into_the_workspace(workspace: Workspace) -> None:
    tools = {t.name: t for t in export_tools(workspace)}
    assert set(tools) == {"export_csv", "export_pdf"}
    assert tools["export_csv"].parameters["required"] == ["path", "rows"]

    done = await tools["export_csv"].invoke({"path": "out/report.csv", "rows": ROWS})
    assert done.content.startswith("wrote 3 rows to 'out/report.csv'")
    assert workspace.read_bytes("out/report.csv").decode() == to_csv(ROWS)

    rows = await tools["export_pdf"].invoke(
        {"path": "t.pdf", "rows": [[1, "a"], [2, "b"]], "columns": ["n", "s"]}
    )
    assert not rows.is_error
    assert "n | s" in read_pdf(workspace.read_bytes("t.pdf"))[1]
    text = await tools["export_pdf"].invoke({"path": "x.pdf", "text": "hello", "title": "T"})
    assert not text.is_error

    refused = await tools["export_csv"].invoke({"path": "../escape.csv", "rows": [[1]]})
    assert refused.is_error and "outside the workspace" in refused.content
    bad = await tools["export_pdf"].invoke({"path": "y.pdf"})
    assert bad.is_error and "either text or rows" in bad.content
    invalid = await tools["export_csv"].invoke({"path": "z.csv", "rows": "not a table"})
    assert invalid.is_error and invalid.content.startswith("argument 'rows'")
