"""FlowForge deployments under test (all-in-one, distributed) and one measured run on them."""

from __future__ import annotations

import os
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from benchmarks import REPO_DIR
from benchmarks.stats import percentile
from flowforge.core.model import DagSpec
from tests.backends import PG_ENV, REDIS_ENV, pg_database, redis_prefix
from tests.cluster import Cluster
from tests.harness import FlowForgeProcess, has_command

TERMINAL = ("success", "failed", "cancelled")
SLOTS = 2


class Deployment:
    """A set of running FlowForge processes with one API; `close()` stops them all."""

    label = "flowforge"

    def __init__(self, folder: Path, repo: Path) -> None:
        self.folder = folder
        self.repo = repo
        self.cluster: Cluster | None = None
        self.idle: dict[str, dict[str, float | None]] = {}

    @property
    def url(self) -> str:
        """The API's base URL."""
        assert self.cluster is not None, "not started"
        return self.cluster.url

    @property
    def processes(self) -> list[FlowForgeProcess]:
        """The processes, oldest first."""
        return list(self.cluster.procs.values()) if self.cluster else []

    def memory(self) -> dict[str, dict[str, float | None]]:
        """Current and peak RSS (MiB) of each process, by role."""
        return {p.name: p.memory() for p in self.processes}

    def check_alive(self) -> None:
        """AssertionError with its output when one of the processes has exited."""
        if self.cluster is not None:
            self.cluster.check_alive()

    def close(self) -> None:
        """Stop every process (newest first)."""
        if self.cluster is not None:
            self.cluster.close()

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
        super().__init__(folder, repo)
        self.home = home or folder / "home"
        self.slots = slots

    def start(self) -> AllInOne:
        """Start and wait until healthy; then read its idle RSS."""
        self.cluster = Cluster(self.folder, home=self.home, repo=self.repo)
        try:
            self.cluster.start_up(self.slots)
            self._settle()
        except BaseException:
            self.close()
            raise
        return self


def distributed_unavailable(repo: Path = REPO_DIR) -> str | None:
    """Why the distributed deployment cannot run here, or None when it can."""
    missing = [name for name in (PG_ENV, REDIS_ENV) if not os.environ.get(name, "").strip()]
    if missing:
        return f"{' and '.join(missing)} not set (URLs of a PostgreSQL admin role and a Redis server)"
    absent = [c for c in ("api", "scheduler", "worker") if not has_command(c, repo)]
    if absent:
        return f"this FlowForge has no 'flowforge {' / '.join(absent)}' command"
    return None


class Distributed(Deployment):
    """`flowforge api` + `scheduler` + one `worker` with 2 slots, on a fresh PostgreSQL database and Redis prefix."""

    label = "distributed"

    def __init__(self, folder: Path, *, slots: int = SLOTS, repo: Path = REPO_DIR) -> None:
        super().__init__(folder, repo)
        self.slots = slots
        self._services = ExitStack()  # the database and the key prefix, dropped on close

    def start(self) -> Distributed:
        """Create the database and prefix, start api (healthy first: it migrates), scheduler and worker."""
        try:
            db_url = self._services.enter_context(pg_database(os.environ[PG_ENV].strip()))
            queue_url = self._services.enter_context(redis_prefix(os.environ[REDIS_ENV].strip()))
            self.cluster = Cluster(self.folder, db_url=db_url, queue_url=queue_url, repo=self.repo)
            self.cluster.start_api()
            self.cluster.start_scheduler()
            self.cluster.start_worker("worker", self.slots)
            self.cluster.wait_workers(["worker"], timeout=30)
            self._settle()
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Stop the processes, drop the database and delete the Redis keys."""
        try:
            super().close()
        finally:
            self._services.close()


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
