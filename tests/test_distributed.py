"""Distributed FlowForge for real: `api`, `scheduler` and two `worker` processes on PostgreSQL + Redis.

One worker is SIGKILLed in the middle of a 40-task run; the run must still succeed, with every
task succeeding exactly once and the killed worker's tasks retried by the other one.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.backends import with_path
from tests.support import REPO, FlowForgeProcess, clean_env, free_port

pytestmark = pytest.mark.e2e

LAYERS, WIDTH = 5, 8
HEARTBEAT_SECS = 0.5  # so the scheduler declares a worker dead after 1.5 s


def layered_dag(layers: int = LAYERS, width: int = WIDTH, sleep: float = 0.5) -> str:
    """`layers` x `width` tasks; each depends on two tasks of the layer above."""
    lines = ["id: layered", "default_retries: 2", "retry_delay_secs: 0.1", "max_active_tasks: 64", "tasks:"]
    for layer in range(layers):
        for i in range(width):
            deps = "" if layer == 0 else f", depends_on: [l{layer - 1}t{i}, l{layer - 1}t{(i + 1) % width}]"
            lines.append(f"  - {{id: l{layer}t{i}, command: 'sleep {sleep}; echo l{layer}t{i}'{deps}}}")
    return "\n".join(lines) + "\n"


class Cluster:
    """The four processes, sharing one fresh database and one fresh Redis key prefix."""

    def __init__(self, tmp_path: Path, pg_url: str, redis_url: str) -> None:
        self.tmp_path = tmp_path
        self.env = clean_env(
            FLOWFORGE_DB=pg_url,
            FLOWFORGE_QUEUE=redis_url,
            FLOWFORGE_HOME=str(tmp_path / "home"),
            FLOWFORGE_HEARTBEAT_SECS=str(HEARTBEAT_SECS),
        )
        self.procs: list[FlowForgeProcess] = []
        self.killed: list[FlowForgeProcess] = []  # killed on purpose: their exit is no failure
        port = free_port()
        self.api = self._start("api", ["api", "--port", str(port)], port=port)
        self.scheduler = self._start("scheduler", ["scheduler"])
        self.workers = [self._start(f"worker{i}", ["worker", "--concurrency", "4"]) for i in (1, 2)]
        self.http = httpx.Client(base_url=self.api.url, timeout=10)

    def _start(self, name: str, args: list[str], port: int | None = None) -> FlowForgeProcess:
        proc = FlowForgeProcess(args, port=port, env=self.env, log_path=self.tmp_path / f"{name}.log")
        self.procs.append(proc)
        return proc

    def get(self, path: str) -> Any:
        """GET an API path and return its JSON, failing on an error status."""
        response = self.http.get(path)
        response.raise_for_status()
        return response.json()

    def wait_for(self, what: str, check: Any, timeout: float) -> Any:
        """Poll `check()` until it returns something truthy; fail with every process's output if it never does."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for proc in self.procs:
                if proc.proc.poll() is not None and proc not in self.killed:
                    raise AssertionError(f"a process exited early ({proc.proc.args}):\n{proc.output()}")
            value = check()
            if value:
                return value
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}\n{self.outputs()}")

    def outputs(self) -> str:
        """Every process's output, for a failure message."""
        return "\n".join(f"--- {p.proc.args[3:]}\n{p.output()[-3000:]}" for p in self.procs)

    def close(self) -> None:
        """Stop every process (SIGTERM, then SIGKILL of its whole process group if it lingers)."""
        self.http.close()
        for proc in self.procs:
            try:
                proc.stop(timeout=10)
            except Exception as exc:
                print(f"could not stop {proc.proc.args}: {exc}")


@pytest.fixture
def cluster(tmp_path: Path, pg_url: str, redis_url: str) -> Iterator[Cluster]:
    c = Cluster(tmp_path, pg_url, redis_url)
    try:
        c.api.wait_healthy(timeout=30)
        yield c
    finally:
        c.close()


def test_run_survives_a_worker_killed_mid_run(cluster: Cluster) -> None:
    start = time.monotonic()
    pids = {w.proc.pid for w in cluster.workers}

    def live_workers() -> list[dict[str, Any]] | None:
        workers = [
            w for w in cluster.get("/api/v1/workers")["workers"] if w["pid"] in pids and w["state"] == "alive"
        ]
        return workers if len(workers) == 2 else None

    workers = cluster.wait_for("two live workers", live_workers, timeout=30)
    worker_ids = {w["pid"]: w["worker_id"] for w in workers}
    assert cluster.http.post("/api/v1/dags", json={"yaml": layered_dag()}).status_code in (200, 201)
    run = cluster.http.post("/api/v1/runs", json={"dag_id": "layered", "triggered_by": "test"}).json()
    run_id = run["run_id"]

    # Kill the first worker as soon as it runs tasks of the second layer or later.
    victim = cluster.workers[0]
    victim_id = worker_ids[victim.proc.pid]

    def victim_busy() -> list[str]:
        tasks = cluster.get(f"/api/v1/runs/{run_id}")["tasks"]
        return [
            t["task_id"]
            for t in tasks
            if t["state"] == "running" and t["worker_id"] == victim_id and not t["task_id"].startswith("l0")
        ]

    running_on_victim = cluster.wait_for("the victim to run tasks", victim_busy, timeout=20)
    victim.kill()  # SIGKILL: no goodbye, no ack, no last heartbeat
    victim.proc.wait(5)
    cluster.killed.append(victim)
    # What it was running at the moment it died (the list may have grown since the check).
    tasks = cluster.get(f"/api/v1/runs/{run_id}")["tasks"]
    orphaned = {t["task_id"] for t in tasks if t["state"] == "running" and t["worker_id"] == victim_id}
    assert orphaned >= set(running_on_victim) - {t["task_id"] for t in tasks if t["state"] != "running"}

    done = cluster.wait_for(
        "the run to end",
        lambda: (
            (r := cluster.get(f"/api/v1/runs/{run_id}"))["state"] in ("success", "failed", "cancelled") and r
        ),
        timeout=45,
    )
    assert done["state"] == "success", cluster.outputs()
    assert len(done["tasks"]) == LAYERS * WIDTH
    retried = set()
    for t in done["tasks"]:
        detail = cluster.get(f"/api/v1/runs/{run_id}/tasks/{t['task_id']}")
        attempts = detail["attempts"]
        assert [a["state"] for a in attempts].count("success") == 1, (t["task_id"], attempts)
        assert attempts[-1]["state"] == "success"
        for a in attempts[:-1]:
            assert a["state"] == "lost" and a["worker_id"] == victim_id, (t["task_id"], attempts)
            assert "died" in a["error"] and victim_id in a["error"]
            retried.add(t["task_id"])
        if t["task_id"] in orphaned:
            assert len(attempts) == 2 and attempts[1]["worker_id"] != victim_id, (t["task_id"], attempts)
    assert retried == orphaned and orphaned

    states = {w["worker_id"]: w["state"] for w in cluster.get("/api/v1/workers")["workers"]}
    assert states[victim_id] == "dead"
    assert list(states.values()).count("alive") == 1
    elapsed = time.monotonic() - start
    print(
        f"\n40-task layered run with a worker SIGKILLed mid-run: {elapsed:.1f} s, {len(orphaned)} task(s) retried"
    )
    # The survivors stop cleanly on SIGTERM.
    for proc in (cluster.scheduler, cluster.workers[1], cluster.api):
        assert proc.stop(timeout=20) == 0, proc.output()


CHAIN = """\
id: chain3
tasks:
  - {id: one, command: echo one}
  - {id: two, command: echo two, depends_on: [one]}
  - {id: three, command: echo three, depends_on: [two]}
"""


def test_chain_of_three_latency(cluster: Cluster) -> None:
    """Trigger to success of a 3-task echo chain across processes: no polling loop adds its period."""
    cluster.wait_for(
        "a live worker", lambda: cluster.get("/api/v1/status")["workers"]["alive"] >= 2, timeout=30
    )
    assert cluster.http.post("/api/v1/dags", json={"yaml": CHAIN}).status_code in (200, 201)
    timings = []
    for _ in range(7):
        start = time.monotonic()
        run_id = cluster.http.post("/api/v1/runs", json={"dag_id": "chain3"}).json()["run_id"]
        while cluster.get(f"/api/v1/runs/{run_id}")["state"] != "success":
            assert time.monotonic() - start < 10
            time.sleep(0.005)
        timings.append(time.monotonic() - start)
    median = sorted(timings)[len(timings) // 2]
    print(
        f"\n3-task chain on PostgreSQL + Redis, separate processes, trigger to success: median {median * 1000:.0f} ms"
    )
    # Three hand-offs through the doorbell; the 1 s safety-net tick would make this take seconds.
    assert median < 1.0


def start_up_error(env: dict[str, str], role: str = "worker") -> subprocess.CompletedProcess[str]:
    """Run `flowforge ROLE` with `env` and capture what it says as it refuses to start."""
    return subprocess.run(
        [sys.executable, "-m", "flowforge", role],
        check=False,
        cwd=REPO,
        env=clean_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("env", "code", "says"),
    [
        (
            {"FLOWFORGE_DB": "mysql://db/ff", "FLOWFORGE_QUEUE": "redis://127.0.0.1:1/0"},
            2,
            "FLOWFORGE_DB=mysql://db/ff: unsupported store URL scheme 'mysql'",
        ),
        (
            {
                "FLOWFORGE_DB": "postgresql://ff:s3cret@127.0.0.1:1/ff",
                "FLOWFORGE_QUEUE": "redis://127.0.0.1:1/0",
            },
            3,
            "FLOWFORGE_DB=postgresql://ff:***@127.0.0.1:1/ff: cannot connect to PostgreSQL: ",
        ),
        (
            {"FLOWFORGE_DB": "sqlite:///{tmp}/ff.db", "FLOWFORGE_QUEUE": "redis://127.0.0.1:1/0"},
            3,
            "FLOWFORGE_QUEUE=redis://127.0.0.1:1/0: cannot connect to Redis: ",
        ),
        (
            {"FLOWFORGE_DB": "sqlite:///{tmp}/ff.db", "FLOWFORGE_QUEUE": "amqp://mq"},
            2,
            "FLOWFORGE_QUEUE=amqp://mq: unsupported queue URL scheme 'amqp'",
        ),
        ({"FLOWFORGE_DB": "sqlite:///{tmp}/ff.db"}, 2, "FLOWFORGE_QUEUE=memory://: an in-process queue"),
    ],
    ids=["db-scheme", "db-refused", "queue-refused", "queue-scheme", "queue-in-process"],
)
def test_start_up_errors_are_one_line(tmp_path: Path, env: dict[str, str], code: int, says: str) -> None:
    result = start_up_error({k: v.format(tmp=tmp_path) for k, v in env.items()})
    assert result.returncode == code, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and says in errors[0], result.stderr
    assert "Traceback" not in result.stderr and "s3cret" not in result.stderr


def test_start_up_error_for_a_missing_database(pg_url: str) -> None:
    result = start_up_error(
        {
            "FLOWFORGE_DB": with_path(pg_url, "/flowforge_missing"),
            "FLOWFORGE_QUEUE": "redis://127.0.0.1:6379/0",
        },
        role="scheduler",
    )
    assert result.returncode == 3, result.stderr
    assert 'database "flowforge_missing" does not exist' in result.stderr
    assert "FLOWFORGE_DB=" in result.stderr and "Traceback" not in result.stderr
