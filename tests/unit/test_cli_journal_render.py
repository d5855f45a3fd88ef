"""`kernos runs show` renders every kind of journal entry (agents' llm and tool entries too)."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from kernos.cli import _render
from kernos.records import EntryKind, EntryStatus, JournalEntry


def _entry(kind: EntryKind, seq: int, **fields: Any) -> JournalEntry:
    values: dict[str, Any] = {
        "run_id": "r1",
        "seq": seq,
        "kind": kind,
        "name": kind.value,
        "status": EntryStatus.OK,
        "args_hash": None,
        "output": None,
        "error": None,
        "attempts": None,
        "detail": None,
        "started_at": 1_700_000_000.0,
        "finished_at": 1_700_000_000.5,
    }
    values.update(fields)
    return JournalEntry(**values)


def _text(entries: list[JournalEntry]) -> str:
    console = Console(width=200, record=True)
    console.print(_render.journal_table(entries))
    return console.export_text()


def test_every_entry_kind_has_a_detail() -> None:
    assert set(_render.ENTRY_DETAILS) == set(EntryKind)


def test_agent_entries_show_model_tokens_cost_and_tool_decisions() -> None:
    llm = _entry(
        EntryKind.LLM,
        0,
        name="openai:gpt-4o-mini",
        output={"text": "", "tool_calls": [{"id": "c1", "name": "search", "arguments": {}}]},
        detail={
            "model": "gpt-4o-mini",
            "usage": {"input_tokens": 120, "output_tokens": 30},
            "cost": 0.0021,
        },
    )
    tool = _entry(
        EntryKind.TOOL,
        1,
        name="search",
        output={"content": "three notes", "is_error": False, "decision": "allow"},
    )
    denied = _entry(
        EntryKind.TOOL,
        2,
        name="shell",
        output={"content": "refused by policy", "is_error": True, "decision": "deny"},
    )
    waiting = _entry(EntryKind.APPROVAL, 3, status=EntryStatus.PENDING, finished_at=None)
    text = _text([llm, tool, denied, waiting])
    assert "gpt-4o-mini; 150 tokens; $0.0021; calls search" in text
    assert 'allow: "three notes"' in text
    assert 'deny (error): "refused by policy"' in text
    assert "waiting for a decision" in text
