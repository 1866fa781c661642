"""A large history: 500 finished runs of W1 (100,000 task instances), and what it costs to serve.

Measures, on a small and on the large history: the store's hot queries (the counts of /status and
/metrics among them), the scheduler's tick (with no run active, and with one W1 run active), and —
against a real `flowforge up` on that home directory — `GET /api/v1/runs`, a run's detail,
`/api/v1/status` and a `/metrics` scrape, p50/p99. Whatever costs noticeably more with the large
history grows with history; EXPLAIN QUERY PLAN says why.
"""

from __future__ import annotations

import dataclasses
import sqlite3
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from benchmarks.meta import finish, meta
from benchmarks.runners import AllInOne
from benchmarks.stats import percentile
from benchmarks.workloads import load_workload
from flowforge.core.model import RunState
from flowforge.engine.scheduler import Scheduler
from flowforge.queues.memory import MemoryQueue
from flowforge.store.control import LATEST_LOGICAL_DATES
from flowforge.store.counts import ACTIVE_COUNTS, COUNT_OUTCOMES, COUNT_STATES, READ_COUNTS
from flowforge.store.runs import SELECT_RUNS
from flowforge.store.sqlite import SqliteStore
from flowforge.store.tasks import LIST_TI

# The history DAG has a schedule that is never due, so that the scheduler's cron bookkeeping
# (the newest logical date per DAG) runs on every tick, over a history of scheduled runs.
SCHEDULE = "0 0 1 1 *"
DAG_ID = "scale"
SMALL_RUNS = 60  # more than a page of 50, so that list figures compare like with like
REQUESTS = 300
TICKS = 100


def build_history(home: Path, runs: int, *, now: float | None = None) -> dict[str, Any]:
    """A home directory whose store holds `runs` finished runs of W1 (as DAG `scale`).

    Runs are created through the store (`create_run`, so every row is as FlowForge writes it),
    then finished by bulk SQL: one transaction instead of 400 per run.
    """
    now = time.time() if now is None else now
    workload = load_workload("W1")
    spec = dataclasses.replace(workload.spec, id=DAG_ID, name="scale", schedule=SCHEDULE)
    home.mkdir(parents=True, exist_ok=True)
    path = home / "flowforge.db"
    store = SqliteStore(str(path))
    started = time.perf_counter()
    try:
        store.put_dag(spec, workload.yaml.replace("id: W1", f"id: {DAG_ID}", 1), now - runs * 60 - 60)
        run_ids = []
        for i in range(runs):
            created = now - (runs - i) * 60
            # Logical dates a minute apart, the newest after the last yearly tick: nothing is due.
            run = store.create_run(
                DAG_ID, triggered_by="schedule", params={}, now=created, logical_date=created
            )
            run_ids.append(run.run_id)
    finally:
        store.close()
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            "UPDATE task_instances SET state = 'success', attempt = 1, queued_at = r.created_at + 0.1,"
            " started_at = r.created_at + 0.2, ended_at = r.created_at + 0.3, exit_code = 0, worker_id = 'history'"
            " FROM runs r WHERE r.run_id = task_instances.run_id"
        )
        conn.execute(
            "INSERT INTO attempts (run_id, task_id, attempt, state, worker_id, queued_at, started_at, ended_at,"
            " exit_code, dag_id) SELECT run_id, task_id, 1, 'success', worker_id, queued_at, started_at, ended_at,"
            f" 0, '{DAG_ID}' FROM task_instances"
        )
        conn.execute(
            "UPDATE runs SET state = 'success', started_at = created_at + 0.05, ended_at = created_at + 1"
        )
        conn.execute("COMMIT")
        instances = conn.execute("SELECT COUNT(*) FROM task_instances").fetchone()[0]
    finally:
        conn.close()
    # The counts' deltas that the bulk SQL left are folded, as the scheduler's housekeeping would.
    store = SqliteStore(str(path))
    try:
        store.fold_counts()
    finally:
        store.close()
    return {
        "runs": runs,
        "task_instances": instances,
        "run_ids": run_ids,
        "seconds": time.perf_counter() - started,
    }


def _time(fn: Callable[[], Any], n: int) -> dict[str, float | None]:
    times = []
    for _ in range(n):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return {"n": n, "median": statistics.median(times), "p99": percentile(times, 99), "max": max(times)}


def store_figures(home: Path, sample_run: str) -> dict[str, Any]:
    """Hot store queries and scheduler ticks on the store in `home` (milliseconds)."""
    store = SqliteStore(str(home / "flowforge.db"))
    queue = MemoryQueue()
    try:
        queries = {
            "list_runs (newest 50)": lambda: store.list_runs(limit=50),
            "list_runs state=success": lambda: store.list_runs(states=[RunState.SUCCESS], limit=50),
            "list_runs active (each tick)": lambda: store.list_runs(
                states=[RunState.QUEUED, RunState.RUNNING], limit=100_000
            ),
            "list_runs dag+state": lambda: store.list_runs(
                dag_id=DAG_ID, states=[RunState.RUNNING], limit=17
            ),
            "get_run": lambda: store.get_run(sample_run),
            "task_instances (200)": lambda: store.task_instances(sample_run),
            "latest_logical_dates (each tick)": store.latest_logical_dates,
            "active_task_counts": store.active_task_counts,
            "counts (/status)": store.counts,
            "outcome_counts (/metrics)": store.outcome_counts,
            "fold_counts (each tick)": store.fold_counts,
        }
        out: dict[str, Any] = {"queries_ms": {name: _time(fn, 50) for name, fn in queries.items()}}
        scheduler = Scheduler(store, queue)
        scheduler.tick(time.time())
        ticks = {"idle": _time(lambda: scheduler.tick(time.time()), TICKS)}
        run = store.create_run(DAG_ID, triggered_by="benchmark", params={}, now=time.time())
        scheduler.tick(time.time())  # starts it and queues its first tasks
        ticks["one W1 run active"] = _time(lambda: scheduler.tick(time.time()), TICKS)
        store.stop_run(run.run_id, RunState.CANCELLED, "benchmark over", time.time())
        out["tick_ms"] = ticks
        return out
    finally:
        queue.close()
        store.close()


# The hot queries' SQL, for EXPLAIN QUERY PLAN (parameters do not change SQLite's plan here).
def _list_runs_sql(dag: bool, states: int) -> str:
    where = (["dag_id = ?"] if dag else []) + ([f"state IN ({', '.join('?' * states)})"] if states else [])
    return (
        SELECT_RUNS
        + (" WHERE " + " AND ".join(where) if where else "")
        + " ORDER BY created_at DESC, run_id DESC LIMIT ? OFFSET ?"
    )


HOT_QUERIES = {
    "list_runs (newest)": (_list_runs_sql(False, 0), (50, 0)),
    "list_runs state filter": (_list_runs_sql(False, 1), ("success", 50, 0)),
    "list_runs active states (each tick)": (_list_runs_sql(False, 2), ("queued", "running", 100_000, 0)),
    "list_runs dag + state": (_list_runs_sql(True, 1), (DAG_ID, "running", 17, 0)),
    "task_instances": (LIST_TI, ("x",)),
    "active_task_counts": (ACTIVE_COUNTS, ()),
    "latest_logical_dates (each tick)": (LATEST_LOGICAL_DATES, ()),
    "counts: runs and tasks by state (/status)": (READ_COUNTS, (*COUNT_STATES, *COUNT_STATES)),
    "counts: outcomes (/metrics)": (READ_COUNTS, (*COUNT_OUTCOMES, *COUNT_OUTCOMES)),
}


# Scans that read no history: the count deltas not folded yet (the scheduler folds them every
# tick, a reader past FOLD_AFTER of them), and the few rows of totals and deltas they add up to.
BOUNDED_SCANS = frozenset({"SCAN count_deltas", "SCAN c"})


def query_plans(db: Path) -> dict[str, Any]:
    """EXPLAIN QUERY PLAN of each hot query; `full_scan` when a table of the history is read without any index."""
    conn = sqlite3.connect(db)
    try:
        out = {}
        for name, (sql, params) in HOT_QUERIES.items():
            rows = conn.execute("EXPLAIN QUERY PLAN " + sql, params).fetchall()
            plan = [r[3] for r in rows]
            out[name] = {
                "plan": plan,
                "full_scan": any(
                    p.startswith("SCAN ") and " USING " not in p and p not in BOUNDED_SCANS for p in plan
                ),
            }
        return out
    finally:
        conn.close()


def api_figures(home: Path, folder: Path, sample_run: str, n: int = REQUESTS) -> dict[str, Any]:
    """p50/p99 of the API's list, detail, status and metrics against a real `flowforge up` on `home`."""
    folder.mkdir(parents=True, exist_ok=True)
    deployment = AllInOne(folder, home=home).start()
    try:
        client = httpx.Client(base_url=deployment.url, timeout=30)
        paths = {
            "/api/v1/runs": "/api/v1/runs",
            "/api/v1/runs?state=success": "/api/v1/runs?state=success",
            "/api/v1/runs/{id} (200 tasks)": f"/api/v1/runs/{sample_run}",
            "/api/v1/status": "/api/v1/status",
            "/metrics": "/metrics",
        }
        out: dict[str, Any] = {}
        for name, path in paths.items():
            client.get(path).raise_for_status()  # warm
            times = []
            for _ in range(n):
                started = time.perf_counter()
                client.get(path).raise_for_status()
                times.append((time.perf_counter() - started) * 1000)
            out[name] = {
                "n": n,
                "p50_ms": percentile(times, 50),
                "p99_ms": percentile(times, 99),
                "max_ms": max(times),
            }
        client.close()
        out["_memory"] = deployment.memory()
        return out
    finally:
        deployment.close()


def run_scale(folder: Path, *, runs: int = 500, progress: Any = print) -> dict[str, Any]:
    """Build a small and a large history, measure both; the `scale` section."""
    section: dict[str, Any] = {"meta": meta(runs=runs)}
    figures = {}
    for label, count in (("small", SMALL_RUNS), ("large", runs)):
        progress(f"scale: building a history of {count} finished W1 runs")
        history = build_history(folder / label / "home", count)
        sample = history["run_ids"][len(history["run_ids"]) // 2]
        progress(
            f"scale: {history['task_instances']:,} task instances in {history['seconds']:.1f}s; "
            "timing queries and ticks"
        )
        store = store_figures(folder / label / "home", sample)
        progress("scale: timing the API of flowforge up on it")
        api = api_figures(folder / label / "home", folder / label, sample)
        figures[label] = {
            "runs": count,
            "task_instances": history["task_instances"],
            **store,
            "requests": api,
        }
    large, small = figures["large"], figures["small"]
    section.update(
        runs=runs,
        task_instances=large["task_instances"],
        small_task_instances=small["task_instances"],
        requests={k: v for k, v in large["requests"].items() if not k.startswith("_")},
        requests_small={k: v for k, v in small["requests"].items() if not k.startswith("_")},
        tick_ms=large["tick_ms"],
        tick_ms_small=small["tick_ms"],
        queries_ms=large["queries_ms"],
        queries_ms_small=small["queries_ms"],
        growth={
            name: large["queries_ms"][name]["median"] / max(small["queries_ms"][name]["median"], 1e-6)
            for name in large["queries_ms"]
        },
        query_plans=query_plans(folder / "large" / "home" / "flowforge.db"),
        memory=large["requests"].get("_memory"),
    )
    finish(section["meta"])
    return section
