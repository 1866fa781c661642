"""FlowForge deployments under test (all-in-one, distributed) and one measured run on them."""

from __future__ import annotations

import logging
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx

from benchmarks import REPO_DIR
from benchmarks.procs import Process, clean_env, free_port, has_command, wait_healthy
from benchmarks.stats import percentile
from flowforge.core.model import DagSpec

log = logging.getLogger(__name__)

PG_ENV = "FLOWFORGE_TEST_PG"
REDIS_ENV = "FLOWFORGE_TEST_REDIS"
TERMINAL = ("success", "failed", "cancelled")
SLOTS = 2


class Deployment:
    """A set of running FlowForge processes with one API; `close()` stops them all."""

    label = "flowforge"

    def __init__(self) -> None:
        self.url = ""
        self.processes: list[Process] = []
        self.idle: dict[str, dict[str, float | None]] = {}

    def memory(self) -> dict[str, dict[str, float | None]]:
        """Current and peak RSS (MiB) of each process, by role."""
        return {p.name: p.memory() for p in self.processes}

    def check_alive(self) -> None:
        """RuntimeError when one of the processes has exited."""
        for p in self.processes:
            p.check_alive()

    def close(self) -> None:
        """Stop every process (newest first)."""
        for p in reversed(self.processes):
            p.stop()

    def _settle(self, secs: float = 1.0) -> None:
        # Idle RSS is read once start-up work (imports, migrations, first ticks) is over.
        time.sleep(secs)
        self.idle = self.memory()


class AllInOne(Deployment):
    """`flowforge up --concurrency 2` on a fresh home directory (SQLite + in-process queue)."""

    label = "up"

    def __init__(
        self, folder: Path, *, home: Path | None = None, slots: int = SLOTS, repo: Path = REPO_DIR
    ) -> None:
        super().__init__()
        self.home = home or folder / "home"
        self.home.mkdir(parents=True, exist_ok=True)
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        args = ["up", "--port", str(port), "--home", str(self.home), "--concurrency", str(slots)]
        self.processes = [Process("up", args, env=clean_env(), log_path=folder / "up.log", repo=repo)]

    def start(self) -> AllInOne:
        """Start and wait until healthy; then read its idle RSS."""
        try:
            wait_healthy(self.url, self.processes)
            self._settle()
        except BaseException:
            self.close()
            raise
        return self


def _with_path(url: str, path: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=path))


def _with_query(url: str, **params: str) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query.update(params)
    return urlunsplit(parts._replace(query=urlencode(query)))


def distributed_unavailable(repo: Path = REPO_DIR) -> str | None:
    """Why the distributed deployment cannot run here, or None when it can."""
    missing = [name for name in (PG_ENV, REDIS_ENV) if not os.environ.get(name, "").strip()]
    if missing:
        return f"{' and '.join(missing)} not set (URLs of a PostgreSQL admin role and a Redis server)"
    for module in ("psycopg", "redis"):
        try:
            __import__(module)
        except ImportError:
            return f"the {module} package is not installed"
    absent = [c for c in ("api", "scheduler", "worker") if not has_command(c, repo)]
    if absent:
        return f"this FlowForge has no 'flowforge {' / '.join(absent)}' command"
    return None


class Distributed(Deployment):
    """`flowforge api` + `scheduler` + one `worker` with 2 slots, on a fresh PostgreSQL database and Redis prefix."""

    label = "distributed"

    def __init__(self, folder: Path, *, slots: int = SLOTS, repo: Path = REPO_DIR) -> None:
        super().__init__()
        self.folder = folder
        self.repo = repo
        self.slots = slots
        self.admin_url = os.environ[PG_ENV].strip()
        self.redis_url = os.environ[REDIS_ENV].strip()
        suffix = uuid.uuid4().hex[:12]
        self.db_name = f"flowforge_bench_{suffix}"
        self.prefix = f"ffbench-{suffix}"
        self.db_url = _with_path(self.admin_url, f"/{self.db_name}")
        self.queue_url = _with_query(self.redis_url, prefix=self.prefix)
        self._db_created = False

    def start(self) -> Distributed:
        """Create the database, start api, scheduler and worker, wait until healthy."""
        import psycopg

        try:
            with psycopg.connect(self.admin_url, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{self.db_name}"')
            self._db_created = True
            home = self.folder / "home"
            home.mkdir(parents=True, exist_ok=True)
            env = clean_env(
                FLOWFORGE_DB=self.db_url, FLOWFORGE_QUEUE=self.queue_url, FLOWFORGE_HOME=str(home)
            )
            port = free_port()
            self.url = f"http://127.0.0.1:{port}"
            # The API first: it migrates the empty database before the others connect.
            api = Process(
                "api", ["api", "--port", str(port)], env=env, log_path=self.folder / "api.log", repo=self.repo
            )
            self.processes.append(api)
            wait_healthy(self.url, self.processes)
            self.processes.append(
                Process(
                    "scheduler",
                    ["scheduler"],
                    env=env,
                    log_path=self.folder / "scheduler.log",
                    repo=self.repo,
                )
            )
            self.processes.append(
                Process(
                    "worker",
                    ["worker", "--concurrency", str(self.slots)],
                    env=env,
                    log_path=self.folder / "worker.log",
                    repo=self.repo,
                )
            )
            self._wait_for_worker()
            self._settle()
        except BaseException:
            self.close()
            raise
        return self

    def _wait_for_worker(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                workers = httpx.get(f"{self.url}/api/v1/workers", timeout=2).json().get("workers", [])
                if any(w.get("state") == "alive" for w in workers):
                    return
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.1)
        raise RuntimeError("the worker never registered:\n" + "\n".join(p.output() for p in self.processes))

    def close(self) -> None:
        """Stop the processes, drop the database and delete the Redis keys."""
        super().close()
        if self._db_created:
            import psycopg

            with psycopg.connect(self.admin_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')
            self._db_created = False
        try:
            import redis

            client = redis.Redis.from_url(self.redis_url)
            try:
                keys = list(client.scan_iter(match=f"{self.prefix}:*", count=500))
                if keys:
                    client.delete(*keys)
            finally:
                client.close()
        except Exception as exc:
            log.warning("could not delete the Redis keys under %s: %s", self.prefix, exc)


@dataclass
class RunSample:
    """One measured run: trigger → end, and the hand-offs inside it."""

    run_id: str
    state: str
    wall: float  # trigger POST sent → the run's ended_at (server clock = this host's clock)
    seen: float  # trigger POST sent → the client saw the run over (poll granularity included)
    first_start: float  # trigger POST sent → the first task started
    handoffs: list[float] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds each FlowForge process used


def handoffs(spec: DagSpec, tasks: list[dict[str, Any]]) -> list[float]:
    """Hand-off latencies: from the end of the task that made others ready to the first of them starting.

    A task is ready when its last dependency ends; tasks made ready by the same end form a group,
    and the group's latency is its first start minus that end. Later starts in a group wait for a
    free slot (2 slots), which is not a hand-off cost, so they are not counted.
    """
    by_id = {t["task_id"]: t for t in tasks}
    groups: dict[str, tuple[float, float]] = {}
    for task in spec.tasks:
        if not task.depends_on:
            continue
        ends = [(by_id[d]["ended_at"], d) for d in task.depends_on if by_id[d].get("ended_at") is not None]
        start = by_id[task.id].get("started_at")
        if start is None or len(ends) != len(task.depends_on):
            continue
        ready, cause = max(ends)
        first = groups.get(cause)
        groups[cause] = (ready, start if first is None else min(first[1], start))
    return [start - ready for ready, start in groups.values()]


class RunDriver:
    """Submits workloads to a deployment's API and measures runs of them."""

    # Polling loads the process it measures (each request is CPU under the same GIL): polling
    # every 20 ms instead of 100 ms made W2 about 10% slower. The figures come from the run's own
    # timestamps, so a slower poll costs no precision.
    def __init__(self, deployment: Deployment, poll_secs: float = 0.1) -> None:
        self.deployment = deployment
        self.poll_secs = poll_secs
        self.client = httpx.Client(base_url=deployment.url, timeout=30.0)

    def submit(self, yaml_text: str) -> None:
        """Submit a DAG (a new version only when it changed)."""
        response = self.client.post("/api/v1/dags", json={"yaml": yaml_text})
        response.raise_for_status()

    def run(self, spec: DagSpec, timeout: float = 300.0) -> RunSample:
        """Trigger one run of `spec`, wait for its end, and measure it from the API's timestamps."""
        cpu_before = self._cpu()
        sent = time.time()
        response = self.client.post("/api/v1/runs", json={"dag_id": spec.id, "triggered_by": "benchmark"})
        response.raise_for_status()
        run_id = response.json()["run_id"]
        deadline = time.monotonic() + timeout
        # The cheap list endpoint (no task instances): the poll must not load the engine it measures.
        params: dict[str, str | int] = {"dag_id": spec.id, "limit": 1}
        while True:
            time.sleep(self.poll_secs)
            runs = self.client.get("/api/v1/runs", params=params).json()["runs"]
            if runs and runs[0]["run_id"] == run_id and runs[0]["state"] in TERMINAL:
                seen = time.time()
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"run {run_id} of {spec.id} did not end within {timeout:g}s")
            self.deployment.check_alive()
        cpu_after = self._cpu()
        detail = self.client.get(f"/api/v1/runs/{run_id}").json()
        tasks = detail["tasks"]
        starts = [t["started_at"] for t in tasks if t.get("started_at") is not None]
        return RunSample(
            run_id=run_id,
            state=detail["state"],
            wall=detail["ended_at"] - sent,
            seen=seen - sent,
            first_start=(min(starts) - sent) if starts else float("nan"),
            handoffs=handoffs(spec, tasks),
            cpu={k: cpu_after[k] - v for k, v in cpu_before.items() if k in cpu_after},
        )

    def _cpu(self) -> dict[str, float]:
        out = {}
        for p in self.deployment.processes:
            value = p.cpu()
            if value is not None:
                out[p.name] = value
        return out

    def close(self) -> None:
        """Close the HTTP client."""
        self.client.close()


def handoff_summary(samples: list[RunSample]) -> dict[str, float | None]:
    """p50 / p95 / max of every hand-off of every sample, in milliseconds."""
    values = [h * 1000 for s in samples for h in s.handoffs]
    return {
        "n": len(values),
        "p50_ms": percentile(values, 50),
        "p95_ms": percentile(values, 95),
        "max_ms": max(values) if values else None,
    }
