"""Health, readiness, Prometheus metrics, status, workers and the web page."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from flowforge.api.models import LIST_LIMIT_MAX, SAFE_INT_MAX, Health, Ready, Status, WorkerList, errors
from flowforge.api.views import worker_summary
from flowforge.core.model import RunState, TaskState
from flowforge.store.base import LEADER_LEASE

if TYPE_CHECKING:  # services imports the engine; the API needs only the type
    from flowforge.services import Services

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"


class StoreCollector(Collector):
    """Gauges read from the store and queue at scrape time, so they are never stale."""

    def __init__(self, services: Services) -> None:
        self._services = services

    def collect(self) -> Iterator[Metric]:
        """Yield the current gauges; a store that cannot answer shows as flowforge_store_up 0."""
        store_up = GaugeMetricFamily("flowforge_store_up", "1 when the store answered this scrape")
        try:
            counts = self._services.store.counts()
            workers = self._services.store.list_workers()
        except Exception:
            log.warning("metrics: the store did not answer", exc_info=True)
            store_up.add_metric([], 0)
            yield store_up
        else:
            store_up.add_metric([], 1)
            yield store_up
            # Ended runs are counted by flowforge_runs_total (metrics.StoreCounters).
            active = [RunState.QUEUED.value, RunState.RUNNING.value]
            runs = {k: n for k, n in counts.get("runs", {}).items() if k in active}
            yield _by_state("flowforge_runs_active", "Runs queued or running, by state", runs, active)
            yield _by_state(
                "flowforge_task_instances",
                "Task instances by state",
                counts.get("tasks", {}),
                [s.value for s in TaskState],
            )
            yield _by_state(
                "flowforge_dags", "DAGs by status", counts.get("dags", {}), ["active", "paused", "inactive"]
            )
            summary = worker_summary(workers, time.time(), self._services.settings.heartbeat_secs)
            liveness = ["alive", "stale", "stopped", "dead"]
            yield _by_state(
                "flowforge_workers", "Workers by liveness", {k: summary[k] for k in liveness}, liveness
            )
        depth = GaugeMetricFamily("flowforge_queue_depth", "Task messages waiting in the queue")
        try:
            depth.add_metric([], self._services.queue.size())
        except Exception:
            log.warning("metrics: the queue did not answer", exc_info=True)
        else:
            yield depth


def _by_state(name: str, doc: str, counts: dict[str, int], states: list[str]) -> GaugeMetricFamily:
    # Every known state is exported, zeros included, so a series never vanishes from dashboards.
    g = GaugeMetricFamily(name, doc, labels=["state"])
    for state in dict.fromkeys([*states, *counts]):
        g.add_metric([state], counts.get(state, 0))
    return g


def readiness(services: Services) -> dict[str, Any]:
    """What /ready answers: each part "ok" or why not, the leading scheduler, and the overall status."""
    result: dict[str, Any] = {
        "status": "ready",
        "store": "ok",
        "queue": "ok",
        "scheduler": "ok",
        "leader": None,
    }
    try:
        # Reading the lease is the store's probe too.
        result["leader"] = services.store.lease_holder(LEADER_LEASE, time.time())
    except Exception as exc:
        # Only the exception type: its text may carry a connection URL with a password.
        log.warning("readiness: the store is unavailable", exc_info=True)
        result["store"] = f"unavailable ({type(exc).__name__})"
        result["scheduler"] = "unknown (the store is unavailable)"
    else:
        if result["leader"] is None:
            result["scheduler"] = "no leader (no running scheduler holds the scheduler lease)"
    try:
        services.queue.size()
    except Exception as exc:
        log.warning("readiness: the queue is unavailable", exc_info=True)
        result["queue"] = f"unavailable ({type(exc).__name__})"
    if any(result[part] != "ok" for part in ("store", "queue", "scheduler")):
        result["status"] = "unavailable"
    return result


def build_system_router(services: Services, registry: CollectorRegistry) -> APIRouter:
    """Routes outside /api/v1 (health, ready, metrics, the page) plus /api/v1/status and /workers."""
    router = APIRouter()
    store, queue, settings = services.store, services.queue, services.settings

    @router.get("/health", tags=["system"], response_model=Health)
    def health() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @router.get(
        "/ready",
        tags=["system"],
        response_model=Ready,
        responses={
            **errors(),
            503: {
                "model": Ready,
                "description": "the store or the queue is unavailable, or no scheduler leads",
            },
        },
    )
    def ready() -> JSONResponse:
        """Readiness: the store and the queue answer, and a scheduler holds the leader lease."""
        result = readiness(services)
        return JSONResponse(result, status_code=200 if result["status"] == "ready" else 503)

    @router.get(
        "/metrics",
        tags=["system"],
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}}, **errors()},
    )
    def metrics() -> Response:
        """Prometheus text exposition."""
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @router.get("/api/v1/status", tags=["system"], response_model=Status, responses=errors(503))
    def status() -> dict[str, Any]:
        """Counts of DAGs, runs and tasks by state, workers and queue depth."""
        counts = store.counts()
        workers = worker_summary(store.list_workers(), time.time(), settings.heartbeat_secs)
        return {
            "dags": counts.get("dags", {}),
            "runs": counts.get("runs", {}),
            "tasks": counts.get("tasks", {}),
            "workers": workers,
            "queue_depth": queue.size(),
            "ready": readiness(services),
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
