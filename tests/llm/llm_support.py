"""Shared by the provider tests: the providers under test, the test key, fast retries."""

from __future__ import annotations

from dataclasses import dataclass

from kernos import llm, runtime
from kernos.testing import FakeAnthropic, FakeOllama, FakeOpenAI, FakeServer, RecordedRequest

KEY = "sk-test-0123456789abcdef"

FAST_RETRIES = runtime.RetryPolicy(max_attempts=3, initial_delay=0.01, max_delay=0.05, jitter=0)
"""Retries quick enough for tests; delays that could not explain a Retry-After gap."""


@dataclass(frozen=True)
class Kind:
    """One provider under test: its name, its fake and a model it serves."""

    name: str
    fake: type[FakeServer]
    model: str
    key_env: str

    @property
    def model_string(self) -> str:
        return f"{self.name}:{self.model}"


KINDS = {
    "openai": Kind("openai", FakeOpenAI, "gpt-4o-mini", "OPENAI_API_KEY"),
    "anthropic": Kind("anthropic", FakeAnthropic, "claude-haiku-4-5", "ANTHROPIC_API_KEY"),
    "ollama": Kind("ollama", FakeOllama, "llama3.2", "OLLAMA_API_KEY"),
}


def user(text: str = "Hello") -> llm.ChatRequest:
    """A request of one user message."""
    return llm.ChatRequest(messages=[llm.Message.user(text)])


def last_text(request: RecordedRequest) -> str:
    """The text of the last message a fake received, whatever the provider's format."""
    content = request.messages[-1]["content"]
    if isinstance(content, str):
        return content
    return "".join(block.get("text", "") for block in content)
