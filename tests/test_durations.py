"""The rules of usual durations (core.durations): nearest-rank percentiles, success rates, slow attempts."""

from __future__ import annotations

import pytest

from flowforge.core.durations import (
    HISTORY_SIZE,
    MIN_HISTORY,
    factor_text,
    percentile,
    secs_text,
    slow_note,
    slow_threshold,
    success_rate,
)


@pytest.mark.parametrize(
    ("values", "p", "expected"),
    [
        ([], 50, None),
        ([], 95, None),
        ([7.0], 50, 7.0),
        ([7.0], 95, 7.0),
        ([7.0], 100, 7.0),
        ([1.0, 2.0], 50, 1.0),  # rank ceil(0.5 × 2) = 1: the lower of two
        ([2.0, 1.0], 95, 2.0),
        ([3.0, 1.0, 2.0], 50, 2.0),  # order does not matter
        ([5.0, 5.0, 5.0, 5.0], 50, 5.0),  # ties
        ([1.0, 5.0, 5.0, 9.0], 50, 5.0),
        ([1.0, 5.0, 5.0, 9.0], 75, 5.0),
        ([1.0, 5.0, 5.0, 9.0], 76, 9.0),
        ([float(i) for i in range(1, 21)], 95, 19.0),  # rank 19 of 20
        ([float(i) for i in range(1, 21)], 50, 10.0),
        ([float(i) for i in range(1, 101)], 95, 95.0),
        ([float(i) for i in range(1, 101)], 1, 1.0),
        ([0.0, 0.0, 0.0], 95, 0.0),
    ],
)
def test_percentile_is_the_nearest_rank(values: list[float], p: float, expected: float | None) -> None:
    assert percentile(values, p) == expected


def test_percentile_is_always_one_of_the_values() -> None:
    values = [0.3, 12.5, 4.25, 4.25, 99.0, 1.0, 7.75]
    for p in range(1, 101):
        assert percentile(values, p) in values


@pytest.mark.parametrize("p", [0, -1, 100.5, 200])
def test_percentile_out_of_range_says_so(p: float) -> None:
    with pytest.raises(ValueError, match="percentile"):
        percentile([1.0], p)


@pytest.mark.parametrize(
    ("states", "expected"),
    [
        ([], None),
        (["success"], 1.0),
        (["failed"], 0.0),
        (["cancelled"], 0.0),  # a cancelled run did not succeed
        (["success", "failed"], 0.5),
        (["success", "success", "failed", "cancelled"], 0.5),
        (["success"] * 3, 1.0),
    ],
)
def test_success_rate(states: list[str], expected: float | None) -> None:
    assert success_rate(states) == expected


@pytest.mark.parametrize(
    ("secs", "text"),
    [
        (0.0, "0.0 s"),
        (0.44, "0.4 s"),
        (9.9, "9.9 s"),
        (9.96, "10 s"),
        (12.4, "12 s"),
        (59.4, "59 s"),
        (59.6, "1 min 00 s"),
        (100.0, "1 min 40 s"),
        (245.0, "4 min 05 s"),
        (3599.4, "59 min 59 s"),
        (3600.0, "1 h 00 min"),
        (7500.0, "2 h 05 min"),
        (90000.0, "25 h 00 min"),
    ],
)
def test_secs_text(secs: float, text: str) -> None:
    assert secs_text(secs) == text


@pytest.mark.parametrize(("factor", "text"), [(2.0, "2.0×"), (3.1, "3.1×"), (9.9, "9.9×"), (45.3, "45×")])
def test_factor_text(factor: float, text: str) -> None:
    assert factor_text(factor) == text


@pytest.mark.parametrize(
    ("usual", "threshold"),
    [
        (0.0, 30.0),  # a task that takes no time: 30 s more than usual
        (1.0, 31.0),
        (29.0, 59.0),
        (30.0, 60.0),  # where the two rules meet
        (31.0, 62.0),
        (600.0, 1200.0),  # a long task: twice its usual time
    ],
)
def test_slow_threshold_is_twice_the_p95_or_30_s_over_it_whichever_is_later(
    usual: float, threshold: float
) -> None:
    assert slow_threshold(usual) == threshold


TEN = [10.0] * 5  # five successes of 10 s: p95 10 s, slow past 40 s


@pytest.mark.parametrize(
    ("running", "past", "factor", "message"),
    [
        (1000.0, [], None, None),  # no history
        (1000.0, [10.0], None, None),  # one success is no "usual"
        (1000.0, [10.0] * (MIN_HISTORY - 1), None, None),  # one too few
        (40.0, TEN, None, None),  # just at the threshold: not yet
        (40.5, TEN, 4.0, "running 4.0× longer than usual (p95 10 s)"),  # p95 + 30 s was later than 2 × p95
        (600.0, TEN, 60.0, "running 60× longer than usual (p95 10 s)"),
        (310.0, [100.0] * 5, 3.1, "running 3.1× longer than usual (p95 1 min 40 s)"),
        (199.0, [100.0] * 5, None, None),  # 2 × p95 is the later bound here
        # The p95 of 5 values is the largest (rank 5): one slow success raises the bar.
        (100.0, [10.0, 10.0, 10.0, 10.0, 60.0], None, None),
        (121.0, [10.0, 10.0, 10.0, 10.0, 60.0], 2.0, "running 2.0× longer than usual (p95 1 min 00 s)"),
        (31.0, [0.0] * 5, 31000.0, "running 31000× longer than usual (p95 0.0 s)"),  # no division by zero
    ],
)
def test_slow_note(running: float, past: list[float], factor: float | None, message: str | None) -> None:
    note = slow_note(running, past)
    if factor is None:
        assert note is None
    else:
        assert note is not None and (note.factor, note.message) == (factor, message)
        assert note.usual_secs == percentile(past[:HISTORY_SIZE], 95)


def test_slow_note_reads_only_the_last_20_successes() -> None:
    # Newest first: 20 recent successes of 10 s, then older ones of 1000 s that no longer count.
    past = [10.0] * HISTORY_SIZE + [1000.0] * 30
    note = slow_note(100.0, past)
    assert note is not None and note.usual_secs == 10.0
    assert slow_note(100.0, [1000.0] * 30 + [10.0] * HISTORY_SIZE) is None
