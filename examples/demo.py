"""Kernos demo: a crash and its recovery, a fork with an edited step, and a replay.

Run with ``make demo``. Everything happens in ``demo-data/kernos.db`` (SQLite):

1. a worker process starts the "daily brief" workflow and is killed with
   SIGKILL in the middle of a step;
2. this process opens the same store, notices the dead worker and resumes the
   run from its journal: finished steps are not executed again;
3. the run is forked at the summary step with an edited result, and the fork
   continues from there while the original is kept, marked superseded;
4. the run is replayed against its journal, with no side effects, first with
   the same code (identical) and then with changed code (a divergence);
5. a research agent runs as a durable workflow, each model and tool call a
   journal entry with its tokens and cost; it is forked at a turn with an
   edited model answer and replayed with no provider request (see
   ``agent_demo.py``: a real provider when ``KERNOS_DEMO_MODEL`` and its key are
   set, otherwise the bundled fake OpenAI server);
6. ``kernos up`` serves the same store over the REST API, and the demo drives
   it over HTTP (see ``server_demo.py``);
7. to 10. people in the loop, over HTTP (see ``approval_demo.py``): a webhook to
   a receiver on loopback that verifies signatures, an expense approved by an
   operator (not by whoever started it) and one rejected, a tool call the
   tenant's policy sends for approval, approved with edited arguments, and the
   deliveries the receiver got. The server is left up, with the dashboard's URL
   and sign-in printed (``KERNOS_DEMO_SCRIPTED_ONLY=1`` stops it instead).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

import kernos

DATA = Path(os.environ.get("KERNOS_DEMO_DIR", "demo-data"))
STORE = f"sqlite:///{DATA / 'kernos.db'}"
LEDGER = DATA / "side-effects.log"
RUN_ID = "brief-2026-11-22"

console = Console(width=110)


def record(what: str) -> None:
    """Append a side effect to the ledger, so we can see what ran where."""
    with LEDGER.open("a") as ledger:
        ledger.write(f"{os.getpid()} {what}\n")


@kernos.step(retries=3)
async def fetch(source: str) -> dict[str, str]:
    """Pretend to fetch a source (a real agent would call an API or a tool here)."""
    record(f"fetch {source}")
    await asyncio.sleep(0.05)
    return {"source": source, "text": f"news from {source}"}


@kernos.step
async def summarize(pages: list[dict[str, str]]) -> str:
    """Pretend to summarize (a real agent would call an LLM here)."""
    record("summarize")
    if os.environ.get("KERNOS_DEMO_CRASH") == "1":
        console.print("[red]   worker: killed with SIGKILL in the middle of 'summarize'[/red]")
        os.kill(os.getpid(), signal.SIGKILL)
    return " / ".join(page["text"] for page in pages)


@kernos.step
def publish(summary: str) -> str:
    """A sync step: runs in a thread."""
    record("publish")
    return f"published: {summary}"


@kernos.workflow(name="daily_brief", version="1")
async def daily_brief(day: str) -> dict[str, str]:
    """Fan out to three sources, checkpoint, summarize, publish."""
    pages = await kernos.gather(fetch("wire"), fetch("blog"), fetch("paper"))
    kernos.checkpoint("collected", {"pages": len(pages)})
    summary = await summarize(pages)
    receipt = await publish(summary)
    return {"day": day, "summary": summary, "receipt": receipt}


async def start_and_crash() -> None:
    """Worker process: start the run; the summarize step kills this process."""
    async with kernos.Kernos(STORE) as app:
        handle = await app.start(daily_brief, "2026-11-22", run_id=RUN_ID)
        await handle.result()


def show_journal(title: str, entries: list[kernos.JournalEntry]) -> None:
    table = Table(title=title, title_justify="left")
    for column in ("seq", "kind", "name", "status", "output"):
        table.add_column(column)
    for entry in entries:
        output = str(entry.output)
        table.add_row(
            str(entry.seq),
            entry.kind.value,
            entry.name,
            entry.status.value,
            output if len(output) < 60 else output[:57] + "...",
        )
    console.print(table)


def effects(lines: list[str]) -> list[str]:
    return [line.split(" ", 1)[1] for line in lines]


def ledger_lines() -> list[str]:
    return LEDGER.read_text().splitlines() if LEDGER.exists() else []


async def main() -> None:
    console.rule("[bold]Kernos demo[/bold]")
    console.print(f"store: {STORE}\n")

    console.print("[bold]1. A worker starts the run and crashes[/bold]")
    child = subprocess.run(  # noqa: ASYNC221 - nothing else runs while the worker crashes
        [sys.executable, __file__, "--crash"],
        env={**os.environ, "KERNOS_DEMO_CRASH": "1"},
        check=False,
    )
    console.print(
        f"   worker exit status: {child.returncode} (killed by signal {-child.returncode})"
    )
    before = ledger_lines()

    async with kernos.Kernos(STORE, poll_interval=0.05) as app:
        run = await app.get_run(RUN_ID)
        console.print(f"   run {RUN_ID} is still '{run.status.value}' under a dead worker")
        show_journal("   journal at the crash", await app.journal(RUN_ID))

        console.print("\n[bold]2. This process takes over and resumes from the journal[/bold]")
        result = await app.handle(RUN_ID).result(timeout=30)
        after = ledger_lines()[len(before) :]
        console.print(f"   result: {result}")
        console.print(f"   side effects before the crash: {effects(before)}")
        console.print(f"   side effects after recovery:   {effects(after)}")
        console.print("   (the three fetches ran once; only the interrupted step ran again)")

        console.print("\n[bold]3. Fork at the summary step with an edited result[/bold]")
        journal = await app.journal(RUN_ID)
        summary_seq = next(e.seq for e in journal if e.name.endswith("summarize"))
        fork = await app.fork(RUN_ID, summary_seq, patch="an editor's better summary")
        forked = await fork.result(timeout=30)
        original = await app.get_run(RUN_ID)
        console.print(f"   fork {fork.run_id}: {forked}")
        console.print(f"   original kept, superseded by: {original.superseded_by}")
        console.print(
            f"   checkpoint 'collected' restored and verified: "
            f"{await app.restore(RUN_ID, 'collected')}"
        )

        console.print("\n[bold]4. Replay against the journal (no side effects)[/bold]")
        count = len(ledger_lines())
        console.print(f"   same code:    {await app.replay(RUN_ID)}")
        swap_in_changed_code()
        console.print(f"   changed code: {await app.replay(RUN_ID)}")
        console.print(f"   side effects during replays: {len(ledger_lines()) - count}")

    import agent_demo  # the examples directory is on sys.path when run as a script
    import server_demo

    await agent_demo.main(STORE)

    server_demo.main(STORE, int(os.environ.get("KERNOS_DEMO_PORT", "8420")))


def swap_in_changed_code() -> None:
    """Register a new version of daily_brief that skips the summary step."""

    async def daily_brief_v2(day: str) -> dict[str, str]:
        pages = await kernos.gather(fetch("wire"), fetch("blog"), fetch("paper"))
        kernos.checkpoint("collected", {"pages": len(pages)})
        receipt = await publish("no summary today")
        return {"day": day, "receipt": receipt}

    kernos.runtime.registry.workflows["daily_brief"] = kernos.Workflow(
        daily_brief_v2, name="daily_brief", version="2", timeout=None
    )


if __name__ == "__main__":
    if "--crash" in sys.argv:
        asyncio.run(start_and_crash())
    else:
        shutil.rmtree(DATA, ignore_errors=True)
        DATA.mkdir(parents=True)
        asyncio.run(main())
