"""W5, throughput: 10,000 independent `true` tasks on 32 slots, against `make -j32` on the same DAG.

`flowforge up --concurrency 32` and (when PostgreSQL and Redis are configured) `api` + `scheduler`
+ 4 workers × 8 slots. The figure is tasks per second from trigger to the run's end, and its ratio
to make's time. The DAG is written here (W5 is too large to keep as a file): one task per line, no
edges, `max_active_tasks` as high as the task count so that only the slots limit concurrency.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from benchmarks import REPO_DIR
from benchmarks.make import MakeRunner
from benchmarks.meta import finish, meta
from benchmarks.runners import AllInOne, Deployment, Distributed, RunDriver, distributed_unavailable
from benchmarks.stats import summary
from flowforge.core.dagfile import load_dag

TASKS = 10_000
SLOTS = 32
WORKERS = 4  # distributed: 4 workers × 8 slots


def w5_yaml(tasks: int = TASKS) -> str:
    """The W5 DAG file: `tasks` independent `true` commands."""
    lines = ["id: W5", "name: throughput", f"max_active_tasks: {tasks}", "tasks:"]
    lines += [f"  - {{id: t{i:05d}, command: 'true'}}" for i in range(tasks)]
    return "\n".join(lines) + "\n"


class ManyWorkers(Distributed):
    """`api` + `scheduler` + `workers` worker processes of `slots` each, on PostgreSQL + Redis."""

    def __init__(self, folder: Path, *, workers: int, slots: int, repo: Path = REPO_DIR) -> None:
        super().__init__(folder, slots=slots, repo=repo)
        self.workers = workers

    def start(self) -> ManyWorkers:
        super().start()  # api, scheduler and the first worker
        try:
            names = [f"worker{i}" for i in range(2, self.workers + 1)]
            for name in names:
                self.cluster.start_worker(name, self.slots)
            self.cluster.wait_workers(names, timeout=60)
        except BaseException:
            self.close()
            raise
        return self


def run_throughput(
    folder: Path, runs: int = 3, *, tasks: int = TASKS, progress: Any = print, repo: Path = REPO_DIR
) -> dict[str, Any]:
    """The `throughput` section: make -j32, up, and (when it can run) the distributed deployment."""
    folder.mkdir(parents=True, exist_ok=True)
    text = w5_yaml(tasks)
    spec = load_dag(text)
    section: dict[str, Any] = {"meta": meta(repo, runs=runs, slots=SLOTS, tasks=tasks), "systems": {}}
    make = MakeRunner(spec, folder / "make", jobs=SLOTS)
    make.run()  # warm-up
    make_times = []
    for _ in range(runs):
        make_times.append(make.run())
    section["systems"]["make"] = _figures(make_times, tasks, None)
    progress(f"W5 make -j{SLOTS}: {section['systems']['make']['tasks_per_sec']:.0f} tasks/s")
    deployments: list[tuple[str, Any]] = [("up", lambda: AllInOne(folder / "up", slots=SLOTS, repo=repo))]
    skipped = distributed_unavailable(repo)
    if skipped is None:
        deployments.append(
            (
                "distributed",
                lambda: ManyWorkers(folder / "dist", workers=WORKERS, slots=SLOTS // WORKERS, repo=repo),
            )
        )
    section["distributed_skipped"] = skipped
    for name, make_deployment in deployments:
        (folder / name).mkdir(parents=True, exist_ok=True)
        section["systems"][name] = _measure(make_deployment(), text, spec, runs, make_times, progress, name)
    finish(section["meta"])
    return section


def _measure(
    deployment: Deployment, text: str, spec: Any, runs: int, make_times: list[float], progress: Any, name: str
) -> dict[str, Any]:
    deployment.start()
    driver = RunDriver(deployment, poll_secs=0.5)
    try:
        driver.submit(text)
        walls = []
        for i in range(runs):
            sample = driver.run(spec, timeout=900.0)
            if sample.state != "success":
                raise RuntimeError(f"W5 on {name}: the run ended {sample.state}")
            walls.append(sample.wall)
            progress(
                f"W5 {name} run {i + 1}/{runs}: {sample.wall:.2f}s, {len(spec.tasks) / sample.wall:.0f} tasks/s"
            )
    finally:
        driver.close()
        deployment.close()
    return _figures(walls, len(spec.tasks), summary(make_times)["median"])


def _figures(walls: list[float], tasks: int, make_median: float | None) -> dict[str, Any]:
    wall = summary(walls)
    med = wall["median"]
    return {
        "wall": wall,
        "tasks_per_sec": tasks / med if med else None,
        "ratio": med / make_median if med and make_median else None,
        "cpus": os.cpu_count(),
    }
