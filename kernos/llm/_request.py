"""What one chat call asks for: messages, tools, output format and parameters."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kernos.llm._messages import Message, ToolSpec

__all__ = ["ChatRequest", "ResponseFormat", "ToolChoice"]

ToolChoice = str
"""``"auto"``, ``"none"``, ``"required"``, or the name of the one tool to call."""

TOOL_CHOICE_MODES = frozenset({"auto", "none", "required"})


def strict_schema(schema: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``schema`` in the strict form OpenAI and Anthropic require.

    Every object forbids additional properties and requires all its properties;
    the walk covers properties, items, ``anyOf``/``allOf``/``oneOf`` and ``$defs``.
    """
    result = copy.deepcopy(dict(schema))
    _make_strict(result)
    return result


def _make_strict(node: Any) -> None:
    if isinstance(node, list):
        for item in node:
            _make_strict(item)
        return
    if not isinstance(node, dict):
        return
    properties = node.get("properties")
    if node.get("type") == "object" or isinstance(properties, dict):
        node["additionalProperties"] = False
        if isinstance(properties, dict):
            node["required"] = list(properties)
    for key in ("properties", "$defs", "definitions"):
        children = node.get(key)
        if isinstance(children, dict):
            for child in children.values():
                _make_strict(child)
    for key in ("items", "anyOf", "allOf", "oneOf", "prefixItems"):
        if key in node:
            _make_strict(node[key])


@dataclass(frozen=True, kw_only=True, slots=True)
class ResponseFormat:
    """Structured output: the reply must be JSON, matching ``schema`` when given.

    Attributes:
        name: a name for the schema (OpenAI requires one).
        schema: a JSON schema of the reply; ``None`` asks for any JSON object.
        strict: ask the provider to enforce the schema exactly, where it can.
    """

    name: str = "response"
    schema: dict[str, Any] | None = None
    strict: bool = True

    @classmethod
    def from_model(
        cls, model: type[Any], *, name: str | None = None, strict: bool = True
    ) -> ResponseFormat:
        """The format of a pydantic model class (``model_json_schema()``).

        With ``strict`` (the default) the schema is rewritten into the strict form:
        no additional properties, every property required.
        """
        schema = model.model_json_schema()
        return cls(
            name=name or model.__name__,
            schema=strict_schema(schema) if strict else schema,
            strict=strict,
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON form of this format."""
        return {"name": self.name, "schema": self.schema, "strict": self.strict}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ResponseFormat:
        """Rebuild a format from :meth:`to_dict`'s output."""
        return cls(
            name=data.get("name", "response"),
            schema=data.get("schema"),
            strict=bool(data.get("strict", True)),
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class ChatRequest:
    """One chat call, the same shape for every provider.

    Attributes:
        messages: the conversation so far.
        tools: tools the model may call.
        tool_choice: ``"auto"``, ``"none"``, ``"required"`` or a tool's name.
        response_format: ask for JSON output (see :class:`ResponseFormat`).
        temperature: sampling temperature.
        top_p: nucleus sampling.
        max_tokens: a ceiling on output tokens (Anthropic needs one: 4096 when unset).
        stop: sequences that end the output.
        seed: a sampling seed, where the provider supports it.
        timeout: seconds for this call, overriding the provider's default.
        model: a model name overriding the one the provider was connected with.
        extra: provider-specific fields added to the request body as they are.
    """

    messages: Sequence[Message]
    tools: Sequence[ToolSpec] = ()
    tool_choice: ToolChoice | None = None
    response_format: ResponseFormat | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    stop: Sequence[str] = ()
    seed: int | None = None
    timeout: float | None = None
    model: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Lists are accepted for convenience and stored as tuples, so a request is
        # immutable and hashable field by field.
        object.__setattr__(self, "messages", tuple(self.messages))
        object.__setattr__(self, "tools", tuple(self.tools))
        object.__setattr__(self, "stop", tuple(self.stop))

    def to_dict(self) -> dict[str, Any]:
        """The JSON form of this request; unset parameters are left out."""
        data: dict[str, Any] = {"messages": [m.to_dict() for m in self.messages]}
        if self.tools:
            data["tools"] = [tool.to_dict() for tool in self.tools]
        if self.response_format is not None:
            data["response_format"] = self.response_format.to_dict()
        if self.stop:
            data["stop"] = list(self.stop)
        if self.extra:
            data["extra"] = dict(self.extra)
        for name in _SCALARS:
            value = getattr(self, name)
            if value is not None:
                data[name] = value
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ChatRequest:
        """Rebuild a request from :meth:`to_dict`'s output."""
        response_format = data.get("response_format")
        return cls(
            messages=tuple(Message.from_dict(m) for m in data["messages"]),
            tools=tuple(ToolSpec.from_dict(t) for t in data.get("tools") or ()),
            response_format=(
                ResponseFormat.from_dict(response_format) if response_format is not None else None
            ),
            stop=tuple(data.get("stop") or ()),
            extra=dict(data.get("extra") or {}),
            **{name: data[name] for name in _SCALARS if data.get(name) is not None},
        )


_SCALARS = ("tool_choice", "temperature", "top_p", "max_tokens", "seed", "timeout", "model")
