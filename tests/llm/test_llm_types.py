"""Requests, responses and stream events: JSON round trips, journaling, helpers, model strings."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from kernos import errors, llm, serialization

REQUEST = llm.ChatRequest(
    messages=[
        llm.Message.system("Be brief."),
        llm.Message.user("Weather in Paris?"),
        llm.Message.assistant(
            "Checking.", [llm.ToolCall.of("weather", {"city": "Paris"}, id="call_1")]
        ),
        llm.Message.tool("call_1", "21 C", name="weather", is_error=False),
    ],
    tools=[llm.ToolSpec(name="weather", description="Weather.", strict=True)],
    tool_choice="auto",
    response_format=llm.ResponseFormat(name="answer", schema={"type": "object"}),
    temperature=0.2,
    max_tokens=100,
    stop=["\n\n"],
    seed=7,
    timeout=5.0,
    extra={"user": "u-1"},
)

RESPONSE = llm.ChatResponse(
    text="It is 21 C.",
    tool_calls=(llm.ToolCall(id="c2", name="log", arguments='{"x":1}'),),
    finish_reason=llm.FinishReason.TOOL_CALLS,
    usage=llm.Usage(input_tokens=10, output_tokens=5, cached_input_tokens=2, cost=0.001),
    provider="openai",
    model="gpt-4o-mini-2024-07-18",
    id="chatcmpl-1",
    raw_finish_reason="tool_calls",
)


def test_requests_and_responses_round_trip_through_dicts() -> None:
    assert llm.ChatRequest.from_dict(REQUEST.to_dict()) == REQUEST
    assert llm.ChatResponse.from_dict(RESPONSE.to_dict()) == RESPONSE
    minimal = llm.ChatRequest(messages=[llm.Message.user("hi")])
    assert minimal.to_dict() == {"messages": [{"role": "user", "content": "hi"}]}
    assert llm.ChatRequest.from_dict(minimal.to_dict()) == minimal


def test_lists_are_stored_as_tuples() -> None:
    assert isinstance(REQUEST.messages, tuple)
    assert isinstance(REQUEST.stop, tuple)
    assert REQUEST.messages[2].tool_calls[0].arguments == '{"city":"Paris"}'


def test_stream_events_round_trip_through_dicts() -> None:
    events: list[llm.StreamEvent] = [
        llm.TextDelta(text="Hel"),
        llm.ToolCallDelta(index=0, id="c", name="f", arguments='{"a'),
        llm.StreamDone(response=RESPONSE),
    ]
    assert [llm.stream_event_from_dict(e.to_dict()) for e in events] == events
    with pytest.raises(ValueError):
        llm.stream_event_from_dict({"type": "mystery"})


def test_requests_and_responses_journal_and_restore_with_their_types() -> None:
    for value, kind in ((REQUEST, llm.ChatRequest), (RESPONSE, llm.ChatResponse)):
        text = serialization.encode(value, what="llm entry")
        restored = serialization.restore(serialization.decode(text), kind)
        assert restored == value


def test_usage_adds_up_and_keeps_unknown_costs_unknown() -> None:
    a = llm.Usage(input_tokens=1, output_tokens=2, cost=0.5)
    b = llm.Usage(input_tokens=3, output_tokens=4)

    assert (a + b).total_tokens == 10
    assert (a + b).cost == 0.5
    assert (b + b).cost is None


def test_tool_call_arguments_parse_or_say_why_not() -> None:
    assert llm.ToolCall(id="1", name="f", arguments="").args() == {}
    assert llm.ToolCall.of("f", '{"a": [1]}', id="1").args() == {"a": [1]}
    with pytest.raises(ValueError):
        llm.ToolCall(id="1", name="f", arguments='{"a": ').args()
    with pytest.raises(ValueError):
        llm.ToolCall(id="1", name="f", arguments="[1, 2]").args()


def test_strict_schema_closes_every_object() -> None:
    schema = {
        "type": "object",
        "properties": {
            "a": {"type": "object", "properties": {"b": {"type": "integer"}}},
            "c": {"type": "array", "items": {"$ref": "#/$defs/D"}},
        },
        "$defs": {"D": {"type": "object", "properties": {"e": {"type": "string"}}}},
    }

    strict = llm.strict_schema(schema)

    assert strict["additionalProperties"] is False
    assert strict["required"] == ["a", "c"]
    assert strict["properties"]["a"]["additionalProperties"] is False
    assert strict["$defs"]["D"]["required"] == ["e"]
    assert "additionalProperties" not in schema  # the input is untouched


def test_a_response_becomes_the_next_assistant_message() -> None:
    message = RESPONSE.message()

    assert message.role is llm.Role.ASSISTANT
    assert (message.content, message.tool_calls) == (RESPONSE.text, RESPONSE.tool_calls)


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("openai:gpt-4o-mini", ("openai", "gpt-4o-mini")),
        ("anthropic:claude-sonnet-4-5", ("anthropic", "claude-sonnet-4-5")),
        ("ollama:llama3.2:3b", ("ollama", "llama3.2:3b")),
        ("openai-compatible:Qwen/Qwen2.5-7B", ("openai-compatible", "Qwen/Qwen2.5-7B")),
        ("gpt-4o", ("openai", "gpt-4o")),
        ("claude-haiku-4-5", ("anthropic", "claude-haiku-4-5")),
    ],
)
def test_model_strings_name_provider_and_model(model: str, expected: tuple[str, str]) -> None:
    assert llm.parse_model(model) == expected


def test_an_unknown_provider_is_a_config_error_listing_the_known_ones() -> None:
    with pytest.raises(errors.ConfigError) as caught:
        llm.parse_model("llama3.2:3b")

    assert "ollama:llama3.2:3b" in str(caught.value)
    assert "anthropic" in str(caught.value)


def test_an_openai_compatible_server_needs_its_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(errors.ConfigError, match="base_url"):
        llm.connect("openai-compatible:llama3")


def test_registered_providers_are_connected_by_name() -> None:
    made: list[tuple[str, llm.ProviderConfig]] = []

    def factory(model: str, config: llm.ProviderConfig) -> llm.Provider:
        made.append((model, config))
        return object()  # type: ignore[return-value]

    llm.register_provider("acme-test", factory)

    llm.connect("acme-test:rocket-1", timeout=3.0)

    assert made[0][0] == "rocket-1"
    assert made[0][1].timeout == 3.0
    assert "acme-test" in llm.provider_names()


def test_retry_after_reads_seconds_fractions_dates_and_milliseconds() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    later = format_datetime(now + timedelta(seconds=30), usegmt=True)

    assert llm.parse_retry_after({"retry-after": "2"}) == 2.0
    assert llm.parse_retry_after({"retry-after": "0.25"}) == 0.25
    assert llm.parse_retry_after({"retry-after": later}, now=now.timestamp) == pytest.approx(30)
    assert llm.parse_retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert llm.parse_retry_after({"retry-after": "soon"}) is None
    assert llm.parse_retry_after({}) is None


def test_importing_kernos_llm_loads_no_sdk() -> None:
    code = (
        "import sys, kernos.llm, kernos.testing\n"
        "print(sorted({'openai', 'anthropic'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_importing_kernos_does_not_load_the_llm_layer() -> None:
    code = "import sys, kernos\nprint('kernos.llm' in sys.modules, 'kernos.testing' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"


def test_exports_are_documented() -> None:
    import kernos.testing

    for module in (llm, kernos.testing):
        for name in module.__all__:
            value = getattr(module, name)
            if callable(value):
                assert value.__doc__, f"{module.__name__}.{name} has no docstring"


@pytest.mark.parametrize(
    ("host", "url"),
    [
        ("localhost", "http://localhost:11434"),
        ("0.0.0.0:8080", "http://0.0.0.0:8080"),
        ("https://ollama.example.com", "https://ollama.example.com"),
        ("http://gpu-box:11434/", "http://gpu-box:11434"),
    ],
)
def test_ollama_host_values_become_base_urls(host: str, url: str) -> None:
    from kernos.llm._ollama import ollama_url

    assert ollama_url(host) == url


async def test_ollama_host_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_HOST", "gpu-box:9999")

    provider = llm.connect("ollama:llama3.2")
    try:
        assert "http://gpu-box:9999" in repr(provider)
    finally:
        await provider.aclose()
