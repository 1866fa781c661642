"""The workloads (W1–W4) and the Makefile equivalent to a DAG."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from benchmarks import WORKLOADS_DIR
from flowforge.core.dagfile import load_dag_file
from flowforge.core.model import DagSpec

# W1–W3 are run; W4 (5,000 tasks) is only loaded and validated.
RUN_WORKLOADS = ("W1", "W2", "W3")
LOAD_WORKLOADS = ("W4",)
ALL_WORKLOADS = RUN_WORKLOADS + LOAD_WORKLOADS


@dataclass(frozen=True)
class Workload:
    """One DAG file of the suite, parsed."""

    name: str
    path: Path
    spec: DagSpec

    @property
    def yaml(self) -> str:
        """The file's text, as submitted to the API."""
        return self.path.read_text(encoding="utf-8")

    @property
    def tasks(self) -> int:
        """Number of tasks."""
        return len(self.spec.tasks)

    @property
    def edges(self) -> int:
        """Number of dependencies."""
        return sum(len(t.depends_on) for t in self.spec.tasks)

    @property
    def description(self) -> str:
        """The DAG's own description, e.g. "200 independent tasks"."""
        return self.spec.description


def workload_path(name: str, folder: Path = WORKLOADS_DIR) -> Path:
    """The file of workload `name` (e.g. W1)."""
    return folder / f"{name}.yaml"


def load_workload(name: str, folder: Path = WORKLOADS_DIR) -> Workload:
    """Parse and validate one workload file."""
    path = workload_path(name, folder)
    return Workload(name=name, path=path, spec=load_dag_file(path))


def parse_names(text: str) -> list[str]:
    """`W1,W3` → ["W1", "W3"]; ValueError naming an unknown workload."""
    names = [n.strip().upper() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in ALL_WORKLOADS]
    if unknown:
        raise ValueError(f"unknown workload(s) {', '.join(unknown)}; choose from {', '.join(ALL_WORKLOADS)}")
    return names


def makefile(spec: DagSpec, recipe: str = "sh -c true") -> str:
    """A Makefile with one phony target per task, the DAG's dependencies as prerequisites.

    `all` depends on every task, so `make -j2 all` runs the whole DAG two at a time; `sh -c true`
    makes make start a shell per task just as a scheduler would.
    """
    targets = [t.id for t in spec.tasks]
    lines = [".PHONY: all " + " ".join(targets), "all: " + " ".join(targets), ""]
    for task in spec.tasks:
        lines.append(f"{task.id}: {' '.join(task.depends_on)}".rstrip())
        lines.append(f"\t@{recipe}")
    return "\n".join(lines) + "\n"
