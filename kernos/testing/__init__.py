"""Test helpers: fake OpenAI, Anthropic and Ollama servers speaking the real wire formats.

Each fake is a real HTTP server on ``127.0.0.1`` (an ephemeral port, in a
background thread) that answers with scripted replies in its provider's exact
format, streaming included, and records every request. Point the official SDK,
or ``kernos.llm.connect(..., base_url=fake.url)``, at it::

    from kernos.testing import FakeOpenAI, FakeToolCall

    with FakeOpenAI() as fake:
        fake.reply(tool_calls=[FakeToolCall(name="weather", arguments={"city": "Paris"})])
        fake.reply("It is sunny in Paris.")
        fake.fail(429, retry_after=1)          # errors in the provider's format
        model = kernos.llm.connect("openai:gpt-4o-mini", base_url=fake.url, api_key="test")
        ...
        assert len(fake.requests) == 2

Nothing here calls a real provider.
"""

from kernos.testing._anthropic import FakeAnthropic
from kernos.testing._ollama import FakeOllama
from kernos.testing._openai import FakeOpenAI
from kernos.testing._replies import FakeToolCall, RecordedRequest, Reply
from kernos.testing._server import FakeServer, Rendered

__all__ = [
    "FakeAnthropic",
    "FakeOllama",
    "FakeOpenAI",
    "FakeServer",
    "FakeToolCall",
    "RecordedRequest",
    "Rendered",
    "Reply",
]
