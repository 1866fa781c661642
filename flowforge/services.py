"""Builds store + queue from Settings, and runs the roles together for `flowforge up`."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from types import FrameType

import uvicorn

from .core.dagfile import load_dag_file
from .core.errors import DagValidationError
from .queues import Queue, open_queue
from .settings import Settings
from .scheduler import Scheduler
from .store import Store, open_store
from .worker import Worker

log = logging.getLogger(__name__)


@dataclass
class Services:
    """The shared parts every role is built from."""

    settings: Settings
    store: Store
    queue: Queue

    def close(self) -> None:
        """Close the queue, then the store."""
        self.queue.close()
        self.store.close()


def build_services(settings: Settings) -> Services:
    """Open the store (migrating it) and the queue that the settings name."""
    if settings.db_url.startswith("sqlite:///"):
        settings.home.mkdir(parents=True, exist_ok=True)
    store = open_store(settings.db_url)
    try:
        queue = open_queue(settings.queue_url)
    except Exception:
        store.close()
        raise
    return Services(settings=settings, store=store, queue=queue)


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


def api_server(app: object, settings: Settings) -> uvicorn.Server:
    """A uvicorn server for `app` that returns from `run()` on SIGINT/SIGTERM.

    Plain uvicorn re-raises the signal once it has shut down, which would kill the process
    before the scheduler and workers could stop gracefully.
    """

    class _Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            super().handle_exit(sig, frame)
            self._captured_signals.clear()

    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level="warning", access_log=False)  # type: ignore[arg-type]
    return _Server(config)


def run_all_in_one(settings: Settings, examples: list[Path]) -> None:
    """`flowforge up`: API, page, scheduler and workers in one process until SIGINT/SIGTERM."""
    from .api.app import create_app

    services = build_services(settings)
    stop = threading.Event()
    try:
        for line in submit_examples(services.store, examples, time.time()):
            log.info(line)
        worker = Worker(
            services.store, services.queue, slots=settings.concurrency,
            kill_grace=settings.kill_grace_secs, heartbeat_secs=settings.heartbeat_secs,
        )
        if settings.queue_url.startswith("memory:"):
            mark_other_workers_dead(services.store, worker.worker_id)
        scheduler = Scheduler(services.store, services.queue, worker_dead_after=settings.heartbeat_secs * 3)
        threads = [
            threading.Thread(target=scheduler.run, args=(stop, settings.tick_secs), name="scheduler", daemon=True),
            threading.Thread(target=worker.run, args=(stop, settings.grace_secs), name="worker", daemon=True),
        ]
        for t in threads:
            t.start()
        server = api_server(create_app(services), settings)
        log.info("FlowForge is up on http://%s:%d (%d worker slots, store %s)",
                 settings.host, settings.port, settings.concurrency, settings.db_url)
        server.run()
        log.info("shutting down: waiting up to %.0fs for running tasks", settings.grace_secs)
        stop.set()
        services.queue.close()
        for t in threads:
            t.join(settings.grace_secs + 10)
    finally:
        stop.set()
        services.close()
