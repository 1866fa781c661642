"""Prometheus metrics: what each role observes, and every collector that reads the store.

SchedulerMetrics, WorkerMetrics and ApiMetrics are what the roles observe as they work (the
API's are filled by `api.middleware.RequestMetricsMiddleware`); StoreGauges and StoreCounters
read the store and the queue at each scrape.

Every metric is built on a CollectorRegistry passed in, never on prometheus_client's global one,
and nothing is registered at import: two engines or apps in one process keep their own series.
`flowforge up` gives the API, the scheduler and the worker one registry, so its /metrics shows
them all; `flowforge scheduler` and `flowforge worker` serve theirs with `--metrics-port`.

Labels stay few: `dag_id` at most, never a run or task id.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from flowforge.core.model import RUN_TERMINAL, RunState, TaskState

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from flowforge.core.model import DagSpec
    from flowforge.core.records import Run, TaskInstance, WorkerInfo
    from flowforge.queues.base import Queue
    from flowforge.store.base import Store

log = logging.getLogger(__name__)

# Task run times go from a `true` to a nightly job; waits and latencies from milliseconds to hours
# (a backlog); ticks and API answers are fast unless something is wrong.
TASK_SECONDS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600)
WAIT_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
FAST_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

# The states an attempt ends in; queued and running attempts are not counted yet.
ATTEMPT_ENDS = (TaskState.SUCCESS, TaskState.FAILED, TaskState.LOST, TaskState.CANCELLED)


def process_registry() -> CollectorRegistry:
    """A registry for one FlowForge process, with the process's CPU, memory, fds and GC."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


def serve_metrics(registry: CollectorRegistry, host: str, port: int) -> WSGIServer:
    """Serve `registry` as Prometheus text on http://host:port/ in a thread; OSError when it cannot listen."""
    from prometheus_client import start_http_server

    server, _thread = start_http_server(port, addr=host, registry=registry)
    return server


class SchedulerMetrics:
    """What a scheduler observes: its ticks, how soon ready tasks are queued, and whether it leads."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.loop_seconds = Histogram(
            "flowforge_scheduler_loop_seconds", "Time one scheduler tick took",
            buckets=FAST_SECONDS, registry=registry,
        )  # fmt: skip
        self.latency_seconds = Histogram(
            "flowforge_scheduler_latency_seconds",
            "From a task becoming ready (its last upstream ended, its run started, or its retry delay"
            " passed) to the scheduler queueing it; includes waits for max_active_tasks",
            buckets=WAIT_SECONDS, registry=registry,
        )  # fmt: skip
        self.is_leader = Gauge(
            "flowforge_scheduler_is_leader", "1 while this scheduler holds the scheduler lease and acts",
            registry=registry,
        )  # fmt: skip

    def observe_queued(
        self,
        run: Run,
        spec: DagSpec,
        tis: Iterable[TaskInstance],
        queued: Iterable[tuple[str, int]],
        now: float,
    ) -> None:
        """Observe the latency of each (task_id, attempt before queueing) that `tis` shows ready.

        Ready: when the retry delay passed (a retry); else when the last upstream ended, or the
        run started (a root). A task cleared to run again is left out: when it was cleared is
        not recorded.
        """
        by_id = {ti.task_id: ti for ti in tis}
        start = run.started_at if run.started_at is not None else now  # started by this very tick
        for task_id, attempt in queued:
            ti = by_id[task_id]
            if ti.state == TaskState.UP_FOR_RETRY and ti.retry_at is not None:
                ready = ti.retry_at
            elif attempt == 0:
                ends = [
                    e for e in (by_id[d].ended_at for d in spec.task(task_id).depends_on) if e is not None
                ]
                ready = max(ends, default=start)
            else:
                continue
            self.latency_seconds.observe(max(0.0, now - ready))


class WorkerMetrics:
    """What a worker observes: how long attempts waited and ran, and how many of its slots are busy."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.task_duration_seconds = Histogram(
            "flowforge_task_duration_seconds", "Run time of a task attempt, from its claim to its result",
            ["dag_id"], buckets=TASK_SECONDS, registry=registry,
        )  # fmt: skip
        self.queue_wait_seconds = Histogram(
            "flowforge_task_queue_wait_seconds", "From a task attempt being queued to a worker claiming it",
            ["dag_id"], buckets=WAIT_SECONDS, registry=registry,
        )  # fmt: skip
        self.slots = Gauge("flowforge_worker_slots", "Task slots of this worker", registry=registry)
        self.slots_busy = Gauge(
            "flowforge_worker_slots_busy", "Task slots of this worker running an attempt", registry=registry
        )


class ApiMetrics:
    """API requests by route template and status, and their latency."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "flowforge_api_requests", "API requests answered, by route template and HTTP status",
            ["route", "status"], registry=registry,
        )  # fmt: skip
        self.request_duration_seconds = Histogram(
            "flowforge_api_request_duration_seconds",
            "Time to an API answer's headers, by route template (for streams: until they start)",
            ["route"], buckets=FAST_SECONDS, registry=registry,
        )  # fmt: skip


class StoreGauges(Collector):
    """Gauges read from the store and the queue at scrape time, so they are never stale.

    `worker_counts` turns the workers the store lists into counts by liveness (alive, stale,
    stopped, dead), as the API's status shows them.
    """

    def __init__(
        self, store: Store, queue: Queue, worker_counts: Callable[[list[WorkerInfo]], Mapping[str, int]]
    ) -> None:
        self._store = store
        self._queue = queue
        self._worker_counts = worker_counts

    def collect(self) -> Iterator[Metric]:
        """Yield the current gauges; a store that cannot answer shows as flowforge_store_up 0."""
        store_up = GaugeMetricFamily("flowforge_store_up", "1 when the store answered this scrape")
        try:
            counts = self._store.counts()
            workers = self._store.list_workers()
        except Exception:
            log.warning("metrics: the store did not answer", exc_info=True)
            store_up.add_metric([], 0)
            yield store_up
        else:
            store_up.add_metric([], 1)
            yield store_up
            yield from self._store_gauges(counts, workers)
        depth = GaugeMetricFamily("flowforge_queue_depth", "Task messages waiting in the queue")
        try:
            depth.add_metric([], self._queue.size())
        except Exception:
            log.warning("metrics: the queue did not answer", exc_info=True)
        else:
            yield depth

    def _store_gauges(self, counts: dict[str, dict[str, int]], workers: list[WorkerInfo]) -> Iterator[Metric]:
        # Ended runs are counted by flowforge_runs_total (StoreCounters).
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
        summary = self._worker_counts(workers)
        liveness = ["alive", "stale", "stopped", "dead"]
        yield _by_state(
            "flowforge_workers", "Workers by liveness", {k: summary[k] for k in liveness}, liveness
        )


def _by_state(name: str, doc: str, counts: Mapping[str, int], states: list[str]) -> GaugeMetricFamily:
    # Every known state is exported, zeros included, so a series never vanishes from dashboards.
    g = GaugeMetricFamily(name, doc, labels=["state"])
    for state in dict.fromkeys([*states, *counts]):
        g.add_metric([state], counts.get(state, 0))
    return g


class StoreCounters(Collector):
    """flowforge_runs_total, flowforge_tasks_total and flowforge_task_retries_total, counted in the store.

    Read from the counts the store keeps as rows change (a few rows, however long the history), so
    they survive restarts and show every process's work in one place (the API). A run counts each
    time it ends; a prune takes nothing away. Should a count ever go down, Prometheus would take it
    for a counter reset: the drop is added back, so each exported series only grows while this
    process lives.
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._last: dict[tuple[str, str, str], int] = {}
        self._offset: dict[tuple[str, str, str], int] = {}

    def collect(self) -> Iterator[Metric]:
        """Yield the three counter families; nothing when the store does not answer (see flowforge_store_up)."""
        try:
            counts = self._store.outcome_counts()
        except Exception:
            log.warning("metrics: the store did not answer the outcome counts", exc_info=True)
            return
        dags = {dag_id for dag_id, _ in [*counts["runs"], *counts["attempts"]]}
        runs = _fill(counts["runs"], dags, [str(s) for s in RUN_TERMINAL])
        ended = {k: n for k, n in counts["attempts"].items() if k[1] in _ENDED}
        tasks = _fill(ended, dags, sorted(_ENDED))
        retries = _fill({}, dags, [""])
        for (dag_id, _state), n in counts["retries"].items():
            retries[(dag_id, "")] += n
        families = []
        with self._lock:
            for name, doc, values, labels in (
                ("flowforge_runs", "Runs that ended, by DAG and state", runs, ["dag_id", "state"]),
                ("flowforge_tasks", "Task attempts that ended, by DAG and state", tasks, ["dag_id", "state"]),
                (
                    "flowforge_task_retries",
                    "Task attempts after a task's first (retries)",
                    retries,
                    ["dag_id"],
                ),
            ):
                family = CounterMetricFamily(name, doc, labels=labels)
                for (dag_id, state), n in sorted(self._monotonic(name, values).items()):
                    family.add_metric([dag_id, state][: len(labels)], n)
                families.append(family)
        yield from families

    def _monotonic(self, name: str, values: dict[tuple[str, str], int]) -> dict[tuple[str, str], int]:
        """`values` plus every drop seen so far per series; a series once seen stays (at least 0)."""
        keys = {(d, s) for (n, d, s) in self._last if n == name} | set(values)
        out = {}
        for dag_id, state in keys:
            key = (name, dag_id, state)
            value = values.get((dag_id, state), 0)
            drop = self._last.get(key, value) - value
            if drop > 0:
                self._offset[key] = self._offset.get(key, 0) + drop
            self._last[key] = value
            out[(dag_id, state)] = value + self._offset.get(key, 0)
        return out


_ENDED = frozenset(str(s) for s in ATTEMPT_ENDS)


def _fill(
    values: dict[tuple[str, str], int], dags: set[str], states: list[str]
) -> dict[tuple[str, str], int]:
    # Every state of every DAG with attempts is exported, zeros too: increase() misses the
    # first event of a series that appears with it.
    out = {(dag_id, state): 0 for dag_id in dags for state in states}
    out.update(values)
    return out
