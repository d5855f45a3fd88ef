"""File tools never reach outside the workspace: a corpus of escapes, and races.

Every case runs with both resolvers: ``openat2`` (where the kernel has it) and
the component-by-component walk used where it does not. Outside the workspace
sits a canary file; no tool result may ever contain it, and no error message
may contain the host path of the workspace.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from kernos import errors
from kernos.tools import Tool, ToolResult, Workspace
from kernos.tools._beneath import openat2_available

CANARY = "CANARY-0f1e2d3c"
INSIDE = "inside-content"

METHODS = [
    pytest.param(
        "openat2",
        marks=pytest.mark.skipif(not openat2_available(), reason="no openat2 on this kernel"),
    ),
    "walk",
]


@dataclass
class Layout:
    root: Path  # the workspace
    outside: Path  # a directory next to it, holding the canary
    workspace: Workspace
    tools: dict[str, Tool[..., str]]

    async def call(self, name: str, **arguments: object) -> ToolResult:
        result = await self.tools[name].invoke(arguments)
        assert CANARY not in result.content
        if not any(str(self.root.parent) in str(value) for value in arguments.values()):
            # The host location never shows, unless the model wrote it itself.
            assert str(self.root.parent) not in result.content
        return result


@pytest.fixture(params=METHODS)
def method(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value


def _build(tmp_path: Path, method: str, *, follow_symlinks: bool = True) -> Iterator[Layout]:
    root = tmp_path / "ws"
    outside = tmp_path / "outside"
    (root / "a" / "b").mkdir(parents=True)
    outside.mkdir()
    (outside / "secret").write_text(CANARY)
    (root / "inside.txt").write_text(INSIDE)
    (root / "a" / "inside.txt").write_text(INSIDE)
    workspace = Workspace(root, method=method, follow_symlinks=follow_symlinks)  # type: ignore[arg-type]
    assert workspace.method == method
    try:
        yield Layout(root, outside, workspace, {t.name: t for t in workspace.tools()})
    finally:
        workspace.close()


@pytest.fixture
def layout(tmp_path: Path, method: str) -> Iterator[Layout]:
    yield from _build(tmp_path, method)


def _links(layout: Layout) -> dict[str, str]:
    """Symlinks to plant in the workspace: name -> target."""
    root, outside = layout.root, layout.outside
    return {
        "abs_file": str(outside / "secret"),
        "rel_file": "../outside/secret",
        "abs_dir": str(outside),
        "rel_dir": "../outside",
        "a/b/deep_dir": "../../../outside",
        "chain1": "chain2",
        "chain2": "a/chain3",
        "a/chain3": "../../outside/secret",
        "loop1": "loop2",
        "loop2": "loop1",
        "proc_root": "/proc/self/root",
        "abs_inside": str(root / "inside.txt"),  # absolute, even though it points inside
        "ünïcødé_dir": "../outside",
        "sibling": "inside.txt",
        "a/up_inside": "../inside.txt",
    }


def _plant(layout: Layout) -> None:
    for name, target in _links(layout).items():
        os.symlink(target, layout.root / name)


ESCAPES = [
    "../outside/secret",
    "a/../../outside/secret",
    "a/b/../../../outside/secret",
    "./../outside/secret",
    "a/./../.././outside/secret",
    "abs_file",
    "rel_file",
    "abs_dir/secret",
    "rel_dir/secret",
    "a/b/deep_dir/secret",
    "chain1",
    "loop1",
    "ünïcødé_dir/secret",
    "abs_inside",
    "a/b/../../rel_dir/secret",
]


@pytest.mark.parametrize("path", ESCAPES)
async def test_escapes_are_refused(layout: Layout, path: str) -> None:
    _plant(layout)
    result = await layout.call("read_file", path=path)
    assert result.is_error
    assert repr(path) in result.content or "symbolic link" in result.content


async def test_absolute_paths_are_refused(layout: Layout) -> None:
    for path in [str(layout.outside / "secret"), "/etc/passwd", str(layout.root / "inside.txt")]:
        result = await layout.call("read_file", path=path)
        assert result.is_error
        assert "outside the workspace" in result.content


async def test_proc_magic_links_are_refused(layout: Layout) -> None:
    _plant(layout)
    held = os.open(layout.outside / "secret", os.O_RDONLY)
    try:
        os.symlink(f"/proc/self/fd/{held}", layout.root / "fd_link")
        os.symlink(f"/proc/{os.getpid()}/root", layout.root / "pid_root")
        through_root = str(layout.outside / "secret").lstrip("/")
        for path in ["fd_link", f"proc_root/{through_root}", f"pid_root/{through_root}"]:
            result = await layout.call("read_file", path=path)
            assert result.is_error, path
    finally:
        os.close(held)


async def test_hard_links_are_refused(layout: Layout) -> None:
    os.link(layout.outside / "secret", layout.root / "hard")
    os.link(layout.root / "inside.txt", layout.root / "a" / "twin")  # even inside: refused
    for path in ["hard", "a/twin"]:
        result = await layout.call("read_file", path=path)
        assert result.is_error
        assert "hard links" in result.content
    assert (await layout.call("search_files", pattern=CANARY)).content == "no matches"
    overwrite = await layout.call("write_file", path="hard", content="x")
    assert overwrite.is_error
    assert (layout.outside / "secret").read_text() == CANARY
    deleted = await layout.call("delete_file", path="hard")  # removes the name only
    assert not deleted.is_error
    assert (layout.outside / "secret").read_text() == CANARY


@pytest.mark.parametrize(
    "path",
    [
        "a\0b",
        "inside.txt\0../../outside/secret",
        "x" * 300,
        "a/" * 2100 + "inside.txt",
        "\udc00\ud800",
    ],
)
async def test_malformed_paths_are_refused(layout: Layout, path: str) -> None:
    result = await layout.call("read_file", path=path)
    assert result.is_error


async def test_links_that_stay_inside_are_followed(layout: Layout) -> None:
    _plant(layout)
    for path in ["sibling", "a/up_inside", "a/../inside.txt", "a/b/../inside.txt", "sibling/."]:
        result = await layout.call("read_file", path=path.removesuffix("/."))
        assert result == ToolResult(content=INSIDE), path
    (layout.root / "ünï").mkdir()
    (layout.root / "ünï" / "çà.txt").write_text("unicode ✓")
    assert (await layout.call("read_file", path="ünï/çà.txt")).content == "unicode ✓"


def test_links_inside_are_refused_when_not_following(tmp_path: Path, method: str) -> None:
    built = _build(tmp_path, method, follow_symlinks=False)
    layout = next(built)
    _plant(layout)
    results = [asyncio.run(layout.call("read_file", path=p)) for p in ["sibling", "a/up_inside"]]
    assert all(r.is_error and "symbolic link" in r.content for r in results), results
    assert asyncio.run(layout.call("read_file", path="a/../inside.txt")).content == INSIDE
    built.close()
    with pytest.raises(errors.ToolError, match="closed"):
        layout.workspace.read_file("inside.txt")


async def test_writes_never_land_outside(layout: Layout) -> None:
    _plant(layout)
    before = sorted(p.name for p in layout.outside.iterdir())
    for path in [
        "../outside/new",
        "abs_dir/new",
        "rel_dir/new",
        "a/b/deep_dir/new",
        "rel_dir/sub/new",
        str(layout.outside / "new"),
    ]:
        result = await layout.call("write_file", path=path, content="pwned")
        assert result.is_error, path
    # A symlink as the last component is replaced, never written through.
    for path in ["rel_file", "abs_file", "chain1"]:
        assert not (await layout.call("write_file", path=path, content="mine")).is_error
        assert not (layout.root / path).is_symlink()
    assert sorted(p.name for p in layout.outside.iterdir()) == before
    assert (layout.outside / "secret").read_text() == CANARY
    assert not (layout.root / "a" / "b" / "deep_dir").resolve().joinpath("sub").exists()


async def test_listing_searching_and_deleting_stay_inside(layout: Layout) -> None:
    _plant(layout)
    for path in ["rel_dir", "abs_dir", "..", "/"]:
        assert (await layout.call("list_dir", path=path)).is_error, path
    listing = await layout.call("list_dir")
    assert "rel_dir@" in listing.content
    found = await layout.call("search_files", pattern="CANARY")
    assert found.content == "no matches"
    assert (await layout.call("search_files", pattern="x", path="rel_dir")).is_error
    for path in ["rel_dir/secret", "../outside/secret", "abs_dir/secret"]:
        assert (await layout.call("delete_file", path=path)).is_error, path
    assert (layout.outside / "secret").read_text() == CANARY


# -- races: a directory of the workspace swapped for a symlink to the outside --

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.renameat2(_AT_FDCWD, bytes(a), _AT_FDCWD, bytes(b), _RENAME_EXCHANGE) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def _swapper(layout: Layout, kind: str, target: str) -> Callable[[], None]:
    """A loop that swaps ws/dir between a real directory and a symlink to ``target``."""
    directory = layout.root / "dir"
    (directory).mkdir()
    (directory / "secret").write_text(INSIDE)
    (layout.outside / "dir_secret_marker").write_text("")
    link = layout.root / "link"
    os.symlink(target, link)

    def exchange() -> None:
        _exchange(directory, link)

    def replace() -> None:
        # Without RENAME_EXCHANGE: move the directory away, put a symlink in its place.
        if directory.is_symlink():
            directory.unlink()
            os.rename(layout.root / "dir.away", directory)
        else:
            os.rename(directory, layout.root / "dir.away")
            os.symlink(target, directory)

    return exchange if kind == "exchange" else replace


def _run_in_thread(step: Callable[[], None], stop: threading.Event, count: list[int]) -> None:
    while not stop.is_set():
        step()
        count[0] += 1


@pytest.mark.parametrize("kind", ["exchange", "replace"])
@pytest.mark.parametrize("absolute", [True, False], ids=["abs-link", "rel-link"])
async def test_race_swapping_a_directory_for_a_symlink(
    layout: Layout, kind: str, absolute: bool
) -> None:
    target = str(layout.outside) if absolute else "../outside"
    step = _swapper(layout, kind, target)
    read = layout.tools["read_file"]
    stop, swaps = threading.Event(), [0]
    thread = threading.Thread(target=_run_in_thread, args=(step, stop, swaps), daemon=True)
    thread.start()
    inside = refused = attempts = 0
    try:
        # Keep reading until both outcomes were seen many times, so the race was
        # really run, but at most a bounded number of times.
        while attempts < 2_000 or (min(inside, refused) < 100 and attempts < 40_000):
            attempts += 1
            result = await read.invoke({"path": "dir/secret"})
            assert CANARY not in result.content
            if result.is_error:
                refused += 1
            else:
                assert result.content == INSIDE
                inside += 1
    finally:
        stop.set()
        thread.join()
    assert swaps[0] > 0
    assert inside > 0 and refused > 0, (inside, refused)

    # The control: following the path naively does read the canary in this race.
    stop.clear()
    thread = threading.Thread(target=_run_in_thread, args=(step, stop, swaps), daemon=True)
    thread.start()
    leaked = False
    try:
        for _ in range(200_000):
            try:
                leaked = (layout.root / "dir" / "secret").read_text() == CANARY
            except OSError:
                continue
            if leaked:
                break
    finally:
        stop.set()
        thread.join()
    assert leaked, "the swap never exposed the canary: the race was not exercised"


async def test_race_writes_never_land_outside(layout: Layout) -> None:
    step = _swapper(layout, "exchange", str(layout.outside))
    write = layout.tools["write_file"]
    stop, swaps = threading.Event(), [0]
    thread = threading.Thread(target=_run_in_thread, args=(step, stop, swaps), daemon=True)
    thread.start()
    try:
        for n in range(1_000):
            await write.invoke({"path": f"dir/new-{n}", "content": "x"})
    finally:
        stop.set()
        thread.join()
    assert swaps[0] > 0
    assert not [p for p in layout.outside.iterdir() if p.name.startswith("new-")]


def test_a_missing_root_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(errors.ConfigError):
        Workspace(tmp_path / "missing")
    (tmp_path / "file").write_text("")
    with pytest.raises(errors.ConfigError):
        Workspace(tmp_path / "file")


def test_both_resolvers_answer_alike(tmp_path: Path) -> None:
    if not openat2_available():
        pytest.skip("no openat2 on this kernel")
    answers: dict[str, list[ToolResult]] = {}
    for method in ["openat2", "walk"]:
        built = _build(tmp_path / method, method)
        layout = next(built)
        _plant(layout)
        paths = [
            *ESCAPES,
            *_links(layout),
            "inside.txt/",
            "inside.txt/.",
            "a/",
            "a/b/..",
            "missing/../inside.txt",
            "sibling/",
            "",
            "/",
        ]
        answers[method] = [asyncio.run(layout.call("read_file", path=p)) for p in paths]
        built.close()
    assert answers["openat2"] == answers["walk"]
