"""R13 soak: `python -m benchmarks soak --minutes N`, a long steady stream of work under random SIGKILLs.

`api`, `scheduler` and 4 direct workers × 4 slots (the chaos suite's R1-at-scale shape,
tests/chaos/test_many_workers.py) on a fresh PostgreSQL database and Redis key prefix. Runs of
three ledger DAGs (tests/chaos/ledger.py: layers of tasks each depending on two of the layer
above, and a join; wide, layered and chain-like), tasks of 0-200 ms, are triggered at even
intervals so that 10,000 tasks spread over the N minutes. About 1 % of the tasks see their worker
SIGKILLed with its tasks while they run (`kill_tree`); the worker comes back 0.5-1 s later. The
kill moments and victims come from a seeded RNG (the seed is printed).

Every ~10 s it samples the RSS of every process, the Redis queue (waiting and in-flight
messages) and the store's `queued` rows. After the stream it waits for every run to end (I7),
for the queue and the `queued` rows to be back to 0, then checks I1-I6 against the task ledger
(tests/chaos/steps.py `verify`). It also reports the claim latency (an attempt queued → claimed,
by the store's own timestamps), the database size per 10,000 attempts, the most PostgreSQL
connections at once and the error lines in every log. Figures to read, never assertions.
"""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from benchmarks.meta import finish, meta
from benchmarks.runners import distributed_unavailable
from benchmarks.soak_figures import latency_ms, log_errors, rss_figures
from flowforge.queues.redis import split_prefix
from tests.backends import PG_ENV, REDIS_ENV, pg_database, redis_prefix, with_query
from tests.chaos.cluster import HEARTBEAT_SECS, ChaosCluster, Figures
from tests.chaos.invariants import query
from tests.chaos.ledger import Dag, layered_dag
from tests.chaos.steps import verify
from tests.harness import children
from tests.pg_connections import ConnectionSampler

MINUTES, TASKS, WORKERS, SLOTS, KILL_RATE = 30.0, 10_000, 4, 4, 0.01
TASK_SECS = (0.0, 0.2)
SHAPES = (("soak-wide", 3, 6), ("soak-layers", 5, 4), ("soak-chain", 10, 2))  # (dag_id, layers, width)
RESTART_SECS = (0.5, 1.0)  # a killed worker comes back this long after
DRAIN_SECS = 120.0  # I7: every run ends within this after the stream
SETTLE_SECS = 30.0  # the queue and the queued rows are back to 0 within this after the runs ended
POLL_SECS = 0.02
OWN_CONNECTIONS = "flowforge-soak"  # the application_name of the soak's own reads of the database
GOALS = {"rss_growth_percent": 10.0, "queue_end": 0, "violations": 0}
COUNTS = (
    "SELECT (SELECT count(*) FROM task_instances WHERE state = 'queued'),"
    " (SELECT count(*) FROM attempts WHERE state = 'queued'),"
    " (SELECT count(*) FROM attempts WHERE state = 'success')"
)
CLAIM_LATENCY = (
    "SELECT started_at - queued_at FROM attempts WHERE started_at IS NOT NULL AND queued_at IS NOT NULL"
)


def soak_dags(ledger: Path, rng: random.Random) -> list[Dag]:
    """The three DAGs the runs are drawn from: chains and fan-in, tasks of 0-200 ms."""
    return [layered_dag(d, ledger, rng, layers=n, width=w, sleep=TASK_SECS) for d, n, w in SHAPES]


def plan_runs(dags: list[Dag], tasks: int, rng: random.Random) -> list[Dag]:
    """Runs drawn at random from `dags` until they hold at least `tasks` tasks."""
    plan: list[Dag] = []
    while sum(len(d.task_ids) for d in plan) < tasks:
        plan.append(rng.choice(dags))
    return plan


class Gauges:
    """The deployment's queue depth in Redis and its `queued` rows, read on connections of their own."""

    def __init__(self, db_url: str, queue_url: str) -> None:
        import redis

        base, self.prefix = split_prefix(queue_url)
        self.db_url = db_url
        self.redis = redis.Redis.from_url(base)

    def read(self) -> dict[str, int]:
        """Messages waiting and taken-not-acked in Redis; queued task instances and attempts; successes."""
        waiting: Any = self.redis.llen(f"{self.prefix}:tasks")
        taken: Any = sum(
            int(self.redis.llen(k)) for k in self.redis.scan_iter(match=f"{self.prefix}:processing:*")
        )
        queued_rows, queued_attempts, done = query(self.db_url, COUNTS)[0]
        return {
            "waiting": int(waiting),
            "taken": int(taken),
            "queued_rows": int(queued_rows),
            "queued_attempts": int(queued_attempts),
            "done": int(done),
        }

    def zero(self) -> bool:
        """True when nothing waits in Redis and no row is queued."""
        g = self.read()
        return not (g["waiting"] or g["queued_rows"] or g["queued_attempts"])

    def database_mib(self) -> float:
        return round(
            float(query(self.db_url, "SELECT pg_database_size(current_database())")[0][0]) / 2**20, 2
        )

    def close(self) -> None:
        self.redis.close()


@dataclass
class Soak:
    """The stream of runs, the kills and the samples, stepped by one loop (no threads)."""

    c: ChaosCluster
    gauges: Gauges
    rng: random.Random
    workers: list[str]
    slots: int
    plan: list[Dag]
    duration: float
    target_hits: int
    progress: Callable[[str], Any]
    runs: dict[str, Dag] = field(default_factory=dict)
    kills: list[dict[str, Any]] = field(default_factory=list)
    restarts: dict[str, float] = field(default_factory=dict)  # worker → when it comes back (monotonic)
    lives: list[dict[str, Any]] = field(default_factory=list)  # one per process life, with its RSS
    queue: list[list[float]] = field(default_factory=list)  # [t, waiting, taken, queued rows, …, done]
    began: float = field(default_factory=time.monotonic)
    next_kill: float = 0.0
    next_sample: float = 0.0
    next_progress: float = 0.0

    @property
    def sample_secs(self) -> float:
        return min(10.0, max(1.0, self.duration / 20))

    @property
    def hits(self) -> int:
        return sum(k["tasks"] for k in self.kills)

    def now(self) -> float:
        """Seconds since the stream began."""
        return time.monotonic() - self.began

    def track(self, name: str) -> None:
        """Begin the RSS series of process `name`'s current life."""
        pid = self.c.procs[name].pid
        self.lives.append({"name": name, "pid": pid, "start_s": round(self.now(), 1), "killed": False})
        self.lives[-1].update(end_s=None, samples=[])

    def drive(self) -> None:
        """Trigger the planned runs evenly over the duration; kill, restart and sample meanwhile."""
        self.began = time.monotonic()
        self.schedule_kill(0.0)
        while (t := self.now()) < self.duration or len(self.runs) < len(self.plan):
            self.c.check_alive()
            if len(self.runs) < len(self.plan) and t >= len(self.runs) * self.duration / len(self.plan):
                dag = self.plan[len(self.runs)]
                self.runs[self.c.trigger(dag.dag_id, "soak")] = dag
            if t >= self.next_kill and t < self.duration:
                self.kill(t)
            self.restart_due()
            if t >= self.next_sample:
                self.sample(t)
            time.sleep(POLL_SECS)
        while self.restarts:
            self.restart_due()
            time.sleep(POLL_SECS)

    def schedule_kill(self, t: float) -> None:
        """The next kill: the hits still to come spread over the time left, each gap drawn at random."""
        left = self.target_hits - self.hits
        if left <= 0:
            self.next_kill = math.inf
            return
        per_kill = max(0.5, self.hits / len(self.kills)) if self.kills else 1.5  # tasks a kill hits
        kills_left = max(1, round(left / per_kill))
        self.next_kill = t + self.rng.uniform(0.5, 1.5) * (self.duration - t) / (kills_left + 1)

    def kill(self, t: float) -> None:
        """SIGKILL a worker running tasks, with its tasks; it comes back 0.5-1 s later. None busy: later."""
        busy = [n for n in self.workers if n not in self.c.down and children(self.c.procs[n].pid)]
        if not busy:
            self.next_kill = t + 0.1
            return
        victim = self.rng.choice(busy)
        pid = self.c.procs[victim].pid
        pids = self.c.kill_tree(victim)
        for life in self.lives:
            if life["pid"] == pid:
                life.update(killed=True, end_s=round(self.now(), 1))
        self.kills.append({"at_s": round(t, 2), "worker": victim, "tasks": len(pids)})
        self.restarts[victim] = time.monotonic() + self.rng.uniform(*RESTART_SECS)
        self.schedule_kill(t)

    def restart_due(self) -> None:
        for name, at in list(self.restarts.items()):
            if time.monotonic() >= at:
                del self.restarts[name]
                self.c.start_worker(name, self.slots)
                self.track(name)

    def sample(self, t: float) -> dict[str, int]:
        """RSS of every live process, the queue and the queued rows, now; a progress line now and then."""
        for life in self.lives:
            proc = self.c.procs[life["name"]]
            if life["end_s"] is None and proc.pid == life["pid"] and proc.running():
                rss = proc.memory()["rss_mib"]
                if rss is not None:
                    life["samples"].append([round(t, 1), round(rss, 2)])
        g = self.gauges.read()
        self.queue.append([round(t, 1), *g.values()])
        self.next_sample = t + self.sample_secs
        if t >= self.next_progress:
            self.next_progress = t + min(60.0, max(5.0, self.duration / 6))
            self.progress(
                f"soak {t:.0f}/{self.duration:.0f}s: {len(self.runs)} runs, {g['done']} tasks done, "
                f"{len(self.kills)} kills ({self.hits} tasks), queue {g['waiting']}, queued rows {g['queued_rows']}"
            )
        return g


def drain(s: Soak) -> tuple[float, float | None, list[str]]:
    """Wait for every run to end (I7), then for the queue to be back to 0: (seconds, seconds or None, I7)."""
    start = time.monotonic()
    try:
        s.c.wait_runs(list(s.runs), timeout=DRAIN_SECS)
        violations = []
    except AssertionError:
        violations = [f"I7: not every run ended within {DRAIN_SECS:g}s of the stream's end"]
    drained = time.monotonic() - start
    start = time.monotonic()
    while not s.gauges.zero():
        if time.monotonic() - start > SETTLE_SECS:
            return drained, None, violations
        time.sleep(0.1)
    return drained, time.monotonic() - start, violations


def check(c: ChaosCluster, runs: dict[str, Dag], seed: int, extra: list[str]) -> tuple[Figures, list[str]]:
    """I1-I6 over every run (tests/chaos/steps.py), with the I7 violations found while draining."""
    figures = Figures(scenario="soak", seed=seed)
    try:
        verify(c, figures, runs)
        violations: list[str] = []
    except AssertionError as exc:
        violations = [line.strip() for line in str(exc).splitlines()[1:] if line.strip()]
    return figures, extra + violations


def start(c: ChaosCluster, workers: int, slots: int) -> list[str]:
    """api, scheduler and the workers, once all have registered; the workers' names."""
    c.start_api()
    c.start_scheduler()
    names = [f"worker{i}" for i in range(1, workers + 1)]
    for name in names:
        c.start_worker(name, slots)
    c.wait_workers(names, timeout=60 + 4 * workers)
    return names


def measure(c: ChaosCluster, gauges: Gauges, config: dict[str, Any], progress: Any) -> dict[str, Any]:
    """Start the deployment, run the stream, drain, check; the section's figures."""
    rng = random.Random(config["seed"])
    names = start(c, config["workers"], config["slots"])
    dags = soak_dags(c.ledger, rng)
    for dag in dags:
        c.submit(dag.yaml)
    plan = plan_runs(dags, config["tasks"], rng)
    planned = sum(len(d.task_ids) for d in plan)
    hits = round(config["kill_rate"] * planned)
    s = Soak(c, gauges, rng, names, config["slots"], plan, config["minutes"] * 60, hits, progress)
    for name in ["api", "scheduler", *names]:
        s.track(name)
    db_start = gauges.database_mib()
    progress(
        f"soak: {len(plan)} runs, {planned} tasks over {config['minutes']:g} min on {len(names)} "
        f"{c.worker_mode} workers × {config['slots']} slots; about {hits} tasks to see their worker SIGKILLed"
    )
    s.drive()
    stream = s.now()
    drained, settled, i7 = drain(s)
    end = s.sample(s.now())
    progress(f"soak: checking I1-I7 over {len(s.runs)} runs")
    figures, violations = check(c, s.runs, config["seed"], i7)
    latencies = [float(r[0]) for r in query(c.db_url, CLAIM_LATENCY)]
    attempts = int(query(c.db_url, "SELECT count(*) FROM attempts")[0][0])
    db_end = gauges.database_mib()
    return {
        "runs": len(s.runs),
        "tasks": planned,
        "tasks_done": end["done"],
        "stream_s": round(stream, 1),
        "drain_s": round(drained, 1),
        "kills": {
            "count": len(s.kills),
            "tasks_hit": s.hits,
            "percent_of_tasks": round(100 * s.hits / planned, 2),
        },
        "kill_list": s.kills,
        "invariants": {"ok": not violations, "violations": violations[:30], **vars(figures)},
        "rss": {"every_s": s.sample_secs, **rss_figures(s.lives, s.duration)},
        "queue": {
            "every_s": s.sample_secs,
            "columns": ["t", "waiting", "taken", "queued_rows", "queued_attempts", "done"],
            "samples": s.queue,
            "max_waiting": max(q[1] for q in s.queue),
            "max_queued_rows": max(q[3] for q in s.queue),
            "end": end,
            "back_to_zero_s": None if settled is None else round(settled, 1),
        },
        "claim_latency_ms": latency_ms(latencies),
        "database": {
            "start_mib": db_start,
            "end_mib": db_end,
            "attempts": attempts,
            "mib_per_10k_attempts": round(db_end * 10_000 / max(attempts, 1), 2),
            "growth_mib_per_10k_attempts": round((db_end - db_start) * 10_000 / max(attempts, 1), 2),
        },
    }


def run_soak(
    folder: Path,
    *,
    minutes: float = MINUTES,
    tasks: int = TASKS,
    workers: int = WORKERS,
    slots: int = SLOTS,
    kill_rate: float = KILL_RATE,
    seed: int | None = None,
    heartbeat: float = HEARTBEAT_SECS,
    worker_mode: str = "direct",
    progress: Any = print,
) -> dict[str, Any]:
    """The `soak` section: the figures, or why they could not be taken."""
    seed = random.SystemRandom().randrange(1_000_000) if seed is None else seed
    config: dict[str, Any] = {
        "minutes": minutes,
        "tasks": tasks,
        "workers": workers,
        "slots": slots,
        "kill_rate": kill_rate,
    }
    config |= {"seed": seed, "heartbeat": heartbeat, "worker_mode": worker_mode}
    section: dict[str, Any] = {"meta": meta(**config), "goals": GOALS}
    reason = distributed_unavailable()
    if reason:
        section["skipped"] = reason
        finish(section["meta"])
        return section
    progress(f"soak: seed {seed} (--seed {seed} draws the same DAGs and kill gaps)")
    folder.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        db_url = stack.enter_context(pg_database(os.environ[PG_ENV].strip()))
        queue_url = stack.enter_context(redis_prefix(os.environ[REDIS_ENV].strip()))
        # The soak's own reads (gauges, checker) name themselves to the connection sampler.
        own_url = with_query(db_url, application_name=OWN_CONNECTIONS)
        c = ChaosCluster(
            folder,
            db_url=db_url,
            queue_url=queue_url,
            check_db_url=own_url,
            heartbeat=heartbeat,
            worker_mode=worker_mode,
        )
        stack.callback(c.close)
        gauges = Gauges(own_url, queue_url)
        stack.callback(gauges.close)
        sampler = ConnectionSampler(db_url, every=1.0).start()
        stack.callback(sampler.stop)
        try:
            section.update(measure(c, gauges, config, progress))
        except (httpx.HTTPError, AssertionError, RuntimeError) as exc:
            section["error"] = str(exc)[:2000]
        sampler.stop()
        errors = log_errors(folder)
        section.update(
            connections={"peak_total": sampler.peak_total, "by_process": dict(sampler.peak)},
            log_errors=len(errors),
            log_error_lines=errors[:20],
        )
    finish(section["meta"])
    return section
