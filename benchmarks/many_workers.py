"""Many API-mode workers: `api` + `scheduler` + 30 `worker --api-url` × 4 slots on PostgreSQL + Redis.

Measures (a) the CPU the idle workers use together (utime + stime from /proc/PID/stat, over
IDLE_SECS), (b) one run of 1,000 independent `sleep 0.5` tasks (max_active_tasks 1000), trigger →
run end, against the ideal of tasks / slots × 0.5 s, (c) the PostgreSQL connections of the
deployment's database, sampled every 0.2 s from start to end (the most at once, in all and by
process: each names its role in `application_name`), and (d) the lines of every process's log
that say a connection failed. API-mode workers hold no database connection: the API's pool and
the scheduler's bound the total, whatever the number of workers.
"""

from __future__ import annotations

import os
import re
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx

from benchmarks.meta import finish, meta
from benchmarks.runners import distributed_unavailable
from tests.backends import PG_ENV, REDIS_ENV, pg_database, redis_prefix
from tests.chaos.cluster import ChaosCluster
from tests.pg_connections import ConnectionSampler

WORKERS, SLOTS, TASKS, SLEEP_SECS = 30, 4, 1000, 0.5
IDLE_SECS = 20.0
SAMPLE_SECS = 0.2
HEARTBEAT_SECS = 5.0  # the default: idle CPU as a deployment sees it
# The goals (figures to read, never assertions).
GOALS = {"run_secs": 6.0, "connections": 25, "idle_cpu_percent": 2.0, "connection_errors": 0}
# A log line that says a connection failed: to PostgreSQL, to Redis, or to the API.
CONNECTION_ERROR = re.compile(
    r"unavailable|cannot reach|cannot connect|too many clients|remaining connection slots|"
    r"connection refused|could not claim|connection (reset|closed)",
    re.IGNORECASE,
)


def sleeps_dag(tasks: int, sleep: float) -> str:
    """`tasks` independent tasks of `sleep <sleep>`, all of them allowed at once."""
    lines = ["id: many", f"max_active_tasks: {tasks}", "tasks:"]
    lines += [f"  - {{id: t{i}, command: 'sleep {sleep:g}'}}" for i in range(tasks)]
    return "\n".join(lines) + "\n"


def connection_errors(folder: Path) -> list[str]:
    """The lines of every process's log (FOLDER/*.log) that say a connection failed."""
    found = []
    for log in sorted(folder.glob("*.log")):
        for line in log.read_text(errors="replace").splitlines():
            if CONNECTION_ERROR.search(line):
                found.append(f"{log.stem}: {line.strip()[:300]}")
    return found


def idle_cpu(c: ChaosCluster, names: list[str], secs: float) -> dict[str, float]:
    """CPU seconds each named process used over `secs` seconds."""
    before = {n: c.procs[n].cpu() or 0.0 for n in names}
    time.sleep(secs)
    return {n: (c.procs[n].cpu() or 0.0) - before[n] for n in names}


def timed_run(c: ChaosCluster, tasks: int, timeout: float) -> dict[str, Any]:
    """Trigger the DAG `many` once and wait for its end; seconds from the trigger to its end and more."""
    assert c.http is not None
    sent = time.time()
    response = c.http.post("/api/v1/runs", json={"dag_id": "many", "triggered_by": "benchmark"})
    response.raise_for_status()
    run_id = response.json()["run_id"]
    params: dict[str, Any] = {"dag_id": "many", "limit": 1}
    deadline = time.monotonic() + timeout
    while True:  # the cheap list endpoint: the poll must not load the API it measures
        time.sleep(0.1)
        runs = c.get("/api/v1/runs", **params)["runs"]
        if runs and runs[0]["run_id"] == run_id and runs[0]["state"] in ("success", "failed", "cancelled"):
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"run {run_id} did not end within {timeout:g}s")
        c.check_alive()
    run = c.get(f"/api/v1/runs/{run_id}")
    starts = sorted(t["started_at"] for t in run["tasks"] if t.get("started_at"))
    return {
        "state": run["state"],
        "tasks": len(run["tasks"]),
        "succeeded": sum(t["state"] == "success" for t in run["tasks"]),
        "retried": sum(t["attempt"] > 1 for t in run["tasks"]),
        "seconds": run["ended_at"] - sent,
        "first_start_s": starts[0] - sent if starts else None,
        "last_start_s": starts[-1] - sent if starts else None,
    }


def start_deployment(c: ChaosCluster, workers: int, slots: int, progress: Any) -> list[str]:
    """api, scheduler and `workers` API-mode workers; their names once all have registered."""
    c.start_api()
    c.start_scheduler()
    names = [f"worker{i:02d}" for i in range(1, workers + 1)]
    progress(f"many workers: starting {workers} API-mode workers × {slots} slots")
    for name in names:
        c.start_worker(name, slots)
    c.wait_workers(names, timeout=60 + 4 * workers)
    return names


def measure(
    c: ChaosCluster,
    sampler: ConnectionSampler,
    *,
    workers: int,
    slots: int,
    tasks: int,
    sleep: float,
    idle_secs: float,
    progress: Any,
) -> dict[str, Any]:
    """Start the deployment and take the four measures."""
    names = start_deployment(c, workers, slots, progress)
    c.submit(sleeps_dag(tasks, sleep))
    time.sleep(2.0)  # start-up work (imports, registrations, first ticks) over
    progress(f"many workers: idle CPU of the workers over {idle_secs:g}s")
    idle = idle_cpu(c, [*names, "api", "scheduler"], idle_secs)
    workers_cpu = sum(idle[n] for n in names)
    progress(f"many workers: {tasks} × sleep {sleep:g} on {workers * slots} slots")
    cpu_before = {n: p.cpu() or 0.0 for n, p in c.procs.items()}
    run = timed_run(c, tasks, timeout=120 + tasks * sleep / max(workers * slots, 1) * 10)
    cpu_run = {n: (p.cpu() or 0.0) - cpu_before[n] for n, p in c.procs.items()}
    return {
        "idle_secs": idle_secs,
        "idle_cpu_percent": 100 * workers_cpu / idle_secs,
        "idle_cpu_percent_per_worker": 100 * workers_cpu / idle_secs / max(workers, 1),
        "idle_cpu_percent_api": 100 * idle["api"] / idle_secs,
        "idle_cpu_percent_scheduler": 100 * idle["scheduler"] / idle_secs,
        "run": {**run, "ideal_s": tasks / (workers * slots) * sleep},
        "run_cpu_s": {
            "api": cpu_run["api"],
            "scheduler": cpu_run["scheduler"],
            "workers": sum(cpu_run[n] for n in names),
        },
    }


def run_many_workers(
    folder: Path,
    *,
    workers: int = WORKERS,
    slots: int = SLOTS,
    tasks: int = TASKS,
    sleep: float = SLEEP_SECS,
    idle_secs: float = IDLE_SECS,
    progress: Any = print,
) -> dict[str, Any]:
    """The `many_workers` section: the four measures, or why they could not be taken."""
    section: dict[str, Any] = {
        "meta": meta(workers=workers, slots=slots, tasks=tasks, sleep=sleep),
        "goals": GOALS,
    }
    reason = distributed_unavailable()
    if reason:
        section["skipped"] = reason
        finish(section["meta"])
        return section
    folder.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        db_url = stack.enter_context(pg_database(os.environ[PG_ENV].strip()))
        queue_url = stack.enter_context(redis_prefix(os.environ[REDIS_ENV].strip()))
        c = ChaosCluster(
            folder, db_url=db_url, queue_url=queue_url, heartbeat=HEARTBEAT_SECS, worker_mode="api"
        )
        stack.callback(c.close)
        sampler = ConnectionSampler(db_url, every=SAMPLE_SECS).start()
        stack.callback(sampler.stop)
        try:
            figures = measure(
                c,
                sampler,
                workers=workers,
                slots=slots,
                tasks=tasks,
                sleep=sleep,
                idle_secs=idle_secs,
                progress=progress,
            )
        except (httpx.HTTPError, AssertionError, RuntimeError) as exc:
            section["error"] = str(exc)[:2000]
            figures = {}
        sampler.stop()
        errors = connection_errors(folder)
        section.update(
            figures,
            connections={
                "peak_total": sampler.peak_total,
                "by_process": dict(sampler.peak),
                "samples": sampler.samples,
                "every_s": SAMPLE_SECS,
            },
            connection_errors=len(errors),
            connection_error_lines=errors[:20],
        )
    finish(section["meta"])
    return section
