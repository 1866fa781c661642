"""W4: how long loading and validating a big DAG file takes, and how much memory, against plain PyYAML.

Each method runs in its own subprocess (`python -m benchmarks.loadtime METHOD FILE`), so that its
peak RSS is its own: the imports first, then the timed repeats, then one pass under tracemalloc.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import REPO_DIR
from benchmarks.stats import summary
from tests.harness import memory_kb

METHODS = {
    "flowforge": "flowforge.core.dagfile.load_dag_file + flowforge.core.graph.topological_order",
    "pyyaml_c": "yaml.load(CSafeLoader) + graphlib.TopologicalSorter (no validation)",
}


def mib(kb: int | None) -> float | None:
    """KiB → MiB."""
    return None if kb is None else kb / 1024


def _flowforge(path: Path) -> Callable[[], int]:
    from flowforge.core.dagfile import load_dag_file
    from flowforge.core.graph import topological_order

    def run() -> int:
        return len(topological_order(load_dag_file(path)))

    return run


def _pyyaml_c(path: Path) -> Callable[[], int]:
    import graphlib

    import yaml

    def run() -> int:
        doc = yaml.load(path.read_text(encoding="utf-8"), Loader=yaml.CSafeLoader)
        graph = {t["id"]: t.get("depends_on") or [] for t in doc["tasks"]}
        return len(list(graphlib.TopologicalSorter(graph).static_order()))

    return run


def measure(method: str, path: Path, repeat: int) -> dict[str, Any]:
    """Run `method` on `path` `repeat` times in this process; times, RSS and tracemalloc peak."""
    run = {"flowforge": _flowforge, "pyyaml_c": _pyyaml_c}[method](path)
    before = memory_kb(os.getpid()).get("VmRSS")
    times, cpu = [], []
    for _ in range(repeat):
        started, cpu_started = time.perf_counter(), time.process_time()
        n = run()
        times.append(time.perf_counter() - started)
        cpu.append(time.process_time() - cpu_started)
    peak = memory_kb(os.getpid()).get("VmHWM")
    tracemalloc.start()
    run()
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "method": method,
        "what": METHODS[method],
        "tasks": n,
        "seconds": summary(times),
        "cpu_seconds": summary(cpu),  # steadier than wall time on a busy machine
        "rss_before_mib": mib(before),
        "peak_rss_mib": mib(peak),
        "rss_growth_mib": mib(peak - before) if peak and before else None,
        "tracemalloc_peak_mib": traced_peak / 2**20,
    }


def measure_in_subprocess(method: str, path: Path, repeat: int) -> dict[str, Any]:
    """`measure` in a fresh interpreter, so that peak memory is this method's alone."""
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.loadtime", method, str(path), "--repeat", str(repeat)],
        cwd=REPO_DIR,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"load benchmark {method} failed:\n{result.stderr[-2000:]}")
    return dict(json.loads(result.stdout))


def main(argv: list[str] | None = None) -> None:
    """Entry point of the subprocess: print one JSON result."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.loadtime")
    parser.add_argument("method", choices=sorted(METHODS))
    parser.add_argument("file", type=Path)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.method, args.file, args.repeat)))


if __name__ == "__main__":
    main()
