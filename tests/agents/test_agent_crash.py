"""An agent whose process is SIGKILLed mid-run resumes in another process without
repeating a completed model call or tool call. SQLite and PostgreSQL.

The run (``agent_worker.py``) makes four model calls and four tool calls; the
fourth tool call kills its process after its side effect began. A second process
takes the run over. The fake model's request log and the tool's side-effect
ledger show what really happened, whatever the journal says.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from agent_support import tool_messages

from kernos.records import EntryKind, EntryStatus, RunStatus
from kernos.store import Store, open_store
from kernos.testing import FakeOpenAI, FakeToolCall

SCRIPT = Path(__file__).with_name("agent_worker.py")
REPO = Path(__file__).resolve().parents[2]
RUN_ID = "agent-crash-1"


class Workers:
    """The test's ``agent_worker.py`` processes; all stopped and reaped at the end."""

    def __init__(self, url: str, fake: FakeOpenAI, tmp: Path) -> None:
        self.url = url
        self.tmp = tmp
        self.ledger = tmp / "ledger.txt"
        self.marker = tmp / "killed.marker"
        self.env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(REPO), str(SCRIPT.parent)]),
            "KERNOS_TEST_FAKE_URL": fake.url,
            "KERNOS_TEST_LEDGER": str(self.ledger),
            "KERNOS_TEST_MARKER": str(self.marker),
        }
        self.live: list[asyncio.subprocess.Process] = []
        self.logs: list[Path] = []

    async def spawn(self, *argv: str) -> asyncio.subprocess.Process:
        log = self.tmp / f"worker-{len(self.logs)}.log"
        self.logs.append(log)
        with log.open("wb") as stderr:
            process = await asyncio.create_subprocess_exec(
                sys.executable, str(SCRIPT), *argv, self.url,
                *([RUN_ID] if argv == ("start",) else []),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=stderr,
                env=self.env,
            )  # fmt: skip
        self.live.append(process)
        return process

    def ledger_lines(self) -> list[tuple[str, int, int]]:
        if not self.ledger.exists():
            return []
        lines = []
        for line in self.ledger.read_text().splitlines():
            what, n, pid = line.split()
            lines.append((what, int(n), int(pid)))
        return lines

    def log_tail(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in self.logs
        )

    async def close(self) -> None:
        for process in self.live:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        for process in self.live:
            try:
                await asyncio.wait_for(process.wait(), 15)
            except TimeoutError:
                process.kill()
                await process.wait()


@pytest.fixture
async def workers(store_url: str, fake: FakeOpenAI, tmp_path: Path) -> AsyncIterator[Workers]:
    started = Workers(store_url, fake, tmp_path)
    yield started
    await started.close()


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    opened = open_store(store_url)
    yield opened
    await opened.close()


def calls(*numbers: int) -> list[FakeToolCall]:
    return [FakeToolCall(name="record", arguments={"n": n}, id=f"call_{n}") for n in numbers]


async def wait_succeeded(store: Store, workers: Workers, timeout: float = 30) -> None:
    give_up = time.monotonic() + timeout
    while (await store.get_run(RUN_ID)).status is not RunStatus.SUCCEEDED:
        if time.monotonic() > give_up:
            pytest.fail(f"{RUN_ID} did not succeed in {timeout}s\n{workers.log_tail()}")
        await asyncio.sleep(0.05)


async def test_an_agent_killed_mid_run_resumes_without_repeating_completed_calls(
    store: Store, workers: Workers, fake: FakeOpenAI
) -> None:
    fake.reply(tool_calls=calls(1))
    fake.reply(tool_calls=calls(2, 3))  # two calls in parallel
    fake.reply(tool_calls=calls(4))  # this one kills its process
    fake.reply("recorded four")

    first = await workers.spawn("start")
    assert await asyncio.wait_for(first.wait(), 60) == -signal.SIGKILL, workers.log_tail()
    workers.live.remove(first)
    assert workers.marker.exists()
    assert len(fake.requests) == 3
    at_crash = await store.load_journal(RUN_ID)
    assert [(e.kind, e.status) for e in at_crash] == [
        (EntryKind.STEP, EntryStatus.OK),  # the tenant's policy version, loaded at the start
        (EntryKind.LLM, EntryStatus.OK),
        (EntryKind.TOOL, EntryStatus.OK),
        (EntryKind.LLM, EntryStatus.OK),
        (EntryKind.TOOL, EntryStatus.OK),
        (EntryKind.TOOL, EntryStatus.OK),
        (EntryKind.LLM, EntryStatus.OK),
    ]

    second = await workers.spawn("work")
    await wait_succeeded(store, workers)

    # The model: the three answers before the crash were never asked for again.
    assert len(fake.requests) == 4
    assert [m["content"] for m in tool_messages(fake.requests[3].json)] == [
        f"recorded {n}" for n in (1, 2, 3, 4)
    ]
    # The tools: calls 1-3 ran once, in the first process; call 4, interrupted
    # before it was journaled, ran again in the second and only there completed.
    by_call: dict[tuple[str, int], list[int]] = defaultdict(list)
    for what, n, pid in workers.ledger_lines():
        by_call[what, n].append(pid)
    assert dict(by_call) == {
        ("start", 1): [first.pid],
        ("done", 1): [first.pid],
        ("start", 2): [first.pid],
        ("done", 2): [first.pid],
        ("start", 3): [first.pid],
        ("done", 3): [first.pid],
        ("start", 4): [first.pid, second.pid],
        ("done", 4): [second.pid],
    }  # (calls 2 and 3 ran concurrently: the order of their lines does not matter)
    run = await store.get_run(RUN_ID)
    assert run.executions == 2
    assert isinstance(run.output, dict) and run.output["output"] == "recorded four"
    assert run.output["turns"] == 4 and run.output["tool_calls"] == 4
    journal = await store.load_journal(RUN_ID)
    assert [e.kind for e in journal] == [e.kind for e in at_crash] + [EntryKind.TOOL, EntryKind.LLM]
    assert [e.output for e in journal[:7]] == [e.output for e in at_crash]  # unchanged
