"""Pydantic models of every request and answer of the REST API, so that /openapi.json says exactly what is sent.

views.py builds each answer from a record's `to_dict()` (plus masking), in one place; these
models describe those forms field for field and do not rename anything. A form with a key its
model does not know fails its request (a 500), so a field added to a record or a route must be
added here too; `tests/test_api_fuzz.py` calls every route and `tests/test_api_models.py`
compares the records with the models, so that shows in the tests first. Times are Unix epoch
seconds (float) unless a field says it is an ISO-8601 string.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from flowforge.core.model import RunState, TaskState, TriggerRule

LIST_LIMIT_MAX = 500  # one page of any list: runs, DAGs, workers
# The largest integer every client (JavaScript too) holds exactly. It bounds offsets and cursors,
# so that the database is never handed a number it cannot store.
SAFE_INT_MAX = 2**53 - 1

# -- requests ----------------------------------------------------------------------------


class RequestBody(BaseModel):
    """A request body: unknown fields are an error, not silently ignored."""

    model_config = ConfigDict(extra="forbid")


class SubmitDagRequest(RequestBody):
    """Body of POST /api/v1/dags as JSON (a raw `application/yaml` body is the YAML itself)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"yaml": "id: hello\ntasks:\n  - id: say\n    command: echo hello\n"}]
        }
    )

    yaml: str = Field(description="the DAG file's text")


class TriggerRequest(RequestBody):
    """Body of POST /api/v1/runs."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"dag_id": "hello", "triggered_by": "api", "params": {}}]}
    )

    dag_id: str = Field(min_length=1, max_length=200)
    triggered_by: str = Field("api", min_length=1, max_length=64)
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="values for the DAG's declared params (scalars); tasks see FLOWFORGE_PARAM_*",
    )


class RetryRequest(RequestBody):
    """Body of POST /api/v1/runs/{run_id}/tasks/{task_id}/retry (optional)."""

    downstream: bool = Field(False, description="also run every downstream task again, successful ones too")


class BackfillRequest(RequestBody):
    """Body of POST /api/v1/dags/{dag_id}/backfill."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"start": "2026-01-01", "end": "2026-01-07", "dry_run": True}]}
    )

    start: str = Field(description="first logical date, ISO-8601; without an offset, in the DAG's timezone")
    end: str = Field(description="last logical date (inclusive), ISO-8601")
    dry_run: bool = Field(False, description="only list the ticks; create nothing")


# -- errors ------------------------------------------------------------------------------


class ErrorBody(BaseModel):
    """What went wrong: a stable code for programs, a sentence for people, and the particulars."""

    code: str = Field(description="e.g. not_found, conflict, invalid_request, invalid_dag, unauthorized")
    message: str
    details: list[dict[str, Any]] = Field(
        description="invalid_dag: {field, line, column, message} per problem; "
        "invalid_request: {loc, message, type} per field; otherwise usually empty"
    )


class ErrorResponse(BaseModel):
    """Every error answer: `{"error": {"code", "message", "details"}}`."""

    error: ErrorBody


# -- answers -----------------------------------------------------------------------------


class Answer(BaseModel):
    """An answer body: exactly these keys (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")


class Health(Answer):
    """GET /health."""

    status: Literal["ok"]


class Ready(Answer):
    """GET /ready: 200 when the store and queue answer and a scheduler leads, 503 (same shape) otherwise."""

    status: Literal["ready", "unavailable"]
    store: str = Field(description='"ok" or "unavailable (<error type>)"')
    queue: str = Field(description='"ok" or "unavailable (<error type>)"')
    scheduler: str = Field(description='"ok" while a scheduler holds the leader lease, else why not')
    leader: str | None = Field(description="the leading scheduler (host-pid-id), or null")


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


class Page(Answer):
    """Paging of a list answer."""

    limit: int = Field(description="the page size asked for")
    offset: int = Field(description="how many items were skipped")
    has_more: bool = Field(description="another page follows (ask again with offset + limit)")


class DagList(Page):
    """GET /api/v1/dags."""

    dags: list[DagSummary]
    total: int = Field(description="DAGs matching the filter, over all pages")


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


class RunDetail(RunOut):
    """A run with every task instance."""

    tasks: list[TaskInstanceOut]
    waiting: str | None = Field(description="why the run or its tasks wait, when they wait for a slot")


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


class WorkerOut(Answer):
    """A registered worker and its last heartbeat."""

    worker_id: str
    host: str
    pid: int
    slots: int
    started_at: float
    last_heartbeat: float
    running: list[str] = Field(description='"run_id/task_id" of each task it runs')
    state: str = Field(description="alive, stopped or dead, as the worker or the scheduler last recorded")


class WorkerList(Page):
    """GET /api/v1/workers, most recent heartbeat first."""

    workers: list[WorkerOut]
    total: int = Field(description="every known worker, over all pages")


class WorkerCounts(Answer):
    """Workers by liveness; an `alive` worker silent for three heartbeats counts as `stale`."""

    alive: int
    stale: int
    stopped: int
    dead: int
    total: int
    slots: int = Field(description="task slots of the alive workers")


class Status(Answer):
    """GET /api/v1/status."""

    version: str = Field("", description="the FlowForge version of the server that answered")
    dags: dict[str, int] = Field(description="active, paused, inactive")
    runs: dict[str, int] = Field(description="by run state, zeros included")
    tasks: dict[str, int] = Field(description="task instances by state, zeros included")
    workers: WorkerCounts
    queue_depth: int
    ready: Ready = Field(description="readiness, as GET /ready answers it")


# -- documented error statuses -----------------------------------------------------------

_ERROR_TEXT = {
    401: "no token, or a wrong one (when the server has a token)",
    403: "a read-only token on a request that changes something",
    404: "no such DAG, run, task or attempt",
    409: "not possible in the current state",
    413: "request body over the size limit",
    415: "a body that is neither JSON nor YAML",
    422: "invalid request: a parameter, a body field, or (on submit) the DAG itself",
    503: "the database or the queue is unavailable; try again shortly",
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: each status with the error shape, plus the 401 that any guarded route can give."""
    chosen = sorted({401, *statuses})
    return {s: {"model": ErrorResponse, "description": _ERROR_TEXT[s]} for s in chosen}


def describe_auth_and_errors(schema: dict[str, Any], public_paths: frozenset[str]) -> dict[str, Any]:
    """The generated OpenAPI document with bearer auth declared and only FlowForge's error shape in it.

    FastAPI documents a 422 of its own shape on every route with parameters; FlowForge answers
    with `ErrorResponse` instead, so those entries go (routes that can give a 422 list it themselves).
    """
    components = schema.setdefault("components", {})
    components.setdefault("securitySchemes", {})["bearer"] = {
        "type": "http",
        "scheme": "bearer",
        "description": "FLOWFORGE_API_TOKEN (every request), or FLOWFORGE_API_READ_TOKEN (GET and HEAD only); "
        "needed only when the server has a token",
    }
    default_422 = "#/components/schemas/HTTPValidationError"
    for path, operations in schema.get("paths", {}).items():
        for operation in operations.values():
            operation["security"] = [] if path in public_paths else [{"bearer": []}]
            responses = operation.get("responses", {})
            content = responses.get("422", {}).get("content", {}).get("application/json", {})
            if content.get("schema", {}).get("$ref") == default_422:
                del responses["422"]
    schemas = components.get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    return schema
