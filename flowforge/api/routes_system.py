"""Health, readiness, Prometheus metrics, status, workers and the web page."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from flowforge import __version__
from flowforge.api.models import LIST_LIMIT_MAX, SAFE_INT_MAX, Health, Ready, Status, WorkerList, errors
from flowforge.api.views import worker_summary
from flowforge.dagfolder import watched_status
from flowforge.operations import readiness

if TYPE_CHECKING:
    from flowforge.services import Services

STATIC_DIR = Path(__file__).parent / "static"
_READY_ANSWERS: dict[int | str, dict[str, Any]] = {
    **errors(),
    503: {"model": Ready, "description": "the store or the queue is unavailable, or no scheduler leads"},
}
_METRICS_ANSWERS: dict[int | str, dict[str, Any]] = {
    200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}},
    **errors(),
}


def build_system_router(services: Services, registry: CollectorRegistry) -> APIRouter:
    """Routes outside /api/v1 (health, ready, metrics, the page) plus /api/v1/status and /workers."""
    router = APIRouter()
    store, queue, settings = services.store, services.queue, services.settings

    @router.get("/health", tags=["system"], response_model=Health)
    def health() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @router.get("/ready", tags=["system"], response_model=Ready, responses=_READY_ANSWERS)
    def ready() -> JSONResponse:
        """Readiness: the store and the queue answer, and a scheduler holds the leader lease."""
        result = readiness(store, queue)
        return JSONResponse(result.to_dict(), status_code=200 if result.ready else 503)

    @router.get("/metrics", tags=["system"], response_class=Response, responses=_METRICS_ANSWERS)
    def metrics() -> Response:
        """Prometheus text exposition."""
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @router.get("/api/v1/status", tags=["system"], response_model=Status, responses=errors(503))
    def status() -> dict[str, Any]:
        """Counts of DAGs, runs and tasks by state, workers and queue depth."""
        counts = store.counts()
        workers = worker_summary(store.list_workers(), time.time(), settings.heartbeat_secs)
        return {
            "version": __version__,
            "dags": counts.get("dags", {}),
            "runs": counts.get("runs", {}),
            "tasks": counts.get("tasks", {}),
            "workers": workers,
            "queue_depth": queue.size(),
            "ready": readiness(store, queue).to_dict(),
            "dag_folder": watched_status(),
        }

    @router.get("/api/v1/workers", tags=["system"], response_model=WorkerList, responses=errors(422, 503))
    def workers(
        limit: int = Query(LIST_LIMIT_MAX, ge=1, le=LIST_LIMIT_MAX, description="page size"),
        offset: int = Query(0, ge=0, le=SAFE_INT_MAX, description="workers to skip"),
    ) -> dict[str, Any]:
        """Known workers with host, slots, running tasks and last heartbeat, most recent first, paged."""
        known = store.list_workers()
        return {
            "workers": [w.to_dict() for w in known[offset : offset + limit]],
            "limit": limit,
            "offset": offset,
            "has_more": offset + limit < len(known),
            "total": len(known),
        }

    @router.get("/", include_in_schema=False)
    def index() -> FileResponse:
        """The web page."""
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html; charset=utf-8")

    return router
