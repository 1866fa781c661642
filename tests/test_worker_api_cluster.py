"""API-mode workers for real: `api` and `scheduler` on PostgreSQL + Redis, two `worker --api-url` processes.

The workers are given the API's URL and the worker token only: no FLOWFORGE_DB, no
FLOWFORGE_QUEUE. Their tasks write the chaos suite's ledger, and the run is checked against
the suite's invariants (I1-I6: nothing lost, no double success, no stale overwrite, order,
numbering, no task process left behind), once undisturbed and once with a worker SIGKILLed,
tasks and all, in the middle of the run.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chaos.cluster import ChaosCluster, Figures
from tests.chaos.ledger import TERMINAL_RUN_STATES, Dag, layered_dag
from tests.chaos.steps import verify
from tests.harness import FlowForgeProcess, children, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

WORKER_TOKEN = "cluster-worker-token-7e21c9d4"
WORKERS = ("worker1", "worker2")


def start_api_worker(c: ChaosCluster, name: str, slots: int) -> FlowForgeProcess:
    """`flowforge worker --api-url URL`, its environment without the database and queue settings."""
    env = {k: v for k, v in c.env.items() if k not in ("FLOWFORGE_DB", "FLOWFORGE_QUEUE")}
    env["FLOWFORGE_WORKER_TOKEN"] = WORKER_TOKEN
    args = ["worker", "--api-url", c.url, "--concurrency", str(slots), "--grace", "5"]
    proc = FlowForgeProcess(args, name=name, env=env, log_path=c.dir / f"{name}.log", repo=c.repo)
    c.procs[name] = proc
    c.down.discard(name)
    return proc


@pytest.fixture
def cluster(tmp_path: Path, pg_url: str, redis_url: str) -> Iterator[ChaosCluster]:
    c = ChaosCluster(tmp_path, db_url=pg_url, queue_url=redis_url)
    try:
        port = free_port()
        api = c.start(
            "api", "api", "--port", str(port), port=port, env={"FLOWFORGE_WORKER_TOKEN": WORKER_TOKEN}
        )
        c.connect(api)
        c.start_scheduler()
        for name in WORKERS:
            start_api_worker(c, name, 3)
        c.wait_workers(list(WORKERS), timeout=60)
        yield c
    finally:
        c.close()


def wait_ended(c: ChaosCluster, runs: dict[str, Dag], timeout: float) -> None:
    c.wait_for(
        "the runs to end",
        lambda: all(c.get(f"/api/v1/runs/{r}")["state"] in TERMINAL_RUN_STATES for r in runs),
        timeout,
        poll=0.25,
    )


ENV_CHECK = """\
id: envcheck
tasks:
  - id: look
    command: "env | grep -c WORKER_TOKEN; tr '\\\\0' '\\\\n' </proc/$PPID/environ | grep -c WORKER_TOKEN; true"
"""


def test_api_mode_workers_run_a_dag_to_success(cluster: ChaosCluster) -> None:
    c = cluster
    dag = layered_dag("apimode", c.ledger, random.Random(7), layers=3, width=4, sleep=(0.1, 0.4))
    c.submit(dag.yaml)
    runs = {c.trigger(dag.dag_id): dag for _ in range(2)}
    c.submit(ENV_CHECK)
    look = c.trigger("envcheck")
    wait_ended(c, runs, 90)
    verdict = verify(c, Figures("api-mode", 7), runs)
    assert verdict.double_successes == 0 and verdict.losses == 0
    # Both workers worked, each through the API alone.
    workers = {t["worker_id"] for r in runs for t in c.get(f"/api/v1/runs/{r}")["tasks"]}
    assert len(workers) == 2, workers
    assert c.wait_run(look)["state"] == "success"
    # The worker token is neither in a task's environment nor in its worker's environment block.
    assert c.get(f"/api/v1/runs/{look}/tasks/look/logs")["text"] == "0\n0\n"
    for name in ("worker1", "worker2", "scheduler", "api"):
        assert c.stop(name) == 0, c.procs[name].output()
    for name in WORKERS:
        assert "Traceback" not in c.procs[name].output()


def test_a_worker_killed_mid_task_loses_nothing(cluster: ChaosCluster) -> None:
    c = cluster
    rng = random.Random(11)
    dag = layered_dag("apikill", c.ledger, rng, layers=4, width=6, sleep=(0.5, 1.5))
    c.submit(dag.yaml)
    run_id = c.trigger(dag.dag_id)
    # SIGKILL worker1 and its tasks (a host losing power) once it runs tasks.
    c.wait_for("worker1 to run tasks", lambda: children(c.procs["worker1"].pid), timeout=30, poll=0.05)
    killed = c.kill_tree("worker1")
    assert killed
    started = time.monotonic()
    wait_ended(c, {run_id: dag}, 120)
    figures = Figures("api-mode worker SIGKILLed mid-task", 11, faults=1, hits=1, tasks_hit=len(killed))
    verdict = verify(c, figures, {run_id: dag})
    assert verdict.losses == 0 and verdict.double_successes == 0
    assert verdict.lost_attempts >= 1  # the killed tasks' attempts, given up and run again
    print(f"\nrun ended {time.monotonic() - started:.1f}s after the kill; {verdict.figures()}")
    states = {w["pid"]: w["state"] for w in c.get("/api/v1/workers")["workers"]}
    assert states[c.procs["worker1"].pid] == "dead" and states[c.procs["worker2"].pid] == "alive"
