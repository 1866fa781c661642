"""The scheduler's decisions for one run, as a pure function of spec, states and now."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from flowforge.core.graph import downstream
from flowforge.core.model import DagSpec, RunState, TaskState
from flowforge.core.states import Readiness, evaluate_trigger, run_outcome


@dataclass(frozen=True)
class TaskView:
    """What the planner needs to know of a task instance."""

    state: TaskState
    attempt: int
    retry_at: float | None = None


@dataclass
class RunPlan:
    """Changes to make to one run: each list holds (task_id, attempt the change is conditional on)."""

    to_queue: list[tuple[str, int]] = field(default_factory=list)
    to_upstream_failed: list[tuple[str, int]] = field(default_factory=list)
    to_skip: list[tuple[str, int]] = field(default_factory=list)
    run_state: RunState | None = None  # set when the run is over after these changes
    waiting_for_slot: int = 0  # ready tasks held back by max_active_tasks

    @property
    def empty(self) -> bool:
        """True when there is nothing to write."""
        return not (self.to_queue or self.to_upstream_failed or self.to_skip or self.run_state)


def plan_run(
    spec: DagSpec,
    order: Sequence[str],
    tasks: Mapping[str, TaskView],
    now: float,
    capacity: int | None = None,
) -> RunPlan:
    """Decide which tasks to queue, which can never run, and whether the run is over.

    `order` is a topological order of the spec's tasks, so that an `upstream_failed` or
    `skipped` decision reaches every downstream task in the same call. `capacity` is how
    many more tasks of this DAG may be queued now (max_active_tasks); None means no limit.
    """
    states = {tid: tv.state for tid, tv in tasks.items()}
    plan = RunPlan()
    free = capacity
    for tid in order:
        tv = tasks[tid]
        if tv.state == TaskState.UP_FOR_RETRY:
            if tv.retry_at is None or tv.retry_at <= now:
                if free is None or free > 0:
                    plan.to_queue.append((tid, tv.attempt))
                    states[tid] = TaskState.QUEUED
                    free = None if free is None else free - 1
                else:
                    plan.waiting_for_slot += 1
            continue
        if tv.state != TaskState.PENDING:
            continue
        task = spec.task(tid)
        verdict = evaluate_trigger(task.trigger_rule, (states[u] for u in task.depends_on))
        if verdict is Readiness.READY:
            if free is None or free > 0:
                plan.to_queue.append((tid, tv.attempt))
                states[tid] = TaskState.QUEUED
                free = None if free is None else free - 1
            else:
                plan.waiting_for_slot += 1
        elif verdict is Readiness.UPSTREAM_FAILED:
            plan.to_upstream_failed.append((tid, tv.attempt))
            states[tid] = TaskState.UPSTREAM_FAILED
        elif verdict is Readiness.SKIPPED:
            plan.to_skip.append((tid, tv.attempt))
            states[tid] = TaskState.SKIPPED
    plan.run_state = run_outcome(states.values())
    return plan


# States of tasks that never ran because of something upstream: a retry upstream re-opens them.
_NOT_RUN = frozenset({TaskState.UPSTREAM_FAILED, TaskState.SKIPPED, TaskState.CANCELLED})
_RETRYABLE = frozenset({TaskState.FAILED}) | _NOT_RUN


def tasks_to_clear(
    spec: DagSpec, states: Mapping[str, TaskState], task_id: str | None = None, with_downstream: bool = False
) -> list[str]:
    """Which tasks a retry runs again, in the DAG's order.

    Without a task: every failed, upstream-failed or cancelled task, and whatever downstream of
    them did not succeed. With a task: that task and the downstream tasks that never ran
    because of it; `with_downstream` takes every downstream task, successful ones too.
    Raises KeyError for a task the DAG does not have.
    """
    if task_id is None:
        roots = {t for t, s in states.items() if s in _RETRYABLE - {TaskState.SKIPPED}}
        chosen = roots | {t for t in downstream(spec, roots) if states[t] != TaskState.SUCCESS}
    else:
        below = downstream(spec, [task_id])
        chosen = {task_id} | (below if with_downstream else {t for t in below if states[t] in _NOT_RUN})
    return [t.id for t in spec.tasks if t.id in chosen]
