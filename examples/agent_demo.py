"""Part of ``make demo``: a durable research agent, its journal, a fork and a replay.

The agent answers a question from a small set of notes with two tools
(``search`` and ``read``); every model call and tool call is a journal entry.
The demo shows the journal with tokens, cost and latency per call, forks the run
at its first model answer with an edited answer, and replays the original with
no provider request.

The model: set ``KERNOS_DEMO_MODEL`` (e.g. ``openai:gpt-4o-mini``,
``anthropic:claude-haiku-4-5``, ``ollama:llama3.2``) and the provider's key
(``OPENAI_API_KEY``, ``ANTHROPIC_API_KEY``; Ollama needs none, ``OLLAMA_HOST``
says where it is) to use a real provider. Otherwise the demo starts the bundled
fake OpenAI server (``kernos.testing.FakeOpenAI``) with scripted answers, and
says so.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

import kernos
from kernos import agents, llm, tools
from kernos.testing import FakeOpenAI, FakeToolCall

console = Console(width=110)

FAKE_MODEL = "openai:gpt-4o-mini"
KEY_ENV = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}
QUESTION = "How does Kernos make an agent survive a crash, and what does a replay cost?"

NOTES = {
    "journal": "Every step, model call and tool call is written to the run's journal "
    "before the run moves on; the journal is the truth.",
    "recovery": "A worker that dies loses its lease; another worker re-executes the "
    "workflow from the top and every journaled call returns its recorded result, so "
    "nothing completed runs twice.",
    "replay": "A replay re-executes the workflow code against the journal with no side "
    "effects and no model calls: it costs nothing.",
    "fork": "A fork copies the journal up to an entry, optionally with an edited result "
    "there, and continues from it; the original is kept.",
}


@tools.tool
def search(query: str) -> list[str]:
    """Find the notes whose text mentions any word of the query.

    Args:
        query: words to look for.
    """
    words = {word.strip(".,?").lower() for word in query.split() if len(word) > 3}
    return [name for name, text in NOTES.items() if words & set(text.lower().split())]


@tools.tool
def read(note: str) -> str:
    """Read one note.

    Args:
        note: the note's name, as ``search`` gives it.
    """
    if note not in NOTES:
        raise kernos.errors.ToolError(f"no note named {note!r}; search first")
    return NOTES[note]


class Counting:
    """A provider that counts the requests it sends (to show a replay sends none)."""

    def __init__(self, inner: llm.Provider) -> None:
        self.inner = inner
        self.requests = 0

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def model(self) -> str:
        return self.inner.model

    async def chat(self, request: llm.ChatRequest) -> llm.ChatResponse:
        self.requests += 1
        return await self.inner.chat(request)

    async def stream(self, request: llm.ChatRequest) -> AsyncIterator[llm.StreamEvent]:
        self.requests += 1
        async for event in self.inner.stream(request):
            yield event

    async def aclose(self) -> None:
        await self.inner.aclose()


@dataclass
class Model:
    """Where the demo's model answers come from."""

    model: str
    provider: Counting
    fake: FakeOpenAI | None

    @property
    def description(self) -> str:
        if self.fake is not None:
            return (
                f"{self.model} via the bundled fake OpenAI server at {self.fake.url} "
                "(scripted answers; set KERNOS_DEMO_MODEL and the provider's key for a real one)"
            )
        return f"{self.model} (a real provider: this costs real tokens)"


def real_model() -> str | None:
    """``KERNOS_DEMO_MODEL`` when it is set and its provider's key too, else None."""
    wanted = os.environ.get("KERNOS_DEMO_MODEL", "").strip()
    if not wanted:
        return None
    key = KEY_ENV.get(llm.parse_model(wanted)[0])
    return wanted if key is None or os.environ.get(key) else None


def choose_model() -> Model:
    """A real provider when configured, else the fake server with a script."""
    wanted = real_model()
    if wanted is not None:
        return Model(wanted, Counting(llm.connect(wanted)), None)
    if configured := os.environ.get("KERNOS_DEMO_MODEL", "").strip():
        key = KEY_ENV.get(llm.parse_model(configured)[0])
        console.print(f"   [yellow]KERNOS_DEMO_MODEL={configured} but {key} is not set[/yellow]")
    fake = FakeOpenAI().start()
    script(fake)
    connected = llm.connect(FAKE_MODEL, base_url=fake.url, api_key="demo-key", retries=0)
    return Model(FAKE_MODEL, Counting(connected), fake)


def script(fake: FakeOpenAI) -> None:
    """The fake model's answers: the original run, then the fork's continuation."""
    fake.reply(tool_calls=[FakeToolCall(name="search", arguments={"query": "worker journal"})])
    fake.reply(
        tool_calls=[
            FakeToolCall(name="read", arguments={"note": "recovery"}),
            FakeToolCall(name="read", arguments={"note": "journal"}),
        ]
    )
    fake.reply(
        "Every model and tool call is journaled before the run goes on; when a worker "
        "dies, another re-executes the run from its journal and completed calls return "
        "their recorded results instead of running again. [notes: recovery, journal]"
    )
    # The fork starts from an edited first answer (a search for "replay"):
    fake.reply(tool_calls=[FakeToolCall(name="read", arguments={"note": "replay"})])
    fake.reply("A replay answers every call from the journal: no model call, no cost. [replay]")


def journal_table(
    title: str, entries: list[kernos.JournalEntry], fork_at: int | None = None
) -> Table:
    """The journal, one line per entry; in a fork, entries before ``fork_at`` are
    inherited and the one at it edited (they show the original call's figures)."""
    table = Table(title=title, title_justify="left")
    columns = ("seq", "kind", "name", "tokens in/out", "cost $", "ms", "what")
    for column in columns if fork_at is None else (*columns, "origin"):
        table.add_column(column, overflow="fold")
    for entry in entries:
        detail = entry.detail if isinstance(entry.detail, dict) else {}
        output = entry.output if isinstance(entry.output, dict) else {}
        usage = detail.get("usage") or {}
        if entry.kind is kernos.EntryKind.LLM:
            calls = ", ".join(
                f"{c['name']}({_text(c['arguments'])})" for c in output.get("tool_calls", [])
            )
            what = f"calls {calls}" if calls else repr(str(output.get("text", ""))[:60])
            tokens = f"{usage.get('input_tokens', '')}/{usage.get('output_tokens', '')}"
            cost = f"{detail['cost']:.6f}" if detail.get("cost") is not None else ""
        elif entry.kind is kernos.EntryKind.TOOL:
            what = f"{detail.get('decision', '')}: {str(output.get('content', ''))[:50]}"
            tokens, cost = "", ""
        elif entry.name == "policy":  # the run's first step: the tenant's stored policy
            version = output.get("policy_version")
            what = f"stored policy v{version}" if version else "no stored policy"
            tokens, cost = "", ""
        else:
            what, tokens, cost = _text(entry.output)[:60], "", ""
        latency = detail.get("latency_ms")
        row = [
            str(entry.seq),
            entry.kind.value,
            entry.name,
            tokens,
            cost,
            f"{latency:.1f}" if isinstance(latency, int | float) else "",
            escape(what),
        ]
        if fork_at is not None:
            row.append(
                "inherited" if entry.seq < fork_at else "edited" if entry.seq == fork_at else "new"
            )
        table.add_row(*row)
    return table


def _text(arguments: Any) -> str:
    return arguments if isinstance(arguments, str) else json.dumps(arguments)


async def main(store: str) -> None:
    """Run the agent part of the demo on ``store``."""
    console.print("\n[bold]5. A durable agent: model and tool calls in the journal[/bold]")
    chosen = choose_model()
    console.print(f"   model: {chosen.description}")
    researcher = agents.Agent(
        "demo-researcher",
        chosen.model,
        instructions="Answer from the notes only; search, read, then answer in two sentences "
        "naming the notes you used.",
        tools=[search, read],
        budget=agents.Budget(turns=8, tokens=20_000, cost_usd=0.05),
        provider=chosen.provider,
    )
    try:
        async with kernos.Kernos(store, poll_interval=0.05) as app:
            await run_demo(app, researcher, chosen)
    finally:
        await chosen.provider.aclose()
        if chosen.fake is not None:
            chosen.fake.stop()


async def run_demo(app: kernos.Kernos, researcher: agents.Agent, chosen: Model) -> None:
    handle = await researcher.start(app, QUESTION, run_id="research-1")
    result = await handle.result(timeout=120)
    console.print(f"   question: {QUESTION}")
    answer = escape(str(result.output))
    console.print(f"   answer ({result.stop_reason.value}, {result.turns} turns): {answer}")
    cost = f"${result.cost:.6f}" if result.cost is not None else "no price known"
    console.print(f"   usage: {result.usage.total_tokens} tokens, {cost}")
    journal = await app.journal(handle.run_id)
    console.print(journal_table("   journal of research-1", journal))

    console.print("\n   [bold]Fork at the first model answer, edited to search for 'replay'[/bold]")
    edited = {
        "tool_calls": [{"id": "edited-1", "name": "search", "arguments": {"query": "replay"}}]
    }
    before = chosen.provider.requests
    # The first model answer follows the entry recording the tenant's policy version.
    first_answer = next(e.seq for e in journal if e.kind is kernos.EntryKind.LLM)
    fork = await app.fork(handle.run_id, at=first_answer, patch=edited)
    forked = await researcher.handle(app, fork.run_id).result(timeout=120)
    console.print(f"   fork {fork.run_id}: {escape(str(forked.output))}")
    console.print(
        f"   provider requests made by the fork: {chosen.provider.requests - before} "
        "(only the turns after the edited answer)"
    )
    fork_journal = await app.journal(fork.run_id)
    console.print(journal_table(f"   journal of {fork.run_id}", fork_journal, fork_at=first_answer))

    console.print("\n   [bold]Replay the original run against its journal[/bold]")
    before = chosen.provider.requests
    fake_before = len(chosen.fake.requests) if chosen.fake is not None else 0
    report = await app.replay(handle.run_id)
    console.print(f"   replay: {report}")
    console.print(f"   provider requests during replay: {chosen.provider.requests - before}")
    if chosen.fake is not None:
        console.print(f"   (the fake server received {len(chosen.fake.requests) - fake_before})")
    ledger = await agents.usage_ledger(app, agent=researcher.name)
    spent = ledger.total()
    spent_cost = f"${spent.cost:.6f}" if spent.cost is not None else "no price known"
    console.print(
        f"   usage of agent {researcher.name} across its runs: {ledger.calls} model calls, "
        f"{spent.total_tokens} tokens, {spent_cost} (the fork's inherited calls counted once)"
    )
