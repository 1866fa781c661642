"""make -j2 against FlowForge all-in-one and distributed, interleaved, per workload."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from benchmarks import REPO_DIR
from benchmarks.loadtime import METHODS, measure_in_subprocess
from benchmarks.make import MakeRunner
from benchmarks.meta import finish, meta
from benchmarks.runners import (
    AllInOne,
    Deployment,
    Distributed,
    RunDriver,
    RunSample,
    distributed_unavailable,
    handoff_summary,
)
from benchmarks.stats import median, summary
from benchmarks.workloads import Workload, workload_path

log = logging.getLogger(__name__)


def _deployment_result(samples: list[RunSample], make_median: float, tasks: int) -> dict[str, Any]:
    ok = [s for s in samples if s.state == "success"]
    wall = summary([s.wall for s in ok])
    med = wall["median"]
    cpu = [sum(s.cpu.values()) for s in ok if s.cpu]
    cpu_med = median(cpu)
    return {
        "wall": wall,
        "seen": summary([s.seen for s in ok]),
        "first_start": summary([s.first_start for s in ok if not math.isnan(s.first_start)]),
        "ratio": med / make_median if med is not None and make_median else None,
        "overhead_ms_per_task": (med - make_median) / tasks * 1000 if med is not None else None,
        "handoff": handoff_summary(ok),
        "cpu_seconds": summary(cpu),
        "cpu_ms_per_task": cpu_med / tasks * 1000 if cpu_med is not None else None,
        "runs_not_successful": len(samples) - len(ok),
    }


def run_comparison(
    workloads: list[Workload],
    runs: int,
    folder: Path,
    *,
    distributed: bool | None,
    progress: Any = print,
    repo: Path = REPO_DIR,
) -> dict[str, Any]:
    """Measure each workload on make and FlowForge (run from `repo`), interleaved; the `compare` section."""
    other = {} if repo == REPO_DIR else {"other_checkout": repo.name}
    section: dict[str, Any] = {
        "meta": meta(repo, runs=runs, slots=2, **other),
        "workloads": {},
        "memory": {},
    }
    skipped = None
    if distributed is None or distributed:
        skipped = distributed_unavailable(repo)
        if skipped and distributed:
            raise SystemExit(f"--distributed: cannot run: {skipped}")
    else:
        skipped = "--no-distributed"
    section["distributed_skipped"] = skipped
    deployments: dict[str, Deployment] = {}
    drivers: dict[str, RunDriver] = {}
    try:
        progress("starting flowforge up --concurrency 2")
        (folder / "up").mkdir(parents=True, exist_ok=True)
        deployments["up"] = AllInOne(folder / "up", repo=repo).start()
        if not skipped:
            progress("starting flowforge api + scheduler + worker on PostgreSQL + Redis")
            (folder / "distributed").mkdir(parents=True, exist_ok=True)
            deployments["distributed"] = Distributed(folder / "distributed", repo=repo).start()
        section["deployments"] = list(deployments)
        drivers = {name: RunDriver(dep) for name, dep in deployments.items()}
        for workload in workloads:
            section["workloads"][workload.name] = _workload(
                workload, runs, folder / "make" / workload.name, drivers, progress
            )
        for name, dep in deployments.items():
            now = dep.memory()
            section["memory"][name] = {
                role: {
                    "idle_rss_mib": dep.idle.get(role, {}).get("rss_mib"),
                    "peak_rss_mib": m["peak_rss_mib"],
                }
                for role, m in now.items()
            }
    finally:
        for driver in drivers.values():
            driver.close()
        for dep in deployments.values():
            dep.close()
    finish(section["meta"])
    return section


def _workload(
    workload: Workload, runs: int, make_dir: Path, drivers: dict[str, RunDriver], progress: Any
) -> dict[str, Any]:
    make = MakeRunner(workload.spec, make_dir)
    for driver in drivers.values():
        driver.submit(workload.yaml)
    # One warm-up each, not counted: first-run costs (spec parsing, caches, page cache) are not
    # what a scheduler adds per run.
    make.run()
    for driver in drivers.values():
        driver.run(workload.spec)
    make_times: list[float] = []
    samples: dict[str, list[RunSample]] = {name: [] for name in drivers}
    for i in range(runs):
        make_times.append(make.run())
        line = [f"{workload.name} run {i + 1}/{runs}: make {make_times[-1]:.3f}s"]
        for name, driver in drivers.items():
            sample = driver.run(workload.spec)
            samples[name].append(sample)
            line.append(f"{name} {sample.wall:.3f}s ({sample.state})")
        progress(", ".join(line))
    make_summary = summary(make_times)
    out: dict[str, Any] = {
        "tasks": workload.tasks,
        "edges": workload.edges,
        "description": workload.description,
        "make": make_summary,
    }
    for name, s in samples.items():
        out[name] = _deployment_result(s, make_summary["median"], workload.tasks)
    return out


def run_load(names: list[str], repeat: int, progress: Any = print) -> dict[str, Any]:
    """W4: load + validate against plain PyYAML, each in its own process; the `load` section."""
    section: dict[str, Any] = {"meta": meta(repeat=repeat), "workloads": {}}
    for name in names:
        path = workload_path(name)
        progress(f"{name}: load + validate ({', '.join(METHODS)})")
        section["workloads"][name] = {m: measure_in_subprocess(m, path, repeat) for m in METHODS}
    finish(section["meta"])
    return section
