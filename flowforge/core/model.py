"""The DAG specification and the state enums shared by every layer."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from typing import Any


class RunState(StrEnum):
    """State of a DAG run."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"
    CANCELLED = "cancelled"


RUN_TERMINAL = frozenset({RunState.SUCCESS, RunState.FAILED, RunState.CANCELLED})


class TaskState(StrEnum):
    """State of a task instance (one task in one run)."""

    PENDING = "pending"
    QUEUED = "queued"
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"
    UP_FOR_RETRY = "up_for_retry"
    UPSTREAM_FAILED = "upstream_failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"
    LOST = "lost"  # attempts only: its worker's lease expired (died, hung, cut off)


TASK_TERMINAL = frozenset(
    {
        TaskState.SUCCESS,
        TaskState.FAILED,
        TaskState.UPSTREAM_FAILED,
        TaskState.SKIPPED,
        TaskState.CANCELLED,
    }
)
# States in which a task holds (or is about to hold) a worker slot.
TASK_ACTIVE = frozenset({TaskState.QUEUED, TaskState.RUNNING})


class TriggerRule(StrEnum):
    """When a task may start, judged from the states of its upstream tasks."""

    ALL_SUCCESS = "all_success"
    ALL_DONE = "all_done"
    ALL_FAILED = "all_failed"
    ONE_SUCCESS = "one_success"
    ONE_FAILED = "one_failed"
    NONE_FAILED = "none_failed"


@dataclass(frozen=True)
class TaskSpec:
    """One task of a DAG, with DAG-level defaults already applied."""

    id: str
    command: str
    name: str = ""
    depends_on: tuple[str, ...] = ()
    retries: int = 0
    timeout_secs: float | None = None
    trigger_rule: TriggerRule = TriggerRule.ALL_SUCCESS
    env: dict[str, str] = field(default_factory=dict)
    retry_delay_secs: float = 1.0  # backoff base: delay before attempt n+1 is min(base * 2**n, max)
    max_retry_delay_secs: float = 60.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "id": self.id,
            "name": self.name or self.id,
            "command": self.command,
            "depends_on": list(self.depends_on),
            "retries": self.retries,
            "timeout_secs": self.timeout_secs,
            "trigger_rule": str(self.trigger_rule),
            "env": dict(self.env),
            "retry_delay_secs": self.retry_delay_secs,
            "max_retry_delay_secs": self.max_retry_delay_secs,
        }


@dataclass(frozen=True)
class DagSpec:
    """A validated DAG: what a DAG file says, with defaults filled in."""

    id: str
    tasks: tuple[TaskSpec, ...]
    name: str = ""
    description: str = ""
    schedule: str | None = None
    timezone: str = "UTC"
    catchup: bool = False
    max_active_runs: int = 16
    max_active_tasks: int = 16
    run_timeout_secs: float | None = None
    params: dict[str, Any] = field(default_factory=dict)
    default_retries: int = 0
    default_timeout_secs: float | None = None
    env: dict[str, str] = field(default_factory=dict)
    tags: tuple[str, ...] = ()

    def task(self, task_id: str) -> TaskSpec:
        """The task with this id; KeyError when there is none."""
        return self._tasks_by_id[task_id]

    @cached_property
    def _tasks_by_id(self) -> dict[str, TaskSpec]:
        # The planner looks tasks up on every tick: a scan of a 200-task DAG per lookup made
        # each tick quadratic. The first task wins on a duplicate id, as the scan did.
        index: dict[str, TaskSpec] = {}
        for t in self.tasks:
            index.setdefault(t.id, t)
        return index

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "id": self.id,
            "name": self.name or self.id,
            "description": self.description,
            "schedule": self.schedule,
            "timezone": self.timezone,
            "catchup": self.catchup,
            "max_active_runs": self.max_active_runs,
            "max_active_tasks": self.max_active_tasks,
            "run_timeout_secs": self.run_timeout_secs,
            "params": dict(self.params),
            "default_retries": self.default_retries,
            "default_timeout_secs": self.default_timeout_secs,
            "env": dict(self.env),
            "tags": list(self.tags),
            "tasks": [t.to_dict() for t in self.tasks],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DagSpec:
        """Inverse of `to_dict` (for specs read back from the store)."""
        tasks = tuple(
            TaskSpec(
                id=t["id"],
                name=t.get("name", ""),
                command=t["command"],
                depends_on=tuple(t.get("depends_on", ())),
                retries=int(t.get("retries", 0)),
                timeout_secs=t.get("timeout_secs"),
                trigger_rule=TriggerRule(t.get("trigger_rule", "all_success")),
                env=dict(t.get("env", {})),
                retry_delay_secs=float(t.get("retry_delay_secs", 1.0)),
                max_retry_delay_secs=float(t.get("max_retry_delay_secs", 60.0)),
            )
            for t in d["tasks"]
        )
        return cls(
            id=d["id"],
            tasks=tasks,
            name=d.get("name", ""),
            description=d.get("description", ""),
            schedule=d.get("schedule"),
            timezone=d.get("timezone", "UTC"),
            catchup=bool(d.get("catchup", False)),
            max_active_runs=int(d.get("max_active_runs", 16)),
            max_active_tasks=int(d.get("max_active_tasks", 16)),
            run_timeout_secs=d.get("run_timeout_secs"),
            params=dict(d.get("params", {})),
            default_retries=int(d.get("default_retries", 0)),
            default_timeout_secs=d.get("default_timeout_secs"),
            env=dict(d.get("env", {})),
            tags=tuple(d.get("tags", ())),
        )
