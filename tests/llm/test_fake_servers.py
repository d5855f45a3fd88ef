"""The fake servers themselves, driven by the official SDKs directly (as users' tests would).

The SDKs' own stream helpers accumulate events strictly (ordering, block
indexes, JSON fragments), so their accepting a fake's stream is evidence that
the fake speaks the real wire format.
"""

from __future__ import annotations

import json

import anthropic
import httpx
import openai
import pytest

from kernos.testing import FakeAnthropic, FakeOllama, FakeOpenAI, FakeToolCall, Reply

CALL = FakeToolCall(name="weather", arguments={"city": "Paris", "days": 3}, id="call_x")
TOOL = {
    "type": "function",
    "function": {"name": "weather", "parameters": {"type": "object", "properties": {}}},
}


def test_openai_sync_client_reads_a_completion() -> None:
    with FakeOpenAI() as fake:
        fake.reply("Hello!", input_tokens=3, output_tokens=2)
        client = openai.OpenAI(api_key="k", base_url=fake.url, max_retries=0)
        try:
            completion = client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
            )
        finally:
            client.close()

    assert completion.choices[0].message.content == "Hello!"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.total_tokens == 5
    assert fake.requests[0].path == "/v1/chat/completions"
    assert fake.requests[0].headers["authorization"] == "Bearer k"


async def test_openai_stream_helper_accumulates_fragmented_tool_arguments() -> None:
    async with FakeOpenAI() as fake:
        fake.reply("Let me look.", tool_calls=[CALL], chunk_size=3)
        client = openai.AsyncOpenAI(api_key="k", base_url=fake.url, max_retries=0)
        async with client.chat.completions.stream(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "weather?"}],
            tools=[TOOL],  # type: ignore[list-item]
            stream_options={"include_usage": True},
        ) as stream:
            fragments = [e async for e in stream if e.type == "tool_calls.function.arguments.delta"]
            final = await stream.get_final_completion()
        await client.close()

    assert len(fragments) > 5
    message = final.choices[0].message
    assert message.content == "Let me look."
    assert message.tool_calls is not None
    call = message.tool_calls[0]
    assert call.id == "call_x"
    assert json.loads(call.function.arguments) == {"city": "Paris", "days": 3}
    assert final.choices[0].finish_reason == "tool_calls"
    assert final.usage is not None


async def test_openai_stream_without_usage_has_no_usage_chunk() -> None:
    async with FakeOpenAI() as fake:
        fake.reply("abc")
        client = openai.AsyncOpenAI(api_key="k", base_url=fake.url, max_retries=0)
        stream = await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "x"}], stream=True
        )
        chunks = [chunk async for chunk in stream]
        await client.close()

    assert all(chunk.usage is None for chunk in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "abc"


async def test_anthropic_stream_helper_builds_the_final_message() -> None:
    async with FakeAnthropic() as fake:
        fake.reply("Checking.", tool_calls=[CALL], chunk_size=4, input_tokens=20, output_tokens=9)
        client = anthropic.AsyncAnthropic(api_key="k", base_url=fake.url, max_retries=0)
        async with client.messages.stream(
            model="claude-haiku-4-5",
            max_tokens=100,
            messages=[{"role": "user", "content": "weather?"}],
        ) as stream:
            text = [t async for t in stream.text_stream]
            message = await stream.get_final_message()
        await client.close()

    assert "".join(text) == "Checking."
    assert len(text) > 1
    assert [block.type for block in message.content] == ["text", "tool_use"]
    tool_use = message.content[1]
    assert tool_use.type == "tool_use"
    assert tool_use.input == {"city": "Paris", "days": 3}
    assert message.stop_reason == "tool_use"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (20, 9)


def test_anthropic_errors_have_anthropics_shape() -> None:
    with FakeAnthropic() as fake:
        fake.fail(529, "Overloaded")
        client = anthropic.Anthropic(api_key="k", base_url=fake.url, max_retries=0)
        try:
            with pytest.raises(anthropic.APIStatusError) as caught:
                client.messages.create(
                    model="claude-haiku-4-5",
                    max_tokens=10,
                    messages=[{"role": "user", "content": "x"}],
                )
        finally:
            client.close()

    assert caught.value.status_code == 529
    assert caught.value.body == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
    }


def test_ollama_streams_ndjson_by_default() -> None:
    with FakeOllama() as fake:
        fake.reply("Hi there", tool_calls=[CALL], chunk_size=3)
        body = {"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}]}
        with httpx.stream("POST", f"{fake.url}/api/chat", json=body) as response:
            lines = [json.loads(line) for line in response.iter_lines() if line]
            content_type = response.headers["content-type"]

    assert content_type == "application/x-ndjson"
    assert "".join(line["message"]["content"] for line in lines) == "Hi there"
    calls = [c for line in lines for c in line["message"].get("tool_calls", [])]
    assert calls[0]["function"]["arguments"] == {"city": "Paris", "days": 3}
    assert lines[-1]["done"] is True
    assert [line["done"] for line in lines[:-1]] == [False] * (len(lines) - 1)


def test_the_script_errors_and_checks_are_served_in_the_providers_format() -> None:
    with FakeOpenAI(api_key="right", models=["gpt-4o-mini"]) as fake:
        url = f"{fake.url}/chat/completions"
        good = {"Authorization": "Bearer right"}
        body = {"model": "gpt-4o-mini", "messages": []}

        wrong_key = httpx.post(url, json=body, headers={"Authorization": "Bearer wrong"})
        wrong_model = httpx.post(url, json={**body, "model": "gpt-9"}, headers=good)
        empty_script = httpx.post(url, json=body, headers=good)
        fake.fail(429, "slow down", retry_after=2)
        limited = httpx.post(url, json=body, headers=good)
        no_route = httpx.post(f"{fake.url}/responses", json=body, headers=good)

    assert wrong_key.status_code == 401
    assert wrong_model.status_code == 404
    assert wrong_model.json()["error"]["code"] == "model_not_found"
    assert empty_script.status_code == 400
    assert "no scripted reply left" in empty_script.json()["error"]["message"]
    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "2"
    assert no_route.status_code == 404
    assert len(fake.requests) == 5


def test_requests_are_recorded_and_latency_is_added() -> None:
    with FakeOllama(latency=0.2, default=Reply(text="same")) as fake:
        body = {"model": "llama3.2", "messages": [], "stream": False}
        first = httpx.post(f"{fake.url}/api/chat", json=body)
        second = httpx.post(f"{fake.url}/api/chat", json=body)

    assert first.json()["message"]["content"] == second.json()["message"]["content"] == "same"
    assert [r.json for r in fake.requests] == [body, body]
    assert first.elapsed.total_seconds() >= 0.19


def test_a_fake_is_stopped_after_its_block_and_can_restart() -> None:
    fake = FakeOpenAI()
    with fake:
        url = fake.url
    with pytest.raises(httpx.ConnectError):
        httpx.post(f"{url}/chat/completions", json={})
    with pytest.raises(RuntimeError, match="not running"):
        _ = fake.url
    with fake:
        assert fake.url != ""
