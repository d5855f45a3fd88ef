"""What each adapter puts on the wire: the same request, in each provider's own shape."""

from __future__ import annotations

from typing import Any

import pytest
from llm_support import FAST_RETRIES, KEY, KINDS

from kernos import llm
from kernos.llm._openai import OpenAIProvider
from kernos.testing import FakeServer, FakeToolCall

WEATHER = llm.ToolSpec(name="weather", description="Weather.", strict=True)
CONVERSATION = [
    llm.Message.system("Be brief."),
    llm.Message.user("Weather in Paris and Oslo?"),
    llm.Message.assistant(
        "Checking.",
        [
            llm.ToolCall.of("weather", {"city": "Paris"}, id="c1"),
            llm.ToolCall.of("weather", {"city": "Oslo"}, id="c2"),
        ],
    ),
    llm.Message.tool("c1", "21 C"),
    llm.Message.tool("c2", "station offline", is_error=True),
]
REQUEST = llm.ChatRequest(
    messages=CONVERSATION,
    tools=[WEATHER],
    tool_choice="weather",
    temperature=0.3,
    max_tokens=50,
    stop=["END"],
    seed=42,
)


async def sent(name: str, servers: dict[str, FakeServer], request: llm.ChatRequest) -> Any:
    """The JSON body the adapter ``name`` sends for ``request``."""
    fake = servers[name]
    fake.reset()
    fake.reply("ok")
    provider = llm.connect(
        KINDS[name].model_string, base_url=fake.url, api_key=KEY, retries=FAST_RETRIES
    )
    try:
        await provider.chat(request)
    finally:
        await provider.aclose()
    return fake.requests[-1].json


async def test_openai_wire_format(servers: dict[str, FakeServer]) -> None:
    body = await sent("openai", servers, REQUEST)

    assert body["messages"][0] == {"role": "system", "content": "Be brief."}
    assistant = body["messages"][2]
    assert assistant["content"] == "Checking."
    assert assistant["tool_calls"][1] == {
        "id": "c2",
        "type": "function",
        "function": {"name": "weather", "arguments": '{"city":"Oslo"}'},
    }
    assert body["messages"][3] == {"role": "tool", "tool_call_id": "c1", "content": "21 C"}
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "weather",
                "description": "Weather.",
                "parameters": {"type": "object", "properties": {}},
                "strict": True,
            },
        }
    ]
    assert body["tool_choice"] == {"type": "function", "function": {"name": "weather"}}
    assert (body["temperature"], body["max_tokens"], body["stop"], body["seed"]) == (
        0.3,
        50,
        ["END"],
        42,
    )


async def test_openai_itself_gets_max_completion_tokens(servers: dict[str, FakeServer]) -> None:
    fake = servers["openai"]
    fake.reset()
    fake.reply("ok")
    provider = OpenAIProvider(
        name="openai",
        model="gpt-4o-mini",
        config=llm.ProviderConfig(retries=FAST_RETRIES),
        base_url=fake.url,
        secret=llm.Secret(KEY),
        official=True,
    )
    try:
        await provider.chat(llm.ChatRequest(messages=CONVERSATION[:2], max_tokens=10))
    finally:
        await provider.aclose()

    body = fake.requests[-1].json
    assert body["max_completion_tokens"] == 10
    assert "max_tokens" not in body


async def test_openai_structured_output_and_stream_options(servers: dict[str, FakeServer]) -> None:
    fmt = llm.ResponseFormat(name="city", schema={"type": "object", "properties": {}})
    body = await sent(
        "openai", servers, llm.ChatRequest(messages=[llm.Message.user("x")], response_format=fmt)
    )
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "city", "schema": fmt.schema, "strict": True},
    }
    any_json = await sent(
        "openai",
        servers,
        llm.ChatRequest(messages=[llm.Message.user("x")], response_format=llm.ResponseFormat()),
    )
    assert any_json["response_format"] == {"type": "json_object"}

    fake = servers["openai"]
    fake.reply("streamed")
    provider = llm.connect("openai:gpt-4o-mini", base_url=fake.url, api_key=KEY)
    try:
        await llm.collect(provider.stream(llm.ChatRequest(messages=[llm.Message.user("x")])))
    finally:
        await provider.aclose()
    streamed = fake.requests[-1].json
    assert streamed["stream"] is True
    assert streamed["stream_options"] == {"include_usage": True}


async def test_anthropic_wire_format(servers: dict[str, FakeServer]) -> None:
    body = await sent("anthropic", servers, REQUEST)

    assert body["system"] == "Be brief."
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert body["messages"][1]["content"] == [
        {"type": "text", "text": "Checking."},
        {"type": "tool_use", "id": "c1", "name": "weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "c2", "name": "weather", "input": {"city": "Oslo"}},
    ]
    assert body["messages"][2]["content"] == [  # both results in one user turn
        {"type": "tool_result", "tool_use_id": "c1", "content": "21 C"},
        {
            "type": "tool_result",
            "tool_use_id": "c2",
            "content": "station offline",
            "is_error": True,
        },
    ]
    assert body["tools"] == [
        {
            "name": "weather",
            "input_schema": {"type": "object", "properties": {}},
            "description": "Weather.",
            "strict": True,
        }
    ]
    assert body["tool_choice"] == {"type": "tool", "name": "weather"}
    assert (body["max_tokens"], body["stop_sequences"], body["temperature"]) == (50, ["END"], 0.3)


@pytest.mark.parametrize(
    ("choice", "expected"),
    [("auto", {"type": "auto"}), ("required", {"type": "any"}), ("none", {"type": "none"})],
)
async def test_anthropic_tool_choice_modes(
    servers: dict[str, FakeServer], choice: str, expected: dict[str, str]
) -> None:
    request = llm.ChatRequest(messages=[llm.Message.user("x")], tools=[WEATHER], tool_choice=choice)

    body = await sent("anthropic", servers, request)

    assert body["tool_choice"] == expected


async def test_anthropic_defaults_max_tokens_and_sends_the_output_schema(
    servers: dict[str, FakeServer],
) -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    request = llm.ChatRequest(
        messages=[llm.Message.user("x")], response_format=llm.ResponseFormat(schema=schema)
    )

    body = await sent("anthropic", servers, request)

    assert body["max_tokens"] == 4096
    assert body["output_config"] == {"format": {"type": "json_schema", "schema": schema}}
    assert "system" not in body


async def test_ollama_wire_format(servers: dict[str, FakeServer]) -> None:
    request = llm.ChatRequest(
        messages=CONVERSATION,
        tools=[WEATHER],
        temperature=0.3,
        max_tokens=50,
        stop=["END"],
        seed=42,
        response_format=llm.ResponseFormat(schema={"type": "object"}),
        extra={"keep_alive": "5m", "options": {"num_ctx": 8192}},
    )

    body = await sent("ollama", servers, request)

    assert body["stream"] is False
    assert body["messages"][0] == {"role": "system", "content": "Be brief."}
    assert body["messages"][2]["tool_calls"][0] == {
        "id": "c1",
        "function": {"name": "weather", "arguments": {"city": "Paris"}},
    }
    assert body["messages"][3] == {"role": "tool", "content": "21 C", "tool_name": "weather"}
    assert body["tools"][0]["function"]["name"] == "weather"
    assert body["options"] == {
        "temperature": 0.3,
        "seed": 42,
        "num_predict": 50,
        "stop": ["END"],
        "num_ctx": 8192,
    }
    assert body["format"] == {"type": "object"}
    assert body["keep_alive"] == "5m"


async def test_ollama_tool_choice_none_sends_no_tools(servers: dict[str, FakeServer]) -> None:
    request = llm.ChatRequest(messages=[llm.Message.user("x")], tools=[WEATHER], tool_choice="none")

    body = await sent("ollama", servers, request)

    assert "tools" not in body


async def test_ollama_tool_calls_without_ids_get_unique_ones(
    servers: dict[str, FakeServer],
) -> None:
    fake = servers["ollama"]
    fake.reset()
    fake.reply(tool_calls=[FakeToolCall(name="a"), FakeToolCall(name="b")])
    provider = llm.connect("ollama:llama3.2", base_url=fake.url)
    try:
        response = await provider.chat(llm.ChatRequest(messages=[llm.Message.user("x")]))
    finally:
        await provider.aclose()

    ids = [call.id for call in response.tool_calls]
    assert len(set(ids)) == 2
    assert all(ids)


async def test_a_compatible_server_needs_no_key_and_never_gets_openais(
    servers: dict[str, FakeServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-secret-123456")
    fake = servers["openai"]
    fake.reset()
    fake.reply("served by vLLM")
    provider = llm.connect("openai-compatible:Qwen/Qwen2.5-7B", base_url=fake.url)
    try:
        response = await provider.chat(llm.ChatRequest(messages=[llm.Message.user("x")]))
    finally:
        await provider.aclose()

    assert (response.text, response.provider) == ("served by vLLM", "openai-compatible")
    assert response.usage.cost is None  # no price for a self-hosted model
    assert fake.requests[-1].model == "Qwen/Qwen2.5-7B"
    assert "sk-openai-secret" not in fake.requests[-1].headers["authorization"]
    assert "max_tokens" not in fake.requests[-1].json
