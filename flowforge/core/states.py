"""The state machine: trigger rules, the outcome of an attempt, and the run roll-up."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from enum import StrEnum

from flowforge.core.model import TASK_TERMINAL, RunState, TaskState, TriggerRule
from flowforge.core.retry import backoff_delay, should_retry

# Upstream states that count as "failed" for trigger rules.
_FAILED = frozenset({TaskState.FAILED, TaskState.UPSTREAM_FAILED, TaskState.CANCELLED})


class Readiness(StrEnum):
    """What the trigger rule says about a pending task, given its upstream states."""

    WAIT = "wait"
    READY = "ready"
    UPSTREAM_FAILED = "upstream_failed"
    SKIPPED = "skipped"


def evaluate_trigger(rule: TriggerRule, upstream: Iterable[TaskState]) -> Readiness:
    """Decide whether a pending task can run, must wait, or can never run.

    Decides as early as the outcome is certain (e.g. `all_success` fails as soon as
    one upstream failed), as Airflow does. A task with no upstream is always ready.
    """
    # One counting pass in C: the scheduler evaluates every pending task on every tick, and a
    # layer of 20 tasks each waiting on 20 upstream made four Python passes add up.
    counts = Counter(upstream)
    if not counts:
        return Readiness.READY
    done = TASK_TERMINAL.issuperset(counts)
    n_success = counts[TaskState.SUCCESS]
    n_failed = sum(counts[s] for s in _FAILED)
    n_skipped = counts[TaskState.SKIPPED]

    if rule is TriggerRule.ALL_SUCCESS:
        if n_failed:
            return Readiness.UPSTREAM_FAILED
        if n_skipped:
            return Readiness.SKIPPED
        return Readiness.READY if done else Readiness.WAIT
    if rule is TriggerRule.ALL_DONE:
        return Readiness.READY if done else Readiness.WAIT
    if rule is TriggerRule.ALL_FAILED:
        if n_success or n_skipped:
            return Readiness.SKIPPED
        return Readiness.READY if done else Readiness.WAIT
    if rule is TriggerRule.ONE_SUCCESS:
        if n_success:
            return Readiness.READY
        if not done:
            return Readiness.WAIT
        return Readiness.UPSTREAM_FAILED if n_failed else Readiness.SKIPPED
    if rule is TriggerRule.ONE_FAILED:
        if n_failed:
            return Readiness.READY
        return Readiness.SKIPPED if done else Readiness.WAIT
    if rule is TriggerRule.NONE_FAILED:
        if n_failed:
            return Readiness.UPSTREAM_FAILED
        return Readiness.READY if done else Readiness.WAIT
    raise ValueError(f"unknown trigger rule {rule!r}")


def attempt_outcome(
    attempt: int,
    retries: int,
    succeeded: bool,
    now: float,
    retry_delay: float | None = None,
    max_retry_delay: float | None = None,
) -> tuple[TaskState, float | None]:
    """State after attempt `attempt` ended, and when to retry (None when not retrying)."""
    if succeeded:
        return TaskState.SUCCESS, None
    if should_retry(attempt, retries):
        kwargs = {}
        if retry_delay is not None:
            kwargs["base"] = retry_delay
        if max_retry_delay is not None:
            kwargs["cap"] = max_retry_delay
        return TaskState.UP_FOR_RETRY, now + backoff_delay(attempt, **kwargs)
    return TaskState.FAILED, None


def run_outcome(task_states: Iterable[TaskState]) -> RunState | None:
    """The run's final state once every task is terminal, else None.

    A run fails when any task failed or could not run because an upstream failed;
    skipped tasks do not fail it.
    """
    states = list(task_states)
    if not all(s in TASK_TERMINAL for s in states):
        return None
    if any(s in (TaskState.FAILED, TaskState.UPSTREAM_FAILED) for s in states):
        return RunState.FAILED
    if states and all(s == TaskState.CANCELLED for s in states):
        return RunState.CANCELLED
    return RunState.SUCCESS
