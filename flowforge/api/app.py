"""The app factory: `create_app` puts the routes, the JSON errors and the middleware together."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from prometheus_client import CollectorRegistry

from flowforge import __version__
from flowforge.api.errors import install_error_handlers
from flowforge.api.hosts import HostPolicy
from flowforge.api.middleware import MAX_BODY_BYTES, PUBLIC_PATHS, middleware_stack
from flowforge.api.models import describe_auth_and_errors
from flowforge.api.routes_dags import build_dag_router
from flowforge.api.routes_events import build_events_router
from flowforge.api.routes_prune import build_prune_router
from flowforge.api.routes_runs import build_run_router
from flowforge.api.routes_system import STATIC_DIR, build_system_router
from flowforge.api.routes_worker import ClaimBroker, build_worker_router
from flowforge.api.views import worker_summary
from flowforge.metrics import ApiMetrics, StoreCounters, StoreGauges

if TYPE_CHECKING:
    from flowforge.services import Services


def create_app(
    services: Services,
    *,
    api_token: str | None = None,
    api_read_token: str | None = None,
    registry: CollectorRegistry | None = None,
    hosts: HostPolicy | None = None,
    worker_token: str | None = None,
) -> FastAPI:
    """Build the API app over these services; `api_token`, `api_read_token` and `worker_token` override
    the configured ones (the worker token alone opens the execution API, /api/v1/worker/...).

    Its metrics go on `registry` (`up` shares one with its scheduler and worker), else on a new one.
    A server passes the host names it answers (`hosts`, see `HostPolicy.for_server`); an app
    called in-process, with no network in between, answers every Host.
    """
    # Per app unless given: two apps in one process never share series.
    registry = registry if registry is not None else CollectorRegistry()
    heartbeat_secs = services.settings.heartbeat_secs
    registry.register(
        StoreGauges(
            services.store,
            services.queue,
            lambda workers: worker_summary(workers, time.time(), heartbeat_secs),
        )
    )
    registry.register(StoreCounters(services.store))
    token = api_token if api_token is not None else services.settings.api_token
    read_token = api_read_token if api_read_token is not None else services.settings.api_read_token
    worker = worker_token if worker_token is not None else services.settings.worker_token
    app = FastAPI(
        title="FlowForge",
        version=__version__,
        description="DAG workflow scheduler API",
        middleware=middleware_stack(
            ApiMetrics(registry),
            token=token,
            read_token=read_token,
            max_body=max(MAX_BODY_BYTES, services.settings.max_yaml_bytes),
            hosts=hosts,
            worker_token=worker,
        ),
    )
    app.state.services = services
    app.state.metrics_registry = registry
    install_error_handlers(app)
    app.include_router(build_system_router(services, registry))
    app.include_router(build_dag_router(services))
    app.include_router(build_run_router(services))
    app.include_router(build_events_router(services))
    app.include_router(build_prune_router(services))
    app.state.claim_broker = ClaimBroker(services.queue, services.stopping)  # where long-polled claims wait
    app.include_router(build_worker_router(services, app.state.claim_broker))
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = describe_auth_and_errors(FastAPI.openapi(app), public_paths=PUBLIC_PATHS)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
