"""The chaos test task, its ledger, and the invariant checker (I1-I7, see the README's Reliability section).

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
import sqlite3
import time
from collections import defaultdict
from collections.abc import Callable
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
        return yaml.safe_dump(self.spec, sort_keys=False, width=1000)

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
    entries = []
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


# -- the store, read directly (lease tokens are never shown by the API) --------------------------
def store_rows(
    db_url: str, run_id: str
) -> tuple[dict[str, tuple[str, int, str | None]], dict[tuple[str, int], tuple[str, str | None, bool]]]:
    """(task_id → (state, attempt, lease_token), (task_id, attempt) → (state, lease_token, cleared))."""
    ti_sql = "SELECT task_id, state, attempt, lease_token FROM task_instances WHERE run_id = {p}"
    at_sql = "SELECT task_id, attempt, state, lease_token, cleared FROM attempts WHERE run_id = {p}"
    if db_url.startswith("sqlite:///"):
        conn = sqlite3.connect(f"file:{db_url.removeprefix('sqlite:///')}?mode=ro", uri=True, timeout=10)
        try:
            tis = conn.execute(ti_sql.format(p="?"), (run_id,)).fetchall()
            attempts = conn.execute(at_sql.format(p="?"), (run_id,)).fetchall()
        finally:
            conn.close()
    else:
        import psycopg

        with psycopg.connect(db_url, connect_timeout=10) as conn:
            tis = conn.execute(ti_sql.format(p="%s"), (run_id,)).fetchall()
            attempts = conn.execute(at_sql.format(p="%s"), (run_id,)).fetchall()
    return (
        {t: (s, a, tok) for t, s, a, tok in tis},
        {(t, a): (s, tok, bool(c)) for t, a, s, tok, c in attempts},
    )


# -- the invariants ------------------------------------------------------------------------------
@dataclass
class Verdict:
    """What the checker found over some runs: figures, and every invariant violation."""

    runs: int = 0
    runs_succeeded: int = 0
    tasks: int = 0
    attempts: int = 0
    lost_attempts: int = 0
    failed_attempts: int = 0
    executions: int = 0  # task processes started (ledger `start` lines)
    re_executions: int = 0  # executions beyond one per task: at-least-once at work
    uncommitted_ends: int = 0  # executions that ran to the end but whose result was not the recorded one
    double_successes: int = 0
    losses: int = 0
    violations: list[str] = field(default_factory=list)

    def fail(self, invariant: str, message: str) -> None:
        self.violations.append(f"{invariant}: {message}")

    def assert_ok(self) -> None:
        """Raise with the first violations, if any."""
        if self.violations:
            shown = "\n  ".join(self.violations[:30])
            more = f"\n  … and {len(self.violations) - 30} more" if len(self.violations) > 30 else ""
            raise AssertionError(f"{len(self.violations)} invariant violation(s):\n  {shown}{more}")

    def figures(self) -> dict[str, int]:
        return {k: v for k, v in vars(self).items() if k != "violations"}


def check_runs(
    get: Callable[[str], Any], db_url: str, runs: dict[str, Dag], ledger: Path, *, flaky_ok: bool = True
) -> Verdict:
    """Check I1-I5 for `runs` (run_id → its Dag), all expected to succeed. I6/I7 are the caller's.

    - I1 no loss: the run and every task succeeded, with exactly one `success` attempt.
    - I2 no double success: never two `success` attempts, in the API nor in the database; in
      the ledger exactly one `end` line carries the recorded attempt's lease token.
    - I3 no stale overwrite: the recorded success is the attempt whose token the task instance
      holds, and a ledger `end` line of that same attempt number carries it; every execution in
      the ledger ran under the token its attempt was claimed with (no execution without a claim).
    - I4 ordering: a child's first start (ledger and store) is not before its parents' recorded end.
    - I5 numbering: attempts are 1..k without gaps; all but the last ended lost or failed.
    """
    v = Verdict()
    entries = read_ledger(ledger)
    by_task: dict[tuple[str, str], list[Entry]] = defaultdict(list)
    for e in entries:
        by_task[(e.run_id, e.task_id)].append(e)
    for run_id, dag in runs.items():
        v.runs += 1
        run = get(f"/api/v1/runs/{run_id}")
        if run["state"] == "success":
            v.runs_succeeded += 1
        else:
            v.fail("I1", f"run {run_id} ended {run['state']}, not success")
        tis, attempt_rows = store_rows(db_url, run_id)
        success_end: dict[str, float] = {}  # task → ledger time of its recorded execution's end
        success_at: dict[str, float] = {}  # task → store time its success was recorded
        first_start: dict[str, float] = {}
        first_claim: dict[str, float] = {}
        for task_id in dag.task_ids:
            v.tasks += 1
            where = f"{run_id}/{task_id}"
            attempts = get(f"/api/v1/runs/{run_id}/tasks/{task_id}")["attempts"]
            live = [
                a for a in attempts if not attempt_rows.get((task_id, a["attempt"]), ("", None, False))[2]
            ]
            v.attempts += len(attempts)
            states = [a["state"] for a in live]
            v.lost_attempts += states.count("lost")
            v.failed_attempts += states.count("failed")
            successes = [a for a in live if a["state"] == "success"]
            db_successes = [
                k
                for k, (s, _, cleared) in attempt_rows.items()
                if k[0] == task_id and s == "success" and not cleared
            ]
            # I5
            numbers = [a["attempt"] for a in attempts]
            if numbers != list(range(1, len(numbers) + 1)):
                v.fail("I5", f"{where} attempt numbers {numbers} are not 1..k")
            if any(s not in ("lost", "failed") for s in states[:-1]):
                v.fail("I5", f"{where} earlier attempts ended {states[:-1]}, not lost/failed")
            if not flaky_ok and "failed" in states:
                v.fail("I5", f"{where} has failed attempts {states}")
            # I1, I2
            if len(successes) > 1 or len(db_successes) > 1:
                v.double_successes += 1
                v.fail("I2", f"{where} has {len(successes)} success attempts: {states}")
            if not successes or tis.get(task_id, ("",))[0] != "success" or states[-1:] != ["success"]:
                v.losses += 1
                v.fail("I1", f"{where} has no recorded success: attempts {states}, task {tis.get(task_id)}")
                continue
            success = successes[0]
            n = success["attempt"]
            token = tis[task_id][2]
            db_state, db_token, _ = attempt_rows.get((task_id, n), ("", None, False))
            # I3
            mine = by_task[(run_id, task_id)]
            if not token or db_state != "success" or db_token != token or tis[task_id][1] != n:
                v.fail("I3", f"{where} recorded success (attempt {n}) is not under the task's lease token")
            committed = [e for e in mine if e.kind == "end" and e.token == token]
            if len(committed) != 1 or committed[0].attempt != n:
                v.fail(
                    "I2" if len(committed) > 1 else "I3",
                    f"{where}: {len(committed)} ledger end line(s) carry the recorded token (attempt {n})",
                )
            else:
                success_end[task_id] = committed[0].at
            success_at[task_id] = success["ended_at"]
            for e in mine:
                claimed = attempt_rows.get((task_id, e.attempt))
                if claimed is None or claimed[1] != e.token:
                    v.fail(
                        "I3",
                        f"{where} attempt {e.attempt} ran (pid {e.pid}) under a token it was not claimed with",
                    )
            starts = [e for e in mine if e.kind == "start"]
            v.executions += len(starts)
            v.re_executions += max(0, len(starts) - 1)
            v.uncommitted_ends += sum(e.kind == "end" and e.token != token for e in mine)
            if starts:
                first_start[task_id] = min(e.at for e in starts)
            claims = [a["started_at"] for a in attempts if a["started_at"] is not None]
            if claims:
                first_claim[task_id] = min(claims)
        # I4
        for parent, child in dag.edges:
            if parent in success_end and child in first_start and first_start[child] < success_end[parent]:
                v.fail(
                    "I4",
                    f"{run_id}: {child} started {success_end[parent] - first_start[child]:.3f}s "
                    f"before {parent} ended",
                )
            if parent in success_at and child in first_claim and first_claim[child] < success_at[parent]:
                v.fail("I4", f"{run_id}: {child} was claimed before {parent}'s success was recorded")
    return v
