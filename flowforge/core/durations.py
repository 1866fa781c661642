"""How long things usually take: percentiles, success rates, and whether a running attempt is slow.

Pure rules over durations in seconds, shared by the DAG statistics (`GET /api/v1/dags/{id}/stats`)
and the slow note of a running task in a run's detail.

- A percentile is the nearest rank: the smallest value with at least p % of the values at or below
  it (`sorted[ceil(p / 100 × n) − 1]`), so it is always one of the durations seen; none for no values.
- A running attempt is slow when it has run longer than `max(SLOW_FACTOR × p95, p95 + SLOW_MARGIN_SECS)`
  of the task's last successful attempts (at most HISTORY_SIZE of them), and only once the task has
  at least MIN_HISTORY of them: a short task is not slow for taking a few seconds more than usual,
  and a task with too little history has no "usual" yet.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

HISTORY_SIZE = 20  # the successful attempts a task's usual duration is read from
MIN_HISTORY = 5  # fewer successes than this: no judgement
SLOW_FACTOR = 2.0  # slow past this many times the usual p95 ...
SLOW_MARGIN_SECS = 30.0  # ... and past the p95 plus this much


def percentile(values: Sequence[float], p: float) -> float | None:
    """The nearest-rank `p`-th percentile (0 < p ≤ 100) of `values`; None when there are none."""
    if not 0 < p <= 100:
        raise ValueError(f"a percentile is over 0 and at most 100, not {p}")
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def success_rate(states: Sequence[str]) -> float | None:
    """The share of `states` that are "success" (0 to 1); None when there are none."""
    if not states:
        return None
    return sum(s == "success" for s in states) / len(states)


def secs_text(secs: float) -> str:
    """A duration for people: `0.4 s`, `12 s`, `4 min 05 s`, `2 h 05 min`."""
    if secs < 9.95:
        return f"{secs:.1f} s"
    if secs < 59.5:
        return f"{secs:.0f} s"
    whole = round(secs)
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


def factor_text(factor: float) -> str:
    """`3.1×`, or `45×` from ten up."""
    return f"{factor:.1f}×" if factor < 9.95 else f"{factor:.0f}×"


@dataclass(frozen=True)
class SlowNote:
    """A running attempt that has run well past its task's usual duration.

    `factor` is how many times the usual duration (`usual_secs`, the p95 of its last successes)
    it has run so far; `message` says so in words.
    """

    factor: float
    usual_secs: float
    message: str


def slow_threshold(usual_secs: float) -> float:
    """How long an attempt of a task whose p95 is `usual_secs` may run before it counts as slow."""
    return max(SLOW_FACTOR * usual_secs, usual_secs + SLOW_MARGIN_SECS)


def slow_note(running_secs: float, past_successes: Sequence[float]) -> SlowNote | None:
    """Whether an attempt running for `running_secs` is slow against the task's past successful durations.

    None with fewer than MIN_HISTORY past successes, or while the attempt is within
    `slow_threshold` of their p95. Only the last HISTORY_SIZE durations given count (pass them
    newest first).
    """
    recent = past_successes[:HISTORY_SIZE]
    usual = percentile(recent, 95)
    if usual is None or len(recent) < MIN_HISTORY or running_secs <= slow_threshold(usual):
        return None
    # A task that usually takes no measurable time: count from a millisecond, not divide by zero.
    factor = round(running_secs / max(usual, 0.001), 1)
    message = f"running {factor_text(factor)} longer than usual (p95 {secs_text(usual)})"
    return SlowNote(factor=factor, usual_secs=usual, message=message)
