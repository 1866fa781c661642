"""Chaos scenarios that strike workers: SIGKILL storms, a frozen worker, a cut-off worker, a graceful stop.

Each starts `api`, `scheduler` and workers on PostgreSQL + Redis (skipped unless FLOWFORGE_TEST_PG
and FLOWFORGE_TEST_REDIS are set), once with direct workers (the store and the queue) and once
with API-mode workers (`worker --api-url`, holding only the worker token), injects its faults on a seeded schedule (the seed is printed;
CHAOS_SEED=N replays it) once work is in flight, waits for every run to end within a bound (I7),
then compares the task ledger with the store (I1-I5) and looks for task processes left behind (I6).
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import pytest

from tests.chaos.cluster import HEARTBEAT_SECS, LEASE_SECS, WORKER_MODES, ChaosCluster, Figures
from tests.chaos.invariants import Verdict
from tests.chaos.ledger import (
    TERMINAL_RUN_STATES,
    Dag,
    layered_dag,
    make_dag,
    read_ledger,
    task_command,
)
from tests.chaos.steps import (
    TICK_SECS,
    assert_every_fault_hit,
    first_attempts,
    holds_nothing,
    long_pair_dag,
    record_hits,
    refusals,
    relay,
    verify,
)
from tests.harness import children, pid_alive

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(240)]

Kill = tuple[float, str, list[int]]  # (epoch, victim, task pids it was running)


# -- R1 -------------------------------------------------------------------------------------------
STORM_SECS = 18.0


def storm(
    c: ChaosCluster, rng: random.Random, names: list[str], runs: dict[str, Dag], dag: Dag
) -> list[Kill]:
    """Every 1-2 s (seeded) one worker running tasks dies with its tasks and comes back; runs keep coming."""
    kills: list[Kill] = []
    storm_end = time.monotonic() + STORM_SECS
    while time.monotonic() < storm_end:
        time.sleep(rng.uniform(1.0, 2.0))  # the storm's schedule
        busy = c.wait_for(
            "a worker running tasks",
            lambda: [n for n in names if children(c.procs[n].pid)],
            timeout=20,
            poll=0.02,
        )
        victim = rng.choice(busy)
        at = time.time()
        kills.append((at, victim, c.kill_tree(victim)))
        time.sleep(rng.uniform(0.2, 0.8))  # down for a while, then back
        c.start_worker(victim, 3)
        # Keep work in flight for the whole storm.
        if all(c.get(f"/api/v1/runs/{r}")["state"] in TERMINAL_RUN_STATES for r in runs):
            runs[c.trigger(dag.dag_id)] = dag
    return kills


def killed_attempts_lost(c: ChaosCluster, kills: list[Kill], figures: Figures) -> Verdict:
    """Every killed execution's attempt ended lost (I3); the recovery is the gap to its next attempt."""
    entries = read_ledger(c.ledger)
    starts = {e.pid: e for e in entries if e.kind == "start"}
    extra = Verdict()
    for at, _, pids in kills:
        gaps = []
        for e in (starts[pid] for pid in pids if pid in starts):  # the others died before their first line
            attempts = c.get(f"/api/v1/runs/{e.run_id}/tasks/{e.task_id}")["attempts"]
            state = next(a["state"] for a in attempts if a["attempt"] == e.attempt)
            if state != "lost":
                extra.fail("I3", f"{e.run_id}/{e.task_id} attempt {e.attempt} was killed but ended {state}")
            later = [
                x.at
                for x in entries
                if x.kind == "start"
                and (x.run_id, x.task_id) == (e.run_id, e.task_id)
                and x.attempt > e.attempt
            ]
            if later:
                gaps.append(min(later) - at)
        if gaps:
            figures.recovery.append(max(gaps))
    return extra


@pytest.mark.parametrize("worker_mode", WORKER_MODES)
def test_r1_worker_sigkill_storm(pg_cluster: ChaosCluster, seed: int, figures: Figures) -> None:
    """Four workers; every 1-2 s one of those running tasks dies with its tasks (SIGKILL of the tree) and comes back."""
    c, rng = pg_cluster, random.Random(seed)
    start = time.monotonic()
    c.start_api()
    c.start_scheduler()
    names = [f"worker{i}" for i in range(1, 5)]
    for name in names:
        c.start_worker(name, 3)
    c.wait_workers(names)
    dag = layered_dag("storm", c.ledger, rng, layers=6, width=8, sleep=(0.4, 1.6), flaky=3)
    c.submit(dag.yaml)
    runs = {c.trigger(dag.dag_id): dag for _ in range(2)}
    kills = storm(c, rng, names, runs, dag)
    storm_over = time.monotonic()
    c.wait_runs(list(runs), timeout=90)
    drain = time.monotonic() - storm_over
    extra = killed_attempts_lost(c, kills, figures)
    figures.faults = len(kills)
    figures.hits = sum(1 for _, _, pids in kills if pids)
    figures.tasks_hit = sum(len(pids) for _, _, pids in kills)
    verify(c, figures, runs, extra=extra)
    figures.elapsed = time.monotonic() - start
    figures.notes.append(f"storm {STORM_SECS:.0f}s, 4 workers x 3 slots; runs ended {drain:.1f}s after it")
    assert figures.hits >= 3, (
        f"only {figures.hits} of {len(kills)} kills landed on running tasks (seed {seed})"
    )
    assert figures.lost_attempts >= figures.hits
    # A killed attempt is retried once its lease (1.5 s) lapses and the scheduler ticks.
    assert max(figures.recovery, default=0) < LEASE_SECS + 3 * TICK_SECS + 6, figures.recovery


# -- R2 -------------------------------------------------------------------------------------------
PAUSE_SECS = 3 * LEASE_SECS


def first_attempts_lost(c: ChaosCluster, run_id: str, victim_id: str) -> None:
    """a and b: the victim's first attempt lost, the second (elsewhere) the success."""
    for task_id in ("a", "b"):
        attempts = c.get(f"/api/v1/runs/{run_id}/tasks/{task_id}")["attempts"]
        assert [a["state"] for a in attempts] == ["lost", "success"], attempts
        assert attempts[0]["worker_id"] == victim_id and attempts[1]["worker_id"] != victim_id
        assert "lost" in attempts[0]["error"]
    entries = read_ledger(c.ledger)
    assert not [e for e in entries if e.kind == "end" and e.attempt == 1 and e.task_id in ("a", "b")], (
        "a first attempt ran to its end after its lease was lost"
    )


@pytest.mark.parametrize("worker_mode", WORKER_MODES)
def test_r2_paused_worker_loses_its_lease_and_its_late_result(
    pg_cluster: ChaosCluster, seed: int, figures: Figures
) -> None:
    """Kleppmann's scenario: a worker freezes (SIGSTOP) past its lease while its task runs on, then thaws."""
    c, rng = pg_cluster, random.Random(seed)
    start = time.monotonic()
    c.start_api()
    c.start_scheduler()
    c.start_worker("victim", 2)
    victim_id = c.wait_workers(["victim"])["victim"]
    dag = long_pair_dag("paused", c, rng)  # the victim must kill the first attempts itself
    c.submit(dag.yaml)
    run_id = c.trigger(dag.dag_id)
    pids = c.wait_for("the victim to run a and b", lambda: first_attempts(c, 2), timeout=30)
    c.start_worker("other", 2)
    c.wait_workers(["other"])

    stopped = time.time()
    c.pause("victim")
    record_hits(figures, c, [stopped])

    def given_up() -> bool:
        ti = c.get(f"/api/v1/runs/{run_id}")["tasks"]
        return all(t["attempt"] >= 2 for t in ti if t["task_id"] in ("a", "b"))

    c.wait_for("the paused worker's attempts to be given up", given_up, timeout=20, poll=0.05)
    reaped = time.time() - stopped
    time.sleep(max(0.0, stopped + PAUSE_SECS - time.time()))  # the pause lasts PAUSE_SECS
    assert all(pid_alive(p) for p in pids), "the first attempts' processes ran on while the worker was frozen"
    resumed = time.monotonic()
    c.resume("victim")
    c.wait_for(
        "the thawed worker to kill its tasks", lambda: not any(map(pid_alive, pids)), timeout=10, poll=0.02
    )
    killed_after = time.monotonic() - resumed
    c.wait_runs([run_id], timeout=30)
    # Its late results are handed in (and refused) before it lets go of the attempts.
    c.wait_for("the thawed worker to let go of its attempts", lambda: holds_nothing(c, victim_id), timeout=15)
    first_attempts_lost(c, run_id, victim_id)
    verify(c, figures, {run_id: dag})
    assert_every_fault_hit(figures)
    assert figures.tasks_hit == len(pids), figures.tasks_hit
    # The reaper gives the attempt up about a lease after the last renewal, at its next tick.
    assert reaped < LEASE_SECS + 2 * TICK_SECS + 4, reaped
    # The thawed worker's first renewal is refused and it kills the group at once (target: 1 s).
    assert killed_after < 3.0, killed_after
    figures.recovery = [reaped]
    figures.elapsed = time.monotonic() - start
    figures.notes.append(
        f"paused {PAUSE_SECS:.1f}s (3 leases); attempts given up as lost {reaped:.1f}s after "
        f"the pause; thawed worker killed its tasks {killed_after:.2f}s after SIGCONT; "
        "their late results refused (both first attempts still lost)" + refusals(c)
    )


# -- R8 -------------------------------------------------------------------------------------------
def renewed(c: ChaosCluster, run_id: str, times: int) -> bool:
    """True once the leases of a and b have each been renewed about `times` times since their claim."""
    tasks = [t for t in c.get(f"/api/v1/runs/{run_id}")["tasks"] if t["task_id"] in ("a", "b")]
    # A claim holds the lease for LEASE_SECS; each renewal, every HEARTBEAT_SECS, pushes it on.
    least = LEASE_SECS + (times - 0.5) * HEARTBEAT_SECS
    return all(t["lease_expires_at"] and t["lease_expires_at"] - t["started_at"] > least for t in tasks)


def fenced_in_time(c: ChaosCluster, run_id: str, pids: list[int], cut: float) -> dict[str, Any]:
    """Wait for the cut-off worker to kill its tasks and for their next attempts; the timings."""
    c.wait_for(
        "the cut-off worker to kill its tasks", lambda: not any(map(pid_alive, pids)), timeout=30, poll=0.02
    )
    fenced_at, fenced = time.time(), time.monotonic() - cut
    c.wait_for("the next attempts to start", lambda: retried(c), timeout=30)
    overlap = max(
        0.0, fenced_at - min(e.at for e in read_ledger(c.ledger) if e.kind == "start" and e.attempt == 2)
    )
    return {"fenced": fenced, "overlap": overlap}


def retried(c: ChaosCluster) -> bool:
    """True once a and b have both started their second attempts."""
    return len([e for e in read_ledger(c.ledger) if e.kind == "start" and e.attempt == 2]) == 2


@pytest.mark.parametrize("worker_mode", WORKER_MODES)
def test_r8_cut_off_worker_fences_itself(
    pg_url: str, redis_url: str, tmp_path: Path, seed: int, figures: Figures, worker_mode: str
) -> None:
    """One worker reaches its work through a relay that is cut (a direct worker, PostgreSQL; an API-mode
    worker, the API): it must kill its tasks within about a lease of its last renewal, since the
    scheduler hands them to another worker once the lease lapses."""
    rng = random.Random(seed)
    c = ChaosCluster(tmp_path, db_url=pg_url, queue_url=redis_url, worker_mode=worker_mode)
    proxy = None
    try:
        start = time.monotonic()
        c.start_api()
        c.start_scheduler()
        if worker_mode == "direct":
            proxy, relayed = relay(pg_url)
            c.start_worker("victim", 2, env={"FLOWFORGE_DB": relayed})
        else:
            proxy, relayed = relay(c.url)
            c.start_worker("victim", 2, api_url=relayed)
        c.wait_workers(["victim"])
        dag = long_pair_dag("partition", c, rng)
        c.submit(dag.yaml)
        run_id = c.trigger(dag.dag_id)
        pids = c.wait_for("the victim to run a and b", lambda: first_attempts(c, 2), timeout=30)
        c.start_worker("other", 2)
        c.wait_workers(["other"])
        c.wait_for("a renewal or two to go through", lambda: renewed(c, run_id, 2), timeout=15)
        cut_at, cut = time.time(), time.monotonic()
        proxy.stop()
        record_hits(figures, c, [cut_at])
        timing = fenced_in_time(c, run_id, pids, cut)
        time.sleep(max(0.0, cut + 2 * LEASE_SECS - time.monotonic()))  # the cut lasts two leases
        proxy.start()
        c.wait_runs([run_id], timeout=60)
        for task_id in ("a", "b"):
            states = [a["state"] for a in c.get(f"/api/v1/runs/{run_id}/tasks/{task_id}")["attempts"]]
            assert states[-1] == "success" and states[0] in ("lost", "failed"), states
        verify(c, figures, {run_id: dag})
        assert_every_fault_hit(figures)
        figures.recovery = [timing["fenced"]]
        figures.elapsed = time.monotonic() - start
        figures.notes.append(
            f"cut off with {figures.tasks_hit} task(s) running: it killed them {timing['fenced']:.1f}s after the "
            f"cut (lease {LEASE_SECS:.1f}s); the next attempts started elsewhere, overlap {timing['overlap']:.1f}s"
            + refusals(c)
        )
        # Its last renewal was at most a renewal period before the cut.
        assert timing["fenced"] < LEASE_SECS + 1.5, (
            f"the cut-off worker ran its tasks on for {timing['fenced']:.1f}s"
        )
    finally:
        c.close()
        if proxy is not None:
            proxy.stop()


# -- R12 ------------------------------------------------------------------------------------------
def claims_after(c: ChaosCluster, runs: dict[str, Dag], worker_id: str, since: float) -> list[str]:
    """Attempts `worker_id` claimed after `since` (epoch), as task#attempt."""
    late = []
    for run_id, dag in runs.items():
        for task_id in dag.task_ids:
            for a in c.get(f"/api/v1/runs/{run_id}/tasks/{task_id}")["attempts"]:
                if a["worker_id"] == worker_id and a["started_at"] > since:
                    late.append(f"{task_id}#{a['attempt']}")
    return late


@pytest.mark.parametrize("worker_mode", WORKER_MODES)
def test_r12_graceful_worker_stop(pg_cluster: ChaosCluster, seed: int, figures: Figures) -> None:
    """SIGTERM to a worker running four tasks, with an idle slot, just as new work arrives."""
    c, rng = pg_cluster, random.Random(seed)
    start = time.monotonic()
    c.start_api()
    c.start_scheduler()
    c.start_worker("victim", 5)  # four slots busy, one idle and waiting for a message
    victim_id = c.wait_workers(["victim"])["victim"]
    long_tasks = [{"id": f"long{i}", "command": task_command(rng.uniform(3.0, 4.0))} for i in range(4)]
    short_tasks = [{"id": f"short{i}", "command": task_command(rng.uniform(0.2, 0.5))} for i in range(8)]
    long_dag, short_dag = make_dag("long", c.ledger, long_tasks), make_dag("short", c.ledger, short_tasks)
    c.submit(long_dag.yaml)
    c.submit(short_dag.yaml)
    first = c.trigger(long_dag.dag_id)
    c.wait_for("the victim to run four tasks", lambda: first_attempts(c, 4), timeout=30, poll=0.05)
    c.start_worker("other", 2)
    c.wait_workers(["other"])
    signalled_at, signalled = time.time(), time.monotonic()
    c.terminate("victim")
    second = c.trigger(short_dag.dag_id)  # new work arrives while the victim drains
    code = c.procs["victim"].proc.wait(40)
    exited = time.monotonic() - signalled
    c.wait_runs([first, second], timeout=60)
    record_hits(figures, c, [signalled_at])
    runs = {first: long_dag, second: short_dag}
    late_claims = claims_after(c, runs, victim_id, signalled_at)
    long_attempts = [c.get(f"/api/v1/runs/{first}/tasks/{t}")["attempts"] for t in long_dag.task_ids]
    verify(c, figures, runs)
    workers = {w["worker_id"]: w["state"] for w in c.get("/api/v1/workers")["workers"]}
    figures.recovery = [exited]
    figures.elapsed = time.monotonic() - start
    figures.notes.append(
        f"SIGTERM with {figures.tasks_hit} tasks running: the worker exited {code} after {exited:.1f}s "
        f"(grace 30 s), claims after the signal {len(late_claims)}"
    )
    assert_every_fault_hit(figures)
    assert figures.tasks_hit == len(long_tasks), figures.tasks_hit
    assert code == 0
    assert not late_claims, f"the stopping worker claimed {late_claims} after SIGTERM"
    for attempts in long_attempts:
        assert [(a["state"], a["worker_id"]) for a in attempts] == [("success", victim_id)], attempts
    assert workers[victim_id] == "stopped"
    assert exited < 30
