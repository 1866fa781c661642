"""Builds store + queue from Settings; runs the roles together (`flowforge up`) or one per process."""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn
from prometheus_client import CollectorRegistry

from flowforge.core.dagfile import load_dag_file
from flowforge.core.errors import DagValidationError, Unavailable
from flowforge.engine.scheduler import Scheduler
from flowforge.engine.worker import Worker, new_worker_id
from flowforge.metrics import SchedulerMetrics, WorkerMetrics, process_registry, serve_metrics
from flowforge.queues import Queue, open_queue
from flowforge.settings import Settings, redact_url
from flowforge.store import Store, open_store
from flowforge.store.schema import SchemaTooNew

log = logging.getLogger(__name__)


@dataclass
class Services:
    """The shared parts every role is built from."""

    settings: Settings
    store: Store
    queue: Queue
    # Set when the process begins to shut down: live streams end instead of holding it up.
    stopping: threading.Event = field(default_factory=threading.Event)

    def close(self) -> None:
        """Close the queue, then the store."""
        self.stopping.set()
        self.queue.close()
        self.store.close()


class StartupError(Exception):
    """A role cannot start: one line naming the setting and what was tried, and the exit code."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code  # 2: the setting is wrong; 3: the service is unreachable


def _open(setting: str, url: str, opener: Callable[[], Any]) -> Any:
    """Run `opener`, turning a bad URL or an unreachable service into a StartupError about `setting`."""
    try:
        return opener()
    except (ValueError, SchemaTooNew) as exc:
        raise StartupError(f"{setting}={redact_url(url)}: {exc}", 2) from None
    except Unavailable as exc:
        raise StartupError(f"{setting}={redact_url(url)}: {exc}", 3) from None


def build_services(settings: Settings, *, consumer: str | None = None) -> Services:
    """Open the store (migrating it) and the queue that the settings name; StartupError when one fails.

    `consumer` names this process's in-flight queue messages: a worker passes its worker id.
    """
    if settings.db_url.startswith("sqlite:///"):
        settings.home.mkdir(parents=True, exist_ok=True)
    # Every worker slot and API thread may hold a connection at once; a few more for heartbeats.
    pool_size = max(10, settings.concurrency + 4)
    store = _open("FLOWFORGE_DB", settings.db_url, lambda: open_store(settings.db_url, pool_size=pool_size))
    try:
        queue = _open(
            "FLOWFORGE_QUEUE", settings.queue_url, lambda: open_queue(settings.queue_url, consumer=consumer)
        )
    except BaseException:
        store.close()
        raise
    return Services(settings=settings, store=store, queue=queue)


def make_worker(
    services: Services, worker_id: str | None = None, registry: CollectorRegistry | None = None
) -> Worker:
    """A worker with the settings' slots, heartbeat and kill grace; its metrics on `registry` if given."""
    s = services.settings
    return Worker(
        services.store,
        services.queue,
        slots=s.concurrency,
        worker_id=worker_id,
        kill_grace=s.kill_grace_secs,
        heartbeat_secs=s.heartbeat_secs,
        metrics=WorkerMetrics(registry) if registry is not None else None,
    )


def make_scheduler(services: Services, registry: CollectorRegistry | None = None) -> Scheduler:
    """A scheduler that declares a worker dead after three missed heartbeats; its metrics on `registry` if given."""
    return Scheduler(
        services.store,
        services.queue,
        worker_dead_after=services.settings.heartbeat_secs * 3,
        metrics=SchedulerMetrics(registry) if registry is not None else None,
    )


@contextmanager
def metrics_endpoint(settings: Settings, registry: CollectorRegistry) -> Iterator[None]:
    """Serve `registry` on --metrics-host:--metrics-port while the block runs (nothing without a port)."""
    if settings.metrics_port is None:
        yield
        return
    host, port = settings.metrics_host, settings.metrics_port
    try:
        server = serve_metrics(registry, host, port)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise StartupError(f"--metrics-port {port}: cannot listen on {host}:{port} ({reason})", 2) from None
    log.info("metrics on http://%s:%d/metrics", host, port)
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()


def submit_examples(store: Store, paths: list[Path], now: float) -> list[str]:
    """Store each valid example DAG; returns one line per file saying what happened."""
    lines = []
    for path in paths:
        try:
            spec = load_dag_file(path)
        except DagValidationError as exc:
            lines.append(f"skipped {path}: {exc}")
            continue
        record = store.put_dag(spec, path.read_text(encoding="utf-8"), now)
        lines.append(f"loaded {record.dag_id} (version {record.version}) from {path}")
    return lines


def mark_other_workers_dead(store: Store, own_id: str) -> None:
    """With an in-process queue no other process can be a worker: earlier ones are gone.

    Marking them dead lets the scheduler retry what they were running at once after a
    restart, instead of waiting for their heartbeats to lapse.
    """
    for w in store.list_workers():
        if w.worker_id != own_id and w.state == "alive":
            store.upsert_worker(replace(w, state="dead"))


def api_server(app: object, settings: Settings, stopping: threading.Event) -> uvicorn.Server:
    """A uvicorn server for `app` that returns from `run()` on SIGINT/SIGTERM.

    Plain uvicorn re-raises the signal once it has shut down, which would kill the process
    before the scheduler and workers could stop gracefully. `stopping` is set on the signal,
    so that open event streams end at once.
    """

    class _Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            stopping.set()
            super().handle_exit(sig, frame)
            self._captured_signals.clear()

    config = uvicorn.Config(
        app,  # type: ignore[arg-type]
        host=settings.host,
        port=settings.port,
        log_level="warning",
        access_log=False,
        log_config=None,  # uvicorn's records go through the process's logging (JSON or console)
        # Open event streams would otherwise hold a shutdown up for as long as clients stay.
        timeout_graceful_shutdown=3,
    )
    return _Server(config)


def run_all_in_one(settings: Settings, examples: list[Path]) -> None:
    """`flowforge up`: API, page, scheduler and workers in one process until SIGINT/SIGTERM."""
    from flowforge.api.app import create_app

    services = build_services(settings)
    stop = threading.Event()
    try:
        for line in submit_examples(services.store, examples, time.time()):
            log.info(line)
        registry = process_registry()  # one /metrics for the API, the scheduler and the worker
        worker = make_worker(services, registry=registry)
        if settings.queue_url.startswith("memory:"):
            mark_other_workers_dead(services.store, worker.worker_id)
        scheduler = make_scheduler(services, registry)
        threads = [
            threading.Thread(
                target=scheduler.run, args=(stop, settings.tick_secs), name="scheduler", daemon=True
            ),
            threading.Thread(target=worker.run, args=(stop, settings.grace_secs), name="worker", daemon=True),
        ]
        for t in threads:
            t.start()
        server = api_server(create_app(services, registry=registry), settings, services.stopping)
        log.info(
            "FlowForge is up on http://%s:%d (%d worker slots, store %s)",
            settings.host,
            settings.port,
            settings.concurrency,
            redact_url(settings.db_url),
        )
        server.run()
        log.info("shutting down: waiting up to %.0fs for running tasks", settings.grace_secs)
        stop.set()
        services.queue.close()
        for t in threads:
            t.join(settings.grace_secs + 10)
    finally:
        stop.set()
        services.close()


# -- one role per process ------------------------------------------------------------------------
def stop_on_signals(stop: threading.Event) -> None:
    """Make SIGTERM and SIGINT set `stop` (call from the main thread, where Python runs handlers)."""

    def handler(signum: int, frame: FrameType | None) -> None:
        log.info("%s received: stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def run_api(settings: Settings) -> None:
    """`flowforge api`: the REST API and the page until SIGINT/SIGTERM."""
    from flowforge.api.app import create_app

    services = build_services(settings)
    try:
        log.info(
            "FlowForge API on http://%s:%d (store %s, queue %s)",
            settings.host,
            settings.port,
            redact_url(settings.db_url),
            redact_url(settings.queue_url),
        )
        api_server(create_app(services, registry=process_registry()), settings, services.stopping).run()
    finally:
        services.close()


def run_scheduler(settings: Settings, stop: threading.Event | None = None) -> None:
    """`flowforge scheduler`: the scheduler loop until SIGINT/SIGTERM (or until `stop` is set)."""
    stop = stop or threading.Event()
    services = build_services(settings)
    try:
        if threading.current_thread() is threading.main_thread():
            stop_on_signals(stop)
        log.info(
            "FlowForge scheduler (store %s, queue %s)",
            redact_url(settings.db_url),
            redact_url(settings.queue_url),
        )
        registry = process_registry()
        scheduler = make_scheduler(services, registry)
        with metrics_endpoint(settings, registry):
            scheduler.run(stop, settings.tick_secs)
    finally:
        services.close()


def run_worker(settings: Settings, stop: threading.Event | None = None) -> None:
    """`flowforge worker`: `concurrency` task slots until SIGINT/SIGTERM, then a graceful stop."""
    stop = stop or threading.Event()
    worker_id = new_worker_id()
    # The queue names this process's in-flight messages after the worker, so the scheduler can
    # give them back if it declares this worker dead.
    services = build_services(settings, consumer=worker_id)
    try:
        if threading.current_thread() is threading.main_thread():
            stop_on_signals(stop)
        log.info(
            "FlowForge worker %s with %d slot(s) (store %s, queue %s)",
            worker_id,
            settings.concurrency,
            redact_url(settings.db_url),
            redact_url(settings.queue_url),
            extra={"worker_id": worker_id},
        )
        registry = process_registry()
        worker = make_worker(services, worker_id, registry)
        with metrics_endpoint(settings, registry):
            worker.run(stop, settings.grace_secs)
    finally:
        services.close()
