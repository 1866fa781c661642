"""How fast the CLI starts: `flowforge --version`, `--help`, `dags` and `validate` against `python -c pass`.

Each command is a fresh `python -m flowforge ...` process from the checkout measured, with its
output to a pipe (as in a script or CI: plain text, no Rich), timed from start to exit. The
commands are interleaved, so that a slower moment of the machine falls on all of them alike; a
figure is the median of the runs, and its goal a ratio to `python -c pass` measured the same
way on the same machine. `dags` lists one DAG of a running `flowforge up`; `validate` reads a
10-task file.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks import REPO_DIR
from benchmarks.meta import finish, meta
from benchmarks.stats import summary
from tests.harness import FlowForgeProcess, clean_env, free_port

# Each goal is a ratio to `python -c pass`: a figure to read, never an assertion.
GOALS = {"version": 3.0, "help": 3.0, "dags": 6.0, "validate": 8.0}
WHAT = {
    "python": "python -c pass",
    "version": "flowforge --version",
    "help": "flowforge --help",
    "dags": "flowforge dags (against a running up)",
    "validate": "flowforge validate (10 tasks)",
}


def ten_tasks() -> str:
    """A DAG file of ten tasks in a chain, with a schedule and params."""
    lines = ["id: ten", 'schedule: "@daily"', "params: {day: today}", "tasks:"]
    for i in range(10):
        after = f", depends_on: [t{i - 1}]" if i else ""
        lines.append(f"  - {{id: t{i}, command: 'echo {i} $FLOWFORGE_PARAM_DAY'{after}}}")
    return "\n".join(lines) + "\n"


def _timed(argv: list[str], repo: Path) -> float:
    env = clean_env()
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=repo, env=env, capture_output=True, check=False)
    took = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[1:])} exited {done.returncode}: {done.stderr.decode()[-500:]}")
    return took


def measure(commands: dict[str, list[str]], runs: int, repo: Path) -> dict[str, list[float]]:
    """Seconds of each command, `runs` rounds, the commands interleaved within each round."""
    samples: dict[str, list[float]] = {name: [] for name in commands}
    for argv in commands.values():  # a warm-up round: files into the page cache, .pyc written
        _timed(argv, repo)
    for _ in range(runs):
        for name, argv in commands.items():
            samples[name].append(_timed(argv, repo))
    return samples


def run_cli_startup(
    folder: Path, runs: int = 7, *, progress: Any = print, repo: Path = REPO_DIR
) -> dict[str, Any]:
    """The `cli` section: medians and ratios to `python -c pass`, with the machine's load."""
    runs = max(runs, 5)
    section: dict[str, Any] = {"meta": meta(repo, runs=runs, stdout="pipe"), "commands": {}}
    folder.mkdir(parents=True, exist_ok=True)
    dag = folder / "ten.yaml"
    dag.write_text(ten_tasks(), encoding="utf-8")
    port = free_port()
    progress("starting flowforge up for the CLI start-up figures")
    up = FlowForgeProcess(
        ["up", "--port", str(port), "--home", str(folder / "home")],
        name="up",
        port=port,
        log_path=folder / "up.log",
        repo=repo,
    )
    try:
        up.wait_healthy()
        flowforge = [sys.executable, "-m", "flowforge"]
        _timed([*flowforge, "--api-url", up.url, "submit", str(dag)], repo)
        commands = {
            "python": [sys.executable, "-c", "pass"],
            "version": [*flowforge, "--version"],
            "help": [*flowforge, "--help"],
            "dags": [*flowforge, "--api-url", up.url, "dags"],
            "validate": [*flowforge, "validate", str(dag)],
        }
        progress(f"timing {len(commands)} commands, {runs} interleaved rounds")
        samples = measure(commands, runs, repo)
    finally:
        up.stop()
    base = summary(samples["python"])["median"]
    for name, values in samples.items():
        stats = summary(values)
        section["commands"][name] = {
            "what": WHAT[name],
            "seconds": stats,
            "ratio": stats["median"] / base if base else None,
            "goal": GOALS.get(name),
        }
    finish(section["meta"])
    return section
