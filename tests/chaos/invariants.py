"""The chaos suite's invariant checker: I1-I5 from the task ledger, the API and the database itself.

The README's Reliability section states the invariants. The API shows runs, tasks and attempts;
lease tokens it never shows, so those are read from the database directly (`query`).
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.chaos.ledger import Dag, Entry, read_ledger

AttemptRows = dict[tuple[str, int], tuple[str, str | None, bool]]  # (task, attempt) → (state, token, cleared)
TaskRows = dict[str, tuple[str, int, str | None]]  # task → (state, attempt, lease token)


# -- the store, read directly ---------------------------------------------------------------------
def query(db_url: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Rows of `sql` (`{p}` marks each parameter), read straight from the database: a SQLite file
    (read-only) or PostgreSQL."""
    if db_url.startswith("sqlite:///"):
        conn = sqlite3.connect(f"file:{db_url.removeprefix('sqlite:///')}?mode=ro", uri=True, timeout=10)
        try:
            return conn.execute(sql.format(p="?"), params).fetchall()
        finally:
            conn.close()
    import psycopg

    with psycopg.connect(db_url, connect_timeout=10) as pg:
        return pg.execute(sql.format(p="%s"), params).fetchall()


def store_rows(db_url: str, run_id: str) -> tuple[TaskRows, AttemptRows]:
    """(task_id → (state, attempt, lease_token), (task_id, attempt) → (state, lease_token, cleared))."""
    tis = query(
        db_url,
        "SELECT task_id, state, attempt, lease_token FROM task_instances WHERE run_id = {p}",
        (run_id,),
    )
    attempts = query(
        db_url,
        "SELECT task_id, attempt, state, lease_token, cleared FROM attempts WHERE run_id = {p}",
        (run_id,),
    )
    return (
        {t: (s, a, tok) for t, s, a, tok in tis},
        {(t, a): (s, tok, bool(c)) for t, a, s, tok, c in attempts},
    )


# -- the verdict ----------------------------------------------------------------------------------
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


@dataclass
class Task:
    """One task of a run as every source shows it: the API's attempts, the database rows, the ledger."""

    run_id: str
    task_id: str
    attempts: list[dict[str, Any]]  # from the API
    row: tuple[str, int, str | None] | None  # its task instance in the database
    attempt_rows: AttemptRows  # the run's attempts in the database
    entries: list[Entry]  # its ledger lines

    @property
    def where(self) -> str:
        return f"{self.run_id}/{self.task_id}"

    def live(self) -> list[dict[str, Any]]:
        """The attempts not cleared by a retry of the run."""
        return [
            a
            for a in self.attempts
            if not self.attempt_rows.get((self.task_id, a["attempt"]), ("", None, False))[2]
        ]


@dataclass
class Times:
    """Per task of one run, the moments I4 compares."""

    success_end: dict[str, float] = field(default_factory=dict)  # ledger: its recorded execution ended
    success_at: dict[str, float] = field(default_factory=dict)  # store: its success was recorded
    first_start: dict[str, float] = field(default_factory=dict)  # ledger: its first execution started
    first_claim: dict[str, float] = field(default_factory=dict)  # store: its first attempt was claimed


# -- the invariants -------------------------------------------------------------------------------
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
    by_task: dict[tuple[str, str], list[Entry]] = defaultdict(list)
    for e in read_ledger(ledger):
        by_task[(e.run_id, e.task_id)].append(e)
    for run_id, dag in runs.items():
        v.runs += 1
        run = get(f"/api/v1/runs/{run_id}")
        if run["state"] == "success":
            v.runs_succeeded += 1
        else:
            v.fail("I1", f"run {run_id} ended {run['state']}, not success")
        tis, attempt_rows = store_rows(db_url, run_id)
        times = Times()
        for task_id in dag.task_ids:
            attempts = get(f"/api/v1/runs/{run_id}/tasks/{task_id}")["attempts"]
            task = Task(run_id, task_id, attempts, tis.get(task_id), attempt_rows, by_task[(run_id, task_id)])
            check_task(v, task, times, flaky_ok=flaky_ok)
        check_order(v, run_id, dag, times)
    return v


def check_task(v: Verdict, task: Task, times: Times, *, flaky_ok: bool) -> None:
    """I1, I2 and I5 for one task; then, when it succeeded, I3 and its moments for I4."""
    live = task.live()
    states = [a["state"] for a in live]
    v.tasks += 1
    v.attempts += len(task.attempts)
    v.lost_attempts += states.count("lost")
    v.failed_attempts += states.count("failed")
    numbers = [a["attempt"] for a in task.attempts]
    if numbers != list(range(1, len(numbers) + 1)):
        v.fail("I5", f"{task.where} attempt numbers {numbers} are not 1..k")
    if any(s not in ("lost", "failed") for s in states[:-1]):
        v.fail("I5", f"{task.where} earlier attempts ended {states[:-1]}, not lost/failed")
    if not flaky_ok and "failed" in states:
        v.fail("I5", f"{task.where} has failed attempts {states}")
    successes = [a for a in live if a["state"] == "success"]
    db_successes = [
        k
        for k, (s, _, cleared) in task.attempt_rows.items()
        if k[0] == task.task_id and s == "success" and not cleared
    ]
    if len(successes) > 1 or len(db_successes) > 1:
        v.double_successes += 1
        v.fail("I2", f"{task.where} has {len(successes)} success attempts: {states}")
    if not successes or task.row is None or task.row[0] != "success" or states[-1:] != ["success"]:
        v.losses += 1
        v.fail("I1", f"{task.where} has no recorded success: attempts {states}, task {task.row}")
        return
    check_tokens(v, task, successes[0], times)
    starts = [e for e in task.entries if e.kind == "start"]
    v.executions += len(starts)
    v.re_executions += max(0, len(starts) - 1)
    v.uncommitted_ends += sum(e.kind == "end" and e.token != task.row[2] for e in task.entries)
    if starts:
        times.first_start[task.task_id] = min(e.at for e in starts)
    claims = [a["started_at"] for a in task.attempts if a["started_at"] is not None]
    if claims:
        times.first_claim[task.task_id] = min(claims)


def check_tokens(v: Verdict, task: Task, success: dict[str, Any], times: Times) -> None:
    """I3 (and I2 in the ledger) for a task whose success is recorded."""
    assert task.row is not None
    n, token = success["attempt"], task.row[2]
    db_state, db_token, _ = task.attempt_rows.get((task.task_id, n), ("", None, False))
    if not token or db_state != "success" or db_token != token or task.row[1] != n:
        v.fail("I3", f"{task.where} recorded success (attempt {n}) is not under the task's lease token")
    committed = [e for e in task.entries if e.kind == "end" and e.token == token]
    if len(committed) != 1 or committed[0].attempt != n:
        v.fail(
            "I2" if len(committed) > 1 else "I3",
            f"{task.where}: {len(committed)} ledger end line(s) carry the recorded token (attempt {n})",
        )
    else:
        times.success_end[task.task_id] = committed[0].at
    times.success_at[task.task_id] = success["ended_at"]
    for e in task.entries:
        claimed = task.attempt_rows.get((task.task_id, e.attempt))
        if claimed is None or claimed[1] != e.token:
            v.fail(
                "I3",
                f"{task.where} attempt {e.attempt} ran (pid {e.pid}) under a token it was not claimed with",
            )


def check_order(v: Verdict, run_id: str, dag: Dag, times: Times) -> None:
    """I4: no child started (ledger) or was claimed (store) before its parent's recorded end."""
    for parent, child in dag.edges:
        end, start = times.success_end.get(parent), times.first_start.get(child)
        if end is not None and start is not None and start < end:
            v.fail("I4", f"{run_id}: {child} started {end - start:.3f}s before {parent} ended")
        recorded, claimed = times.success_at.get(parent), times.first_claim.get(child)
        if recorded is not None and claimed is not None and claimed < recorded:
            v.fail("I4", f"{run_id}: {child} was claimed before {parent}'s success was recorded")
