"""The scheduler's decisions for one run, as a pure function of spec, states and now."""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from flowforge.core.graph import downstream
from flowforge.core.model import DagSpec, RunState, TaskState
from flowforge.core.states import Readiness, evaluate_trigger, run_outcome


@dataclass(frozen=True)
class TaskView:
    """What the planner needs to know of a task instance."""

    state: TaskState
    attempt: int
    retry_at: float | None = None


class TaskLike(Protocol):
    """What the planner reads of a task: a `TaskView`, or the task instance itself."""

    @property
    def state(self) -> TaskState: ...

    @property
    def attempt(self) -> int: ...

    @property
    def retry_at(self) -> float | None: ...


@dataclass(frozen=True)
class DagShape:
    """A DAG version's topological order and downstream edges, worked out once per version."""

    order: tuple[str, ...]
    index: dict[str, int]  # position of each task in `order`
    children: dict[str, tuple[str, ...]]  # the tasks that depend on each task directly

    @classmethod
    def of(cls, spec: DagSpec, order: Sequence[str]) -> DagShape:
        """The shape of `spec`, given a topological order of its tasks."""
        children: dict[str, list[str]] = {tid: [] for tid in order}
        for tid in order:
            for up in spec.task(tid).depends_on:
                children[up].append(tid)
        return cls(
            tuple(order), {tid: i for i, tid in enumerate(order)}, {t: tuple(c) for t, c in children.items()}
        )


@dataclass
class RunPlan:
    """Changes to make to one run: each list holds (task_id, attempt the change is conditional on)."""

    to_queue: list[tuple[str, int]] = field(default_factory=list)
    to_upstream_failed: list[tuple[str, int]] = field(default_factory=list)
    to_skip: list[tuple[str, int]] = field(default_factory=list)
    run_state: RunState | None = None  # set when the run is over after these changes
    waiting_for_slot: int = 0  # ready tasks held back by max_active_tasks
    held: list[str] = field(default_factory=list)  # those tasks
    evaluated: int = 0  # tasks whose readiness was looked at

    @property
    def empty(self) -> bool:
        """True when there is nothing to write."""
        return not (self.to_queue or self.to_upstream_failed or self.to_skip or self.run_state)


def plan_run(
    spec: DagSpec,
    order: Sequence[str],
    tasks: Mapping[str, TaskLike],
    now: float,
    capacity: int | None = None,
) -> RunPlan:
    """Decide which tasks to queue, which can never run, and whether the run is over.

    `order` is a topological order of the spec's tasks, so that an `upstream_failed` or
    `skipped` decision reaches every downstream task in the same call. `capacity` is how
    many more tasks of this DAG may be queued now (max_active_tasks); None means no limit.
    """
    counts = Counter(tv.state for tv in tasks.values())
    return plan_tasks(spec, DagShape.of(spec, order), tasks, order, counts, now, capacity)


def plan_tasks(
    spec: DagSpec,
    shape: DagShape,
    tasks: Mapping[str, TaskLike],
    candidates: Iterable[str],
    counts: Mapping[TaskState, int],
    now: float,
    capacity: int | None = None,
) -> RunPlan:
    """`plan_run` looking only at `candidates` and at what its own decisions reach downstream.

    Gives what `plan_run` gives when every task left out is waiting: neither pending nor up
    for retry, or pending with a trigger rule that waits on its upstream's states in `tasks`.
    `counts` is how many tasks are in each state (for the run's outcome). Candidates are taken
    in topological order; a task made `skipped` or `upstream_failed` adds its downstream tasks,
    so a decision reaches every task it concerns in the same call (one made `queued` does not:
    a trigger rule tells queued from pending no more than from running).
    """
    changed: dict[str, TaskState] = {}
    heap = [shape.index[tid] for tid in set(candidates)]
    heapq.heapify(heap)
    seen = set(heap)
    plan = RunPlan()
    free = capacity
    while heap:
        tid = shape.order[heapq.heappop(heap)]
        tv = tasks[tid]
        plan.evaluated += 1
        verdict = _readiness(spec, tid, tv, tasks, changed, now)
        if verdict is Readiness.WAIT:
            continue
        if verdict is Readiness.READY:
            if free is not None and free <= 0:
                plan.waiting_for_slot += 1
                plan.held.append(tid)
                continue
            plan.to_queue.append((tid, tv.attempt))
            changed[tid] = TaskState.QUEUED
            free = None if free is None else free - 1
            continue  # queued, like pending or up for retry, is not done: nothing downstream changes
        if verdict is Readiness.UPSTREAM_FAILED:
            plan.to_upstream_failed.append((tid, tv.attempt))
            changed[tid] = TaskState.UPSTREAM_FAILED
        else:
            plan.to_skip.append((tid, tv.attempt))
            changed[tid] = TaskState.SKIPPED
        for child in shape.children[tid]:
            if (i := shape.index[child]) not in seen:
                seen.add(i)
                heapq.heappush(heap, i)
    plan.run_state = _outcome(counts, {tid: tasks[tid].state for tid in changed}, changed)
    return plan


def _readiness(
    spec: DagSpec,
    tid: str,
    tv: TaskLike,
    tasks: Mapping[str, TaskLike],
    changed: dict[str, TaskState],
    now: float,
) -> Readiness:
    """What the plan does with one task, given its upstream's states as the plan left them."""
    if tv.state == TaskState.UP_FOR_RETRY:
        return Readiness.READY if tv.retry_at is None or tv.retry_at <= now else Readiness.WAIT
    if tv.state != TaskState.PENDING:
        return Readiness.WAIT
    task = spec.task(tid)
    return evaluate_trigger(task.trigger_rule, (changed.get(u) or tasks[u].state for u in task.depends_on))


def _outcome(
    counts: Mapping[TaskState, int], before: Mapping[str, TaskState], after: Mapping[str, TaskState]
) -> RunState | None:
    """`run_outcome` of the states `counts` counts, once the tasks in `before` are in their `after` state."""
    now_counts = Counter({s: n for s, n in counts.items() if n > 0})
    now_counts.subtract(before.values())
    now_counts.update(after.values())
    return run_outcome(s for s, n in now_counts.items() if n > 0)


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
