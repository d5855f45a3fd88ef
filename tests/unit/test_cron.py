"""Cron expressions: syntax, error messages, DST behaviour, and a brute-force cross-check."""

from __future__ import annotations

import pickle
import time
import zoneinfo
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from kernos import errors
from kernos.runtime._cron import CronExpression


def ts(text: str, tz: zoneinfo.ZoneInfo | None = None) -> float:
    """Epoch seconds of an ISO local time, in UTC unless ``tz`` is given."""
    return datetime.fromisoformat(text).replace(tzinfo=tz or UTC).timestamp()


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M")


def next_iso(expr: str, start: str) -> str:
    return iso(CronExpression.parse(expr).next_after(ts(start)))


# --- syntax ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "start", "expected"),
    [
        ("* * * * *", "2024-05-01 10:00:00", "2024-05-01 10:01"),
        ("* * * * *", "2024-05-01 10:00:59.999", "2024-05-01 10:01"),
        ("30 * * * *", "2024-05-01 10:30:00", "2024-05-01 11:30"),
        ("0 0 * * *", "2024-12-31 23:59:00", "2025-01-01 00:00"),
        ("5,10,50 * * * *", "2024-05-01 10:11:00", "2024-05-01 10:50"),
        ("10-12 * * * *", "2024-05-01 10:12:00", "2024-05-01 11:10"),
        ("*/20 * * * *", "2024-05-01 10:41:00", "2024-05-01 11:00"),
        ("10-30/10 * * * *", "2024-05-01 10:21:00", "2024-05-01 10:30"),
        ("45/5 * * * *", "2024-05-01 10:56:00", "2024-05-01 11:45"),
        ("0 9 * * mon-fri", "2024-05-03 09:00:00", "2024-05-06 09:00"),  # Fri -> Mon
        ("0 0 1 jan,JUL *", "2024-02-01 00:00:00", "2024-07-01 00:00"),
        ("0 0 * * 7", "2024-05-01 00:00:00", "2024-05-05 00:00"),  # 7 is Sunday
        ("0 0 * * 0", "2024-05-01 00:00:00", "2024-05-05 00:00"),
        ("0 0 * * 5-7", "2024-05-01 00:00:00", "2024-05-03 00:00"),
        ("0 0 * * 7/1", "2024-05-01 00:00:00", "2024-05-05 00:00"),  # Sunday, not never
        ("0 0 31 * *", "2024-04-01 00:00:00", "2024-05-31 00:00"),  # April has no 31st
        ("0 0 29 2 *", "2097-01-01 00:00:00", "2104-02-29 00:00"),  # 2100 is not a leap year
        ("0 12 * 2 *", "2023-02-28 12:00:00", "2024-02-01 12:00"),
    ],
)
def test_next_after_examples(expr: str, start: str, expected: str) -> None:
    assert next_iso(expr, start) == expected


@pytest.mark.parametrize(
    ("macro", "start", "expected"),
    [
        ("@yearly", "2024-05-01 00:00:00", "2025-01-01 00:00"),
        ("@annually", "2024-05-01 00:00:00", "2025-01-01 00:00"),
        ("@monthly", "2024-05-01 00:00:00", "2024-06-01 00:00"),
        ("@weekly", "2024-05-01 00:00:00", "2024-05-05 00:00"),
        ("@daily", "2024-05-01 00:00:00", "2024-05-02 00:00"),
        ("@midnight", "2024-05-01 00:00:00", "2024-05-02 00:00"),
        ("@hourly", "2024-05-01 00:00:00", "2024-05-01 01:00"),
        ("@HOURLY", "2024-05-01 00:30:00", "2024-05-01 01:00"),
    ],
)
def test_macros(macro: str, start: str, expected: str) -> None:
    assert next_iso(macro, start) == expected


def test_parsed_sets() -> None:
    expr = CronExpression.parse("*/15 9-17/4 1,15 FEB-apr sat/1")
    assert expr.minutes == {0, 15, 30, 45}
    assert expr.hours == {9, 13, 17}
    assert expr.days == {1, 15}
    assert expr.months == {2, 3, 4}
    assert expr.weekdays == {6}
    assert CronExpression.parse("* * * * 1/2").weekdays == {1, 3, 5}
    assert CronExpression.parse("* * * * */2").weekdays == {0, 2, 4, 6}


def test_day_of_month_or_day_of_week_when_both_restricted() -> None:
    # 13th of the month or any Friday.
    expr = CronExpression.parse("0 0 13 * FRI")
    ticks = expr.ticks_between(ts("2024-09-01"), ts("2024-09-30"))
    assert [iso(t)[:10] for t in ticks] == [
        "2024-09-06",
        "2024-09-13",
        "2024-09-20",
        "2024-09-27",
    ]
    assert [iso(t)[:10] for t in expr.ticks_between(ts("2024-10-01"), ts("2024-10-14"))] == [
        "2024-10-04",
        "2024-10-11",
        "2024-10-13",  # a Sunday, matched by day-of-month alone
    ]
    # Only one restricted: it alone decides; a step counts as a restriction.
    assert next_iso("0 0 13 * *", "2024-09-01") == "2024-09-13 00:00"
    assert next_iso("0 0 * * FRI", "2024-09-01") == "2024-09-06 00:00"
    assert next_iso("0 0 */10 * FRI", "2024-09-01") == "2024-09-06 00:00"
    # Impossible day-of-month rescued by the weekday.
    assert next_iso("0 0 30 2 MON", "2024-09-01") == "2025-02-03 00:00"


def test_str_repr_equality_hash_and_pickle() -> None:
    expr = CronExpression.parse(" 0  9 * * MON ")
    assert str(expr) == " 0  9 * * MON "
    assert repr(expr) == "CronExpression.parse(' 0  9 * * MON ')"
    assert expr == CronExpression.parse(" 0  9 * * MON ")
    assert hash(expr) == hash(CronExpression.parse(" 0  9 * * MON "))
    assert pickle.loads(pickle.dumps(expr)) == expr
    with pytest.raises(AttributeError):
        expr.text = "x"  # type: ignore[misc]


def test_ticks_between_is_half_open_and_limited() -> None:
    expr = CronExpression.parse("0 * * * *")
    ticks = expr.ticks_between(ts("2024-05-01 00:00"), ts("2024-05-01 03:00"))
    assert [iso(t) for t in ticks] == ["2024-05-01 01:00", "2024-05-01 02:00", "2024-05-01 03:00"]
    limited = expr.ticks_between(ts("2024-05-01 00:00"), ts("2024-06-01"), limit=2)
    assert [iso(t) for t in limited] == ["2024-05-01 01:00", "2024-05-01 02:00"]
    assert expr.ticks_between(ts("2024-05-01 00:00"), ts("2024-05-01 00:30")) == []
    assert expr.ticks_between(ts("2024-05-02"), ts("2024-05-01")) == []
    assert expr.ticks_between(ts("2024-05-01"), ts("2024-06-01"), limit=0) == []
    with pytest.raises(errors.UsageError, match="limit"):
        expr.ticks_between(0, 1, limit=-1)


def test_search_jumps_instead_of_scanning() -> None:
    expr = CronExpression.parse("59 23 29 2 *")
    started = time.perf_counter()
    for year in range(2000, 2100):
        expr.next_after(ts(f"{year}-03-01"))
    assert time.perf_counter() - started < 2.0


# --- errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("*/5 25 * * *", "cron expression '*/5 25 * * *': hour value 25 is out of range 0-23"),
        ("60 * * * *", "minute value 60 is out of range 0-59"),
        ("* * 0 * *", "day-of-month value 0 is out of range 1-31"),
        ("* * 32 * *", "day-of-month value 32 is out of range 1-31"),
        ("* * * 13 *", "month value 13 is out of range 1-12"),
        ("* * * * 8", "day-of-week value 8 is out of range 0-7"),
        ("* 1-30 * * *", "hour value 30 is out of range 0-23"),
        ("*/0 * * * *", "minute step 0 in '*/0' is out of range 1-59"),
        ("*/60 * * * *", "minute step 60 in '*/60' is out of range 1-59"),
        ("1-5/x * * * *", "minute step 'x' in '1-5/x' is not a number"),
        ("*/ * * * *", "minute step '' in '*/' is not a number"),
        ("1/2/3 * * * *", "minute step '2/3' in '1/2/3' is not a number"),
        ("5-2 * * * *", "minute range '5-2' starts after it ends"),
        ("* * * * SAT-SUN", "day-of-week range 'SAT-SUN' starts after it ends"),
        ("* * * FOO *", "month value 'FOO' is not a number 1-12 or a name JAN-DEC"),
        ("* * * * funday", "day-of-week value 'funday' is not a number 0-7 or a name SUN-SAT"),
        ("* MON * * *", "hour value 'MON' is not a number 0-23"),
        ("* * * * L", "day-of-week value 'L' is not a number"),
        ("1,,2 * * * *", "minute field '1,,2' has an empty entry"),
        ("* , * * *", "hour field ',' has an empty entry"),
        ("* * 1, * *", "day-of-month field '1,' has an empty entry"),
        ("-1 * * * *", "minute entry '-1' is missing a value"),
        ("1- * * * *", "minute entry '1-' is missing a value"),
        ("* * * *", "found 4 fields, expected 5"),
        ("", "found 0 fields, expected 5"),
        ("0 * * * * *", "found 6 fields, expected 5"),
        ("0 * * * * *", "seconds and year fields are not supported"),
        ("@reboot", "unknown macro '@reboot'; expected one of @yearly"),
        ("0 0 30 2 *", "cron expression '0 0 30 2 *': never fires"),
        ("0 0 31 4,6,9,11 *", "never fires"),
    ],
)
def test_invalid_expressions_say_what_is_wrong(expr: str, message: str) -> None:
    with pytest.raises(errors.ConfigError) as caught:
        CronExpression.parse(expr)
    assert message in str(caught.value)
    assert str(caught.value).startswith(f"cron expression {expr!r}: ")
    assert caught.value.facts["expression"] == expr
    assert pickle.loads(pickle.dumps(caught.value)).message == caught.value.message


def test_field_is_an_attribute_of_the_error() -> None:
    with pytest.raises(errors.ConfigError) as caught:
        CronExpression.parse("* 24 * * *")
    assert caught.value.facts["field"] == "hour"


def test_search_is_bounded() -> None:
    # The next 29 February after 9996 would be in 10000, past what datetime can hold.
    expr = CronExpression.parse("0 0 29 2 *")
    with pytest.raises(errors.ConfigError, match="does not fire within 10 years"):
        expr.next_after(ts("9996-03-01"))


# --- time zones and daylight saving ------------------------------------------------------


def _zone(name: str) -> zoneinfo.ZoneInfo:
    if name not in zoneinfo.available_timezones():
        pytest.skip(f"time zone {name} not available")
    return zoneinfo.ZoneInfo(name)


def test_local_time_zone() -> None:
    new_york = _zone("America/New_York")
    expr = CronExpression.parse("0 9 * * *")
    assert iso(expr.next_after(ts("2024-01-10 12:00"), new_york)) == "2024-01-10 14:00"  # EST
    assert iso(expr.next_after(ts("2024-07-10 12:00"), new_york)) == "2024-07-10 13:00"  # EDT


def test_nonexistent_local_times_are_skipped() -> None:
    # Berlin, 2024-03-31: 02:00 CET jumps to 03:00 CEST.
    berlin = _zone("Europe/Berlin")
    daily = CronExpression.parse("30 2 * * *")
    tick = daily.next_after(ts("2024-03-30 12:00", berlin), berlin)
    assert datetime.fromtimestamp(tick, berlin).isoformat() == "2024-04-01T02:30:00+02:00"
    half_hourly = CronExpression.parse("*/30 * * * *")
    ticks = half_hourly.ticks_between(
        ts("2024-03-31 01:00", berlin), ts("2024-03-31 04:00", berlin), berlin
    )
    assert [datetime.fromtimestamp(t, berlin).strftime("%H:%M%z") for t in ticks] == [
        "01:30+0100",
        "03:00+0200",
        "03:30+0200",
        "04:00+0200",
    ]


def test_ambiguous_local_times_fire_once_at_first_occurrence() -> None:
    # Berlin, 2024-10-27: 03:00 CEST falls back to 02:00 CET; 02:00-02:59 happens twice.
    berlin = _zone("Europe/Berlin")
    daily = CronExpression.parse("30 2 * * *")
    first = daily.next_after(ts("2024-10-27 00:00", berlin), berlin)
    assert datetime.fromtimestamp(first, berlin).isoformat() == "2024-10-27T02:30:00+02:00"
    again = daily.next_after(first, berlin)
    assert datetime.fromtimestamp(again, berlin).isoformat() == "2024-10-28T02:30:00+01:00"
    # Starting inside the repeated hour (second pass) does not fire its wall times again.
    inside = ts("2024-10-27 01:10")  # 02:10 CET, fold=1
    assert iso(daily.next_after(inside, berlin)) == "2024-10-28 01:30"
    hourly = CronExpression.parse("0 * * * *")
    ticks = hourly.ticks_between(ts("2024-10-26 23:30"), ts("2024-10-27 03:30"), berlin)
    assert [iso(t) for t in ticks] == ["2024-10-27 00:00", "2024-10-27 02:00", "2024-10-27 03:00"]


def test_new_york_transitions() -> None:
    new_york = _zone("America/New_York")
    expr = CronExpression.parse("30 1,2 * * *")
    # 2024-03-10: 02:00 EST jumps to 03:00 EDT, so 02:30 is skipped.
    spring = expr.ticks_between(ts("2024-03-10", new_york), ts("2024-03-11", new_york), new_york)
    assert [datetime.fromtimestamp(t, new_york).strftime("%H:%M%z") for t in spring] == [
        "01:30-0500"
    ]
    # 2024-11-03: 02:00 EDT falls back to 01:00 EST, so 01:30 happens twice but fires once.
    fall = expr.ticks_between(ts("2024-11-03", new_york), ts("2024-11-04", new_york), new_york)
    assert [datetime.fromtimestamp(t, new_york).strftime("%H:%M%z") for t in fall] == [
        "01:30-0400",
        "02:30-0500",
    ]


# --- property: agree with a brute-force reference ----------------------------------------


@dataclass(frozen=True)
class FieldSpec:
    low: int
    high: int
    star_high: int
    names: tuple[str, ...] = ()  # names[i] is the name of value low + i


SPECS = (
    FieldSpec(0, 59, 59),
    FieldSpec(0, 23, 23),
    FieldSpec(1, 31, 31),
    FieldSpec(
        1,
        12,
        12,
        ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"),
    ),
    FieldSpec(0, 7, 6, ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")),
)


@st.composite
def values(draw: st.DrawFn, spec: FieldSpec, minimum: int | None = None) -> tuple[str, int]:
    value = draw(st.integers(spec.low if minimum is None else minimum, spec.high))
    index = value - spec.low
    if index < len(spec.names) and draw(st.booleans()):
        name = spec.names[index]
        return draw(st.sampled_from([name, name.lower(), name.title()])), value
    return str(value), value


@st.composite
def entries(draw: st.DrawFn, spec: FieldSpec) -> tuple[str, set[int]]:
    kind = draw(st.sampled_from(["*", "*/n", "a", "a-b", "a-b/n", "a/n"]))
    step = draw(st.integers(1, spec.high - spec.low))
    if kind == "*":
        return "*", set(range(spec.low, spec.star_high + 1))
    if kind == "*/n":
        return f"*/{step}", set(range(spec.low, spec.star_high + 1, step))
    a_text, a = draw(values(spec))
    if kind == "a":
        return a_text, {a}
    if kind == "a/n":
        return f"{a_text}/{step}", set(range(a, max(a, spec.star_high) + 1, step))
    b_text, b = draw(values(spec, minimum=a))
    if kind == "a-b":
        return f"{a_text}-{b_text}", set(range(a, b + 1))
    return f"{a_text}-{b_text}/{step}", set(range(a, b + 1, step))


@st.composite
def fields(draw: st.DrawFn, spec: FieldSpec) -> tuple[str, set[int]]:
    if draw(st.integers(0, 2)) == 0:
        return "*", set(range(spec.low, spec.star_high + 1))
    parts = draw(st.lists(entries(spec), min_size=1, max_size=3))
    return ",".join(text for text, _ in parts), set().union(*(found for _, found in parts))


@dataclass(frozen=True)
class Reference:
    text: str
    sets: tuple[set[int], ...]

    def next_after(self, t: float) -> float | None:
        minutes, hours, days, months, weekdays = self.sets
        weekdays = {d % 7 for d in weekdays}
        dom_field, dow_field = self.text.split()[2], self.text.split()[4]
        either = dom_field != "*" and dow_field != "*"
        now = datetime.fromtimestamp(t, UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
        end = now + timedelta(days=3700)
        while now < end:
            in_days = now.day in days
            in_weekdays = now.isoweekday() % 7 in weekdays
            day_ok = (in_days or in_weekdays) if either else (in_days and in_weekdays)
            if now.month not in months or not day_ok:
                now = now.replace(hour=0, minute=0) + timedelta(days=1)
                continue
            if now.hour in hours and now.minute in minutes:
                return now.timestamp()
            now += timedelta(minutes=1)
        return None


@st.composite
def references(draw: st.DrawFn) -> Reference:
    drawn = [draw(fields(spec)) for spec in SPECS]
    return Reference(" ".join(text for text, _ in drawn), tuple(found for _, found in drawn))


START = ts("2000-01-01")
END = ts("2100-01-01")


@settings(max_examples=200, deadline=None)
@given(
    reference=references(),
    start=st.one_of(
        st.floats(START, END, allow_nan=False),
        st.integers(int(START) // 60, int(END) // 60).map(lambda m: float(m * 60)),
    ),
)
def test_next_after_agrees_with_brute_force(reference: Reference, start: float) -> None:
    expected = reference.next_after(start)
    event("fires" if expected is not None else "never fires")
    try:
        expr = CronExpression.parse(reference.text)
    except errors.ConfigError as error:
        assert "never fires" in str(error)
        assert expected is None
        return
    minutes, hours, days, months, weekdays = reference.sets
    parsed = (expr.minutes, expr.hours, expr.days, expr.months)
    assert parsed == tuple(map(frozenset, (minutes, hours, days, months)))
    assert expr.weekdays == {d % 7 for d in weekdays}
    assert expected is not None
    assert expr.next_after(start) == expected
