"""Charts drawn on the server as SVG geometry (no JavaScript, nothing from the internet).

Each builder returns the shapes a template draws inside an ``<svg>`` with a title,
a description and a table of the same figures beside it for screen readers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = ["Bars", "Lines", "Rect", "Tick", "lines", "number", "sparkline", "stacked_bars"]

WIDTH = 600.0
HEIGHT = 160.0
LEFT = 64.0  # room for the y-axis labels
BOTTOM = 20.0  # room for the x-axis labels
TOP = 8.0


@dataclass(frozen=True, slots=True)
class Rect:
    """One bar segment: position, size, CSS class and its tooltip."""

    x: float
    y: float
    width: float
    height: float
    css: str
    label: str


@dataclass(frozen=True, slots=True)
class Tick:
    """An axis label at a position (x for the time axis, y for the value axis)."""

    at: float
    text: str


@dataclass(frozen=True, slots=True)
class Bars:
    """A stacked bar chart."""

    rects: list[Rect]
    x_ticks: list[Tick]
    y_ticks: list[Tick]
    peak: float


@dataclass(frozen=True, slots=True)
class Line:
    """One series as a polyline, with its points for markers."""

    name: str
    css: str
    points: list[tuple[float, float]]

    @property
    def path(self) -> str:
        """The ``points`` attribute of an SVG polyline."""
        return " ".join(f"{x:.1f},{y:.1f}" for x, y in self.points)


@dataclass(frozen=True, slots=True)
class Lines:
    """A line chart of one or more series sharing a y axis."""

    lines: list[Line]
    x_ticks: list[Tick]
    y_ticks: list[Tick]
    peak: float


def _nice(peak: float) -> float:
    """The smallest 1, 2 or 5 times a power of ten at or above ``peak``: the y axis's top."""
    if peak <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(peak))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= peak * (1 - 1e-9))


def number(value: float) -> str:
    """A figure short enough for an axis: three significant digits, ``k`` and ``M``."""
    for size, suffix in ((1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:.3g}{suffix}"
    return f"{value:.3g}"


def _y_ticks(top: float, fmt: str) -> list[Tick]:
    plot = HEIGHT - BOTTOM - TOP
    return [Tick(TOP + plot * (1 - f), fmt.format(number(top * f))) for f in (0.0, 0.5, 1.0)]


def _x_ticks(labels: Sequence[str], every: int) -> list[Tick]:
    slot = (WIDTH - LEFT) / max(len(labels), 1)
    return [
        Tick(LEFT + slot * (i + 0.5), label)
        for i, label in enumerate(labels)
        if i % every == 0 or i == len(labels) - 1
    ]


def stacked_bars(
    labels: Sequence[str],
    series: Mapping[str, Sequence[float]],
    *,
    every: int = 4,
    fmt: str = "{}",
) -> Bars:
    """Bars per label, each stacked from the series in order (CSS class ``st-<name>``)."""
    totals = [sum(values[i] for values in series.values()) for i in range(len(labels))]
    top = _nice(max(totals, default=0))
    plot = HEIGHT - BOTTOM - TOP
    slot = (WIDTH - LEFT) / max(len(labels), 1)
    rects = []
    for i, label in enumerate(labels):
        base = HEIGHT - BOTTOM
        for name, values in series.items():
            if not values[i]:
                continue
            height = plot * values[i] / top
            base -= height
            rects.append(
                Rect(
                    x=round(LEFT + slot * i + slot * 0.1, 1),
                    y=round(base, 1),
                    width=round(slot * 0.8, 1),
                    height=round(height, 1),
                    css=f"st-{name}",
                    label=f"{label}: {fmt.format(number(values[i]))} {name}",
                )
            )
    return Bars(rects, _x_ticks(labels, every), _y_ticks(top, fmt), top)


def lines(
    labels: Sequence[str],
    series: Mapping[str, Sequence[float | None]],
    *,
    every: int = 4,
    fmt: str = "{}",
) -> Lines:
    """One polyline per series over the labels; missing values are left out."""
    known = [v for values in series.values() for v in values if v is not None]
    top = _nice(max(known, default=0.0))
    plot = HEIGHT - BOTTOM - TOP
    slot = (WIDTH - LEFT) / max(len(labels), 1)
    drawn = []
    for name, values in series.items():
        points = [
            (LEFT + slot * (i + 0.5), HEIGHT - BOTTOM - plot * value / top)
            for i, value in enumerate(values)
            if value is not None
        ]
        drawn.append(Line(name, f"line-{name}", points))
    return Lines(drawn, _x_ticks(labels, every), _y_ticks(top, fmt), top)


def sparkline(values: Sequence[int], *, width: float = 120.0, height: float = 24.0) -> str:
    """The ``points`` of a small polyline of ``values`` (zero at the bottom)."""
    if not values:
        return ""
    top = max(max(values), 1)
    step = width / max(len(values) - 1, 1)
    return " ".join(
        f"{i * step:.1f},{height - 1 - (height - 2) * v / top:.1f}" for i, v in enumerate(values)
    )
