"""The leading scheduler keeps its lease through a long tick and stops at once when it loses it;
a late cron pass is not downtime (R4 found both: see tests/chaos/test_r4_schedulers.py).

On a real SQLite store and the in-process queue; times are made up where the rule is about
times, real where it is about the lease's clock.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from flowforge.core.dagfile import load_dag
from flowforge.core.model import RunState
from flowforge.engine.scheduler import Scheduler
from flowforge.queues.memory import MemoryQueue
from flowforge.store import Store, open_store

ONE_TASK = "tasks:\n  - {id: t, command: 'true'}\n"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(f"sqlite:///{tmp_path / 'ff.db'}")
    yield s
    s.close()


def test_a_leader_that_lost_its_lease_stops_acting_within_the_tick(store: Store) -> None:
    """Another scheduler took the lease while this one was busy: its next step does nothing."""
    dag = load_dag(f"id: d\nmax_active_runs: 10\n{ONE_TASK}")
    store.put_dag(dag, "", time.time())
    runs = [store.create_run("d", triggered_by="t", params={}, now=time.time()) for _ in range(3)]
    ttl = 0.3
    leader, other = Scheduler(store, MemoryQueue(), leader_ttl=ttl), Scheduler(store, MemoryQueue())
    leader.kept.keep()
    assert leader.kept.leading()
    store.release_lease("scheduler", leader.holder)  # as if it had lapsed while the leader was frozen
    assert other.lead(time.time())
    time.sleep(ttl / 2)  # past the point where the leader renews before acting
    report = leader.tick(time.time())
    assert report.runs_started == 0 and report.tasks_queued == 0
    assert [store.get_run(r.run_id).state for r in runs] == [RunState.QUEUED] * 3
    assert not leader.is_leader


def test_a_leader_renews_its_lease_during_a_tick(store: Store) -> None:
    """A tick that starts after a third of the lease has gone renews it before acting."""
    dag = load_dag(f"id: d\n{ONE_TASK}")
    store.put_dag(dag, "", time.time())
    run = store.create_run("d", triggered_by="t", params={}, now=time.time())
    ttl = 1.0
    leader = Scheduler(store, MemoryQueue(), leader_ttl=ttl)
    leader.kept.keep()
    taken = time.time()
    assert leader.kept.leading()
    time.sleep(ttl / 2)
    leader.tick(time.time())
    assert store.get_run(run.run_id).state == RunState.RUNNING
    # Taken at `taken` and not renewed, the lease would have lapsed at taken + ttl.
    assert store.lease_holder("scheduler", taken + ttl + 0.2) == leader.holder


def cron_dag(store: Store, catchup: bool, at: float) -> None:
    text = (
        f'id: c\nschedule: "*/1 * * * * *"\ncatchup: {str(catchup).lower()}\nmax_active_runs: 100\n{ONE_TASK}'
    )
    store.put_dag(load_dag(text), text, at)


def logical_dates(store: Store, since: float) -> list[float]:
    return sorted((r.logical_date or 0) - since for r in store.list_runs(dag_id="c", limit=1000))


def test_without_catchup_a_late_pass_makes_every_tick_since_the_previous_one(store: Store) -> None:
    t0 = 1_800_000_000.0
    cron_dag(store, catchup=False, at=t0)
    scheduler = Scheduler(store, MemoryQueue())
    scheduler.tick(t0 + 0.5)
    assert logical_dates(store, t0) == []
    scheduler.tick(t0 + 4.5)  # the pass came 4 s late: a long tick, not downtime
    assert logical_dates(store, t0) == [1.0, 2.0, 3.0, 4.0]
    scheduler.tick(t0 + 100.5)  # more than 30 s late: downtime, one run for the latest tick
    assert logical_dates(store, t0) == [1.0, 2.0, 3.0, 4.0, 100.0]


def test_without_catchup_a_new_leader_makes_only_the_latest_tick(store: Store) -> None:
    t0 = 1_800_000_000.0
    cron_dag(store, catchup=False, at=t0)
    first = Scheduler(store, MemoryQueue())
    first.tick(t0 + 1.5)
    assert logical_dates(store, t0) == [1.0]
    second = Scheduler(store, MemoryQueue())  # took over after the first died: a gap
    second.tick(t0 + 6.5)
    assert logical_dates(store, t0) == [1.0, 6.0]
