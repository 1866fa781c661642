"""Retention: delete the history of runs that ended long ago (`POST /api/v1/prune`, `flowforge prune`).

A prune deletes ended runs (success, failed, cancelled; never a queued or running one) whose end
is older than a cutoff, with their task instances, attempts, logs and events, in short batches
(`Store.prune_runs`). DAGs and their versions stay. The scheduler's automatic retention
(FLOWFORGE_RETENTION_DAYS) uses the same store method, a batch at a time between its ticks.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass

from flowforge.store.base import Store

UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
MAX_AGE_SECS = 36_525 * 86400  # 100 years: anything longer is a typo, not a retention period
_AGE = re.compile(r"([0-9]{1,12})([smhdw])")
_RUN_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def parse_age(text: str) -> float:
    """Seconds in an age such as `30d`: a whole number and a unit (s, m, h, d, w).

    ValueError with a sentence for a user when it is malformed, 0, or over 100 years.
    """
    found = _AGE.fullmatch(text.strip().lower())
    if found is None:
        raise ValueError(
            f"must be a positive whole number and a unit, s, m, h, d or w (e.g. 30d or 12h), not {text[:40]!r}"
        )
    seconds = int(found.group(1)) * UNIT_SECONDS[found.group(2)]
    if seconds <= 0:
        raise ValueError(f"must be more than 0, not {text.strip()!r}")
    if seconds > MAX_AGE_SECS:
        raise ValueError(f"must be at most 100 years (36525d), not {text.strip()!r}")
    return float(seconds)


# A prune asked for over the API stops after the batch that passes this long, and answers with a
# cursor to go on from: no request holds a client (or a server thread) for minutes.
REQUEST_BUDGET_SECS = 5.0

Position = tuple[float, tuple[float, str]]  # (cutoff, (ended_at, run_id) of the last run taken)


@dataclass(frozen=True)
class Pruned:
    """What a prune deleted (on a dry run: would delete): runs that ended before `cutoff`, and their rows.

    `next` is None when no such run is left; else where to go on from (`cursor_text` makes a
    cursor of it for a client).
    """

    cutoff: float
    dry_run: bool
    runs: int = 0
    task_instances: int = 0
    attempts: int = 0
    log_chunks: int = 0
    events: int = 0
    batches: int = 0  # transactions it took
    next: Position | None = None


def prune_history(
    store: Store,
    older_than: float,
    *,
    dry_run: bool = False,
    now: float | None = None,
    resume: Position | None = None,
    budget_secs: float | None = None,
) -> Pruned:
    """Delete every ended run that ended more than `older_than` seconds ago, batch by batch.

    Each batch is one short transaction, so the scheduler, the workers and the API carry on in
    between. With `dry_run`, counts what would go and deletes nothing. `resume` goes on from
    where an earlier call stopped, at its cutoff; with `budget_secs`, stops after the batch that
    passes that long (`next` then says where to go on from).
    """
    cutoff, after = (
        resume if resume is not None else ((time.time() if now is None else now) - older_than, None)
    )
    totals = {"runs": 0, "task_instances": 0, "attempts": 0, "log_chunks": 0, "events": 0}
    started, batches = time.monotonic(), 0
    while True:
        batch = store.prune_runs(cutoff, after=after, dry_run=dry_run)
        batches += 1
        for key in totals:
            totals[key] += getattr(batch, key)
        after = batch.last
        if after is None or (budget_secs is not None and time.monotonic() - started >= budget_secs):
            position = None if after is None else (cutoff, after)
            return Pruned(cutoff=cutoff, dry_run=dry_run, batches=batches, next=position, **totals)


def cursor_text(position: Position) -> str:
    """A cursor for a client to send back: `CUTOFF/ENDED_AT/RUN_ID`, the times exactly as stored."""
    cutoff, (ended_at, run_id) = position
    return f"{cutoff!r}/{ended_at!r}/{run_id}"


def read_cursor(text: str, older_than: float, now: float | None = None) -> Position:
    """The position a cursor names; ValueError for one this server did not make, or one that would
    delete runs younger than `older_than` seconds."""
    parts = text.split("/", 2)
    try:
        cutoff, ended_at = float(parts[0]), float(parts[1])
        run_id = parts[2]
    except (ValueError, IndexError):
        raise ValueError("is not a cursor from an earlier answer's `next`") from None
    if not (math.isfinite(cutoff) and math.isfinite(ended_at)) or not _RUN_ID.fullmatch(run_id):
        raise ValueError("is not a cursor from an earlier answer's `next`")
    if cutoff > (time.time() if now is None else now) - older_than:
        raise ValueError("reaches runs younger than older_than: it belongs to another prune")
    return cutoff, (ended_at, run_id)
