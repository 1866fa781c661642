"""Cron schedules: what is accepted, and the ticks, in the DAG's timezone and across DST."""

from __future__ import annotations

from datetime import datetime
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest

from flowforge.core.schedule import next_fire, previous_fire, validate_schedule

UTC = ZoneInfo("UTC")
BERLIN = ZoneInfo("Europe/Berlin")


def ts(tz: ZoneInfo, *parts: int) -> float:
    """Epoch seconds of a wall-clock time in `tz`."""
    return datetime(*parts, tzinfo=tz).timestamp()  # type: ignore[arg-type, misc]


def local(t: float, tz: ZoneInfo = BERLIN) -> str:
    """`t` as local wall-clock time with its UTC offset, for readable assertions."""
    return datetime.fromtimestamp(t, tz).isoformat()


@pytest.mark.parametrize(
    "expr",
    [
        "0 * * * *",
        "*/5 9-17 * * MON-FRI",
        "30 2 * * *",
        "0 0 * * * *",  # 6 fields, seconds first
        "*/10 * * * * *",
        "  0   0 * * *  ",  # extra spaces
        "@hourly",
        "@daily",
        "@weekly",
        "@monthly",
        "@yearly",
        "@midnight",
        "@annually",
        "@Daily",
        "0 3 * MAR-APR FRI",  # month and day names with an R in them are not croniter's R
        "0 3 * * THU,SAT",
    ],
)
def test_valid_schedules(expr: str) -> None:
    assert validate_schedule(expr) is None


@pytest.mark.parametrize(
    ("expr", "phrase"),
    [
        ("", "a schedule must be a cron expression"),
        ("* * * *", "'* * * *' has 4 fields; a schedule must have 5 fields"),
        ("0 0 0 1 1 * 2030", "has 7 fields"),  # croniter's year field is not part of a DAG schedule
        ("61 * * * *", "is not a valid cron expression"),
        ("60 * * * * *", "is not a valid cron expression"),  # seconds first: 60 is out of range
        ("* 25 * * *", "is not a valid cron expression"),
        ("a b c d e", "is not a valid cron expression"),
        ("*/0 * * * *", "is not a valid cron expression"),
        ("@fortnightly", "unknown schedule shortcut '@fortnightly'"),
        ("0 0 30 2 *", "never matches a real date"),
        # croniter's R picks a new random time whenever the schedule is read: `0 R * * *` ran 23 times a day.
        ("0 R * * *", "uses R (random), which FlowForge does not support"),
        ("r 0 * * *", "uses R (random)"),
        ("0 R(1-5) * * *", "uses R (random)"),
        ("0 0 1,R * *", "uses R (random)"),
        ("0 0 * * * R/2", "uses R (random)"),
        ("H 3 * * *", "uses H (hashed), which FlowForge does not support"),
        ("0 " + ",".join(["1"] * 600) + " * * *", "a schedule has at most 1,000"),
    ],
)
def test_invalid_schedules(expr: str, phrase: str) -> None:
    message = validate_schedule(expr)
    assert message is not None and phrase in message


def test_invalid_schedule_names_the_accepted_forms() -> None:
    message = validate_schedule("1 2 3 4 5 6 7 8")
    assert message is not None
    assert "5 fields (minute hour day-of-month month day-of-week)" in message
    assert "6 fields with seconds first" in message and "@daily" in message


def test_unknown_timezone() -> None:
    assert validate_schedule("@daily", "Mars/Olympus") == "unknown timezone 'Mars/Olympus'"


@pytest.mark.parametrize(
    ("expr", "tz", "after", "expected"),
    [
        # Seconds first: "0 0 * * * *" is second 0 of minute 0, i.e. hourly.
        ("0 0 * * * *", UTC, (2026, 1, 5, 10, 15, 0), (2026, 1, 5, 11, 0, 0)),
        ("30 0 * * * *", UTC, (2026, 1, 5, 10, 15, 0), (2026, 1, 5, 11, 0, 30)),
        ("*/15 * * * * *", UTC, (2026, 1, 5, 10, 15, 7), (2026, 1, 5, 10, 15, 15)),
        ("15 10 * * *", UTC, (2026, 1, 5, 10, 15, 0), (2026, 1, 6, 10, 15, 0)),  # strictly after
        ("15 10 * * *", UTC, (2026, 1, 5, 10, 14, 59), (2026, 1, 5, 10, 15, 0)),
        ("@daily", UTC, (2026, 1, 5, 10, 15, 0), (2026, 1, 6, 0, 0, 0)),
        ("@hourly", UTC, (2026, 1, 5, 10, 15, 0), (2026, 1, 5, 11, 0, 0)),
        ("@weekly", UTC, (2026, 1, 5, 10, 15, 0), (2026, 1, 11, 0, 0, 0)),  # Sunday
        ("@monthly", UTC, (2026, 1, 5, 10, 15, 0), (2026, 2, 1, 0, 0, 0)),
        ("@yearly", UTC, (2026, 1, 5, 10, 15, 0), (2027, 1, 1, 0, 0, 0)),
        # In the DAG's timezone: midnight in Berlin is 23:00 UTC in winter.
        ("@daily", BERLIN, (2026, 1, 5, 10, 15, 0), (2026, 1, 6, 0, 0, 0)),
        ("0 9 * * MON-FRI", BERLIN, (2026, 1, 9, 9, 0, 0), (2026, 1, 12, 9, 0, 0)),  # Fri -> Mon
    ],
)
def test_next_fire(expr: str, tz: ZoneInfo, after: tuple[int, ...], expected: tuple[int, ...]) -> None:
    assert next_fire(expr, str(tz), ts(tz, *after)) == ts(tz, *expected)


def test_next_fire_is_in_the_dags_timezone() -> None:
    assert next_fire("@daily", "Europe/Berlin", ts(UTC, 2026, 1, 5, 12)) == ts(UTC, 2026, 1, 5, 23)


def test_next_fire_with_a_fractional_start() -> None:
    assert next_fire("* * * * * *", "UTC", 100.5) == 101.0
    assert next_fire("@hourly", "UTC", 3600.25) == 7200.0


@pytest.mark.parametrize(
    ("expr", "at", "expected"),
    [
        ("@hourly", 7200.0, 7200.0),  # a tick exactly at `at` counts
        ("@hourly", 7199.0, 3600.0),
        ("@hourly", 7200.5, 7200.0),
        ("*/10 * * * * *", 125.0, 120.0),
        ("@daily", ts(UTC, 2026, 1, 5, 10), ts(UTC, 2026, 1, 5)),
    ],
)
def test_previous_fire(expr: str, at: float, expected: float) -> None:
    assert previous_fire(expr, "UTC", at) == expected


def ticks(expr: str, tz: str, start: float, n: int) -> list[float]:
    out = [next_fire(expr, tz, start)]
    while len(out) < n:
        out.append(next_fire(expr, tz, out[-1]))
    return out


def assert_sane(series: list[float]) -> None:
    assert all(a < b for a, b in pairwise(series)), "ticks must strictly increase"


def test_dst_spring_forward_daily_0230_berlin() -> None:
    # On 2026-03-29 Berlin jumps from 02:00 to 03:00: 02:30 does not exist that day.
    got = ticks("30 2 * * *", "Europe/Berlin", ts(BERLIN, 2026, 3, 27, 12), 4)
    assert [local(t) for t in got] == [
        "2026-03-28T02:30:00+01:00",
        "2026-03-29T03:00:00+02:00",  # croniter fires once, at the first moment after the gap
        "2026-03-30T02:30:00+02:00",
        "2026-03-31T02:30:00+02:00",
    ]
    assert_sane(got)
    assert [previous_fire("30 2 * * *", "Europe/Berlin", t) for t in got] == got


def test_dst_fall_back_daily_0230_berlin() -> None:
    # On 2026-10-25 Berlin goes from 03:00 back to 02:00: 02:30 happens twice, an hour apart.
    got = ticks("30 2 * * *", "Europe/Berlin", ts(BERLIN, 2026, 10, 23, 12), 4)
    assert [local(t) for t in got] == [
        "2026-10-24T02:30:00+02:00",
        "2026-10-25T02:30:00+02:00",
        "2026-10-25T02:30:00+01:00",  # croniter fires at both 02:30s: two distinct instants
        "2026-10-26T02:30:00+01:00",
    ]
    assert_sane(got)
    assert [previous_fire("30 2 * * *", "Europe/Berlin", t) for t in got] == got


def test_dst_hourly_over_both_changes_has_no_gaps_or_repeats_in_real_time() -> None:
    for day in ((2026, 3, 28, 22), (2026, 10, 24, 22)):
        got = ticks("0 * * * *", "Europe/Berlin", ts(BERLIN, *day), 8)
        assert_sane(got)
        assert {b - a for a, b in pairwise(got)} <= {3600.0}


def test_dst_spring_forward_hourly_skips_the_missing_hour() -> None:
    got = ticks("0 * * * *", "Europe/Berlin", ts(BERLIN, 2026, 3, 29, 0, 30), 3)
    assert [local(t) for t in got] == [
        "2026-03-29T01:00:00+01:00",
        "2026-03-29T03:00:00+02:00",  # 02:00 local never happens; one real hour after 01:00
        "2026-03-29T04:00:00+02:00",
    ]
