"""Answers about the system: workers, counts, the DAG folder and status; pruning old runs."""

from __future__ import annotations

from pydantic import ConfigDict, Field

from flowforge.api.models.base import Answer, Page, Ready, RequestBody


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


class DagFolderProblem(Answer):
    """A file of the DAG folder that could not be loaded; its DAG keeps its last good version."""

    file: str
    text: str = Field(description="FILE:LINE:COLUMN: FIELD: MESSAGE")


class DagFolderState(Answer):
    """The DAG folder a server keeps in step (`--dags DIR`), in GET /api/v1/status."""

    path: str
    files: int = Field(description="DAG files read from the folder")
    dags: list[str] = Field(description="DAG ids its valid files declare")
    problems: list[DagFolderProblem] = Field(description="files that could not be loaded")


class Status(Answer):
    """GET /api/v1/status."""

    version: str = Field("", description="the FlowForge version of the server that answered")
    dags: dict[str, int] = Field(description="active, paused, inactive")
    runs: dict[str, int] = Field(description="by run state, zeros included")
    tasks: dict[str, int] = Field(description="task instances by state, zeros included")
    workers: WorkerCounts
    queue_depth: int
    ready: Ready = Field(description="readiness, as GET /ready answers it")
    dag_folder: DagFolderState | None = Field(
        None, description="the --dags folder, when this server keeps one"
    )


class PruneRequest(RequestBody):
    """Body of POST /api/v1/prune."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"older_than": "30d", "dry_run": True}]})

    older_than: str = Field(
        min_length=1,
        max_length=32,
        description="delete runs that ended longer ago than this: a whole number and a unit, "
        "s, m, h, d or w (30d, 12h, 2w); more than 0, at most 100 years",
    )
    dry_run: bool = Field(False, description="only count what would be deleted; delete nothing")
    cursor: str | None = Field(
        None,
        max_length=200,
        description="the `next` of an earlier answer with the same older_than and dry_run: go on "
        "from there, at that answer's cutoff",
    )


class PruneResult(Answer):
    """POST /api/v1/prune: what was deleted (with `dry_run`: what would be) by this request."""

    dry_run: bool
    older_than: str = Field(description="the age asked for")
    cutoff: float = Field(description="runs that ended before this time (epoch seconds) were deleted")
    runs: int = Field(
        description="ended runs (success, failed, cancelled); queued and running runs always stay"
    )
    task_instances: int
    attempts: int
    log_chunks: int = Field(description="stored pieces of task logs")
    events: int = Field(description="state-change events of those runs")
    next: str | None = Field(
        description="null when no run that ended before the cutoff is left; else the request took its "
        "time and more remain: send the same request again with this as `cursor`"
    )
