"""Retry policy: how long to wait before the next attempt of a failed task."""

from __future__ import annotations

DEFAULT_RETRY_DELAY_SECS = 1.0
DEFAULT_MAX_RETRY_DELAY_SECS = 60.0


def backoff_delay(
    attempts_so_far: int,
    base: float = DEFAULT_RETRY_DELAY_SECS,
    cap: float = DEFAULT_MAX_RETRY_DELAY_SECS,
) -> float:
    """Seconds to wait before attempt `attempts_so_far + 1`: `min(base * 2**n, cap)`.

    With the defaults this is `min(2 ** n, 60)`: 2 s after the first failure,
    then 4, 8, 16, 32, 60, 60 …
    """
    if attempts_so_far < 0:
        raise ValueError("attempts_so_far must be >= 0")
    # Cap the exponent too, so that a huge retry count cannot overflow a float.
    return float(min(base * 2 ** min(attempts_so_far, 64), cap))


def should_retry(attempt: int, retries: int) -> bool:
    """True when attempt number `attempt` (1-based) failed and the budget allows another.

    `retries` counts retries after the first attempt (Airflow's meaning), so a task
    with `retries: 2` runs at most 3 times.
    """
    return attempt <= retries
