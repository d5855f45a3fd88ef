"""`@kernos.tool`: schema from hints and docstrings, validation errors and exceptions as results."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from typing import Annotated, Literal

import pydantic
import pytest

import kernos
from kernos import errors
from kernos.tools import Tool, ToolResult, tool


@tool
async def forecast(
    city: str, days: int = 1, units: Literal["metric", "imperial"] = "metric"
) -> str:
    """The weather forecast for a city.

    Uses the national weather service. This second paragraph is not part of
    the description.

    Args:
        city: the city's name,
            e.g. "Lyon".
        days (int): how many days ahead.
        units: metric or imperial.

    Returns:
        The forecast as text.
    """
    return f"{city}: sunny for {days} days ({units})"


class Point(pydantic.BaseModel):
    x: float
    y: float


@dataclass
class Box:
    width: int
    height: int


def test_schema_from_hints_and_docstring() -> None:
    assert forecast.name == "forecast"
    assert forecast.description == "The weather forecast for a city."
    assert forecast.parameters == {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "city": {"type": "string", "description": 'the city\'s name, e.g. "Lyon".'},
            "days": {"type": "integer", "default": 1, "description": "how many days ahead."},
            "units": {
                "type": "string",
                "enum": ["metric", "imperial"],
                "default": "metric",
                "description": "metric or imperial.",
            },
        },
        "required": ["city"],
    }


def test_nested_types_and_constraints_reach_the_schema() -> None:
    @tool(name="place", description="Place shapes.")
    def place(
        points: list[Point],
        box: Box | None = None,
        count: Annotated[int, pydantic.Field(ge=1, le=10)] = 1,
        title: str = "",
    ) -> dict[str, int]:
        return {"points": len(points), "count": count}

    schema = place.parameters
    assert place.description == "Place shapes."
    assert schema["properties"]["count"]["minimum"] == 1
    assert schema["properties"]["count"]["maximum"] == 10
    assert "title" in schema["properties"]  # a parameter called "title" survives title stripping
    assert "title" not in schema["properties"]["title"]
    assert set(schema["$defs"]) == {"Point", "Box"}
    assert "title" not in schema["$defs"]["Point"]
    assert schema["$defs"]["Point"]["properties"]["x"] == {"type": "number"}


async def test_invoke_validates_converts_and_renders() -> None:
    @tool
    def area(box: Box, scale: float = 1.0) -> dict[str, float]:
        """Area of a box."""
        assert isinstance(box, Box)
        return {"area": box.width * box.height * scale}

    assert await area.invoke({"box": {"width": 2, "height": "3"}}) == ToolResult(
        content='{"area":6.0}'
    )
    assert await area.invoke('{"box": {"width": 1, "height": 1}, "scale": 2}') == ToolResult(
        content='{"area":2.0}'
    )
    assert area(Box(width=2, height=2)) == {"area": 4.0}  # still a plain function


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({}, "argument 'city': required but missing"),
        ({"city": "Lyon", "days": "many"}, "argument 'days': Input should be a valid integer"),
        ({"city": "Lyon", "units": "kelvin"}, "argument 'units': Input should be 'metric'"),
        ({"city": "Lyon", "when": "now"}, "argument 'when': no such parameter"),
        ("{not json", "the arguments are not valid JSON"),
        ("[1, 2]", "the arguments must be a JSON object"),
    ],
)
async def test_bad_arguments_come_back_as_tool_errors(arguments: object, message: str) -> None:
    result = await forecast.invoke(arguments)  # type: ignore[arg-type]
    assert result.is_error
    assert result.content.startswith(message), result.content


async def test_several_problems_are_all_listed() -> None:
    result = await forecast.invoke({"days": "x", "extra": 1})
    assert result.is_error
    assert "'city'" in result.content
    assert "'days'" in result.content
    assert "'extra'" in result.content


async def test_errors_inside_unions_name_the_path_as_written() -> None:
    @tool
    def table(rows: list[dict[str, int]] | list[list[int]]) -> str:
        """A table."""
        return "ok"

    result = await table.invoke({"rows": [[1, "a"]]})
    assert result.is_error
    assert "argument 'rows.0.1': Input should be a valid integer" in result.content
    assert "list[" not in result.content


async def test_exceptions_become_tool_errors_with_their_type() -> None:
    @tool
    async def broken(n: int) -> int:
        """Always fails."""
        raise ValueError(f"cannot handle {n}")

    @tool
    def refuses(n: int) -> int:
        """Fails with a message for the model."""
        raise errors.ToolError("n must be even")

    assert await broken.invoke({"n": 3}) == ToolResult.error("ValueError: cannot handle 3")
    assert await refuses.invoke({"n": 3}) == ToolResult.error("n must be even")


async def test_cancellation_is_not_turned_into_a_result() -> None:
    @tool
    async def cancelled_run() -> str:
        """The run is cancelled while the tool runs."""
        raise errors.Cancelled("run-1")

    with pytest.raises(errors.Cancelled):
        await cancelled_run.invoke({})

    started = asyncio.Event()

    @tool
    async def slow() -> str:
        """Waits forever."""
        started.set()
        await asyncio.Event().wait()
        return "never"

    task = asyncio.create_task(slow.invoke({}))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_sync_tools_run_in_a_worker_thread() -> None:
    @tool
    def where() -> int:
        """The thread this runs in."""
        return threading.get_ident()

    result = await where.invoke(None)
    assert int(result.content) != threading.get_ident()


async def test_output_is_capped_and_unserializable_output_is_an_error() -> None:
    @tool(max_output=10)
    def long() -> str:
        """Much text."""
        return "x" * 100

    @tool
    def odd() -> object:
        """Returns something that is not JSON."""
        return object()

    capped = await long.invoke({})
    assert capped.content.startswith("x" * 10 + "\n[output truncated: 10 of 100")
    assert (await odd.invoke({})).is_error


def test_definitions_for_providers() -> None:
    spec = forecast.spec()
    assert (spec.name, spec.description, spec.parameters) == (
        "forecast",
        forecast.description,
        forecast.parameters,
    )
    assert forecast.to_openai() == {
        "type": "function",
        "function": {
            "name": "forecast",
            "description": forecast.description,
            "parameters": forecast.parameters,
        },
    }
    assert forecast.to_anthropic() == {
        "name": "forecast",
        "description": forecast.description,
        "input_schema": forecast.parameters,
    }


def test_result_round_trips_and_becomes_a_tool_message() -> None:
    result = ToolResult.error("nope")
    assert ToolResult.from_dict(result.to_dict()) == result
    message = result.to_message("call-1", name="forecast")
    assert (message.tool_call_id, message.content, message.is_error) == ("call-1", "nope", True)


def test_functions_that_cannot_be_described_are_refused() -> None:
    def untyped(x):  # type: ignore[no-untyped-def]
        return x

    def variadic(*names: str) -> None:
        return None

    with pytest.raises(errors.RegistrationError, match="no type hint"):
        tool(untyped)
    with pytest.raises(errors.RegistrationError, match=r"\*args"):
        tool(variadic)
    with pytest.raises(errors.RegistrationError, match="name"):
        tool(name="has spaces")(forecast.function)


def test_kernos_tool_is_the_decorator() -> None:
    @kernos.tool
    def ping() -> str:
        """Ping."""
        return "pong"

    assert isinstance(ping, Tool)
    assert ping.name == "ping"
