"""Run history with chosen durations, built through the store as the scheduler and a worker would.

Every time is given: no test waits for a task to take long.
"""

from __future__ import annotations

from collections.abc import Mapping

from flowforge.core.model import DagSpec, RunState, TaskSpec, TaskState
from flowforge.store import Store


def parallel_dag(dag_id: str, tasks: tuple[str, ...]) -> DagSpec:
    """A DAG of independent tasks, so that any of them can run at once."""
    return DagSpec(id=dag_id, tasks=tuple(TaskSpec(id=t, command=f"echo {t}") for t in tasks))


def run_task(
    store: Store, run_id: str, task_id: str, start: float, secs: float | None, ok: bool = True
) -> None:
    """Attempt 1 of the task starts at `start` and, unless `secs` is None, ends `secs` later."""
    assert store.queue_tasks(run_id, [(task_id, 0)], start) == [task_id]
    assert store.claim_task(run_id, task_id, 1, "w1", start) is not None
    if secs is not None:
        state = TaskState.SUCCESS if ok else TaskState.FAILED
        assert store.finish_task(run_id, task_id, 1, "w1", state=state, now=start + secs)


def ended_run(
    store: Store,
    dag_id: str,
    start: float,
    secs: Mapping[str, float],
    state: RunState = RunState.SUCCESS,
) -> str:
    """A run that started at `start`, ran each task of `secs` for that long (side by side), and ended
    as `state` when the longest was done; a task is failed when the run failed. Returns the run id."""
    run_id = store.create_run(dag_id, triggered_by="test", params={}, now=start).run_id
    assert store.set_run_state(run_id, [RunState.QUEUED], RunState.RUNNING, start)
    for task_id, took in secs.items():
        run_task(store, run_id, task_id, start, took, ok=state != RunState.FAILED)
    end = start + max(secs.values(), default=0.0)
    assert store.set_run_state(run_id, [RunState.RUNNING], state, end)
    return run_id


def running_run(store: Store, dag_id: str, started: Mapping[str, float]) -> str:
    """A running run whose tasks of `started` each run since the time given. Returns the run id."""
    first = min(started.values())
    run_id = store.create_run(dag_id, triggered_by="test", params={}, now=first).run_id
    assert store.set_run_state(run_id, [RunState.QUEUED], RunState.RUNNING, first)
    for task_id, at in started.items():
        run_task(store, run_id, task_id, at, None)
    return run_id
