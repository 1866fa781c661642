"""FlowForge's benchmark suite: GNU make as the floor, FlowForge all-in-one and distributed on top.

`python -m benchmarks --help` lists the options. Timings are figures to read, never assertions.
"""

from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
WORKLOADS_DIR = BENCH_DIR / "workloads"
RESULTS_DIR = BENCH_DIR / "results"
REPO_DIR = BENCH_DIR.parent
