"""Chaos scenarios on `flowforge up` (SQLite, in-process queue): a crash mid-run, and task timeouts.

Each strikes once work is in flight (the seed is printed; CHAOS_SEED=N replays it), waits for the
run to end within a bound (I7), then checks the ledger against the store and the process table.
"""

from __future__ import annotations

import random
import sqlite3
import time

import pytest

from tests.chaos.cluster import ChaosCluster, Figures
from tests.chaos.ledger import layered_dag, ledger_line, make_dag, read_ledger, survivors, wait_no_survivors
from tests.chaos.steps import assert_every_fault_hit, first_claim_after, record_hits, verify, wait_in_flight

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(240)]


# -- R7 -------------------------------------------------------------------------------------------
def database_intact(c: ChaosCluster) -> None:
    """The SQLite file passes its integrity check and is still in WAL mode."""
    conn = sqlite3.connect(c.home / "flowforge.db")
    try:
        integrity = conn.execute("PRAGMA integrity_check").fetchall()
        journal = conn.execute("PRAGMA journal_mode").fetchone()[0]
    finally:
        conn.close()
    assert integrity == [("ok",)], integrity
    assert journal == "wal"


def test_r7_all_in_one_sigkill_and_restart(sqlite_cluster: ChaosCluster, seed: int, figures: Figures) -> None:
    """`flowforge up` on SQLite dies with its tasks mid-run; the database is intact and the run completes."""
    c, rng = sqlite_cluster, random.Random(seed)
    start = time.monotonic()
    c.start_up(concurrency=4)
    dag = layered_dag("crash", c.ledger, rng, layers=6, width=6, sleep=(0.3, 1.0))
    c.submit(dag.yaml)
    run_id = c.trigger(dag.dag_id)
    c.wait_progress([run_id], rng.uniform(0.3, 0.6), timeout=60)
    wait_in_flight(c)
    killed_at = time.time()
    killed = c.kill_tree("up")
    record_hits(figures, c, [killed_at])
    database_intact(c)

    restarted_at, restarted = time.time(), time.monotonic()
    c.start_up(concurrency=4)
    healthy = time.monotonic() - restarted
    first = first_claim_after(c, [run_id], restarted_at, timeout=60)
    c.wait_runs([run_id], timeout=90)
    figures.recovery = [first]
    verify(c, figures, {run_id: dag})
    figures.elapsed = time.monotonic() - start
    figures.notes.append(
        f"killed with {len(killed)} task process(es) running; integrity_check ok, WAL; restarted and "
        f"healthy in {healthy:.1f}s, first claim {first:.1f}s after the restart began, run ended "
        f"{time.monotonic() - restarted:.1f}s after it"
    )
    assert_every_fault_hit(figures)
    assert killed, "the crash found no task process of `up` to take down with it"


# -- R9 -------------------------------------------------------------------------------------------
def test_r9_timeout_kills_every_descendant(sqlite_cluster: ChaosCluster, seed: int, figures: Figures) -> None:
    """A timed-out task's background jobs, orphans and TERM-ignoring children all die with it."""
    c = sqlite_cluster
    start = time.monotonic()
    c.start_up(concurrency=2)
    tasks = [
        # two background sleeps: SIGTERM at 1 s ends the group
        {"id": "background", "command": f"{ledger_line('start')}; sleep 100 & sleep 100", "timeout_secs": 1},
        # ignores SIGTERM, and leaves a sleep reparented to init (a subshell that exits): SIGKILL after the grace
        {
            "id": "stubborn",
            "command": f'trap "" TERM; {ledger_line("start")}; (sleep 100 &); sleep 100 & sleep 100',
            "timeout_secs": 1,
        },
    ]
    dag = make_dag("timeouts", c.ledger, tasks, retries=0)
    c.submit(dag.yaml)
    run_id = c.trigger(dag.dag_id)
    seen = c.wait_for(
        "the tasks' processes", lambda: (n := len(survivors(c.ledger))) >= 7 and n, timeout=30, poll=0.05
    )
    run = c.wait_run(run_id, timeout=30)
    attempts = {t: c.get(f"/api/v1/runs/{run_id}/tasks/{t}")["attempts"] for t in dag.task_ids}
    left, _ = wait_no_survivors(c.ledger, timeout=2)
    # The figures, as measured: each timeout that fired is a fault; it hit when its task was running.
    started = {e.task_id for e in read_ledger(c.ledger) if e.kind == "start"}
    timed_out = [t for t, tries in attempts.items() if any("timed out" in (a["error"] or "") for a in tries)]
    figures.tasks, figures.runs = len(run["tasks"]), 1
    figures.runs_completed = int(run["state"] == "failed")  # failed by its timeouts, as it must
    figures.faults, figures.hits = len(timed_out), len(started & set(timed_out))
    figures.tasks_hit = seen
    durations = {t: tries[-1]["ended_at"] - tries[-1]["started_at"] for t, tries in attempts.items()}
    figures.elapsed = time.monotonic() - start
    figures.notes.append(
        f"{seen} task processes at the timeout, {len(left)} left; attempts ended after "
        + ", ".join(f"{k} {v:.1f}s" for k, v in durations.items())
        + " (timeout 1 s, kill grace 5 s)"
    )
    assert run["state"] == "failed"
    for tries in attempts.values():
        [attempt] = tries
        assert attempt["state"] == "failed" and "timed out" in attempt["error"], attempt
    assert_every_fault_hit(figures)
    assert figures.faults == len(tasks)
    assert not left, f"{len(left)} descendant(s) of timed-out tasks survived: {left}"
    assert durations["background"] < 1 + 2.0, durations  # SIGTERM at the timeout
    assert durations["stubborn"] < 1 + 5 + 2.0, durations  # SIGKILL after the 5 s kill grace
