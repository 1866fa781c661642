"""Answers about runs and their tasks: runs, task instances, attempts, logs and explanations."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from flowforge.api.models.base import Answer, Page
from flowforge.api.models.dags import TaskSpecOut
from flowforge.core.model import RunState, TaskState


class RunOut(Answer):
    """A run, pinned to the DAG version it started with; secret-looking params masked."""

    run_id: str
    dag_id: str
    dag_version: int
    state: RunState
    triggered_by: str
    params: dict[str, Any]
    logical_date: float | None = Field(description="the schedule tick it stands for; null for a manual run")
    created_at: float
    started_at: float | None
    ended_at: float | None


class TriggeredRun(RunOut):
    """POST /api/v1/runs: the new run."""

    dag_paused: bool = Field(description="the DAG is paused (a manual trigger runs anyway)")


class RunList(Page):
    """GET /api/v1/runs, newest first."""

    runs: list[RunOut]


class TaskInstanceOut(Answer):
    """One task in one run; `attempt` is the latest attempt's number (0 before the first)."""

    run_id: str
    task_id: str
    state: TaskState
    attempt: int
    retry_at: float | None
    queued_at: float | None
    started_at: float | None
    ended_at: float | None
    exit_code: int | None
    error: str | None
    worker_id: str | None
    lease_expires_at: float | None = Field(
        None, description="when the running attempt's lease runs out unless its worker heartbeats"
    )


class SlowNoteOut(Answer):
    """A running attempt that has run well past its task's usual time."""

    factor: float = Field(description="how many times the usual time it has run so far")
    usual_secs: float = Field(description="the usual time: the p95 of the task's last 20 successful attempts")
    message: str = Field(description='e.g. "running 3.1× longer than usual (p95 12 s)"')


class RunTaskOut(TaskInstanceOut):
    """A task instance in a run's detail."""

    slow: SlowNoteOut | None = Field(
        None,
        description="for a running task only: set once it has run longer than max(2 × p95, p95 + 30 s) "
        "of its last 20 successful attempts (over every run of the DAG), when it has at least 5; else null",
    )


class RunDetail(RunOut):
    """A run with every task instance."""

    tasks: list[RunTaskOut]
    waiting: str | None = Field(description="why the run or its tasks wait, when they wait for a slot")
    outputs: dict[str, dict[str, str]] = Field(
        default_factory=dict,
        description="by task id, the outputs each task that succeeded with some passes downstream "
        "(its successful attempt's); secret-looking keys masked",
    )


class RunRetried(RunDetail):
    """A run after a retry."""

    cleared: list[str] = Field(description="the task ids made pending again")


class TaskList(Answer):
    """GET /api/v1/runs/{run_id}/tasks, in the DAG's task order."""

    tasks: list[TaskInstanceOut]


class AttemptOut(Answer):
    """One try of a task instance; every attempt is kept."""

    run_id: str
    task_id: str
    attempt: int
    state: TaskState
    worker_id: str | None
    queued_at: float | None
    started_at: float | None
    ended_at: float | None
    exit_code: int | None
    error: str | None
    outputs: dict[str, str] = Field(
        default_factory=dict,
        description="the KEY=VALUE lines the attempt wrote to $FLOWFORGE_OUTPUT ({} for none); "
        "a successful attempt's reach its downstream tasks; secret-looking keys masked",
    )


class TaskDetail(TaskInstanceOut):
    """One task instance with all its attempts and its spec at the run's DAG version."""

    attempts: list[AttemptOut]
    spec: TaskSpecOut | None = Field(description="null when the DAG version is no longer stored")


class LogPage(Answer):
    """A piece of an attempt's log: read on from `cursor` until `done`."""

    run_id: str
    task_id: str
    attempt: int = Field(description="0 when the task has had no attempt yet")
    text: str
    cursor: int = Field(description="pass as `after` to read what follows")
    done: bool = Field(
        description="nothing more will come: the attempt has ended and all of its log was sent"
    )
    more: bool = Field(False, description="the answer stopped at the size limit; more is there already")


class ExplainReason(Answer):
    """One reason why a task is in its state."""

    code: str = Field(description="stable, for scripts: e.g. upstream, max_active_tasks, no_worker")
    message: str = Field(description="the reason in plain words")


class TaskExplanation(Answer):
    """GET /api/v1/runs/{run_id}/tasks/{task_id}/explain: why the task is in its state right now."""

    run_id: str
    task_id: str
    state: TaskState
    run_state: RunState
    summary: str = Field(description="one line: the state and what holds the task back most")
    reasons: list[ExplainReason]
