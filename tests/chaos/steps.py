"""Steps the chaos scenarios share: work in flight before a fault, what the fault hit, the invariants after.

Every scenario waits until work is in flight before it strikes, counts from the ledger (or the
store) what its faults actually hit, and asserts that they hit something: a fault that struck
an idle cluster proves nothing.
"""

from __future__ import annotations

import random
import time
from typing import Any
from urllib.parse import urlsplit

from tests.backends import TcpProxy
from tests.chaos.cluster import ChaosCluster, Figures
from tests.chaos.invariants import Verdict, check_runs
from tests.chaos.ledger import (
    Dag,
    Entry,
    make_dag,
    read_ledger,
    running_at,
    task_command,
    wait_no_survivors,
)

TICK_SECS = 1.0  # the scheduler's safety-net tick
FRESH_SECS = 0.15  # a task started this recently still runs: every test task sleeps 0.3 s or more

Queued = set[tuple[str, str, int]]  # (run_id, task_id, attempt) of tasks queued and not yet claimed


# -- before a fault -------------------------------------------------------------------------------
def fresh_executions(c: ChaosCluster) -> list[Entry] | None:
    """Executions that started within the last FRESH_SECS and have not ended (from the ledger)."""
    now = time.time()
    running = [e for e in running_at(read_ledger(c.ledger), now) if now - e.at < FRESH_SECS]
    return running or None


def wait_in_flight(c: ChaosCluster, timeout: float = 30) -> list[Entry]:
    """Wait until a task has just started: a fault struck right after hits it while it runs."""
    return c.wait_for("a task to have just started", lambda: fresh_executions(c), timeout, poll=0.01)


def first_attempts(c: ChaosCluster, count: int) -> list[int] | None:
    """The pids of the first attempts in the ledger, once there are `count` of them."""
    pids = [e.pid for e in read_ledger(c.ledger) if e.kind == "start" and e.attempt == 1]
    return pids if len(pids) == count else None


def queued_tasks(c: ChaosCluster, run_ids: list[str]) -> Queued:
    """(run_id, task_id, attempt) of every task queued and not yet claimed."""
    return {
        (t["run_id"], t["task_id"], t["attempt"]) for t in c.task_states(run_ids) if t["state"] == "queued"
    }


def long_pair_dag(dag_id: str, c: ChaosCluster, rng: random.Random) -> Dag:
    """Tasks a and b, whose first attempts run 30 s (far past any fault) and later ones briefly; c after both."""
    tasks: list[dict[str, Any]] = [
        {"id": t, "command": task_command(30.0, retry_sleep=rng.uniform(0.2, 0.6))} for t in ("a", "b")
    ]
    tasks.append({"id": "c", "command": task_command(0.1), "depends_on": ["a", "b"]})
    return make_dag(dag_id, c.ledger, tasks)


def relay(url: str) -> tuple[TcpProxy, str]:
    """A TCP relay to PostgreSQL (or to the API: an http:// URL) that a scenario can cut, and the URL
    through it."""
    target = urlsplit(url)
    default_port = 80 if target.scheme == "http" else 5432
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or default_port).start()
    user = f"{target.username}@" if target.username else ""
    return proxy, url.replace(target.netloc, f"{user}127.0.0.1:{proxy.port}", 1)


# -- what a fault hit -----------------------------------------------------------------------------
def record_hits(figures: Figures, c: ChaosCluster, faults: list[float]) -> None:
    """Count the faults (epoch times) and the task executions running at each, from the ledger."""
    entries = read_ledger(c.ledger)
    for at in faults:
        running = running_at(entries, at)
        figures.faults += 1
        figures.hits += 1 if running else 0
        figures.tasks_hit += len(running)


def assert_every_fault_hit(figures: Figures) -> None:
    """Each fault struck work in flight (a fault on an idle cluster would prove nothing)."""
    assert figures.faults > 0 and figures.hits == figures.faults, (
        f"{figures.hits} of {figures.faults} fault(s) struck work in flight (seed {figures.seed})"
    )


def refusals(c: ChaosCluster) -> str:
    """How many results the workers logged as refused (when their logs carry info lines)."""
    n = c.count_in_logs("result dropped")
    return f"; {n} refused result(s) in the workers' logs" if n else ""


# -- after a fault --------------------------------------------------------------------------------
def first_claim_after(c: ChaosCluster, run_ids: list[str], since: float, timeout: float) -> float:
    """Seconds from `since` (epoch) to the first task claimed after it, by the store's own timestamps."""

    def claimed() -> float | None:
        times = [
            t["started_at"] for t in c.task_states(run_ids) if t["started_at"] and t["started_at"] > since
        ]
        return min(times) if times else None

    return c.wait_for("a task to be claimed", claimed, timeout, poll=0.1) - since


def wait_claimed(
    c: ChaosCluster, run_ids: list[str], stranded: Queued, since: float, timeout: float
) -> float:
    """Seconds from `since` (monotonic) until every attempt in `stranded` has been claimed."""

    def all_claimed() -> bool:
        now = {(t["run_id"], t["task_id"]): (t["state"], t["attempt"]) for t in c.task_states(run_ids)}
        return all(now[(r, t)] != ("queued", a) for r, t, a in stranded)

    c.wait_for(f"{len(stranded)} stranded task(s) to be claimed", all_claimed, timeout, poll=0.1)
    return time.monotonic() - since


def holds_nothing(c: ChaosCluster, worker_id: str) -> bool:
    """True once the worker's heartbeat says it holds no attempt (it has handed in or dropped every result)."""
    workers = {w["worker_id"]: w for w in c.get("/api/v1/workers")["workers"]}
    return not workers[worker_id]["running"]


def verify(
    c: ChaosCluster, figures: Figures, runs: dict[str, Dag], *, extra: Verdict | None = None
) -> Verdict:
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
