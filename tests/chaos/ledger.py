"""The chaos test task and its ledger; the invariant checker is `tests.chaos.invariants`.

A test task is a shell command that appends one line to an append-only ledger file when it
starts and one when it ends (each line a single `echo … >>`: one O_APPEND write, so lines from
concurrent tasks never interleave):

    start RUN_ID TASK_ID ATTEMPT LEASE_TOKEN PID EPOCH_SECONDS
    end   RUN_ID TASK_ID ATTEMPT LEASE_TOKEN PID EPOCH_SECONDS
    fail  …                                   (a flaky task failing on purpose)

PID is the task's shell, the leader of its process group. After a scenario the checker
compares the ledger with the store: the API for runs, tasks and attempts, and the database
itself for the lease tokens (the API never shows a token).
"""

from __future__ import annotations

import os
import random
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

LEDGER_VAR = "CHAOS_LEDGER"  # the DAG's env names the ledger file; the task appends to it
_FIELDS = (
    "$FLOWFORGE_RUN_ID $FLOWFORGE_TASK_ID $FLOWFORGE_ATTEMPT ${FLOWFORGE_LEASE_TOKEN:--} $$ $(date +%s.%N)"
)
TERMINAL_RUN_STATES = ("success", "failed", "cancelled")


# -- the task ------------------------------------------------------------------------------------
def ledger_line(kind: str) -> str:
    """A shell command appending one `kind` line for the running attempt to the ledger."""
    return f'echo "{kind} {_FIELDS}" >>"${LEDGER_VAR}"'


def task_command(sleep: float, *, retry_sleep: float | None = None, fail_attempts: int = 0) -> str:
    """A shell command that writes `start`, sleeps, and writes `end` to the ledger.

    `retry_sleep`: how long attempts after the first sleep instead. `fail_attempts`: the first
    this many attempts write `fail` and exit 3 (a flaky task).
    """
    parts = [ledger_line("start")]
    if fail_attempts:
        parts.append(
            f'if [ "$FLOWFORGE_ATTEMPT" -le {fail_attempts} ]; then {ledger_line("fail")}; exit 3; fi'
        )
    if retry_sleep is None:
        parts.append(f"sleep {sleep:.2f}")
    else:
        parts.append(
            f'if [ "$FLOWFORGE_ATTEMPT" -gt 1 ]; then sleep {retry_sleep:.2f}; else sleep {sleep:.2f}; fi'
        )
    parts.append(ledger_line("end"))
    return "; ".join(parts)


@dataclass
class Dag:
    """A DAG of test tasks: its YAML text and its edges (parent, child)."""

    dag_id: str
    spec: dict[str, Any]
    edges: list[tuple[str, str]] = field(default_factory=list)

    @property
    def yaml(self) -> str:
        return str(yaml.safe_dump(self.spec, sort_keys=False, width=1000))

    @property
    def task_ids(self) -> list[str]:
        return [t["id"] for t in self.spec["tasks"]]


def make_dag(
    dag_id: str, ledger: Path, tasks: list[dict[str, Any]], *, retries: int = 10, retry_delay: float = 0.05
) -> Dag:
    """A DAG of `tasks` (dicts with id, command, depends_on, …) writing to `ledger`."""
    spec = {
        "id": dag_id,
        "default_retries": retries,
        "retry_delay_secs": retry_delay,
        "max_retry_delay_secs": 0.5,
        "max_active_tasks": 256,
        "env": {LEDGER_VAR: str(ledger)},
        "tasks": tasks,
    }
    edges = [(parent, t["id"]) for t in tasks for parent in t.get("depends_on", [])]
    return Dag(dag_id, spec, edges)


def layered_dag(
    dag_id: str,
    ledger: Path,
    rng: random.Random,
    *,
    layers: int,
    width: int,
    sleep: tuple[float, float] = (0.3, 1.2),
    flaky: int = 0,
    retries: int = 10,
) -> Dag:
    """`layers` × `width` test tasks, each depending on two of the layer above, and a final join of
    the last layer (fan-out, chains and fan-in); `flaky` randomly chosen tasks fail their first attempt."""
    ids = [[f"l{layer}t{i}" for i in range(width)] for layer in range(layers)]
    flaky_ids = set(rng.sample([t for row in ids for t in row], flaky)) if flaky else set()
    tasks: list[dict[str, Any]] = []
    for layer, row in enumerate(ids):
        for i, task_id in enumerate(row):
            task: dict[str, Any] = {
                "id": task_id,
                "command": task_command(rng.uniform(*sleep), fail_attempts=1 if task_id in flaky_ids else 0),
            }
            if layer:
                task["depends_on"] = sorted({ids[layer - 1][i], ids[layer - 1][(i + 1) % width]})
            tasks.append(task)
    tasks.append({"id": "join", "command": task_command(0.05), "depends_on": ids[-1]})
    return make_dag(dag_id, ledger, tasks, retries=retries)


# -- the ledger ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Entry:
    """One ledger line."""

    kind: str  # start | end | fail
    run_id: str
    task_id: str
    attempt: int
    token: str
    pid: int
    at: float


def read_ledger(path: Path) -> list[Entry]:
    """Every well-formed line of the ledger (none when it does not exist yet)."""
    entries: list[Entry] = []
    if not path.exists():
        return entries
    for line in path.read_text(errors="replace").splitlines():
        parts = line.split()
        if len(parts) != 7 or parts[0] not in ("start", "end", "fail"):
            continue
        try:
            entries.append(
                Entry(parts[0], parts[1], parts[2], int(parts[3]), parts[4], int(parts[5]), float(parts[6]))
            )
        except ValueError:
            continue
    return entries


def running_at(entries: list[Entry], at: float) -> list[Entry]:
    """The executions that had started and not yet ended at epoch `at` (their `start` lines)."""
    ended = {e.pid: e.at for e in entries if e.kind in ("end", "fail")}
    return [e for e in entries if e.kind == "start" and e.at <= at and ended.get(e.pid, float("inf")) > at]


# -- processes -----------------------------------------------------------------------------------
def survivors(ledger: Path) -> list[int]:
    """Live processes started by a test task of this ledger (their environment names it): I6."""
    marker = f"{LEDGER_VAR}={ledger}".encode()
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            env = Path(entry.path, "environ").read_bytes()
        except OSError:
            continue
        if marker in env.split(b"\0"):
            found.append(int(entry.name))
    return found


def wait_no_survivors(ledger: Path, timeout: float) -> tuple[list[int], float]:
    """Wait until no task process of `ledger` is left; (those left at `timeout`, seconds waited)."""
    start = time.monotonic()
    while (left := survivors(ledger)) and time.monotonic() - start < timeout:
        time.sleep(0.1)
    return left, time.monotonic() - start


def kill_survivors(ledger: Path) -> int:
    """SIGKILL every task process of `ledger` still alive (clean-up); returns how many."""
    pids = survivors(ledger)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return len(pids)
