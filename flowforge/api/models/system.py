"""Answers about the system: workers, counts, the DAG folder and status."""

from __future__ import annotations

from pydantic import Field

from flowforge.api.models.base import Answer, Page, Ready


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
