"""Chaos scenarios: real FlowForge processes under faults, checked against the invariants I1-I7.

Each scenario starts its own processes on PostgreSQL + Redis (skipped unless FLOWFORGE_TEST_PG and
FLOWFORGE_TEST_REDIS are set) or on SQLite for `flowforge up`, injects its faults on a seeded
schedule (the seed is printed; CHAOS_SEED=N replays it), waits for every run to end within a
bound (I7), then compares the task ledger with the store (I1-I5) and looks for task processes
left behind (I6). Each prints its figures, and the test run ends with all of them together.
"""

from __future__ import annotations

import random
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from flowforge.engine.scheduler import LEADER_TTL_SECS
from tests.backends import TcpProxy
from tests.chaos.cluster import (
    HEARTBEAT_SECS,
    LEASE_SECS,
    Cluster,
    Figures,
    RedisServer,
    children,
    pid_alive,
    scheduler_leader,
)
from tests.chaos.ledger import (
    TERMINAL_RUN_STATES,
    Dag,
    Verdict,
    check_runs,
    layered_dag,
    ledger_line,
    make_dag,
    read_ledger,
    running_at,
    survivors,
    task_command,
    wait_no_survivors,
)

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(240)]

TICK_SECS = 1.0  # the scheduler's safety-net tick


# -- shared steps ---------------------------------------------------------------------------------
def verify(c: Cluster, figures: Figures, runs: dict[str, Dag], *, extra: Verdict | None = None) -> Verdict:
    """I1-I5 from the ledger and the store, I6 from the process table; record figures; fail on a violation."""
    verdict = check_runs(c.get, c.db_url, runs, c.ledger)
    if extra is not None:
        verdict.violations += extra.violations
    left, waited = wait_no_survivors(c.ledger, timeout=10)
    if left:
        verdict.fail(
            "I6", f"{len(left)} task process(es) still alive {waited:.0f}s after the runs ended: {left}"
        )
    figures.absorb(verdict)
    if verdict.violations:
        verdict.violations.append(f"(seed {figures.seed}; CHAOS_SEED={figures.seed} replays the schedule)")
    verdict.assert_ok()
    return verdict


def first_claim_after(c: Cluster, run_ids: list[str], since: float, timeout: float) -> float:
    """Seconds from `since` (epoch) to the first task claimed after it, by the store's own timestamps."""

    def claimed() -> float | None:
        times = [
            t["started_at"] for t in c.task_states(run_ids) if t["started_at"] and t["started_at"] > since
        ]
        return min(times) if times else None

    return c.wait_for("a task to be claimed", claimed, timeout, poll=0.1) - since


def refusals(c: Cluster) -> str:
    """How many results the workers logged as refused (when their logs carry info lines)."""
    n = c.count_in_logs("result dropped")
    return f"; {n} refused result(s) in the workers' logs" if n else ""


def hit_counts(figures: Figures, c: Cluster, faults: list[float]) -> None:
    """Count the faults (epoch times) and those that struck while task processes ran, from the ledger."""
    entries = read_ledger(c.ledger)
    for at in faults:
        running = running_at(entries, at)
        figures.faults += 1
        figures.hits += 1 if running else 0
        figures.tasks_hit += len(running)


def queued_tasks(c: Cluster, run_ids: list[str]) -> set[tuple[str, str, int]]:
    """(run_id, task_id, attempt) of every task queued and not yet claimed."""
    return {
        (t["run_id"], t["task_id"], t["attempt"]) for t in c.task_states(run_ids) if t["state"] == "queued"
    }


def wait_claimed(
    c: Cluster, run_ids: list[str], stranded: set[tuple[str, str, int]], since: float, timeout: float
) -> float:
    """Seconds from `since` (monotonic) until every attempt in `stranded` has been claimed."""

    def all_claimed() -> bool:
        now = {(t["run_id"], t["task_id"]): (t["state"], t["attempt"]) for t in c.task_states(run_ids)}
        return all(now[(r, t)] != ("queued", a) for r, t, a in stranded)

    c.wait_for(f"{len(stranded)} stranded task(s) to be claimed", all_claimed, timeout, poll=0.1)
    return time.monotonic() - since


# -- R1 -------------------------------------------------------------------------------------------
STORM_SECS = 18.0


def test_r1_worker_sigkill_storm(pg_cluster: Cluster, seed: int, figures: Figures) -> None:
    """Four workers; every 1-2 s one of them dies with its tasks (SIGKILL of the tree) and comes back."""
    c, rng = pg_cluster, random.Random(seed)
    start = time.monotonic()
    c.start_api()
    c.start_scheduler()
    names = [f"worker{i}" for i in range(1, 5)]
    for name in names:
        c.start_worker(name, 3)
    c.wait_workers(names)
    dag = layered_dag("storm", c.ledger, rng, layers=6, width=8, sleep=(0.4, 1.6), flaky=3)
    c.submit(dag)
    runs = {c.trigger(dag.dag_id): dag for _ in range(2)}
    kills: list[tuple[float, str, list[int]]] = []  # (epoch, victim, task pids it was running)
    storm_end = time.monotonic() + STORM_SECS
    while time.monotonic() < storm_end:
        time.sleep(rng.uniform(1.0, 2.0))
        c.check_alive()
        # A random worker among those running tasks (so that the storm bites), else any.
        busy = [n for n in names if children(c.procs[n].proc.pid)]
        victim = rng.choice(busy or names)
        at = time.time()
        kills.append((at, victim, c.kill_tree(victim)))
        time.sleep(rng.uniform(0.2, 0.8))
        c.start_worker(victim, 3)
        # Keep work in flight for the whole storm.
        if all(c.get(f"/api/v1/runs/{r}")["state"] in TERMINAL_RUN_STATES for r in runs):
            runs[c.trigger(dag.dag_id)] = dag
    storm_over = time.monotonic()
    c.wait_runs(list(runs), timeout=90)
    drain = time.monotonic() - storm_over

    # Every task process the storm killed had its attempt given up as lost (never recorded), and
    # the next attempt started within a lease and a couple of ticks.
    entries = read_ledger(c.ledger)
    starts = {e.pid: e for e in entries if e.kind == "start"}
    extra = Verdict()
    for at, _, pids in kills:
        gaps = []
        for pid in pids:
            e = starts.get(pid)
            if e is None:
                continue  # killed before it wrote its first line
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


def test_r2_paused_worker_loses_its_lease_and_its_late_result(
    pg_cluster: Cluster, seed: int, figures: Figures
) -> None:
    """Kleppmann's scenario: a worker freezes (SIGSTOP) past its lease while its task runs on, then thaws."""
    c, rng = pg_cluster, random.Random(seed)
    start = time.monotonic()
    c.start_api()
    c.start_scheduler()
    c.start_worker("victim", 2)
    victim_id = c.wait_workers(["victim"])["victim"]
    long_first = 30.0  # the first attempts outlive the pause by far: the victim must kill them itself
    tasks = [
        {"id": t, "command": task_command(long_first, retry_sleep=rng.uniform(0.2, 0.6))} for t in ("a", "b")
    ]
    tasks.append({"id": "c", "command": task_command(0.1), "depends_on": ["a", "b"]})
    dag = make_dag("paused", c.ledger, tasks)
    c.submit(dag)
    run_id = c.trigger(dag.dag_id)

    def victim_tasks() -> list[int] | None:
        pids = [e.pid for e in read_ledger(c.ledger) if e.kind == "start" and e.attempt == 1]
        return pids if len(pids) == 2 else None

    pids = c.wait_for("the victim to run a and b", victim_tasks, timeout=30)
    c.start_worker("other", 2)
    c.wait_workers(["other"])

    stopped = time.time()
    c.pause("victim")
    figures.faults, figures.hits, figures.tasks_hit = 1, 1, len(pids)

    def lost() -> bool:
        ti = c.get(f"/api/v1/runs/{run_id}")["tasks"]
        return all(t["attempt"] >= 2 for t in ti if t["task_id"] in ("a", "b"))

    c.wait_for("the paused worker's attempts to be given up", lost, timeout=20, poll=0.05)
    reaped = time.time() - stopped
    time.sleep(max(0.0, stopped + PAUSE_SECS - time.time()))
    assert all(pid_alive(p) for p in pids), "the first attempts' processes ran on while the worker was frozen"
    resumed = time.monotonic()
    c.resume("victim")
    c.wait_for(
        "the thawed worker to kill its tasks",
        lambda: not any(pid_alive(p) for p in pids),
        timeout=10,
        poll=0.02,
    )
    killed_after = time.monotonic() - resumed
    c.wait_runs([run_id], timeout=30)
    time.sleep(1.0)  # the thawed worker tries to record its killed attempts: refused

    for task_id in ("a", "b"):
        attempts = c.get(f"/api/v1/runs/{run_id}/tasks/{task_id}")["attempts"]
        assert [a["state"] for a in attempts] == ["lost", "success"], attempts
        assert attempts[0]["worker_id"] == victim_id and attempts[1]["worker_id"] != victim_id
        assert "lost" in attempts[0]["error"]
    entries = read_ledger(c.ledger)
    assert not [e for e in entries if e.kind == "end" and e.attempt == 1 and e.task_id in ("a", "b")], (
        "a first attempt ran to its end after its lease was lost"
    )
    verify(c, figures, {run_id: dag})
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


# -- R3 -------------------------------------------------------------------------------------------
def test_r3_scheduler_killed_standby_takes_over(pg_cluster: Cluster, seed: int, figures: Figures) -> None:
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
        return next((n for n in schedulers if c.procs[n].proc.pid == pid and n not in c.down), None)

    c.wait_for("a leading scheduler", leader, timeout=30)
    dag = layered_dag("leader", c.ledger, rng, layers=8, width=5, sleep=(0.3, 0.9))
    c.submit(dag)
    run_id = c.trigger(dag.dag_id)
    takeovers, progress, events, faults = [], [], [], []
    for fraction in (0.25, 0.5, 0.75):
        c.wait_progress([run_id], fraction + rng.uniform(-0.05, 0.05), timeout=60)
        victim = c.wait_for("a leading scheduler", leader, timeout=30)
        killed_at, killed = time.time(), time.monotonic()
        c.kill_tree(victim)
        faults.append(killed_at)
        standby = next(n for n in schedulers if n != victim)
        c.wait_for(
            "the standby to take over", lambda: leader() == standby, timeout=LEADER_TTL_SECS + 15, poll=0.05
        )
        takeovers.append(time.monotonic() - killed)
        progress.append(first_claim_after(c, [run_id], killed_at, timeout=30))
        events.append(f"{victim} killed at {fraction:.0%}, {standby} led after {takeovers[-1]:.1f}s")
        time.sleep(max(0.0, killed + 2.0 - time.monotonic()))
        c.start_scheduler(victim)  # back as the standby
    c.wait_runs([run_id], timeout=60)
    hit_counts(figures, c, faults)
    verify(c, figures, {run_id: dag})
    figures.recovery = progress
    figures.elapsed = time.monotonic() - start
    figures.notes.append("; ".join(events))
    figures.notes.append(
        "takeover "
        + ", ".join(f"{t:.1f}s" for t in takeovers)
        + f" (lease {LEADER_TTL_SECS:.0f}s); first task claimed after each kill: "
        + ", ".join(f"{p:.1f}s" for p in progress)
    )
    assert max(takeovers) < LEADER_TTL_SECS + 2 * TICK_SECS + 4, takeovers


# -- R5 -------------------------------------------------------------------------------------------
@pytest.fixture
def redis_cluster(tmp_path: Path, pg_url: str, private_redis: RedisServer) -> Iterator[Cluster]:
    cluster = Cluster(tmp_path, db_url=pg_url, queue_url=private_redis.url)
    try:
        yield cluster
    finally:
        cluster.close()


def test_r5_redis_restart_with_its_data_gone(
    redis_cluster: Cluster, private_redis: RedisServer, seed: int, figures: Figures
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
    c.submit(dag)
    run_id = c.trigger(dag.dag_id)

    def waiting() -> set[tuple[str, str, int]] | None:
        queued = queued_tasks(c, [run_id])
        return queued if len(queued) >= 2 else None

    c.wait_progress([run_id], rng.uniform(0.25, 0.4), timeout=60)
    stranded = c.wait_for("tasks waiting in the queue", waiting, timeout=30, poll=0.05)
    down = rng.uniform(1.5, 3.0)
    faults = [time.time()]
    private_redis.kill()  # with the messages of `stranded`, and the workers' processing lists
    time.sleep(down)
    private_redis.start()
    restored = time.monotonic()
    figures.recovery.append(wait_claimed(c, [run_id], stranded, restored, timeout=60))
    notes = [
        f"restart after {down:.1f}s down: {len(stranded)} queued task(s) lost their message, all claimed "
        f"{figures.recovery[-1]:.1f}s after Redis was back"
    ]

    c.wait_progress([run_id], rng.uniform(0.6, 0.75), timeout=60)
    client = redis.Redis(port=private_redis.port)
    stranded = c.wait_for("tasks waiting in the queue", waiting, timeout=30, poll=0.05)
    flushed = time.monotonic()
    faults.append(time.time())
    client.flushall()
    client.close()
    figures.recovery.append(wait_claimed(c, [run_id], stranded, flushed, timeout=60))
    notes.append(
        f"FLUSHALL: {len(stranded)} queued task(s) lost their message, all claimed "
        f"{figures.recovery[-1]:.1f}s later"
    )

    c.wait_runs([run_id], timeout=60)
    hit_counts(figures, c, faults)
    verify(c, figures, {run_id: dag})
    figures.elapsed = time.monotonic() - start
    figures.notes += notes
    assert max(figures.recovery) < 15, figures.recovery  # the target in test mode


# -- R6 -------------------------------------------------------------------------------------------
def test_r6_postgres_outage(tmp_path: Path, pg_url: str, redis_url: str, seed: int, figures: Figures) -> None:
    """Every process reaches PostgreSQL through a TCP relay that is cut for a few seconds, then restored.

    The PostgreSQL server is shared by the whole test suite and must never be restarted by a
    test: the outage is made by cutting the relay, which severs every open connection and
    refuses new ones exactly as a server that went away would.
    """
    rng = random.Random(seed)
    target = urlsplit(pg_url)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 5432).start()
    relayed = pg_url.replace(target.netloc, f"{target.username}@127.0.0.1:{proxy.port}", 1)
    c = Cluster(tmp_path, db_url=relayed, queue_url=redis_url, check_db_url=pg_url)
    try:
        start = time.monotonic()
        c.start_api()
        c.start_scheduler()
        names = ["worker1", "worker2"]
        for name in names:
            c.start_worker(name, 3)
        c.wait_workers(names)
        dag = layered_dag("outage", c.ledger, rng, layers=6, width=6, sleep=(0.3, 1.0))
        c.submit(dag)
        run_id = c.trigger(dag.dag_id)
        c.wait_progress([run_id], rng.uniform(0.3, 0.45), timeout=60)

        outage = rng.uniform(4.0, 6.0)  # well past a lease: workers must fence themselves
        cut_at, cut = time.time(), time.monotonic()
        proxy.stop()
        assert c.http is not None
        probe_start = time.monotonic()
        try:
            status = c.http.get(f"/api/v1/runs/{run_id}", timeout=30).status_code
        except httpx.HTTPError as exc:
            status = type(exc).__name__
        probe = time.monotonic() - probe_start
        time.sleep(max(0.0, cut + outage - time.monotonic()))
        proxy.start()
        restored_at, restored = time.time(), time.monotonic()
        figures.recovery.append(first_claim_after(c, [run_id], restored_at, timeout=60))
        c.wait_runs([run_id], timeout=90)
        hit_counts(figures, c, [cut_at])
        verify(c, figures, {run_id: dag})
        figures.elapsed = time.monotonic() - start
        figures.notes.append(
            f"outage {outage:.1f}s with {figures.tasks_hit} task(s) running; the API answered "
            f"{status} in {probe:.1f}s while the database was away; first claim "
            f"{figures.recovery[-1]:.1f}s after it came back; run ended "
            f"{time.monotonic() - restored:.1f}s after"
        )
        assert status == 503, f"the API answered {status} during the outage"
        assert probe < 5.0, f"the API took {probe:.1f}s to answer during the outage"
        assert figures.recovery[-1] < 10, figures.recovery
    finally:
        c.close()
        proxy.stop()


# -- R8 -------------------------------------------------------------------------------------------
def test_r8_worker_cut_off_from_the_database_fences_itself(
    tmp_path: Path, pg_url: str, redis_url: str, seed: int, figures: Figures
) -> None:
    """One worker reaches PostgreSQL through a relay that is cut: it must kill its tasks within about a
    lease of its last renewal, since the scheduler hands them to another worker once the lease lapses."""
    rng = random.Random(seed)
    target = urlsplit(pg_url)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 5432).start()
    relayed = pg_url.replace(target.netloc, f"{target.username}@127.0.0.1:{proxy.port}", 1)
    c = Cluster(tmp_path, db_url=pg_url, queue_url=redis_url)
    try:
        start = time.monotonic()
        c.start_api()
        c.start_scheduler()
        c.start_worker("victim", 2, env={"FLOWFORGE_DB": relayed})
        c.wait_workers(["victim"])
        tasks = [
            {"id": t, "command": task_command(30.0, retry_sleep=rng.uniform(0.2, 0.6))} for t in ("a", "b")
        ]
        tasks.append({"id": "c", "command": task_command(0.1), "depends_on": ["a", "b"]})
        dag = make_dag("partition", c.ledger, tasks)
        c.submit(dag)
        run_id = c.trigger(dag.dag_id)

        def victim_tasks() -> list[int] | None:
            pids = [e.pid for e in read_ledger(c.ledger) if e.kind == "start" and e.attempt == 1]
            return pids if len(pids) == 2 else None

        pids = c.wait_for("the victim to run a and b", victim_tasks, timeout=30)
        c.start_worker("other", 2)
        c.wait_workers(["other"])
        time.sleep(2 * HEARTBEAT_SECS)  # a renewal or two go through before the cut
        cut = time.monotonic()
        proxy.stop()
        figures.faults, figures.hits, figures.tasks_hit = 1, 1, len(pids)
        c.wait_for(
            "the cut-off worker to kill its tasks",
            lambda: not any(pid_alive(p) for p in pids),
            timeout=30,
            poll=0.02,
        )
        fenced_at, fenced = time.time(), time.monotonic() - cut
        c.wait_for(
            "the next attempts to start",
            lambda: len([e for e in read_ledger(c.ledger) if e.kind == "start" and e.attempt == 2]) == 2,
            timeout=30,
        )
        retried = min(e.at for e in read_ledger(c.ledger) if e.kind == "start" and e.attempt == 2)
        overlap = max(0.0, fenced_at - retried)
        time.sleep(max(0.0, cut + 2 * LEASE_SECS - time.monotonic()))
        proxy.start()
        c.wait_runs([run_id], timeout=60)
        for task_id in ("a", "b"):
            attempts = c.get(f"/api/v1/runs/{run_id}/tasks/{task_id}")["attempts"]
            assert [a["state"] for a in attempts][-1] == "success" and attempts[0]["state"] in (
                "lost",
                "failed",
            )
        verify(c, figures, {run_id: dag})
        figures.recovery = [fenced]
        figures.elapsed = time.monotonic() - start
        figures.notes.append(
            f"cut off with 2 tasks running: it killed them {fenced:.1f}s after the cut "
            f"(lease {LEASE_SECS:.1f}s); the next attempts started elsewhere, overlap {overlap:.1f}s"
            + refusals(c)
        )
        # Its last renewal was at most a renewal period before the cut.
        assert fenced < LEASE_SECS + 1.5, f"the cut-off worker ran its tasks on for {fenced:.1f}s"
    finally:
        c.close()
        proxy.stop()


# -- R7 -------------------------------------------------------------------------------------------
def test_r7_all_in_one_sigkill_and_restart(sqlite_cluster: Cluster, seed: int, figures: Figures) -> None:
    """`flowforge up` on SQLite dies with its tasks mid-run; the database is intact and the run completes."""
    c, rng = sqlite_cluster, random.Random(seed)
    start = time.monotonic()
    c.start_up(concurrency=4)
    dag = layered_dag("crash", c.ledger, rng, layers=6, width=6, sleep=(0.3, 1.0))
    c.submit(dag)
    run_id = c.trigger(dag.dag_id)
    c.wait_progress([run_id], rng.uniform(0.3, 0.6), timeout=60)
    killed = c.kill_tree("up")
    figures.faults, figures.hits, figures.tasks_hit = 1, 1 if killed else 0, len(killed)

    db = c.home / "flowforge.db"
    conn = sqlite3.connect(db)
    try:
        integrity = conn.execute("PRAGMA integrity_check").fetchall()
        journal = conn.execute("PRAGMA journal_mode").fetchone()[0]
    finally:
        conn.close()
    assert integrity == [("ok",)], integrity
    assert journal == "wal"

    restarted_at, restarted = time.time(), time.monotonic()
    c.start_up(concurrency=4)
    healthy = time.monotonic() - restarted
    first = first_claim_after(c, [run_id], restarted_at, timeout=60)
    c.wait_runs([run_id], timeout=90)
    figures.recovery = [first]
    verify(c, figures, {run_id: dag})
    figures.elapsed = time.monotonic() - start
    figures.notes.append(
        f"killed with {len(killed)} task(s) running; integrity_check ok, WAL; restarted and "
        f"healthy in {healthy:.1f}s, first claim {first:.1f}s after the restart began, run ended "
        f"{time.monotonic() - restarted:.1f}s after it"
    )


# -- R9 -------------------------------------------------------------------------------------------
def test_r9_timeout_kills_every_descendant(sqlite_cluster: Cluster, seed: int, figures: Figures) -> None:
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
    c.submit(dag)
    run_id = c.trigger(dag.dag_id)
    seen = c.wait_for(
        "the tasks' processes", lambda: (n := len(survivors(c.ledger))) >= 7 and n, timeout=30, poll=0.05
    )
    c.wait_runs([run_id], timeout=30)
    run = c.get(f"/api/v1/runs/{run_id}")
    assert run["state"] == "failed"
    durations = {}
    for task_id in ("background", "stubborn"):
        [attempt] = c.get(f"/api/v1/runs/{run_id}/tasks/{task_id}")["attempts"]
        assert attempt["state"] == "failed" and "timed out" in attempt["error"], attempt
        durations[task_id] = attempt["ended_at"] - attempt["started_at"]
    left, waited = wait_no_survivors(c.ledger, timeout=2)
    assert not left, f"{len(left)} descendant(s) of timed-out tasks survived: {left}"
    assert durations["background"] < 1 + 2.0, durations  # SIGTERM at the timeout
    assert durations["stubborn"] < 1 + 5 + 2.0, durations  # SIGKILL after the 5 s kill grace
    figures.tasks, figures.runs, figures.runs_completed, figures.faults, figures.hits = 2, 1, 1, 2, 2
    figures.tasks_hit = seen
    figures.elapsed = time.monotonic() - start
    figures.notes.append(
        f"{seen} task processes at the timeout, 0 left; attempts ended after "
        + ", ".join(f"{k} {v:.1f}s" for k, v in durations.items())
        + " (timeout 1 s, kill grace 5 s)"
    )


# -- R12 ------------------------------------------------------------------------------------------
def test_r12_graceful_worker_stop(pg_cluster: Cluster, seed: int, figures: Figures) -> None:
    """SIGTERM to a worker running four tasks, with an idle slot, just as new work arrives."""
    c, rng = pg_cluster, random.Random(seed)
    start = time.monotonic()
    c.start_api()
    c.start_scheduler()
    c.start_worker("victim", 5)  # four slots busy, one idle and waiting for a message
    victim_id = c.wait_workers(["victim"])["victim"]
    long_dag = make_dag(
        "long",
        c.ledger,
        [{"id": f"long{i}", "command": task_command(rng.uniform(3.0, 4.0))} for i in range(4)],
    )
    short_dag = make_dag(
        "short",
        c.ledger,
        [{"id": f"short{i}", "command": task_command(rng.uniform(0.2, 0.5))} for i in range(8)],
    )
    c.submit(long_dag)
    c.submit(short_dag)
    first = c.trigger(long_dag.dag_id)
    pids = c.wait_for(
        "the victim to run four tasks",
        lambda: (p := [e.pid for e in read_ledger(c.ledger) if e.kind == "start"]) and len(p) == 4 and p,
        timeout=30,
        poll=0.05,
    )
    c.start_worker("other", 2)
    c.wait_workers(["other"])
    signalled_at, signalled = time.time(), time.monotonic()
    c.terminate("victim")
    second = c.trigger(short_dag.dag_id)  # new work arrives while the victim drains
    code = c.procs["victim"].proc.wait(40)
    exited = time.monotonic() - signalled
    c.wait_runs([first, second], timeout=60)

    late_claims = []
    for run_id, dag in ((first, long_dag), (second, short_dag)):
        for task_id in dag.task_ids:
            for a in c.get(f"/api/v1/runs/{run_id}/tasks/{task_id}")["attempts"]:
                if a["worker_id"] == victim_id and a["started_at"] > signalled_at:
                    late_claims.append(f"{task_id}#{a['attempt']}")
    long_attempts = [c.get(f"/api/v1/runs/{first}/tasks/{t}")["attempts"] for t in long_dag.task_ids]
    verify(c, figures, {first: long_dag, second: short_dag})
    workers = {w["worker_id"]: w["state"] for w in c.get("/api/v1/workers")["workers"]}
    figures.faults, figures.hits, figures.tasks_hit = 1, 1, len(pids)
    figures.recovery = [exited]
    figures.elapsed = time.monotonic() - start
    figures.notes.append(
        f"SIGTERM with {len(pids)} tasks running: the worker exited {code} after {exited:.1f}s "
        f"(grace 30 s), claims after the signal {len(late_claims)}"
    )
    assert code == 0
    assert not late_claims, f"the stopping worker claimed {late_claims} after SIGTERM"
    for attempts in long_attempts:
        assert [(a["state"], a["worker_id"]) for a in attempts] == [("success", victim_id)], attempts
    assert workers[victim_id] == "stopped"
    assert exited < 30
