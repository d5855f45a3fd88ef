"""Every provider, through its official SDK (or httpx for Ollama), against its fake server.

The same tests run for OpenAI, Anthropic and Ollama: plain chat, tool calls,
streaming (text and tool-call fragments reassembled), structured output.
"""

from __future__ import annotations

import asyncio
import json

import pydantic
import pytest
from conftest import Connect
from llm_support import Kind, last_text, user

from kernos import llm
from kernos.testing import FakeServer, FakeToolCall, Reply

WEATHER = llm.ToolSpec(
    name="weather",
    description="Current weather in a city.",
    parameters={
        "type": "object",
        "properties": {"city": {"type": "string"}, "unit": {"type": "string"}},
        "required": ["city"],
    },
)


async def test_plain_chat_returns_text_usage_and_finish_reason(
    kind: Kind, fake: FakeServer, provider: llm.Provider
) -> None:
    fake.reply("Bonjour, monde!", input_tokens=12, output_tokens=7)

    response = await provider.chat(
        llm.ChatRequest(
            messages=[llm.Message.system("Answer in French."), user("Hello").messages[0]]
        )
    )

    assert response.text == "Bonjour, monde!"
    assert response.tool_calls == ()
    assert response.finish_reason is llm.FinishReason.STOP
    assert response.usage.input_tokens == 12
    assert response.usage.output_tokens == 7
    assert response.provider == kind.name
    assert response.model == kind.model
    assert isinstance(provider, llm.Provider)
    assert (provider.name, provider.model) == (kind.name, kind.model)
    assert len(fake.requests) == 1
    assert fake.requests[0].model == kind.model
    assert "Answer in French." in fake.requests[0].body.decode()


async def test_tool_calls_come_back_parsed(fake: FakeServer, provider: llm.Provider) -> None:
    fake.reply(
        tool_calls=[
            FakeToolCall(name="weather", arguments={"city": "Paris", "unit": "c"}, id="call_1"),
            FakeToolCall(name="weather", arguments={"city": "Oslo"}, id="call_2"),
        ]
    )

    response = await provider.chat(
        llm.ChatRequest(messages=[llm.Message.user("Weather?")], tools=[WEATHER])
    )

    assert response.finish_reason is llm.FinishReason.TOOL_CALLS
    assert [(c.id, c.name, c.args()) for c in response.tool_calls] == [
        ("call_1", "weather", {"city": "Paris", "unit": "c"}),
        ("call_2", "weather", {"city": "Oslo"}),
    ]
    assert "weather" in fake.requests[0].body.decode()


async def test_a_tool_result_round_trip_is_accepted(
    fake: FakeServer, provider: llm.Provider
) -> None:
    fake.reply(tool_calls=[FakeToolCall(name="weather", arguments={"city": "Paris"})])
    fake.reply("It is 21 degrees in Paris.")
    conversation = [llm.Message.user("Weather in Paris?")]

    first = await provider.chat(llm.ChatRequest(messages=conversation, tools=[WEATHER]))
    conversation += [first.message()]
    conversation += [llm.Message.tool(call.id, "21 C, sunny") for call in first.tool_calls]
    second = await provider.chat(llm.ChatRequest(messages=conversation, tools=[WEATHER]))

    assert second.text == "It is 21 degrees in Paris."
    sent = fake.requests[1].body.decode()
    assert "21 C, sunny" in sent
    assert '"Paris"' in sent or '\\"Paris\\"' in sent


async def test_streamed_text_arrives_in_pieces_and_reassembles(
    fake: FakeServer, provider: llm.Provider
) -> None:
    text = "The quick brown fox jumps over the lazy dog."
    fake.reply(text, chunk_size=5, input_tokens=9, output_tokens=11)

    events = [event async for event in provider.stream(user())]

    deltas = [e for e in events if isinstance(e, llm.TextDelta)]
    assert len(deltas) >= len(text) // 5
    assert "".join(d.text for d in deltas) == text
    assert isinstance(events[-1], llm.StreamDone)
    done = events[-1].response
    assert done.text == text
    assert done.finish_reason is llm.FinishReason.STOP
    assert (done.usage.input_tokens, done.usage.output_tokens) == (9, 11)


async def test_streamed_tool_call_fragments_reassemble(
    kind: Kind, fake: FakeServer, provider: llm.Provider
) -> None:
    first = {"city": "San Francisco", "unit": "fahrenheit", "note": "a longer argument"}
    fake.reply(
        "Let me check.",
        tool_calls=[
            FakeToolCall(name="weather", arguments=first, id="call_a"),
            FakeToolCall(name="weather", arguments={"city": "Oslo"}, id="call_b"),
        ],
        chunk_size=6,
    )

    events = [event async for event in provider.stream(
        llm.ChatRequest(messages=[llm.Message.user("Weather?")], tools=[WEATHER])
    )]  # fmt: skip

    pieces = [e for e in events if isinstance(e, llm.ToolCallDelta)]
    if kind.name != "ollama":  # Ollama sends each call whole
        assert len([p for p in pieces if p.index == 0]) > 3
    assert {p.index for p in pieces} == {0, 1}
    assembler = llm.StreamAssembler()
    for piece in pieces:
        assembler.add(piece)
    calls = assembler.tool_calls()
    assert [(c.id, c.name, c.args()) for c in calls] == [
        ("call_a", "weather", first),
        ("call_b", "weather", {"city": "Oslo"}),
    ]
    done = events[-1]
    assert isinstance(done, llm.StreamDone)
    assert done.response.tool_calls == calls
    assert done.response.text == "Let me check."
    assert done.response.finish_reason is llm.FinishReason.TOOL_CALLS


async def test_collect_returns_the_final_response(fake: FakeServer, provider: llm.Provider) -> None:
    fake.reply("streamed")

    response = await llm.collect(provider.stream(user()))

    assert response.text == "streamed"


class City(pydantic.BaseModel):
    name: str
    population: int


async def test_structured_output_sends_the_schema_and_parses_the_reply(
    fake: FakeServer, provider: llm.Provider
) -> None:
    fake.reply('{"name": "Paris", "population": 2100000}')
    fmt = llm.ResponseFormat.from_model(City)

    response = await provider.chat(
        llm.ChatRequest(messages=[llm.Message.user("Biggest French city?")], response_format=fmt)
    )

    assert response.parse(City) == City(name="Paris", population=2100000)
    sent = fake.requests[0].json
    assert "population" in json.dumps(sent)
    assert fmt.schema is not None
    assert fmt.schema["additionalProperties"] is False
    assert fmt.schema["required"] == ["name", "population"]


async def test_length_finish_reason_is_normalised(fake: FakeServer, provider: llm.Provider) -> None:
    fake.reply("cut sho", finish_reason="length")

    response = await provider.chat(user())

    assert response.finish_reason is llm.FinishReason.LENGTH
    assert response.raw_finish_reason in ("length", "max_tokens")


async def test_a_request_may_name_another_model(fake: FakeServer, provider: llm.Provider) -> None:
    fake.reply("ok")

    response = await provider.chat(
        llm.ChatRequest(messages=[llm.Message.user("hi")], model="other")
    )

    assert fake.requests[0].model == "other"
    assert response.model == "other"


async def test_one_provider_serves_concurrent_calls(
    fake: FakeServer, provider: llm.Provider
) -> None:
    fake.responder = lambda request: Reply(text=last_text(request))

    answers = await asyncio.gather(*(provider.chat(user(f"echo {i}")) for i in range(8)))

    assert sorted(a.text for a in answers) == sorted(f"echo {i}" for i in range(8))


async def test_the_response_is_costed_from_the_price_table(
    kind: Kind, fake: FakeServer, connect: Connect
) -> None:
    table = llm.PriceTable()
    table.register(f"{kind.name}:{kind.model}", llm.Price(input=2.0, output=10.0))
    provider = await connect(prices=table)
    fake.reply("ok", input_tokens=1_000, output_tokens=500)

    response = await provider.chat(user())

    assert response.usage.cost == pytest.approx((1_000 * 2.0 + 500 * 10.0) / 1e6)
    streamed = fake.reply("ok", input_tokens=1_000, output_tokens=500)
    assert streamed
    done = await llm.collect(provider.stream(user()))
    assert done.usage.cost == pytest.approx(response.usage.cost)
