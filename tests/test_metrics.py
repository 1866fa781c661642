"""Prometheus metrics: scraped from /metrics after real runs, and from a real scheduler's and worker's --metrics-port."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from flowforge.api import create_app
from flowforge.core.model import RunState, TaskState
from flowforge.engine.scheduler import Scheduler
from flowforge.engine.worker import Worker
from flowforge.metrics import SchedulerMetrics, StoreCounters, WorkerMetrics
from flowforge.services import Services
from flowforge.settings import Settings
from flowforge.store import Store, open_store
from tests.harness import FlowForgeProcess, clean_env, free_port
from tests.test_engine import Engine

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample of a Prometheus text page, keyed by (sample name, labels)."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def series(samples: Samples, name: str) -> dict[frozenset[tuple[str, str]], float]:
    return {labels: v for (n, labels), v in samples.items() if n == name}


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    """A running scheduler and worker, with their metrics on one registry (as in `flowforge up`)."""
    e = Engine(tmp_path)
    e.registry = CollectorRegistry()  # type: ignore[attr-defined]
    e.scheduler = Scheduler(e.store, e.queue, worker_dead_after=2.0, metrics=SchedulerMetrics(e.registry))
    e.worker = Worker(
        e.store,
        e.queue,
        slots=2,
        worker_id=e.worker.worker_id,
        kill_grace=0.5,
        heartbeat_secs=0.2,
        metrics=WorkerMetrics(e.registry),
    )
    e.start()
    yield e
    e.close()


@pytest.fixture
def api(engine: Engine, tmp_path: Path) -> Iterator[TestClient]:
    """The API over the same store and queue, on the engine's registry: one /metrics for all."""
    settings = Settings(home=tmp_path, db_url="sqlite://", queue_url="memory://", heartbeat_secs=0.2)
    app = create_app(Services(settings, engine.store, engine.queue), api_token="", registry=engine.registry)
    with TestClient(app) as client:
        yield client


def observed_dag(tmp_path: Path) -> str:
    """`flaky` fails once and then succeeds; `broken` fails for good, so `after` never runs."""
    return f"""
id: observed
tasks:
  - id: flaky
    command: "test -f {tmp_path}/flaky.ok || {{ touch {tmp_path}/flaky.ok; exit 1; }}"
    retries: 1
    retry_delay_secs: 0.1
  - id: slow
    command: sleep 0.3
  - id: broken
    command: exit 3
    depends_on: [slow]
  - id: after
    command: echo never
    depends_on: [broken]
"""


def test_metrics_after_a_run_with_a_retry_and_a_failure(
    engine: Engine, api: TestClient, tmp_path: Path
) -> None:
    engine.submit(observed_dag(tmp_path))
    run = engine.trigger("observed")
    assert engine.wait(run.run_id).state == RunState.FAILED
    assert engine.states(run.run_id)["after"] == TaskState.UPSTREAM_FAILED
    for path in (f"/api/v1/runs/{run.run_id}", f"/api/v1/runs/{run.run_id}", "/api/v1/runs/nope", "/nowhere"):
        api.get(path)
    api.delete("/api/v1/runs")  # the path exists, the method does not: 405
    resp = api.get("/metrics")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/plain")
    m = parse(resp.text)

    # Outcomes, counted in the store.
    runs = {dict(k)["state"]: v for k, v in series(m, "flowforge_runs_total").items()}
    assert runs == {"success": 0, "failed": 1, "cancelled": 0}
    tasks = {dict(k)["state"]: v for k, v in series(m, "flowforge_tasks_total").items()}
    assert tasks == {"success": 2, "failed": 2, "lost": 0, "cancelled": 0}  # flaky twice, slow, broken
    assert value(m, "flowforge_task_retries_total", dag_id="observed") == 1

    # Histograms, observed by the worker: one observation per attempt, labelled by DAG only.
    assert value(m, "flowforge_task_duration_seconds_count", dag_id="observed") == 4
    assert value(m, "flowforge_task_duration_seconds_bucket", dag_id="observed", le="+Inf") == 4
    assert value(m, "flowforge_task_duration_seconds_bucket", dag_id="observed", le="0.25") <= 3, (
        "slow sleeps 0.3 s"
    )
    assert value(m, "flowforge_task_duration_seconds_sum", dag_id="observed") >= 0.3
    by_bound = sorted(
        series(m, "flowforge_task_duration_seconds_bucket").items(), key=lambda b: float(dict(b[0])["le"])
    )
    assert len(by_bound) == 17 and [v for _, v in by_bound] == sorted(v for _, v in by_bound), (
        "cumulative buckets"
    )
    assert value(m, "flowforge_task_queue_wait_seconds_count", dag_id="observed") == 4
    # Observed by the scheduler: every queued attempt (flaky twice, slow, broken), not `after`.
    assert value(m, "flowforge_scheduler_latency_seconds_count") == 4
    assert value(m, "flowforge_scheduler_latency_seconds_bucket", le="+Inf") == 4
    assert value(m, "flowforge_scheduler_loop_seconds_count") >= 1
    assert value(m, "flowforge_scheduler_is_leader") == 1

    # Gauges.
    assert value(m, "flowforge_worker_slots") == 2 and value(m, "flowforge_worker_slots_busy") == 0
    assert value(m, "flowforge_workers", state="alive") == 1
    assert value(m, "flowforge_queue_depth") == 0
    assert (
        value(m, "flowforge_runs_active", state="running")
        == 0
        == value(m, "flowforge_runs_active", state="queued")
    )
    assert value(m, "flowforge_store_up") == 1

    # API requests by route template, never by raw path.
    assert value(m, "flowforge_api_requests_total", route="/api/v1/runs/{run_id}", status="200") == 2
    assert value(m, "flowforge_api_requests_total", route="/api/v1/runs/{run_id}", status="404") == 1
    assert value(m, "flowforge_api_requests_total", route="/api/v1/runs", status="405") == 1
    assert value(m, "flowforge_api_requests_total", route="unmatched", status="404") == 1
    assert value(m, "flowforge_api_request_duration_seconds_count", route="/api/v1/runs/{run_id}") == 3
    assert run.run_id not in resp.text and "nope" not in resp.text
    # The example dashboard asks only for series that exist.
    dashboard = (
        Path(__file__).parent.parent / "examples" / "monitoring" / "grafana-dashboard.json"
    ).read_text()
    names = {name for name, _ in m}
    for wanted in set(re.findall(r"flowforge_[a-z_]+", dashboard)):
        assert wanted in names or f"{wanted}_total" in names, wanted
    label_names = {name for (_, labels) in m for name, _ in labels}
    assert label_names <= {
        "dag_id",
        "state",
        "route",
        "status",
        "le",
        "implementation",
        "major",
        "minor",
        "patchlevel",
        "version",
        "generation",
    }, "no run_id or task_id label"


def test_worker_slots_busy_while_a_task_runs(engine: Engine, api: TestClient) -> None:
    engine.submit("id: busy\ntasks:\n  - {id: a, command: 'sleep 1'}\n")
    run = engine.trigger("busy")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        m = parse(api.get("/metrics").text)
        if value(m, "flowforge_worker_slots_busy") == 1:
            break
        time.sleep(0.05)
    else:
        raise AssertionError("the busy slot never showed")
    assert value(m, "flowforge_runs_active", state="running") == 1
    engine.wait(run.run_id)
    assert value(parse(api.get("/metrics").text), "flowforge_worker_slots_busy") == 0


def test_api_metrics_count_answers_given_before_routing(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, db_url=f"sqlite:///{tmp_path / 'ff.db'}", queue_url="memory://")
    from flowforge.services import build_services

    services = build_services(settings)
    try:
        with TestClient(create_app(services, api_token="tok")) as client:
            assert client.get("/api/v1/runs/abc").status_code == 401
            m = parse(client.get("/metrics", headers={"Authorization": "Bearer tok"}).text)
        assert value(m, "flowforge_api_requests_total", route="/api/v1/runs/{run_id}", status="401") == 1
    finally:
        services.close()


# -- the outcome counters, straight from a store ---------------------------------------------------
def finish(store: Store, run_id: str, task_id: str, attempt: int, state: TaskState, now: float) -> None:
    assert store.queue_tasks(run_id, [(task_id, attempt - 1)], now) == [task_id]
    assert store.claim_task(run_id, task_id, attempt, "w1", now) is not None
    assert store.finish_task(run_id, task_id, attempt, "w1", state=state, now=now)


def test_outcome_counters_survive_a_restart_and_never_go_down(tmp_path: Path) -> None:
    from flowforge.core.dagfile import load_dag

    store = open_store(f"sqlite:///{tmp_path / 'ff.db'}")
    try:
        text = "id: once\ntasks:\n  - {id: t, command: 'true'}\n"
        store.put_dag(load_dag(text, "once.yaml"), text, 1.0)
        run = store.create_run("once", triggered_by="test", params={}, now=1.0)
        store.set_run_state(run.run_id, [RunState.QUEUED], RunState.RUNNING, 1.0)
        finish(store, run.run_id, "t", 1, TaskState.FAILED, 2.0)
        store.set_run_state(run.run_id, [RunState.RUNNING], RunState.FAILED, 3.0)

        def scrape(collector: StoreCounters) -> Samples:
            registry = CollectorRegistry()
            registry.register(collector)
            return parse(generate_latest(registry).decode())

        counters = StoreCounters(store)
        assert value(scrape(counters), "flowforge_runs_total", dag_id="once", state="failed") == 1
        # A new process (a restart) counts the same from the store.
        assert value(scrape(StoreCounters(store)), "flowforge_runs_total", dag_id="once", state="failed") == 1

        store.clear_tasks(run.run_id, ["t"], 4.0)  # a retry re-opens the run: the store counts 0 failed runs
        assert value(scrape(counters), "flowforge_runs_total", dag_id="once", state="failed") == 1, (
            "not a reset"
        )
        finish(store, run.run_id, "t", 2, TaskState.FAILED, 5.0)
        store.set_run_state(run.run_id, [RunState.RUNNING], RunState.FAILED, 6.0)
        m = scrape(counters)
        assert value(m, "flowforge_runs_total", dag_id="once", state="failed") == 2, "it failed twice"
        assert value(m, "flowforge_tasks_total", dag_id="once", state="failed") == 2
        assert value(m, "flowforge_task_retries_total", dag_id="once") == 1
    finally:
        store.close()


# -- a real scheduler and worker serving their own metrics ------------------------------------------
def scrape_until(url: str, check, proc: FlowForgeProcess, timeout: float = 30.0) -> Samples:
    """GET `url` until `check(samples)` holds; fail with the process's output if it never does."""
    deadline = time.monotonic() + timeout
    last: Samples = {}
    while time.monotonic() < deadline:
        if proc.proc.poll() is not None:
            raise AssertionError(f"{proc.proc.args} exited:\n{proc.output()}")
        try:
            last = parse(httpx.get(url, timeout=2).text)
            if check(last):
                return last
        except (httpx.HTTPError, KeyError):
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} never showed what was expected:\n{proc.output()}")


@pytest.mark.e2e
def test_scheduler_and_worker_serve_their_own_metrics(tmp_path: Path, pg_url: str, redis_url: str) -> None:
    from flowforge.core.dagfile import load_dag

    env = clean_env(FLOWFORGE_DB=pg_url, FLOWFORGE_QUEUE=redis_url, FLOWFORGE_HOME=str(tmp_path / "home"))
    sched_port, worker_port = free_port(), free_port()
    procs = [
        FlowForgeProcess(
            ["scheduler", "--metrics-port", str(sched_port)], env=env, log_path=tmp_path / "s.log"
        ),
        FlowForgeProcess(
            ["worker", "-c", "2", "--metrics-port", str(worker_port)], env=env, log_path=tmp_path / "w.log"
        ),
    ]
    try:
        sched = scrape_until(
            f"http://127.0.0.1:{sched_port}/metrics",
            lambda m: value(m, "flowforge_scheduler_is_leader") == 1,
            procs[0],
        )
        assert "flowforge_worker_slots" not in {n for n, _ in sched}, "each process shows its own metrics"
        assert value(sched, "process_resident_memory_bytes") > 0
        scrape_until(
            f"http://127.0.0.1:{worker_port}/metrics",
            lambda m: value(m, "flowforge_worker_slots") == 2,
            procs[1],
        )
        store = open_store(pg_url)
        try:
            text = "id: remote\ntasks:\n  - {id: a, command: 'true'}\n  - {id: b, command: 'true', depends_on: [a]}\n"
            store.put_dag(load_dag(text, "remote.yaml"), text, time.time())
            store.create_run("remote", triggered_by="test", params={}, now=time.time())
        finally:
            store.close()
        worker = scrape_until(
            f"http://127.0.0.1:{worker_port}/metrics",
            lambda m: value(m, "flowforge_task_duration_seconds_count", dag_id="remote") == 2,
            procs[1],
        )
        assert value(worker, "flowforge_task_queue_wait_seconds_count", dag_id="remote") == 2
        sched = scrape_until(
            f"http://127.0.0.1:{sched_port}/metrics",
            lambda m: value(m, "flowforge_scheduler_latency_seconds_count") == 2,
            procs[0],
        )
        assert value(sched, "flowforge_scheduler_loop_seconds_count") >= 1
    finally:
        for proc in procs:
            assert proc.stop() == 0, proc.output()
