"""``@tool``: a typed, documented function becomes a tool a model can call.

A :class:`Tool` knows its name, its description (the docstring's first
paragraph) and the JSON schema of its parameters (from the type hints, with the
``Args:`` descriptions). :meth:`Tool.invoke` takes the arguments a model
produced and always returns a :class:`ToolResult`: arguments that do not fit
the schema, and exceptions raised by the tool, come back as error results for
the model to read and correct, never as a crash of the agent. Only
cancellation (:class:`kernos.errors.Cancelled`, :class:`asyncio.CancelledError`)
goes through, as it must.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, ParamSpec, TypeVar, overload

import pydantic_core

from kernos import errors, llm
from kernos.tools._schema import Signature, parse_docstring

__all__ = ["Tool", "ToolResult", "tool"]

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True, kw_only=True, slots=True)
class ToolResult:
    """What one tool call gives back to the model.

    Attributes:
        content: the tool's output as text (strings as they are, other values
            as JSON), or, for an error, the message for the model.
        is_error: whether the call failed (bad arguments, an exception in the
            tool, a policy refusal).
    """

    content: str
    is_error: bool = False

    @classmethod
    def error(cls, message: str) -> ToolResult:
        """A failed call whose message the model will read."""
        return cls(content=message, is_error=True)

    def to_message(self, call_id: str, *, name: str | None = None) -> llm.Message:
        """This result as the tool message answering the model's call ``call_id``."""
        return llm.Message.tool(call_id, self.content, name=name, is_error=self.is_error)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form of this result."""
        return {"content": self.content, "is_error": self.is_error}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ToolResult:
        """Rebuild a result from :meth:`to_dict`'s output."""
        return cls(content=str(data["content"]), is_error=bool(data.get("is_error", False)))


class Tool(Generic[P, R]):
    """A function a model can call, with its name, description and schema.

    Calling the tool object calls the function as usual; :meth:`invoke` is the
    path for model-produced arguments.

    Args:
        function: a sync or async function (or bound method) with a type hint
            on every parameter. Sync functions run in a worker thread.
        name: the name the model calls it by (default: the function's name);
            letters, digits, ``_`` and ``-``, at most 64.
        description: what the tool does (default: the docstring's first paragraph).
        max_output: cut the text of a result to this many characters, saying so.

    Raises:
        RegistrationError: a bad name, a missing type hint, a variadic parameter,
            or a type with no JSON schema.

    Attributes:
        name: the tool's name.
        description: the tool's description.
        parameters: the JSON schema (an object schema) of the arguments.
    """

    def __init__(
        self,
        function: Callable[P, R],
        *,
        name: str | None = None,
        description: str | None = None,
        max_output: int | None = None,
    ) -> None:
        self.function = function
        self.name: str = name or str(getattr(function, "__name__", ""))
        if not _NAME.match(self.name):
            raise errors.RegistrationError(
                f"tool name {self.name!r} must be 1 to 64 letters, digits, '_' or '-'",
                tool=self.name,
            )
        doc = parse_docstring(inspect.getdoc(function))
        self.description = description if description is not None else doc.description
        self._signature = Signature(function, name=self.name, params_doc=doc.params)
        self.parameters: dict[str, Any] = self._signature.schema
        self.max_output = max_output
        self._is_async = inspect.iscoroutinefunction(function)
        functools.update_wrapper(self, function)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.function(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<Tool {self.name!r}>"

    async def invoke(self, arguments: Mapping[str, Any] | str | None = None) -> ToolResult:
        """Run the tool on arguments produced by a model.

        Args:
            arguments: a mapping, or the JSON text of an object (as models
                send it); None or empty text means no arguments.

        Returns:
            The output, or an error result: ``argument 'x': ...`` lines for
            arguments that do not fit, the message of a
            :class:`~kernos.errors.ToolError`, or ``TypeName: message`` for any
            other exception.

        Raises:
            Cancelled: the run was cancelled while the tool ran (likewise
                :class:`asyncio.CancelledError`); never turned into a result.
        """
        try:
            args, kwargs = self._signature.validate(parse_arguments(arguments))
            if self._is_async:
                value = await self.function(*args, **kwargs)  # type: ignore[misc]
            else:
                value = await asyncio.to_thread(self.function, *args, **kwargs)
            return ToolResult(content=self._cap(_render(value)))
        except errors.ToolError as exc:
            reason = exc.facts.get("reason")
            logger.info(
                "tool call refused",
                extra={"action": "tool_error", "tool": self.name, "reason": reason},
            )
            return ToolResult.error(self._cap(exc.message))
        except Exception as exc:
            logger.warning(
                "tool raised",
                extra={"action": "tool_exception", "tool": self.name},
                exc_info=True,
            )
            return ToolResult.error(self._cap(f"{type(exc).__name__}: {exc}"))

    def spec(self, *, strict: bool = False) -> llm.ToolSpec:
        """The provider-neutral tool definition, as :class:`kernos.llm.ToolSpec`."""
        return llm.ToolSpec(
            name=self.name, description=self.description, parameters=self.parameters, strict=strict
        )

    def to_openai(self) -> dict[str, Any]:
        """The definition in OpenAI's chat-completions ``tools`` form."""
        function: dict[str, Any] = {"name": self.name, "parameters": self.parameters}
        if self.description:
            function["description"] = self.description
        return {"type": "function", "function": function}

    def to_anthropic(self) -> dict[str, Any]:
        """The definition in Anthropic's messages ``tools`` form."""
        spec: dict[str, Any] = {"name": self.name, "input_schema": self.parameters}
        if self.description:
            spec["description"] = self.description
        return spec

    def _cap(self, text: str) -> str:
        if self.max_output is None or len(text) <= self.max_output:
            return text
        return (
            text[: self.max_output]
            + f"\n[output truncated: {self.max_output} of {len(text)} characters shown]"
        )


def parse_arguments(arguments: Mapping[str, Any] | str | None) -> Mapping[str, Any]:
    """The arguments as a mapping, from a mapping or a model's JSON text."""
    if arguments is None:
        return {}
    if isinstance(arguments, str):
        if not arguments.strip():
            return {}
        try:
            value = json.loads(arguments)
        except ValueError as exc:
            raise errors.ToolError(
                f"the arguments are not valid JSON ({exc})", reason="invalid_arguments"
            ) from None
        arguments = value
    if not isinstance(arguments, Mapping):
        raise errors.ToolError(
            "the arguments must be a JSON object of parameter names to values",
            reason="invalid_arguments",
        )
    return arguments


def _render(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return pydantic_core.to_json(value).decode()
    except pydantic_core.PydanticSerializationError as exc:
        raise errors.ToolError(
            f"the tool returned a {type(value).__name__}, which cannot be shown as JSON",
            reason="bad_output",
        ) from exc


@overload
def tool(function: Callable[P, R], /) -> Tool[P, R]: ...


@overload
def tool(
    *,
    name: str | None = None,
    description: str | None = None,
    max_output: int | None = None,
) -> Callable[[Callable[P, R]], Tool[P, R]]: ...


def tool(
    function: Callable[P, R] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    max_output: int | None = None,
) -> Tool[P, R] | Callable[[Callable[P, R]], Tool[P, R]]:
    """Turn a typed, documented function into a :class:`Tool`.

    Use bare (``@tool``) or with options (``@tool(name="search")``)::

        @kernos.tool
        async def weather(city: str, days: int = 1) -> str:
            \"\"\"The forecast for a city.

            Args:
                city: the city's name, e.g. "Lyon".
                days: how many days ahead, 1 to 7.
            \"\"\"

    Args:
        function: the function, when used bare.
        name: the name the model calls it by (default: the function's name).
        description: what it does (default: the docstring's first paragraph).
        max_output: cut a result's text to this many characters.

    Returns:
        The tool, or a decorator making one.

    Raises:
        RegistrationError: the function cannot be described to a model (see
            :class:`Tool`).
    """

    def make(function: Callable[P, R]) -> Tool[P, R]:
        return Tool(function, name=name, description=description, max_output=max_output)

    if function is not None:
        return make(function)
    return make
