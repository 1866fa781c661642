"""How long a DAG's runs and tasks usually take: a DAG's statistics, and the slow note of a running task.

`dag_stats` reads a DAG's last ended runs (one query) and sums them up with `core.durations`:
the p50 and p95 of its successful runs' durations and the share of them that succeeded.
`slow_notes` reads the last successful attempts of a run's running tasks (one query for them all)
and says which of them have run well past their usual time; the run's detail carries the notes
(`operations.run_snapshot`). Neither changes anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from flowforge.core.durations import HISTORY_SIZE, SlowNote, percentile, slow_note, success_rate
from flowforge.core.errors import InvalidRequest
from flowforge.core.model import RunState, TaskState
from flowforge.core.records import Run, TaskInstance
from flowforge.store.base import Store

# By task id: the notes of the running tasks that run well past their usual time.
SlowNotes = dict[str, SlowNote]
STATS_RUNS_DEFAULT = 50
STATS_RUNS_MAX = 500


@dataclass(frozen=True)
class RunDuration:
    """One ended run in a DAG's statistics; `duration_secs` is None for a run that never started."""

    run_id: str
    state: RunState
    started_at: float | None
    ended_at: float | None
    duration_secs: float | None


@dataclass(frozen=True)
class DagRunStats:
    """A DAG's last ended runs (the last to end first) and what they say.

    `p50_secs`/`p95_secs`: nearest-rank percentiles of the successful runs' durations (a failed or
    cancelled run may stop early, so it would make the DAG look faster); `success_rate`: the share
    of the listed runs that succeeded, 0 to 1. Each is None when there is nothing to read it from.
    """

    dag_id: str
    runs: tuple[RunDuration, ...]
    p50_secs: float | None
    p95_secs: float | None
    success_rate: float | None

    @property
    def count(self) -> int:
        """How many runs were read."""
        return len(self.runs)


def _run_duration(run: Run) -> RunDuration:
    duration = None
    if run.started_at is not None and run.ended_at is not None:
        duration = max(0.0, run.ended_at - run.started_at)
    return RunDuration(run.run_id, run.state, run.started_at, run.ended_at, duration)


def dag_stats(store: Store, dag_id: str, runs: int = STATS_RUNS_DEFAULT) -> DagRunStats:
    """The statistics of a DAG's last `runs` ended runs (1 to STATS_RUNS_MAX).

    NotFound for an unknown DAG (a deactivated one still has its history); InvalidRequest for a
    count out of bounds.
    """
    if not 1 <= runs <= STATS_RUNS_MAX:
        raise InvalidRequest("invalid_request", f"runs must be from 1 to {STATS_RUNS_MAX}, not {runs}")
    store.get_dag(dag_id)
    ended = [_run_duration(r) for r in store.ended_runs(dag_id, runs)]
    successes = [
        r.duration_secs for r in ended if r.state == RunState.SUCCESS and r.duration_secs is not None
    ]
    return DagRunStats(
        dag_id=dag_id,
        runs=tuple(ended),
        p50_secs=percentile(successes, 50),
        p95_secs=percentile(successes, 95),
        success_rate=success_rate([str(r.state) for r in ended]),
    )


def slow_notes(store: Store, run: Run, tasks: Sequence[TaskInstance], now: float) -> SlowNotes:
    """By task id, the running tasks of `run` that have run well past their usual time (`core.durations`).

    One store query for all the running tasks (none when no task runs), however many there are.
    """
    started = {
        ti.task_id: ti.started_at
        for ti in tasks
        if ti.state == TaskState.RUNNING and ti.started_at is not None
    }
    if not started:
        return {}
    history = store.success_durations(run.dag_id, list(started), HISTORY_SIZE)
    notes: SlowNotes = {}
    for task_id, at in started.items():
        note = slow_note(now - at, history.get(task_id, []))
        if note is not None:
            notes[task_id] = note
    return notes
