"""Conversation records: roles, messages, tool specs and tool calls.

Every record is a frozen dataclass of plain JSON values, so it is journaled by
:mod:`kernos.serialization` as is, and ``to_dict`` / ``from_dict`` give the same
JSON form to code that does not go through the journal.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

__all__ = ["Message", "Role", "ToolCall", "ToolSpec"]


class Role(StrEnum):
    """Who speaks in a message."""

    SYSTEM = "system"
    """Instructions to the model."""
    USER = "user"
    """The human (or the program) asking."""
    ASSISTANT = "assistant"
    """The model: text and/or tool calls."""
    TOOL = "tool"
    """The result of one tool call, sent back to the model."""


def _arguments_text(arguments: Mapping[str, Any] | str) -> str:
    if isinstance(arguments, str):
        return arguments
    return json.dumps(dict(arguments), ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True, kw_only=True, slots=True)
class ToolCall:
    """The model asks for one tool to be run.

    Attributes:
        id: the provider's id for this call; the tool result quotes it.
        name: the tool's name.
        arguments: the arguments as JSON text, exactly as the model produced them
            (a model can produce invalid JSON; :meth:`args` parses it).
    """

    id: str
    name: str
    arguments: str = "{}"

    @classmethod
    def of(cls, name: str, arguments: Mapping[str, Any] | str, *, id: str) -> ToolCall:
        """A call whose arguments are given as a mapping (encoded to JSON) or JSON text."""
        return cls(id=id, name=name, arguments=_arguments_text(arguments))

    def args(self) -> dict[str, Any]:
        """The arguments parsed from JSON (an empty text counts as ``{}``).

        Raises:
            ValueError: the model produced arguments that are not a JSON object.
        """
        if not self.arguments.strip():
            return {}
        value = json.loads(self.arguments)
        if not isinstance(value, dict):
            raise ValueError(f"tool call {self.id!r} arguments are not a JSON object")
        return value

    def to_dict(self) -> dict[str, Any]:
        """The JSON form of this call."""
        return {"id": self.id, "name": self.name, "arguments": self.arguments}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ToolCall:
        """Rebuild a call from :meth:`to_dict`'s output."""
        return cls(id=data["id"], name=data["name"], arguments=data.get("arguments", "{}"))


@dataclass(frozen=True, kw_only=True, slots=True)
class Message:
    """One message of a conversation.

    Build them with the constructors: :meth:`system`, :meth:`user`,
    :meth:`assistant` and :meth:`tool`.

    Attributes:
        role: who speaks.
        content: the text (empty for an assistant message that only calls tools).
        tool_calls: the calls an assistant message makes.
        tool_call_id: for a tool message, the id of the call it answers.
        name: for a tool message, the tool's name (some providers need it).
        is_error: for a tool message, whether the tool failed.
    """

    role: Role
    content: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None
    is_error: bool = False

    @classmethod
    def system(cls, content: str) -> Message:
        """Instructions to the model."""
        return cls(role=Role.SYSTEM, content=content)

    @classmethod
    def user(cls, content: str) -> Message:
        """A user turn."""
        return cls(role=Role.USER, content=content)

    @classmethod
    def assistant(cls, content: str = "", tool_calls: Iterable[ToolCall] = ()) -> Message:
        """A model turn: text, tool calls or both."""
        return cls(role=Role.ASSISTANT, content=content, tool_calls=tuple(tool_calls))

    @classmethod
    def tool(
        cls, call_id: str, content: str, *, name: str | None = None, is_error: bool = False
    ) -> Message:
        """The result of the tool call ``call_id``."""
        return cls(
            role=Role.TOOL, content=content, tool_call_id=call_id, name=name, is_error=is_error
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON form of this message; defaults are left out."""
        data: dict[str, Any] = {"role": self.role.value, "content": self.content}
        if self.tool_calls:
            data["tool_calls"] = [call.to_dict() for call in self.tool_calls]
        if self.tool_call_id is not None:
            data["tool_call_id"] = self.tool_call_id
        if self.name is not None:
            data["name"] = self.name
        if self.is_error:
            data["is_error"] = True
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Message:
        """Rebuild a message from :meth:`to_dict`'s output."""
        return cls(
            role=Role(data["role"]),
            content=data.get("content") or "",
            tool_calls=tuple(ToolCall.from_dict(c) for c in data.get("tool_calls") or ()),
            tool_call_id=data.get("tool_call_id"),
            name=data.get("name"),
            is_error=bool(data.get("is_error", False)),
        )


def _empty_object_schema() -> dict[str, Any]:
    return {"type": "object", "properties": {}}


@dataclass(frozen=True, kw_only=True, slots=True)
class ToolSpec:
    """A tool the model may call.

    Attributes:
        name: the tool's name, as the model will call it.
        description: what the tool does, for the model.
        parameters: a JSON schema (an object schema) of the arguments.
        strict: ask the provider to hold the arguments to the schema exactly,
            where it supports that (OpenAI).
    """

    name: str
    description: str = ""
    parameters: dict[str, Any] = field(default_factory=_empty_object_schema)
    strict: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The JSON form of this spec."""
        return {
            "name": self.name,
            "description": self.description,
            "parameters": self.parameters,
            "strict": self.strict,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ToolSpec:
        """Rebuild a spec from :meth:`to_dict`'s output."""
        return cls(
            name=data["name"],
            description=data.get("description", ""),
            parameters=dict(data.get("parameters") or _empty_object_schema()),
            strict=bool(data.get("strict", False)),
        )
