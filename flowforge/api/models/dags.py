"""Answers about DAGs: summaries and details, submits, schedule previews, versions and backfills."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from flowforge.api.models.base import Answer, Page
from flowforge.core.model import RunState, TriggerRule


class TaskSpecOut(Answer):
    """A task as its DAG declares it, with defaults applied and secret-looking env values masked."""

    id: str
    name: str
    command: str
    depends_on: list[str]
    retries: int
    timeout_secs: float | None
    trigger_rule: TriggerRule
    env: dict[str, str]
    retry_delay_secs: float
    max_retry_delay_secs: float


class DagSummary(Answer):
    """A DAG's latest version in a list: its spec, flags and next scheduled run."""

    id: str
    name: str
    description: str
    schedule: str | None
    timezone: str
    catchup: bool
    max_active_runs: int
    max_active_tasks: int
    run_timeout_secs: float | None
    params: dict[str, Any]
    default_retries: int
    default_timeout_secs: float | None
    env: dict[str, str] = Field(description="secret-looking values shown as ***")
    tags: list[str]
    tasks: list[TaskSpecOut]
    version: int
    active: bool
    paused: bool
    created_at: float
    updated_at: float
    next_run: str | None = Field(
        description="ISO-8601 UTC; null without a schedule, or when paused or inactive"
    )
    task_count: int


class DagDetail(DagSummary):
    """One DAG, with its YAML source (secret-looking values masked)."""

    source: str


class DagSubmitted(DagDetail):
    """The stored DAG after a submit."""

    created: bool = Field(description="the DAG id was new")
    changed: bool = Field(description="a new version was stored (false: identical to the latest)")


class DagList(Page):
    """GET /api/v1/dags."""

    dags: list[DagSummary]
    total: int = Field(description="DAGs matching the filter, over all pages")


class ScheduleTick(Answer):
    """One tick of a schedule preview."""

    at: str = Field(description="ISO-8601 UTC")
    local: str = Field(description="ISO-8601 in the DAG's timezone, with its offset")
    zone: str = Field(description="the timezone's abbreviation then (CET, CEST, EST, ...)")
    dst: Literal["moved", "skipped", "repeated"] | None = Field(description="what a clock change did here")
    note: str | None = Field(description="the clock change in words, and what FlowForge does")


class SchedulePreview(Answer):
    """GET /api/v1/dags/{dag_id}/schedule: the next ticks of a DAG's schedule."""

    dag_id: str
    schedule: str | None = Field(description="null: the DAG runs only when triggered (no ticks)")
    timezone: str
    active: bool
    paused: bool = Field(description="a paused DAG starts no run at these ticks until unpaused")
    ticks: list[ScheduleTick]
    warnings: list[str] = Field(description="what the schedule probably gets wrong")


class DagVersionOut(Answer):
    """One stored version of a DAG."""

    version: int
    spec_hash: str = Field(description="SHA-256 of the stored spec: equal specs, equal hashes")
    created_at: float
    latest: bool


class DagVersionList(Page):
    """GET /api/v1/dags/{dag_id}/versions, newest first."""

    dag_id: str
    latest_version: int
    versions: list[DagVersionOut]


class DagVersionDetail(DagVersionOut):
    """GET /api/v1/dags/{dag_id}/versions/{version}."""

    dag_id: str
    source: str = Field(description="the YAML as submitted, secret-looking values masked")


class BackfillTick(Answer):
    """One tick of a backfill."""

    logical_date: str = Field(description="ISO-8601 UTC")
    run_id: str | None = Field(description="the run created for it (null on a dry run or when one existed)")
    existed: bool = Field(description="the tick already had a run")


class BackfillResult(Answer):
    """POST /api/v1/dags/{dag_id}/backfill."""

    dag_id: str
    dry_run: bool
    ticks: list[BackfillTick]
    created: int = Field(description="runs created by this call")


class RunDuration(Answer):
    """One ended run in a DAG's statistics."""

    run_id: str
    state: RunState
    started_at: float | None
    ended_at: float | None
    duration_secs: float | None = Field(
        description="ended_at - started_at; null for a run that never started"
    )


class DagStats(Answer):
    """GET /api/v1/dags/{dag_id}/stats: how long the DAG's last ended runs took, and how many succeeded."""

    dag_id: str
    runs: list[RunDuration] = Field(
        description="the last ended runs (success, failed, cancelled), the last to end first"
    )
    p50_secs: float | None = Field(
        description="median duration of the successful ones among them (nearest rank); null for none"
    )
    p95_secs: float | None = Field(
        description="95th percentile duration of the successful ones among them (nearest rank); null for none"
    )
    success_rate: float | None = Field(description="share of them that succeeded, 0 to 1; null for no run")
    count: int = Field(description="how many runs were read (at most `runs` asked for)")
