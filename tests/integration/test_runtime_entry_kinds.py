"""Steps that journal ``llm`` and ``tool`` entries, the step scope and events from inside
a run: what the agent layer builds on. Every test runs on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
from runtime_support import new_app

import kernos
from kernos import errors
from kernos.records import EntryKind, EntryStatus

CALLS: Counter[str] = Counter()


@pytest.fixture(autouse=True)
def _reset() -> None:
    CALLS.clear()


@pytest.fixture
async def app(store_url: str) -> AsyncIterator[kernos.Kernos]:
    async with new_app(store_url) as app:
        yield app


async def _answer(prompt: str) -> dict[str, Any]:
    CALLS["llm"] += 1
    scope = kernos.runtime.current_step()
    assert scope is not None and scope.kind is EntryKind.LLM
    for piece in ("Hel", "lo"):
        scope.emit("test.delta", {"seq": scope.seq, "text": piece})
    scope.annotate({"tokens": 7, "latency_ms": 1.5}, event={"tokens": 7})
    return {"text": f"answer to {prompt}"}


def _search(query: str) -> dict[str, Any]:  # sync: runs in a thread
    CALLS["tool"] += 1
    scope = kernos.runtime.current_step()
    assert scope is not None and scope.kind is EntryKind.TOOL
    assert threading.current_thread() is not threading.main_thread()
    scope.emit("test.progress", {"query": query})
    scope.annotate({"decision": "allow"})
    return {"content": f"results for {query}"}


async def _broken(prompt: str) -> dict[str, Any]:
    CALLS["broken"] += 1
    kernos.runtime.current_step().annotate({"provider": "fake"})  # type: ignore[union-attr]
    raise errors.ProviderUnavailableError("the provider is down", provider="fake")


answer = kernos.Step(
    _answer, name="fake:model", retry=kernos.RetryPolicy.of(0), timeout=None, kind=EntryKind.LLM
)
search = kernos.Step(
    _search, name="search", retry=kernos.RetryPolicy.of(0), timeout=None, kind=EntryKind.TOOL
)
broken = kernos.Step(
    _broken, name="fake:model", retry=kernos.RetryPolicy.of(0), timeout=None, kind=EntryKind.LLM
)


@kernos.workflow(name="rt_kinds.agentish")
async def agentish(prompt: str) -> list[Any]:
    kernos.runtime.emit("test.begin", {"prompt": prompt})
    first = await answer(prompt)
    found = await kernos.gather(search("a"), search("b"))
    second = await answer(first["text"])
    return [first["text"], [f["content"] for f in found], second["text"]]


@kernos.workflow(name="rt_kinds.failing")
async def failing(prompt: str) -> str:
    try:
        await broken(prompt)
    except errors.ProviderError as exc:
        return f"stopped: {exc.code}"
    return "unreachable"


@kernos.workflow(name="rt_kinds.as_step")
async def as_step(prompt: str) -> str:
    first = await plain_answer(prompt)
    return str(first["text"])


@kernos.step(name="fake:model")
async def plain_answer(prompt: str) -> dict[str, Any]:
    return {"text": prompt}


async def test_llm_and_tool_steps_write_entries_of_their_kind_with_detail(
    app: kernos.Kernos,
) -> None:
    handle = await app.start(agentish, "q", run_id="kinds")
    result = await handle.result(timeout=10)
    assert result == [
        "answer to q",
        ["results for a", "results for b"],
        "answer to answer to q",
    ]
    journal = await app.journal("kinds")
    assert [(e.seq, e.kind, e.name) for e in journal] == [
        (0, EntryKind.LLM, "fake:model"),
        (1, EntryKind.TOOL, "search"),
        (2, EntryKind.TOOL, "search"),
        (3, EntryKind.LLM, "fake:model"),
    ]
    assert journal[0].detail == {"tokens": 7, "latency_ms": 1.5}
    assert journal[1].detail == {"decision": "allow"}
    assert all(e.status is EntryStatus.OK for e in journal)
    events = await app.events("kinds")
    kinds = [e.kind for e in events]
    assert kinds.count("llm.completed") == 2 and kinds.count("tool.completed") == 2
    assert "step.completed" not in kinds
    completed = next(e for e in events if e.kind == "llm.completed")
    assert isinstance(completed.data, dict)
    assert completed.data["seq"] == 0 and completed.data["name"] == "fake:model"
    assert completed.data["tokens"] == 7
    deltas = [e.data for e in events if e.kind == "test.delta"]
    assert deltas == [
        {"seq": 0, "text": "Hel"},
        {"seq": 0, "text": "lo"},
        {"seq": 3, "text": "Hel"},
        {"seq": 3, "text": "lo"},
    ]
    assert sorted(str(e.data) for e in events if e.kind == "test.progress") == [
        "{'query': 'a'}",
        "{'query': 'b'}",
    ]
    assert [e.data for e in events if e.kind == "test.begin"] == [{"prompt": "q"}]


async def test_replay_answers_llm_and_tool_entries_from_the_journal(app: kernos.Kernos) -> None:
    await (await app.start(agentish, "q", run_id="kinds")).result(timeout=10)
    before = len(await app.events("kinds"))
    CALLS.clear()
    report = await app.replay("kinds")
    assert report.identical and report.entries_checked == 4
    assert CALLS == {}  # no model or tool body ran
    assert len(await app.events("kinds")) == before  # and a replay emits nothing


async def test_a_journaled_llm_entry_is_not_a_step_of_the_same_name(app: kernos.Kernos) -> None:
    await (await app.start(as_step, "q", run_id="plain")).result(timeout=10)
    kernos.runtime.registry.workflows["rt_kinds.as_step"] = kernos.Workflow(
        _as_llm, name="rt_kinds.as_step", version="2", timeout=None
    )
    try:
        report = await app.replay("plain")
    finally:
        kernos.runtime.registry.workflows["rt_kinds.as_step"] = as_step
    assert not report.identical
    assert report.divergence is not None and report.divergence.reason == "kind"
    assert report.divergence.expected.startswith("step") and report.divergence.found.startswith(
        "llm"
    )


async def _as_llm(prompt: str) -> str:
    first = await answer(prompt)
    return str(first["text"])


async def test_a_failed_llm_call_is_journaled_with_its_detail_and_not_repeated(
    app: kernos.Kernos,
) -> None:
    handle = await app.start(failing, "q", run_id="down")
    assert await handle.result(timeout=10) == "stopped: provider_unavailable"
    [entry] = await app.journal("down")
    assert entry.kind is EntryKind.LLM and entry.status is EntryStatus.ERROR
    assert entry.detail == {"provider": "fake"}
    assert isinstance(entry.error, dict)
    assert entry.error["type"] == "kernos.errors.ProviderUnavailableError"
    assert [e.kind for e in await app.events("down") if e.kind.startswith("llm.")] == ["llm.failed"]
    assert CALLS["broken"] == 1
    report = await app.replay("down")
    assert report.identical and CALLS["broken"] == 1


@pytest.mark.parametrize("seq", [0, 1])
async def test_fork_patches_an_llm_answer_or_a_tool_result(app: kernos.Kernos, seq: int) -> None:
    await (await app.start(agentish, "q", run_id="kinds")).result(timeout=10)
    CALLS.clear()
    patch = {"text": "edited"} if seq == 0 else {"content": "edited results"}
    fork = await app.fork("kinds", at=seq, patch=patch)
    result = await fork.result(timeout=10)
    if seq == 0:
        assert result == ["edited", ["results for a", "results for b"], "answer to edited"]
        assert CALLS == {"tool": 2, "llm": 1}
    else:
        assert result == [
            "answer to q",
            ["edited results", "results for b"],
            "answer to answer to q",
        ]
        assert CALLS == {"tool": 1, "llm": 1}
    journal = await app.journal(fork.run_id)
    assert journal[seq].output == patch and journal[seq].kind in (EntryKind.LLM, EntryKind.TOOL)


def test_a_step_cannot_journal_waits() -> None:
    with pytest.raises(errors.RegistrationError):
        kernos.Step(
            _answer, name="x", retry=kernos.RetryPolicy.of(0), timeout=None, kind=EntryKind.SLEEP
        )


async def test_outside_a_run_there_is_no_step_scope_and_emit_does_nothing() -> None:
    assert kernos.runtime.current_step() is None
    kernos.runtime.emit("test.nowhere", {"x": 1})
    assert await plain_answer("direct") == {"text": "direct"}


async def _summarized(big: list[int], digest: str) -> int:
    CALLS["summarized"] += 1
    return len(big)


summarized = kernos.Step(
    _summarized,
    name="summarized",
    retry=kernos.RetryPolicy.of(0),
    timeout=None,
    kind=EntryKind.LLM,
    key=lambda big, digest: digest,
)


@kernos.workflow(name="rt_kinds.keyed")
async def keyed(size: int, digest: str) -> int:
    return int(await summarized(list(range(size)), digest))


async def test_a_step_key_identifies_the_call_in_place_of_its_arguments(
    app: kernos.Kernos,
) -> None:
    await (await app.start(keyed, 1000, "d1", run_id="keyed")).result(timeout=10)
    [entry] = await app.journal("keyed")
    assert entry.args_hash == kernos.serialization.args_hash(("d1",), {}, what="key")

    def version(size: int, digest: str) -> kernos.Workflow[..., int]:
        async def fn(_size: int, _digest: str) -> int:
            return int(await summarized(list(range(size)), digest))

        return kernos.Workflow(fn, name="rt_kinds.keyed", version="2", timeout=None)

    try:  # other arguments, same key: the same call; another key: a divergence
        kernos.runtime.registry.workflows["rt_kinds.keyed"] = version(5, "d1")
        assert (await app.replay("keyed")).identical
        kernos.runtime.registry.workflows["rt_kinds.keyed"] = version(1000, "d2")
        report = await app.replay("keyed")
    finally:
        kernos.runtime.registry.workflows["rt_kinds.keyed"] = keyed
    assert report.divergence is not None and report.divergence.reason == "args"


GATE: dict[str, asyncio.Event] = {}
SEEN: dict[str, list[int]] = {}


async def _behind(n: int) -> int:
    CALLS["behind"] += 1
    return n


async def _peek(n: int) -> int:
    # What the journal holds while this body runs (read through the store).
    app = kernos.Kernos.current()
    SEEN.setdefault("peek", []).append(len(await app.store.load_journal("behind")))
    GATE["open"].set()
    return n


behind = kernos.Step(
    _behind,
    name="behind",
    retry=kernos.RetryPolicy.of(0),
    timeout=None,
    kind=EntryKind.TOOL,
    write_behind=True,
)
peek_llm = kernos.Step(
    _peek, name="peek", retry=kernos.RetryPolicy.of(0), timeout=None, kind=EntryKind.LLM
)
peek_step = kernos.Step(_peek, name="peek", retry=kernos.RetryPolicy.of(0), timeout=None)


@kernos.workflow(name="rt_kinds.write_behind")
async def write_behind(model_next: bool) -> list[int]:
    first = await behind(1)
    second = await (peek_llm(2) if model_next else peek_step(2))
    return [first, second]


@pytest.mark.parametrize("model_next", [True, False])
async def test_a_write_behind_entry_is_durable_before_anything_but_a_model_call(
    app: kernos.Kernos, model_next: bool
) -> None:
    GATE["open"] = asyncio.Event()
    SEEN.clear()
    apply = app.store.apply

    async def gated(writes: Any) -> Any:
        # The write-behind entry commits only once a later body opened the gate,
        # or after a moment when nothing will (the flush must wait for it).
        if any(getattr(w, "name", None) == "behind" for w in writes):
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.5):
                    await GATE["open"].wait()
        return await apply(writes)

    app.store.apply = gated  # type: ignore[method-assign]
    handle = await app.start(write_behind, model_next, run_id="behind")
    assert await handle.result(timeout=10) == [1, 2]
    # A model call started while the entry was still queued; a step waited for it.
    assert SEEN["peek"] == ([0] if model_next else [1])
    journal = await app.journal("behind")
    assert [(e.seq, e.kind, e.status) for e in journal] == [
        (0, EntryKind.TOOL, EntryStatus.OK),
        (1, EntryKind.LLM if model_next else EntryKind.STEP, EntryStatus.OK),
    ]


async def test_a_run_ending_after_a_write_behind_step_waits_for_its_entry(
    app: kernos.Kernos,
) -> None:
    handle = await app.start(only_behind, run_id="only")
    assert await handle.result(timeout=10) == 7
    [entry] = await app.journal("only")
    assert entry.status is EntryStatus.OK and entry.output == 7


@kernos.workflow(name="rt_kinds.only_behind")
async def only_behind() -> int:
    return int(await behind(7))
