"""Workspace file tools doing their job: read, write, list, search, delete, with caps."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from kernos import errors
from kernos.tools import Tool, ToolResult, Workspace
from kernos.tools._beneath import openat2_available

METHODS = [
    pytest.param(
        "openat2",
        marks=pytest.mark.skipif(not openat2_available(), reason="no openat2 on this kernel"),
    ),
    "walk",
]


@pytest.fixture(params=METHODS)
def workspace(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Workspace]:
    root = tmp_path / "ws"
    root.mkdir()
    with Workspace(root, method=request.param, max_read_bytes=200, max_results=5) as ws:
        yield ws


@pytest.fixture
def tools(workspace: Workspace) -> dict[str, Tool[..., str]]:
    return {t.name: t for t in workspace.tools()}


async def test_write_then_read(workspace: Workspace, tools: dict[str, Tool[..., str]]) -> None:
    wrote = await tools["write_file"].invoke({"path": "a/b/c.txt", "content": "héllo\nworld\n"})
    assert wrote == ToolResult(content="wrote 13 bytes to 'a/b/c.txt'")
    assert (workspace.root / "a/b/c.txt").read_text() == "héllo\nworld\n"
    assert (await tools["read_file"].invoke({"path": "a/b/c.txt"})).content == "héllo\nworld\n"
    await tools["write_file"].invoke({"path": "a/b/c.txt", "content": "new"})
    assert workspace.read_bytes("a/b/c.txt") == b"new"
    # Writes go through a temporary file renamed into place: none is left behind.
    assert sorted(os.listdir(workspace.root / "a/b")) == ["c.txt"]


async def test_reads_page_by_lines_within_the_byte_cap(
    workspace: Workspace, tools: dict[str, Tool[..., str]]
) -> None:
    lines = [f"line {n:03}\n" for n in range(1, 101)]  # 9 bytes each, 900 in all
    (workspace.root / "long.txt").write_text("".join(lines))
    read = tools["read_file"]
    first = await read.invoke({"path": "long.txt"})
    assert first.content.startswith("".join(lines[:22]))  # 22 lines fit in 200 bytes
    assert first.content.endswith("read_file with start_line=23 for more]")
    middle = await read.invoke({"path": "long.txt", "start_line": 50, "max_lines": 3})
    assert middle.content.startswith("line 050\nline 051\nline 052\n\n[lines 50-52 shown")
    end = await read.invoke({"path": "long.txt", "start_line": 99})
    assert end.content == "line 099\nline 100\n"
    past = await read.invoke({"path": "long.txt", "start_line": 500})
    assert past.content == "['long.txt' has 100 lines; nothing from line 500]"
    (workspace.root / "wide.txt").write_text("x" * 1000 + "\nshort\n")
    assert (await read.invoke({"path": "wide.txt"})).is_error
    assert (await read.invoke({"path": "wide.txt", "start_line": 2})).content == "short\n"
    assert (await read.invoke({"path": "long.txt", "start_line": 0})).is_error


async def test_binary_special_and_missing_files(
    workspace: Workspace, tools: dict[str, Tool[..., str]]
) -> None:
    (workspace.root / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    (workspace.root / "latin1.txt").write_bytes("café".encode("latin-1"))
    os.mkfifo(workspace.root / "pipe")  # opening must not block
    read = tools["read_file"]
    for path, message in [
        ("image.png", "'image.png' is a binary file (10 bytes), not shown"),
        ("latin1.txt", "'latin1.txt' is a binary file"),
        ("pipe", "'pipe' is not a regular file"),
        ("missing.txt", "'missing.txt': no such file or directory"),
        (".", "'.' is a directory"),
        ("image.png/x", "'image.png/x': a component of the path is not a directory"),
    ]:
        result = await read.invoke({"path": path})
        assert result.is_error
        assert result.content.startswith(message), result.content


async def test_size_caps(tmp_path: Path) -> None:
    with Workspace(tmp_path, max_write_bytes=10) as workspace:
        with pytest.raises(errors.ToolError, match="more than the 10 bytes"):
            workspace.write_bytes("big", b"x" * 11)
        workspace.write_bytes("ok", b"x" * 10)
        with pytest.raises(errors.ToolError, match="larger than 5 bytes"):
            workspace.read_bytes("ok", max_bytes=5)
        assert not (tmp_path / "big").exists()


async def test_list_dir(workspace: Workspace, tools: dict[str, Tool[..., str]]) -> None:
    root = workspace.root
    (root / "sub").mkdir()
    (root / "b.txt").write_text("12345")
    os.symlink("b.txt", root / "link")
    listing = await tools["list_dir"].invoke({})
    assert listing.content == "b.txt  (5 bytes)\nlink@\nsub/"
    assert (await tools["list_dir"].invoke({"path": "sub"})).content == "(empty directory)"
    for n in range(10):
        (root / "sub" / f"f{n}").write_text("")
    capped = await tools["list_dir"].invoke({"path": "sub"})
    assert capped.content.splitlines()[-1] == "[... and 5 more entries]"
    assert (await tools["list_dir"].invoke({"path": "b.txt"})).is_error


async def test_search(workspace: Workspace, tools: dict[str, Tool[..., str]]) -> None:
    root = workspace.root
    (root / "src" / "pkg").mkdir(parents=True)
    (root / "src" / "main.py").write_text("import os\nprint('Hello')\n")
    (root / "src" / "pkg" / "util.py").write_text("def hello():\n    return 1\n")
    (root / "notes.md").write_text("hello notes\n")
    (root / "blob.bin").write_bytes(b"hello\x00")
    os.symlink("notes.md", root / "alias.md")  # not followed: no duplicate hits
    search = tools["search_files"]
    found = await search.invoke({"pattern": "hello", "ignore_case": True})
    assert found.content.splitlines() == [
        "notes.md:1: hello notes",
        "src/main.py:2: print('Hello')",
        "src/pkg/util.py:1: def hello():",
    ]
    only_py = await search.invoke({"pattern": "hello", "path": "./src", "glob": "*.py"})
    assert only_py.content == "src/pkg/util.py:1: def hello():"
    regex = await search.invoke({"pattern": r"^\s+return \d$", "regex": True})
    assert regex.content == "src/pkg/util.py:2:     return 1"
    one_file = await search.invoke({"pattern": "import", "path": "src/main.py"})
    assert one_file.content == "src/main.py:1: import os"
    assert (await search.invoke({"pattern": "nothing"})).content == "no matches"
    assert (await search.invoke({"pattern": "(", "regex": True})).is_error
    (root / "many.txt").write_text("x\n" * 20)
    many = await search.invoke({"pattern": "x", "path": "many.txt"})
    assert many.content.splitlines()[-1].startswith("[more matches may exist")
    assert len(many.content.splitlines()) == 6


async def test_delete(workspace: Workspace, tools: dict[str, Tool[..., str]]) -> None:
    root = workspace.root
    (root / "d").mkdir()
    (root / "d" / "f").write_text("")
    (root / "target").write_text("kept")
    os.symlink("target", root / "link")
    delete = tools["delete_file"]
    assert (await delete.invoke({"path": "d"})).content == "'d': the directory is not empty"
    assert not (await delete.invoke({"path": "d/f"})).is_error
    assert not (await delete.invoke({"path": "d"})).is_error
    assert not (await delete.invoke({"path": "link"})).is_error  # the link, not its target
    assert (root / "target").read_text() == "kept"
    for path in [".", "", "..", "x/.."]:
        assert (await delete.invoke({"path": path})).is_error, path


async def test_read_only_workspaces_offer_and_allow_no_writes(tmp_path: Path) -> None:
    with Workspace(tmp_path, read_only=True) as workspace:
        assert [t.name for t in workspace.tools()] == ["read_file", "list_dir", "search_files"]
        with pytest.raises(errors.ToolError, match="read-only"):
            workspace.write_file("x", "y")
        with pytest.raises(errors.ToolError, match="read-only"):
            workspace.delete_file("x")


def test_tool_definitions_are_written_for_the_model(tools: dict[str, Tool[..., str]]) -> None:
    assert sorted(tools) == ["delete_file", "list_dir", "read_file", "search_files", "write_file"]
    for item in tools.values():
        assert item.description
        for name, schema in item.parameters["properties"].items():
            assert schema.get("description"), (item.name, name)
    assert tools["read_file"].parameters["required"] == ["path"]
