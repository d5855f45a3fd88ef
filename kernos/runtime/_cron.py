"""Cron expressions: parse the standard five-field syntax and compute when it fires.

An expression has five whitespace-separated fields::

    minute  hour  day-of-month  month  day-of-week
    0-59    0-23  1-31          1-12   0-7 (0 and 7 are Sunday)
                                JAN-DEC SUN-SAT

Each field is a comma-separated list of entries, and each entry is one of:

- ``*``: every value of the field;
- ``a``: one value;
- ``a-b``: every value from ``a`` to ``b`` inclusive (``a`` must not exceed ``b``);
- ``*/n``, ``a-b/n``, ``a/n``: every ``n``-th value of ``*``, of ``a-b``, or from
  ``a`` to the end of the field's range (for day-of-week, ``*`` and ``a/n`` end
  at 6, Saturday). ``n`` runs from 1 to the width of the range (59 for minutes).

Months and weekdays may also be written as three-letter English names, in any
case (``JAN``-``DEC``, ``SUN``-``SAT``), also as range bounds (``MON-FRI``).
Instead of five fields an expression may be one of the macros ``@yearly`` (or
``@annually``), ``@monthly``, ``@weekly``, ``@daily`` (or ``@midnight``) and
``@hourly``. Seconds fields, ``?``, ``L``, ``W`` and ``#`` are not supported.

Days follow the classic cron rule: when both day-of-month and day-of-week are
restricted (neither field is exactly ``*``), a day matches if *either* matches;
otherwise the restricted one alone decides. ``*/2`` counts as a restriction.

Ticks are minutes of local wall-clock time in the time zone given to
:meth:`CronExpression.next_after`. Across daylight-saving changes a local time
that does not exist (the clock jumps over it) is skipped, and a local time that
occurs twice fires once, at its first occurrence (``fold=0``).
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo

from kernos.errors import ConfigError, UsageError

__all__ = ["CronExpression"]

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

_MONTHS = {name.upper(): i for i, name in enumerate(calendar.month_abbr) if name}
_WEEKDAYS = {"SUN": 0, "MON": 1, "TUE": 2, "WED": 3, "THU": 4, "FRI": 5, "SAT": 6}

# Longer than the longest gap between two leap days (2096 to 2104), so every
# expression that passes the parse-time check fires within it unless DST gaps
# swallow every tick.
_SEARCH_YEARS = 10
_MINUTE = timedelta(minutes=1)
_DAY = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    low: int
    high: int
    names: dict[str, int] = field(default_factory=dict)
    star_high: int | None = None  # `*` stops here (day-of-week: 6, though 7 is allowed)


_FIELDS = (
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day-of-month", 1, 31),
    _Field("month", 1, 12, _MONTHS),
    _Field("day-of-week", 0, 7, _WEEKDAYS, star_high=6),
)


@dataclass(frozen=True, slots=True, repr=False)
class CronExpression:
    """A parsed cron expression; build one with :meth:`parse`.

    Attributes:
        text: the expression as written.
        minutes: matching minutes, 0-59.
        hours: matching hours, 0-23.
        days: matching days of the month, 1-31.
        months: matching months, 1-12.
        weekdays: matching weekdays, 0-6 with 0 for Sunday.
        days_restricted: whether the day-of-month field is something other than ``*``.
        weekdays_restricted: whether the day-of-week field is something other than ``*``.
    """

    text: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    days_restricted: bool
    weekdays_restricted: bool

    @classmethod
    def parse(cls, text: str) -> CronExpression:
        """Parse a five-field cron expression or a macro such as ``@daily``.

        Args:
            text: the expression, e.g. ``"*/15 9-17 * * MON-FRI"``.

        Returns:
            The parsed expression; ``str()`` of it gives back ``text``.

        Raises:
            ConfigError: the expression is malformed, a value is out of range,
                or the expression can never fire (e.g. ``0 0 30 2 *``).
        """
        source = text.strip()
        if source.startswith("@"):
            expanded = MACROS.get(source.lower())
            if expanded is None:
                raise _error(text, f"unknown macro {source!r}; expected one of {', '.join(MACROS)}")
            source = expanded
        parts = source.split()
        if len(parts) != len(_FIELDS):
            problem = (
                f"found {len(parts)} fields, expected 5 "
                "(minute hour day-of-month month day-of-week)"
            )
            if len(parts) > len(_FIELDS):
                problem += "; seconds and year fields are not supported"
            raise _error(text, problem)
        minutes, hours, days, months, weekdays = (
            _parse_field(text, spec, part) for spec, part in zip(_FIELDS, parts, strict=True)
        )
        expr = cls(
            text=text,
            minutes=minutes,
            hours=hours,
            days=days,
            months=months,
            weekdays=frozenset(d % 7 for d in weekdays),
            days_restricted=parts[2] != "*",
            weekdays_restricted=parts[4] != "*",
        )
        expr._check_can_fire()
        return expr

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"CronExpression.parse({self.text!r})"

    def next_after(self, t: float, tz: tzinfo = UTC) -> float:
        """The first tick strictly after ``t``.

        Args:
            t: a moment, in seconds since the epoch.
            tz: the time zone whose wall clock the expression reads (a
                ``zoneinfo.ZoneInfo`` for DST-aware zones).

        Returns:
            The tick, in seconds since the epoch.

        Raises:
            ConfigError: no tick exists within ten years of ``t`` (possible
                only when every matching local time falls in a DST gap).
        """
        local = datetime.fromtimestamp(t, tz).replace(tzinfo=None, second=0, microsecond=0)
        # Capped so that stepping past the limit never leaves datetime's range.
        limit_year = min(local.year + _SEARCH_YEARS, datetime.max.year - 1)
        found = self._next_wall(local + _MINUTE, limit_year)
        while found is not None:
            tick = _instant(found, tz)
            if tick is not None and tick > t:
                return tick
            # A skipped time (DST gap, or the first pass of a repeated hour that is
            # already behind t): look again from the next minute.
            found = self._next_wall(found + _MINUTE, limit_year)
        raise _error(self.text, f"does not fire within {_SEARCH_YEARS} years of {t}")

    def ticks_between(
        self, start: float, end: float, tz: tzinfo = UTC, limit: int | None = None
    ) -> list[float]:
        """Every tick in the interval (``start``, ``end``], in order.

        Args:
            start: exclusive lower bound, in seconds since the epoch.
            end: inclusive upper bound, in seconds since the epoch.
            tz: the time zone whose wall clock the expression reads.
            limit: return at most this many ticks (the earliest ones).

        Returns:
            The ticks, in seconds since the epoch.

        Raises:
            UsageError: ``limit`` is negative.
        """
        if limit is not None and limit < 0:
            raise UsageError(f"limit must be 0 or more, got {limit}")
        ticks: list[float] = []
        t = start
        while (limit is None or len(ticks) < limit) and t < end:
            t = self.next_after(t, tz)
            if t > end:
                break
            ticks.append(t)
        return ticks

    def matches_day(self, year: int, month: int, day: int) -> bool:
        """Whether the expression fires on this calendar date (at some time).

        Args:
            year: the year.
            month: the month, 1-12.
            day: the day of the month.

        Returns:
            True if the month and the day rule both match.
        """
        if month not in self.months:
            return False
        in_days = day in self.days
        in_weekdays = (calendar.weekday(year, month, day) + 1) % 7 in self.weekdays
        if self.days_restricted and self.weekdays_restricted:
            return in_days or in_weekdays
        return in_days and in_weekdays

    def _next_wall(self, wall: datetime, limit_year: int) -> datetime | None:
        """The first matching naive local time at or after ``wall``, up to ``limit_year``."""
        while wall.year <= limit_year:
            if wall.month not in self.months:
                month = _next_in(self.months, wall.month)
                if month is None:
                    wall = datetime(wall.year + 1, min(self.months), 1)
                else:
                    wall = datetime(wall.year, month, 1)
            elif not self.matches_day(wall.year, wall.month, wall.day):
                wall = datetime(wall.year, wall.month, wall.day) + _DAY
            elif wall.hour not in self.hours:
                hour = _next_in(self.hours, wall.hour)
                if hour is None:
                    wall = datetime(wall.year, wall.month, wall.day) + _DAY
                else:
                    wall = wall.replace(hour=hour, minute=0)
            elif wall.minute not in self.minutes:
                minute = _next_in(self.minutes, wall.minute)
                if minute is None:
                    wall = wall.replace(minute=0) + timedelta(hours=1)
                else:
                    wall = wall.replace(minute=minute)
            else:
                return wall
        return None

    def _check_can_fire(self) -> None:
        # With both day fields restricted every week has a matching weekday, and
        # with day-of-month `*` every month has one; only this case can be empty.
        if not self.days_restricted or self.weekdays_restricted:
            return
        longest = {month: calendar.monthrange(2000, month)[1] for month in self.months}
        if not any(day <= longest[month] for month in self.months for day in self.days):
            raise _error(self.text, "never fires: no selected month has any of the selected days")


def _error(text: str, problem: str, **facts: object) -> ConfigError:
    return ConfigError(f"cron expression {text!r}: {problem}", expression=text, **facts)


def _parse_field(text: str, spec: _Field, part: str) -> frozenset[int]:
    values: set[int] = set()
    for entry in part.split(","):
        if not entry:
            raise _error(text, f"{spec.name} field {part!r} has an empty entry", field=spec.name)
        values.update(_parse_entry(text, spec, entry))
    return frozenset(values)


def _parse_entry(text: str, spec: _Field, entry: str) -> range:
    base, slash, step_text = entry.partition("/")
    step = _parse_step(text, spec, entry, step_text) if slash else 1
    if base == "*":
        return range(spec.low, (spec.star_high or spec.high) + 1, step)
    first_text, dash, last_text = base.partition("-")
    first = _parse_value(text, spec, first_text, entry)
    if dash:
        last = _parse_value(text, spec, last_text, entry)
        if first > last:
            problem = f"{spec.name} range {entry!r} starts after it ends"
            raise _error(text, problem, field=spec.name)
    else:
        # ``a/n`` runs from a to the field's end; ``7/n`` in the weekday field
        # (7 is Sunday, past the end of 0-6) is Sunday alone, not nothing.
        last = max(first, spec.star_high or spec.high) if slash else first
    return range(first, last + 1, step)


def _parse_step(text: str, spec: _Field, entry: str, step_text: str) -> int:
    if not step_text.isdigit():
        problem = f"{spec.name} step {step_text!r} in {entry!r} is not a number"
        raise _error(text, problem, field=spec.name)
    step = int(step_text)
    span = spec.high - spec.low
    if not 1 <= step <= span:
        problem = f"{spec.name} step {step} in {entry!r} is out of range 1-{span}"
        raise _error(text, problem, field=spec.name)
    return step


def _parse_value(text: str, spec: _Field, token: str, entry: str) -> int:
    if not token:
        problem = f"{spec.name} entry {entry!r} is missing a value"
        raise _error(text, problem, field=spec.name)
    if token.isdigit():
        value = int(token)
        if not spec.low <= value <= spec.high:
            problem = f"{spec.name} value {value} is out of range {spec.low}-{spec.high}"
            raise _error(text, problem, field=spec.name)
        return value
    named = spec.names.get(token.upper())
    if named is not None:
        return named
    expected = f"a number {spec.low}-{spec.high}"
    if spec.names:
        names = list(spec.names)
        expected += f" or a name {names[0]}-{names[-1]}"
    raise _error(text, f"{spec.name} value {token!r} is not {expected}", field=spec.name)


def _next_in(values: frozenset[int], current: int) -> int | None:
    return min((v for v in values if v > current), default=None)


def _instant(wall: datetime, tz: tzinfo) -> float | None:
    """Epoch seconds of a naive local time (first occurrence), or None if it does not exist."""
    aware = wall.replace(tzinfo=tz, fold=0)
    if aware.astimezone(UTC).astimezone(tz).replace(tzinfo=None) != wall:
        return None
    return aware.timestamp()
