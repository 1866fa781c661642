"""What the store keeps: DAG records, runs, task instances, attempts and workers."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from flowforge.core.model import DagSpec, RunState, TaskState


@dataclass(frozen=True)
class DagRecord:
    """A stored DAG: its latest version's spec and YAML source, and its flags."""

    dag_id: str
    version: int
    spec: DagSpec
    source: str
    active: bool
    paused: bool
    created_at: float
    updated_at: float
    schedule_after: float = 0.0  # cron ticks after this time are due

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the spec's fields, flattened, plus version and flags)."""
        d = self.spec.to_dict()
        d.update(
            version=self.version,
            active=self.active,
            paused=self.paused,
            created_at=self.created_at,
            updated_at=self.updated_at,
        )
        return d


@dataclass(frozen=True)
class DagVersion:
    """One stored version of a DAG: its number, the hash of its spec, when it was stored, its source."""

    dag_id: str
    version: int
    spec_hash: str  # SHA-256 of the stored spec's canonical JSON: equal specs, equal hashes
    created_at: float
    source: str | None = None  # the YAML as submitted; None in a list of versions


@dataclass(frozen=True)
class Run:
    """One run of a DAG, pinned to the DAG version it started with."""

    run_id: str
    dag_id: str
    dag_version: int
    state: RunState
    triggered_by: str
    params: dict[str, Any]
    logical_date: float | None
    created_at: float
    started_at: float | None = None
    ended_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form. A shallow copy (params are scalars): `asdict`'s deep copy was most of the
        cost of a page of runs in the API."""
        d = dict(vars(self))
        d["state"] = str(self.state)
        d["params"] = dict(self.params)
        return d


@dataclass(frozen=True)
class TaskInstance:
    """One task in one run. `attempt` is the number of the latest attempt (0 before the first)."""

    run_id: str
    task_id: str
    state: TaskState
    attempt: int
    retry_at: float | None = None
    queued_at: float | None = None
    started_at: float | None = None
    ended_at: float | None = None
    exit_code: int | None = None
    error: str | None = None
    worker_id: str | None = None
    lease_token: str | None = None  # fencing token of the running attempt
    lease_expires_at: float | None = None
    # Attempts lost to the platform (a dead, cut-off or stopped worker): they used no retry.
    lost_attempts: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (without the lease token, the running worker's alone, nor the lost-attempt
        count, the engine's bookkeeping: the attempts themselves say which were lost). Every field is
        a scalar, so a shallow copy: a run's detail has one per task."""
        d = dict(vars(self))
        d["state"] = str(self.state)
        del d["lease_token"], d["lost_attempts"]
        return d


@dataclass(frozen=True)
class Attempt:
    """One try of a task instance; every attempt is kept."""

    run_id: str
    task_id: str
    attempt: int
    state: TaskState
    worker_id: str | None = None
    queued_at: float | None = None
    started_at: float | None = None
    ended_at: float | None = None
    exit_code: int | None = None
    error: str | None = None
    # What the attempt wrote to $FLOWFORGE_OUTPUT (core.outputs); a successful attempt's reach
    # its downstream tasks.
    outputs: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        d = asdict(self)
        d["state"] = str(self.state)
        return d


@dataclass(frozen=True)
class WorkerInfo:
    """A registered worker and its last heartbeat."""

    worker_id: str
    host: str
    pid: int
    slots: int
    started_at: float
    last_heartbeat: float
    running: tuple[str, ...] = field(default_factory=tuple)  # "run_id/task_id" of tasks it runs
    state: str = "alive"  # alive | stopped | dead

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        d = asdict(self)
        d["running"] = list(self.running)
        return d


@dataclass(frozen=True)
class Event:
    """A state change, numbered in commit order: a DAG, a run or a task instance changed."""

    id: int
    ts: float
    kind: str  # dag | run | task
    dag_id: str | None = None
    run_id: str | None = None
    task_id: str | None = None
    state: str | None = None
    attempt: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)
