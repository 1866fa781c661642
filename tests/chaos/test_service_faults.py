"""Chaos scenarios that strike what the workers depend on: the leading scheduler, Redis, PostgreSQL.

Each starts `api`, schedulers and workers on PostgreSQL + Redis (skipped unless FLOWFORGE_TEST_PG
and FLOWFORGE_TEST_REDIS are set), strikes on a seeded schedule (CHAOS_SEED=N replays it) once
work is in flight, waits for the run to end within a bound (I7), then checks I1-I6.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from flowforge.engine.leases import LEADER_TTL_SECS
from tests.chaos.cluster import ChaosCluster, Figures, RedisServer, scheduler_leader
from tests.chaos.ledger import layered_dag
from tests.chaos.steps import (
    TICK_SECS,
    Queued,
    assert_every_fault_hit,
    first_claim_after,
    queued_tasks,
    record_hits,
    relay,
    verify,
    wait_claimed,
    wait_in_flight,
)

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(240)]


# -- R3 -------------------------------------------------------------------------------------------
def kill_the_leader(
    c: ChaosCluster, run_id: str, schedulers: list[str], leader: Callable[[], str | None]
) -> tuple[float, float, float, str]:
    """SIGKILL the leading scheduler while a task runs, and bring it back 2 s later as the standby.

    Returns (epoch of the kill, seconds until the standby led, seconds until the next claim, a note).
    """
    victim = c.wait_for("a leading scheduler", leader, timeout=30)
    standby = next(n for n in schedulers if n != victim)
    wait_in_flight(c)
    killed_at, killed = time.time(), time.monotonic()
    c.kill_tree(victim)
    c.wait_for(
        "the standby to take over", lambda: leader() == standby, timeout=LEADER_TTL_SECS + 15, poll=0.05
    )
    takeover = time.monotonic() - killed
    progress = first_claim_after(c, [run_id], killed_at, timeout=30)
    time.sleep(max(0.0, killed + 2.0 - time.monotonic()))  # down for 2 s
    c.start_scheduler(victim)  # back as the standby
    return killed_at, takeover, progress, f"{victim} killed, {standby} led after {takeover:.1f}s"


def test_r3_scheduler_killed_standby_takes_over(
    pg_cluster: ChaosCluster, seed: int, figures: Figures
) -> None:
    """Two schedulers; the leader is SIGKILLed at 25, 50 and 75 % and restarted 2 s later as the standby."""
    c, rng = pg_cluster, random.Random(seed)
    start = time.monotonic()
    c.start_api()
    schedulers = ["scheduler-a", "scheduler-b"]
    for name in schedulers:
        c.start_scheduler(name)
    names = [f"worker{i}" for i in range(1, 4)]
    for name in names:
        c.start_worker(name, 3)
    c.wait_workers(names)

    def leader() -> str | None:
        pid, _ = scheduler_leader(c.db_url)
        return next((n for n in schedulers if c.procs[n].pid == pid and n not in c.down), None)

    c.wait_for("a leading scheduler", leader, timeout=30)
    dag = layered_dag("leader", c.ledger, rng, layers=8, width=5, sleep=(0.3, 0.9))
    c.submit(dag.yaml)
    run_id = c.trigger(dag.dag_id)
    faults, takeovers, events = [], [], []
    for fraction in (0.25, 0.5, 0.75):
        c.wait_progress([run_id], fraction + rng.uniform(-0.05, 0.05), timeout=60)
        killed_at, takeover, progress, note = kill_the_leader(c, run_id, schedulers, leader)
        faults.append(killed_at)
        takeovers.append(takeover)
        figures.recovery.append(progress)
        events.append(f"at {fraction:.0%} {note}")
    c.wait_runs([run_id], timeout=60)
    record_hits(figures, c, faults)
    verify(c, figures, {run_id: dag})
    figures.elapsed = time.monotonic() - start
    figures.notes.append("; ".join(events))
    figures.notes.append(
        f"takeover {', '.join(f'{t:.1f}s' for t in takeovers)} (lease {LEADER_TTL_SECS:.0f}s); "
        f"first task claimed after each kill: {', '.join(f'{p:.1f}s' for p in figures.recovery)}"
    )
    assert_every_fault_hit(figures)
    assert max(takeovers) < LEADER_TTL_SECS + 2 * TICK_SECS + 4, takeovers


# -- R5 -------------------------------------------------------------------------------------------
def strand(
    c: ChaosCluster, run_id: str, fault: Callable[[], object], outage: float = 0.0
) -> tuple[Queued, float]:
    """Strike `fault` while tasks wait in the queue; the queued tasks whose messages it took, and when.

    Those are the tasks queued just before the fault and still queued, at the same attempt, after
    `outage` seconds: a worker that had taken a message would have claimed its task by then.
    """

    def waiting() -> Queued | None:
        queued = queued_tasks(c, [run_id])
        return queued if len(queued) >= 2 else None

    before = c.wait_for("tasks waiting in the queue", waiting, timeout=30, poll=0.05)
    struck = time.monotonic()
    fault()
    time.sleep(outage)  # how long the fault lasts
    return before & queued_tasks(c, [run_id]), struck


def test_r5_redis_restart_with_its_data_gone(
    redis_cluster: ChaosCluster, private_redis: RedisServer, seed: int, figures: Figures
) -> None:
    """The queue's Redis (our own redis-server, no persistence) is SIGKILLed and restarted empty; later FLUSHALL."""
    import redis

    c, rng = redis_cluster, random.Random(seed)
    start = time.monotonic()
    c.start_api()
    c.start_scheduler()
    names = ["worker1", "worker2"]
    for name in names:
        c.start_worker(name, 1)  # fewer slots than a layer has tasks: messages wait in Redis
    c.wait_workers(names)
    dag = layered_dag("requeue", c.ledger, rng, layers=6, width=6, sleep=(0.3, 1.0))
    c.submit(dag.yaml)
    run_id = c.trigger(dag.dag_id)
    strikes: list[tuple[str, Queued, float]] = []  # (what, the tasks whose message it took, recovery)

    c.wait_progress([run_id], rng.uniform(0.25, 0.4), timeout=60)
    down = rng.uniform(1.5, 3.0)
    lost, _ = strand(c, run_id, private_redis.kill, outage=down)  # with the workers' processing lists
    private_redis.start()
    restored = time.monotonic()
    strikes.append((f"restart after {down:.1f}s down", lost, wait_claimed(c, [run_id], lost, restored, 60)))

    c.wait_progress([run_id], rng.uniform(0.6, 0.75), timeout=60)
    client = redis.Redis(port=private_redis.port)
    try:
        lost, flushed = strand(c, run_id, client.flushall)
    finally:
        client.close()
    strikes.append(("FLUSHALL", lost, wait_claimed(c, [run_id], lost, flushed, 60)))

    c.wait_runs([run_id], timeout=60)
    figures.faults = len(strikes)
    figures.hits = sum(1 for _, lost, _ in strikes if lost)
    figures.tasks_hit = sum(len(lost) for _, lost, _ in strikes)
    figures.recovery = [secs for _, _, secs in strikes]
    verify(c, figures, {run_id: dag})
    figures.elapsed = time.monotonic() - start
    figures.notes += [
        f"{what}: {len(lost)} queued task(s) lost their message, all claimed {secs:.1f}s after "
        + ("Redis was back" if what.startswith("restart") else "it")
        for what, lost, secs in strikes
    ]
    assert_every_fault_hit(figures)
    assert max(figures.recovery) < 15, figures.recovery  # the target in test mode


# -- R6 -------------------------------------------------------------------------------------------
def probe(c: ChaosCluster, run_id: str) -> tuple[int | str, float]:
    """What the API answers for the run now, and how long it took."""
    assert c.http is not None
    started = time.monotonic()
    try:
        status: int | str = c.http.get(f"/api/v1/runs/{run_id}", timeout=30).status_code
    except httpx.HTTPError as exc:
        status = type(exc).__name__
    return status, time.monotonic() - started


def test_r6_postgres_outage(tmp_path: Path, pg_url: str, redis_url: str, seed: int, figures: Figures) -> None:
    """Every process reaches PostgreSQL through a TCP relay that is cut for a few seconds, then restored.

    The PostgreSQL server is shared by the whole test suite and must never be restarted by a
    test: the outage is made by cutting the relay, which severs every open connection and
    refuses new ones exactly as a server that went away would.
    """
    rng = random.Random(seed)
    proxy, relayed = relay(pg_url)
    c = ChaosCluster(tmp_path, db_url=relayed, queue_url=redis_url, check_db_url=pg_url)
    try:
        start = time.monotonic()
        c.start_api()
        c.start_scheduler()
        names = ["worker1", "worker2"]
        for name in names:
            c.start_worker(name, 3)
        c.wait_workers(names)
        dag = layered_dag("outage", c.ledger, rng, layers=6, width=6, sleep=(0.3, 1.0))
        c.submit(dag.yaml)
        run_id = c.trigger(dag.dag_id)
        c.wait_progress([run_id], rng.uniform(0.3, 0.45), timeout=60)

        outage = rng.uniform(4.0, 6.0)  # well past a lease: workers must fence themselves
        wait_in_flight(c)
        cut_at, cut = time.time(), time.monotonic()
        proxy.stop()
        status, probe_secs = probe(c, run_id)
        time.sleep(max(0.0, cut + outage - time.monotonic()))  # the outage lasts `outage` s
        proxy.start()
        restored_at, restored = time.time(), time.monotonic()
        figures.recovery.append(first_claim_after(c, [run_id], restored_at, timeout=60))
        c.wait_runs([run_id], timeout=90)
        record_hits(figures, c, [cut_at])
        verify(c, figures, {run_id: dag})
        figures.elapsed = time.monotonic() - start
        figures.notes.append(
            f"outage {outage:.1f}s with {figures.tasks_hit} task(s) running; the API answered "
            f"{status} in {probe_secs:.1f}s while the database was away; first claim "
            f"{figures.recovery[-1]:.1f}s after it came back; run ended "
            f"{time.monotonic() - restored:.1f}s after"
        )
        assert_every_fault_hit(figures)
        assert status == 503, f"the API answered {status} during the outage"
        assert probe_secs < 5.0, f"the API took {probe_secs:.1f}s to answer during the outage"
        assert figures.recovery[-1] < 10, figures.recovery
    finally:
        c.close()
        proxy.stop()
