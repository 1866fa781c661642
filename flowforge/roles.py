"""The FlowForge processes: `up` (everything in one), `api`, `scheduler` and `worker`.

Each builds its Services, its roles and its metrics registry, runs until SIGINT/SIGTERM (uvicorn
for the API; a signal handler setting a stop event for the loops), serves the metrics endpoint
when asked, and closes everything on the way out.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import signal
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import anyio.to_thread
import h11
import uvicorn
from prometheus_client import CollectorRegistry
from uvicorn.protocols.http.h11_impl import H11Protocol

from flowforge import __version__
from flowforge.core.errors import DagValidationError, Unavailable
from flowforge.dagfolder import keep_in_step
from flowforge.engine.remote import connect_worker
from flowforge.engine.remote_http import Refused
from flowforge.engine.scheduler import Scheduler
from flowforge.engine.worker import Worker, new_worker_id
from flowforge.metrics import SchedulerMetrics, WorkerMetrics, process_registry, serve_metrics
from flowforge.operations import submit_dag_file
from flowforge.services import Services, build_services
from flowforge.services import StartupError as StartupError  # the CLI catches it from here
from flowforge.settings import API_THREADS, Settings, api_threads, is_loopback, redact_url
from flowforge.store import Store

if TYPE_CHECKING:
    from fastapi import FastAPI

log = logging.getLogger(__name__)

HEADER_TIMEOUT_SECS = 10.0  # from a connection's start (or its last answer) to a request's headers
KEEP_ALIVE_SECS = 5  # an idle kept-alive connection is closed after this
LISTEN_BACKLOG = 2048


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
        max_log_bytes=s.max_log_bytes,
        metrics=WorkerMetrics(registry) if registry is not None else None,
    )


def make_scheduler(services: Services, registry: CollectorRegistry | None = None) -> Scheduler:
    """A scheduler that declares a worker dead after three missed heartbeats; its metrics on `registry` if given."""
    return Scheduler(
        services.store,
        services.queue,
        worker_dead_after=services.settings.heartbeat_secs * 3,
        max_lost_attempts=services.settings.max_lost_attempts,
        metrics=SchedulerMetrics(registry) if registry is not None else None,
        retention_secs=services.settings.retention_days * 86400.0 or None,
        retention_every=services.settings.retention_every_secs,
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
    if not is_loopback(host):
        log.warning(
            "--metrics-host %s: the metrics on port %d answer anyone who can reach this address, with no "
            "token; they hold no secret but name DAGs and counts. Keep the port behind a firewall or "
            "network policy, or bind 127.0.0.1.",
            host,
            port,
        )
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()


def submit_examples(services: Services, paths: list[Path]) -> list[str]:
    """Store each valid example DAG; returns one line per file saying what happened."""
    lines = []
    for path in paths:
        try:
            record = submit_dag_file(services.store, services.queue, path).record
        except DagValidationError as exc:
            lines.append(f"skipped {path}: {exc}")
            continue
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


def _api_app(services: Services, registry: CollectorRegistry) -> FastAPI:
    """The API app; imported only here, so that a scheduler or worker process does not load it."""
    from flowforge.api.app import create_app
    from flowforge.api.hosts import HostPolicy

    s = services.settings
    hosts = HostPolicy.for_server(s.host, s.allowed_hosts, token_required=bool(s.api_token))
    return create_app(services, registry=registry, hosts=hosts)


class HeaderTimeoutProtocol(H11Protocol):
    """uvicorn's HTTP/1.1 connection, closed when a request's headers do not arrive in time.

    uvicorn waits for them forever: a client could hold any number of connections open by
    sending nothing, or a header a minute. The clock starts when the connection opens and again
    after each answer; a request in progress is never cut.
    """

    _header_clock: object = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Start the clock for the first request's headers."""
        super().connection_made(transport)  # type: ignore[arg-type]
        self._start_header_clock()

    def on_response_complete(self) -> None:
        """Start the clock for the next request's headers on a kept-alive connection."""
        super().on_response_complete()
        self._start_header_clock()

    def _start_header_clock(self) -> None:
        clock = self._header_clock = object()
        self.loop.call_later(HEADER_TIMEOUT_SECS, self._headers_due, clock)

    def _headers_due(self, clock: object) -> None:
        waiting = self.cycle is None or self.cycle.response_complete
        if clock is not self._header_clock or not waiting or self.transport.is_closing():
            return
        try:
            self.conn.send(h11.ConnectionClosed())
        except h11.LocalProtocolError:
            pass
        self.transport.close()


def bind_api_socket(settings: Settings) -> socket.socket:
    """The API's listening socket, bound before anything else starts; StartupError (exit 2) when it cannot be."""
    host = settings.host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named, so that asyncio sets TCP_NODELAY on its connections (else Nagle adds 40 ms)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, settings.port))
        sock.listen(LISTEN_BACKLOG)
    except OSError as exc:
        sock.close()
        reason = exc.strerror or str(exc)
        raise StartupError(
            f"--port {settings.port}: cannot listen on {settings.host}:{settings.port} ({reason})", 2
        ) from None
    return sock


def raise_open_file_limit(settings: Settings) -> None:
    """Lift this process's open-file limit to what --max-connections needs, as far as the hard limit allows."""
    wanted = settings.max_connections + 256 + 4 * settings.concurrency  # the store, task pipes, streams
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, target), hard))
    if target < wanted:
        log.warning(
            "the open-file limit is %d, too low for --max-connections %d; raise it (ulimit -n) or lower "
            "--max-connections",
            target,
            settings.max_connections,
        )


def api_server(
    app: object, settings: Settings, stopping: threading.Event, threads: int = API_THREADS
) -> uvicorn.Server:
    """A uvicorn server for `app` that returns from `run()` on SIGINT/SIGTERM.

    Plain uvicorn re-raises the signal once it has shut down, which would kill the process
    before the scheduler and workers could stop gracefully. `stopping` is set on the signal,
    so that open event streams end at once. Past --max-connections open connections (or
    requests in progress), uvicorn answers 503. At most `threads` requests run in threads at
    once (each store call runs in one); the others wait their turn, not for a connection.
    """

    class _Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            stopping.set()
            super().handle_exit(sig, frame)
            self._captured_signals.clear()

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            anyio.to_thread.current_default_thread_limiter().total_tokens = threads
            await super().startup(sockets)

    config = uvicorn.Config(
        app,  # type: ignore[arg-type]
        host=settings.host,
        port=settings.port,
        log_level="warning",
        access_log=False,
        log_config=None,  # uvicorn's records go through the process's logging (JSON or console)
        # Open event streams would otherwise hold a shutdown up for as long as clients stay.
        timeout_graceful_shutdown=3,
        http=HeaderTimeoutProtocol,
        limit_concurrency=settings.max_connections,
        timeout_keep_alive=KEEP_ALIVE_SECS,
        backlog=LISTEN_BACKLOG,
    )
    raise_open_file_limit(settings)
    return _Server(config)


def run_all_in_one(settings: Settings, examples: list[Path]) -> None:
    """`flowforge up`: API, page, scheduler and workers in one process until SIGINT/SIGTERM.

    The API's port is bound first: when it is taken, nothing else has started (no scheduler
    took the leader lease, no worker registered).
    """
    sock = bind_api_socket(settings)
    try:
        services = build_services(settings)
    except BaseException:
        sock.close()
        raise
    stop = threading.Event()
    try:
        for line in submit_examples(services, examples):
            log.info(line)
        keep_in_step(services, stop)  # --dags DIR
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
        server = api_server(_api_app(services, registry), settings, services.stopping)
        for t in threads:
            t.start()
        log.info(
            "FlowForge %s is up on http://%s:%d (%d worker slots, data in %s, store %s); Ctrl-C to stop",
            __version__,
            settings.host,
            settings.port,
            settings.concurrency,
            settings.home,
            redact_url(settings.db_url),
        )
        server.run(sockets=[sock])
        log.info("shutting down: waiting up to %.0fs for running tasks", settings.grace_secs)
        stop.set()
        services.queue.close()
        for t in threads:
            t.join(settings.grace_secs + 10)
    finally:
        stop.set()
        sock.close()
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
    """`flowforge api`: the REST API and the page until SIGINT/SIGTERM; its port is bound first."""
    sock = bind_api_socket(settings)
    try:
        services = build_services(settings, role="api")
    except BaseException:
        sock.close()
        raise
    try:
        app = _api_app(services, process_registry())
        server = api_server(app, settings, services.stopping, api_threads(settings, "api"))
        db, queue = redact_url(settings.db_url), redact_url(settings.queue_url)
        where = f"http://{settings.host}:{settings.port}"
        log.info("FlowForge %s API on %s (store %s, queue %s)", __version__, where, db, queue)
        server.run(sockets=[sock])
    finally:
        sock.close()
        services.close()


def run_scheduler(settings: Settings, stop: threading.Event | None = None) -> None:
    """`flowforge scheduler`: the scheduler loop until SIGINT/SIGTERM (or until `stop` is set)."""
    stop = stop or threading.Event()
    services = build_services(settings, role="scheduler")
    try:
        if threading.current_thread() is threading.main_thread():
            stop_on_signals(stop)
        db, queue = redact_url(settings.db_url), redact_url(settings.queue_url)
        log.info("FlowForge scheduler (store %s, queue %s)", db, queue)
        keep_in_step(services, stop)  # --dags DIR
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
    services = build_services(settings, consumer=worker_id, role="worker")
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


def run_remote_worker(settings: Settings, api_url: str, stop: threading.Event | None = None) -> None:
    """`flowforge worker --api-url URL`: the same worker, holding only the worker token (`engine.remote`)."""
    stop = stop or threading.Event()
    registry = process_registry()
    try:
        worker, client = connect_worker(settings, api_url, WorkerMetrics(registry))
    except Unavailable as exc:  # Refused: a setting to fix (2); else the API is unreachable (3)
        raise StartupError(f"--api-url {api_url}: {exc}", 2 if isinstance(exc, Refused) else 3) from None
    try:
        if threading.current_thread() is threading.main_thread():
            stop_on_signals(stop)
        client.release_on(stop)  # once stopped, no slot waits for a task any more
        log.info("FlowForge worker %s with %d slot(s) (API %s)", worker.worker_id, worker.slots, api_url)
        with metrics_endpoint(settings, registry):
            worker.run(stop, settings.grace_secs)
    finally:
        client.close()
