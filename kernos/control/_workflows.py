"""What the faces show of registered workflows: names, versions and input schemas."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from kernos.errors import UsageError
from kernos.runtime import Workflow

__all__ = ["WorkflowInfo"]


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    annotation: Any
    required: bool


class WorkflowInfo:
    """A registered workflow as callers from outside Python see it.

    Its input is a JSON object of named arguments; :meth:`validate` checks it
    against the function's type hints before a run is created, so a bad input
    is refused up front instead of failing the run later.
    """

    def __init__(self, workflow: Workflow[Any, Any]) -> None:
        self.workflow = workflow
        parameters = inspect.signature(workflow.fn).parameters.values()
        self._fields = [
            _Field(
                p.name,
                workflow.parameter_types.get(p.name, Any),
                p.default is inspect.Parameter.empty,
            )
            for p in parameters
            if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]
        self._open = any(p.kind is p.VAR_KEYWORD for p in parameters)

    @property
    def name(self) -> str:
        """The workflow's registered name."""
        return self.workflow.name

    @cached_property
    def _model(self) -> Any:
        from pydantic import ConfigDict, create_model

        definitions: dict[str, Any] = {
            f.name: (f.annotation, ... if f.required else None) for f in self._fields
        }
        config = ConfigDict(extra="allow" if self._open else "forbid", arbitrary_types_allowed=True)
        return create_model(f"{self.name}_input", __config__=config, **definitions)

    @cached_property
    def input_schema(self) -> dict[str, Any]:
        """JSON Schema of the input object."""
        try:
            schema: dict[str, Any] = self._model.model_json_schema()
        except Exception:  # a type pydantic cannot describe: accept any object
            schema = {"type": "object"}
        schema.pop("title", None)
        return schema

    def validate(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        """Return the problems with ``data`` as input (empty when it is valid)."""
        from pydantic import ValidationError

        try:
            self._model.model_validate(data)
        except ValidationError as error:
            return [
                {
                    "loc": ["body", "input", *error_item["loc"]],
                    "msg": error_item["msg"],
                    "type": error_item["type"],
                }
                for error_item in error.errors(include_url=False, include_input=False)
            ]
        return []

    def to_dict(self) -> dict[str, Any]:
        """Name, version, timeout and input schema."""
        return {
            "name": self.name,
            "version": self.workflow.version,
            "timeout": self.workflow.timeout,
            "input_schema": self.input_schema,
            "doc": inspect.getdoc(self.workflow.fn),
        }


def ensure_object(value: Any) -> dict[str, Any]:
    """``value`` as an input object, or a UsageError."""
    if not isinstance(value, dict):
        raise UsageError("a workflow's input must be a JSON object of named arguments")
    return value
