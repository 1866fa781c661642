"""R1 at scale: eight workers of four slots under a SIGKILL storm, a wide DAG, and a scheduler kill.

`api`, one `scheduler` and eight `worker --concurrency 4` on PostgreSQL + Redis (skipped unless
FLOWFORGE_TEST_PG and FLOWFORGE_TEST_REDIS are set). Runs of a DAG of 2,001 test tasks in
layers, each task depending on two of the layer above (chains and fan-in) and a final join of the
last layer, each sleeping 0-200 ms (another run starts whenever the last one ended, so that work
is in flight throughout). Every 2 s for STORM_SECS a random worker dies with its tasks (SIGKILL
of the tree) and comes back half a second to a second later; once, early in the storm, the
scheduler is SIGKILLed and started again 2 s later. Every run must end within DRAIN_SECS of the
storm (I7), and I1-I6 hold: nothing lost, nothing recorded twice, nothing started before its
parents ended.
"""

from __future__ import annotations

import random
import time

import pytest

from tests.chaos.cluster import ChaosCluster, Figures
from tests.chaos.ledger import TERMINAL_RUN_STATES, Dag, layered_dag, read_ledger
from tests.chaos.steps import verify
from tests.harness import children

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(300)]

WORKERS = [f"worker{i}" for i in range(1, 9)]
SLOTS = 4
LAYERS, WIDTH = 20, 100  # 2,001 tasks with the join
STORM_SECS = 60.0
KILL_EVERY_SECS = 2.0
SCHEDULER_KILL_AT = 10.0  # seconds into the storm
DRAIN_SECS = 90.0  # I7: every run ends within this once the storm is over


Kill = tuple[float, list[int]]  # (epoch, the task pids the killed worker was running)


def kill_worker(c: ChaosCluster, rng: random.Random) -> Kill:
    """SIGKILL a random worker (a busy one when there is one) with its tasks; restart it. (epoch, task pids)."""
    busy = [n for n in WORKERS if c.procs[n].running() and children(c.procs[n].pid)]
    victim = rng.choice(busy or WORKERS)
    at = time.time()
    pids = c.kill_tree(victim)
    time.sleep(rng.uniform(0.5, 1.0))
    c.start_worker(victim, SLOTS)
    return at, pids


def storm(c: ChaosCluster, rng: random.Random, runs: dict[str, Dag], dag: Dag) -> tuple[list[Kill], float]:
    """Every KILL_EVERY_SECS for STORM_SECS a worker dies and comes back; the scheduler dies once.

    A new run starts whenever the last one ended, so that work is in flight for the whole storm.
    Returns the worker kills and how far into the storm the scheduler was killed.
    """
    kills: list[Kill] = []
    scheduler_killed = 0.0
    began = time.monotonic()
    while (into := time.monotonic() - began) < STORM_SECS:
        next_kill = time.monotonic() + KILL_EVERY_SECS
        if not scheduler_killed and into >= SCHEDULER_KILL_AT:
            scheduler_killed = into
            c.kill_tree("scheduler")
            time.sleep(2.0)
            c.start_scheduler()
        kills.append(kill_worker(c, rng))
        if all(c.get(f"/api/v1/runs/{r}")["state"] in TERMINAL_RUN_STATES for r in runs):
            runs[c.trigger(dag.dag_id)] = dag
        time.sleep(max(0.0, next_kill - time.monotonic()))
    return kills, scheduler_killed


def test_many_workers_under_a_sigkill_storm(pg_cluster: ChaosCluster, seed: int, figures: Figures) -> None:
    """Eight workers x four slots; every 2 s for 60 s one dies with its tasks; the scheduler dies once."""
    c, rng = pg_cluster, random.Random(seed)
    start = time.monotonic()
    c.start_api()
    c.start_scheduler()
    for name in WORKERS:
        c.start_worker(name, SLOTS)
    c.wait_workers(WORKERS, timeout=90)
    dag = layered_dag("wide", c.ledger, rng, layers=LAYERS, width=WIDTH, sleep=(0.0, 0.2))
    c.submit(dag.yaml)
    runs = {c.trigger(dag.dag_id): dag}
    triggered = time.monotonic()
    kills, scheduler_killed = storm(c, rng, runs, dag)
    drain = c.wait_runs(list(runs), timeout=DRAIN_SECS)
    ran_for = time.monotonic() - triggered
    figures.faults = len(kills) + 1
    figures.hits = sum(1 for _, pids in kills if pids)
    figures.tasks_hit = sum(len(pids) for _, pids in kills)
    checking = time.monotonic()
    verify(c, figures, runs)
    starts = [e.at for e in read_ledger(c.ledger) if e.kind == "start"]
    figures.elapsed = time.monotonic() - start
    figures.notes.append(
        f"{len(WORKERS)} workers x {SLOTS} slots, {len(runs)} run(s) of {len(dag.task_ids)} tasks of 0-200 ms; "
        f"{len(kills)} worker kills over {STORM_SECS:.0f}s ({figures.hits} on running tasks), the scheduler "
        f"killed {scheduler_killed:.0f}s in; runs ended {drain:.1f}s after the storm, {ran_for:.0f}s after the "
        f"first trigger ({len(starts)} executions, {len(starts) / max(ran_for, 1):.1f}/s); "
        f"checked in {time.monotonic() - checking:.0f}s"
    )
    assert figures.hits >= 10, (
        f"only {figures.hits} of {len(kills)} kills landed on running tasks (seed {seed})"
    )
    assert figures.lost_attempts >= figures.hits
