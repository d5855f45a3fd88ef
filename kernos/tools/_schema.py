"""From a typed, documented function to a JSON schema and an argument validator.

The schema comes from the type hints (through a pydantic model built for the
function); the description and the per-parameter descriptions come from a
Google-style docstring. Validation errors are turned into one line of text per
problem, written for the model that produced the arguments.
"""

from __future__ import annotations

import inspect
import re
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pydantic
import pydantic_core

from kernos import errors

__all__ = ["Docstring", "Signature", "parse_docstring"]

_SECTION = re.compile(r"^\s*([A-Z][A-Za-z ]*):\s*$")
_ARGS_SECTIONS = {"Args", "Arguments", "Parameters", "Params"}
_ARG_LINE = re.compile(r"^(\*{0,2}\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")
_INPUT_SHOWN = 80
_MAX_PROBLEMS = 8
_TYPE_TAGS = {"str", "int", "float", "bool", "none", "list", "dict", "tuple", "set", "bytes"}


@dataclass(frozen=True, slots=True)
class Docstring:
    """What a Google-style docstring says about a function.

    Attributes:
        description: the first paragraph, on one line.
        params: each parameter's description from the ``Args:`` section.
    """

    description: str
    params: Mapping[str, str]


def parse_docstring(doc: str | None) -> Docstring:
    """Read the first paragraph and the ``Args:`` section of a docstring.

    Args:
        doc: the docstring (``inspect.getdoc`` form or raw); None counts as empty.

    Returns:
        The description (first paragraph, lines joined by spaces) and the
        parameter descriptions (continuation lines joined likewise).
    """
    lines = inspect.cleandoc(doc or "").splitlines()
    first: list[str] = []
    for line in lines:
        if not line.strip() or _SECTION.match(line):
            if first or _SECTION.match(line):
                break
            continue
        first.append(line.strip())
    return Docstring(description=" ".join(first), params=_args_section(lines))


def _args_section(lines: list[str]) -> dict[str, str]:
    params: dict[str, list[str]] = {}
    inside = False
    indent: int | None = None
    current: str | None = None
    for line in lines:
        section = _SECTION.match(line)
        if section and (line[: len(line) - len(line.lstrip())] == ""):
            inside = section.group(1) in _ARGS_SECTIONS
            indent, current = None, None
            continue
        if not inside or not line.strip():
            continue
        depth = len(line) - len(line.lstrip())
        if indent is None:
            indent = depth
        match = _ARG_LINE.match(line.strip())
        if depth == indent and match:
            current = match.group(1).lstrip("*")
            params[current] = [match.group(2).strip()]
        elif depth > indent and current is not None:
            params[current].append(line.strip())
        elif depth < indent:
            inside = False
    return {name: " ".join(part for part in text if part) for name, text in params.items()}


@dataclass(frozen=True, slots=True)
class _Param:
    name: str  # as the model sees it
    field: str  # inside the pydantic model (aliases avoid clashes with BaseModel names)
    positional: bool  # positional-only in the function


class Signature:
    """The parameters of one function: their JSON schema and their validator.

    Args:
        function: the function (or bound method); every parameter needs a type
            hint, and ``*args`` / ``**kwargs`` are refused.
        name: the tool name, for error messages.
        params_doc: descriptions of the parameters, by name.

    Raises:
        RegistrationError: a parameter lacks a type hint, is variadic, or its
            type or default has no JSON schema.
    """

    def __init__(self, function: Callable[..., Any], *, name: str, params_doc: Mapping[str, str]):
        try:
            hints = typing.get_type_hints(function, include_extras=True)
        except Exception as exc:
            raise errors.RegistrationError(
                f"tool {name!r}: cannot read the type hints ({exc})", tool=name
            ) from exc
        fields: dict[str, Any] = {}
        params: list[_Param] = []
        for index, param in enumerate(inspect.signature(function).parameters.values()):
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                raise errors.RegistrationError(
                    f"tool {name!r}: *args and **kwargs cannot be described to a model; "
                    f"declare each parameter ({param.name!r})",
                    tool=name,
                )
            if param.name not in hints:
                raise errors.RegistrationError(
                    f"tool {name!r}: parameter {param.name!r} has no type hint", tool=name
                )
            default = ... if param.default is param.empty else param.default
            info = pydantic.Field(
                default, alias=param.name, description=params_doc.get(param.name) or None
            )
            field = f"p{index}"
            fields[field] = (hints[param.name], info)
            params.append(_Param(param.name, field, param.kind == param.POSITIONAL_ONLY))
        try:
            self._model: type[pydantic.BaseModel] = pydantic.create_model(
                f"{name}_arguments",
                __config__=pydantic.ConfigDict(extra="forbid", arbitrary_types_allowed=False),
                **fields,
            )
            schema = self._model.model_json_schema(by_alias=True)
        except (pydantic.PydanticUserError, pydantic_core.SchemaError, TypeError) as exc:
            raise errors.RegistrationError(
                f"tool {name!r}: a parameter has no JSON schema ({exc})", tool=name
            ) from exc
        self._params = tuple(params)
        self.schema: dict[str, Any] = _strip_titles(schema)
        self.schema.setdefault("properties", {})

    def validate(self, arguments: Mapping[str, Any]) -> tuple[list[Any], dict[str, Any]]:
        """Check the arguments and convert them to the function's types.

        Returns:
            The positional and keyword arguments to call the function with.

        Raises:
            ToolError: the arguments do not fit; the message lists each problem
                as ``argument 'x': ...``.
        """
        try:
            model = self._model.model_validate(dict(arguments))
        except pydantic.ValidationError as exc:
            raise errors.ToolError(describe(exc, arguments), reason="invalid_arguments") from None
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        for param in self._params:
            value = getattr(model, param.field)
            if param.positional:
                args.append(value)
            else:
                kwargs[param.name] = value
        return args, kwargs


def describe(error: pydantic.ValidationError, arguments: Mapping[str, Any]) -> str:
    """One line per problem, naming the argument as the model wrote it."""
    lines: list[str] = []
    for item in error.errors(include_url=False):
        where = _where(item["loc"], arguments)
        if item["type"] == "missing":
            line = f"argument {where!r}: required but missing"
        elif item["type"] == "extra_forbidden":
            line = f"argument {where!r}: no such parameter"
        else:
            shown = repr(item.get("input"))
            if len(shown) > _INPUT_SHOWN:
                shown = shown[: _INPUT_SHOWN - 3] + "..."
            line = f"argument {where!r}: {item['msg']} (got {shown})"
        if line not in lines:
            lines.append(line)
    if len(lines) > _MAX_PROBLEMS:
        lines[_MAX_PROBLEMS:] = [f"and {len(lines) - _MAX_PROBLEMS} more problems"]
    return "; ".join(lines) or str(error)


def _where(loc: tuple[int | str, ...], arguments: Mapping[str, Any]) -> str:
    # pydantic puts the union member tried into the location ("list[int]",
    # "str", ...); keep only the parts that are keys or indexes of the input.
    parts: list[str] = []
    value: Any = arguments
    for part in loc:
        inside = (isinstance(value, Mapping) and part in value) or (
            isinstance(value, list) and isinstance(part, int) and part < len(value)
        )
        if inside:
            value = value[part]
        elif (parts and not isinstance(value, Mapping | list)) or (
            isinstance(part, str) and ("[" in part or part in _TYPE_TAGS)
        ):
            continue
        parts.append(str(part))
    return ".".join(parts)


# Keys under which a schema holds further schemas, and how.
_SCHEMA_MAPS = ("properties", "$defs", "definitions", "patternProperties")
_SCHEMA_VALUES = ("items", "additionalProperties", "not", "contains", "propertyNames")
_SCHEMA_LISTS = ("anyOf", "allOf", "oneOf", "prefixItems")


def _strip_titles(schema: dict[str, Any]) -> dict[str, Any]:
    # pydantic adds a "title" to every schema; to a model it is noise, and it
    # costs tokens on every call. Only schema keywords are touched: a property
    # called "title" and default values are left alone.
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "title" and isinstance(value, str):
            continue
        if key in _SCHEMA_MAPS and isinstance(value, dict):
            out[key] = {k: _strip_titles(v) if isinstance(v, dict) else v for k, v in value.items()}
        elif key in _SCHEMA_VALUES and isinstance(value, dict):
            out[key] = _strip_titles(value)
        elif key in _SCHEMA_LISTS and isinstance(value, list):
            out[key] = [_strip_titles(v) if isinstance(v, dict) else v for v in value]
        else:
            out[key] = value
    return out
