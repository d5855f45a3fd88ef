"""Agent overhead per turn: a durable Kernos agent against the same loop written
directly with the ``openai`` SDK, both against the fake OpenAI server (no added
latency), measured in the same run.

The agent makes ``--turns`` model calls (50): every answer but the last calls one
tool, so a turn is one model call and one tool call. Kernos journals both (an
``llm`` and a ``tool`` entry, durably committed) and runs the tool through its
policy and schema validation; the raw loop keeps the conversation in a list and
calls the tool's function. Rounds alternate between the two after a warm-up of
each; the figures are medians over the rounds, and the overhead is the median of
each round's difference (adjacent runs share the machine's load of the moment);
``overhead_ms_per_turn_best`` compares the fastest round of each. The fake server runs in a process
of its own, as a provider would, so that it does not compete with the measured
loops for this process's interpreter lock. Prints one JSON object.

    python benchmarks/agent.py --store sqlite --durability full --turns 50 --rounds 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _common import DEFAULT_POSTGRES_URL, emit, log, scratch_dir, scratch_postgres

import kernos
from kernos import agents, llm, tools
from kernos.testing import FakeOpenAI, FakeToolCall, RecordedRequest, Reply

KEY = "sk-bench"
MODEL = "gpt-4o-mini"
INSTRUCTIONS = "You look facts up one at a time, then answer."
TASK = "Look up every fact you need, then summarize."


@tools.tool
async def lookup(i: int) -> str:
    """Look up fact number ``i``.

    Args:
        i: the fact's number.
    """
    return f"fact {i}: the answer to question {i} is {i * 7}."


def responder(turns: int) -> Any:
    """The fake model: one lookup per answer until the last, which answers."""

    def respond(request: RecordedRequest) -> Reply:
        done = sum(1 for m in request.messages if m.get("role") == "tool")
        if done < turns - 1:
            call = FakeToolCall(name="lookup", arguments={"i": done})
            return Reply(tool_calls=(call,), input_tokens=50 + 30 * done, output_tokens=12)
        return Reply(text=f"Looked up {done} facts.", input_tokens=50 + 30 * done, output_tokens=8)

    return respond


async def raw_sdk_run(client: Any, turns: int) -> float:
    """The same loop with the openai SDK alone; returns seconds."""
    started = time.perf_counter()
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": INSTRUCTIONS},
        {"role": "user", "content": TASK},
    ]
    specs = [lookup.to_openai()]
    made = 0
    while True:
        completion = await client.chat.completions.create(
            model=MODEL, messages=messages, tools=specs
        )
        made += 1
        message = completion.choices[0].message
        calls = message.tool_calls or []
        assistant: dict[str, Any] = {"role": "assistant", "content": message.content or ""}
        if calls:
            assistant["tool_calls"] = [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.function.name, "arguments": c.function.arguments},
                }
                for c in calls
            ]
        messages.append(assistant)
        if not calls:
            break
        for call in calls:
            result = await lookup.function(**json.loads(call.function.arguments))
            messages.append({"role": "tool", "tool_call_id": call.id, "content": result})
    assert made == turns, made
    return time.perf_counter() - started


async def kernos_run(app: kernos.Kernos, agent: agents.Agent, turns: int) -> float:
    """One durable agent run; returns seconds from start to result."""
    started = time.perf_counter()
    handle = await agent.start(app, TASK)
    result = await handle.result(timeout=600)
    seconds = time.perf_counter() - started
    assert result.stop_reason is agents.StopReason.DONE and result.turns == turns, result
    return seconds


def serve(turns: int) -> None:
    """The fake server's process: print its URL, serve until stdin closes."""
    fake = FakeOpenAI()
    fake.responder = responder(turns)
    fake.start()
    print(fake.url, flush=True)
    sys.stdin.read()
    fake.stop()


def start_server(turns: int) -> tuple[subprocess.Popen[str], str]:
    """Start ``serve`` in a subprocess; return it and the fake's URL."""
    process = subprocess.Popen(
        [sys.executable, __file__, "--serve", "--turns", str(turns)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    return process, process.stdout.readline().strip()


async def measure(url: str, *, durable: bool, turns: int, rounds: int) -> dict[str, Any]:
    import openai

    server, fake_url = start_server(turns)
    agent = agents.Agent(
        "bench-agent",
        f"openai:{MODEL}",
        INSTRUCTIONS,
        tools=[lookup],
        budget=agents.Budget(turns=turns + 1),
        provider=lambda: llm.connect(f"openai:{MODEL}", base_url=fake_url, api_key=KEY, retries=0),
    )
    client = openai.AsyncOpenAI(base_url=fake_url, api_key=KEY, max_retries=0)
    app = await kernos.Kernos(url, durable=durable).open()
    try:
        await kernos_run(app, agent, turns)  # warm-up: imports, connections, prepared statements
        await raw_sdk_run(client, turns)
        writer = app.engine.writer
        batches, writes = writer.batches, writer.writes
        kernos_s: list[float] = []
        raw_s: list[float] = []
        kernos_cpu: list[float] = []
        raw_cpu: list[float] = []
        for _ in range(rounds):
            cpu = time.process_time()
            kernos_s.append(await kernos_run(app, agent, turns))
            kernos_cpu.append(time.process_time() - cpu)
            cpu = time.process_time()
            raw_s.append(await raw_sdk_run(client, turns))
            raw_cpu.append(time.process_time() - cpu)
        batches, writes = writer.batches - batches, writer.writes - writes
    finally:
        await app.close()
        await agent.aclose()
        await client.close()
        assert server.stdin is not None
        server.stdin.close()
        await asyncio.to_thread(server.wait, 10)
    kernos_ms = statistics.median(kernos_s) / turns * 1000
    raw_ms = statistics.median(raw_s) / turns * 1000
    paired = statistics.median(k - r for k, r in zip(kernos_s, raw_s, strict=True)) / turns
    best = (min(kernos_s) - min(raw_s)) / turns
    kernos_cpu_ms = statistics.median(kernos_cpu) / turns * 1000
    raw_cpu_ms = statistics.median(raw_cpu) / turns * 1000
    return {
        "turns": turns,
        "rounds": rounds,
        "kernos_ms_per_turn": round(kernos_ms, 3),
        "raw_sdk_ms_per_turn": round(raw_ms, 3),
        "overhead_ms_per_turn": round(paired * 1000, 3),
        "overhead_ms_per_turn_best": round(best * 1000, 3),
        "kernos_cpu_ms_per_turn": round(kernos_cpu_ms, 3),
        "raw_sdk_cpu_ms_per_turn": round(raw_cpu_ms, 3),
        "overhead_cpu_ms_per_turn": round(kernos_cpu_ms - raw_cpu_ms, 3),
        "kernos_ms_per_turn_each_round": [round(s / turns * 1000, 3) for s in kernos_s],
        "raw_sdk_ms_per_turn_each_round": [round(s / turns * 1000, 3) for s in raw_s],
        "journal_writes_per_turn": round(writes / (rounds * turns), 2),
        "commits_per_turn": round(batches / (rounds * turns), 2),
    }


def report(store: str, durability: str, result: dict[str, Any]) -> dict[str, Any]:
    return {
        "store": store,
        "durability": durability,
        **result,
        "python": platform.python_version(),
        "kernos": kernos.__version__,
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--durability", choices=["full", "fast"], default="full")
    parser.add_argument("--turns", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL, help="admin URL")
    parser.add_argument("--dir", default=None, help="where SQLite files go (default: $TMPDIR)")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.turns)
        return
    durable = args.durability == "full"
    log(f"agent: store={args.store} durability={args.durability} turns={args.turns}")
    options = {"durable": durable, "turns": args.turns, "rounds": args.rounds}
    if args.store == "sqlite":
        with scratch_dir(args.dir) as directory:
            url = f"sqlite:///{Path(directory, 'kernos.db').resolve()}"
            result = asyncio.run(measure(url, **options))  # type: ignore[arg-type]
    else:
        with scratch_postgres(args.postgres_url, f"kernos_bench_{os.getpid()}_agent") as url:
            result = asyncio.run(measure(url, **options))  # type: ignore[arg-type]
    emit(report(args.store, args.durability, result))


if __name__ == "__main__":
    main()
