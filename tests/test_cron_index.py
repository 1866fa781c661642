"""The cron pass with many scheduled DAGs: a tick works on the DAGs that are due, and no other.

Driven with a fake clock on real stores (SQLite, and PostgreSQL where the `store` fixture has it). Schedule evaluations are counted where they
happen, in `flowforge.core.schedule` (each sets croniter at an instant), so the count does not
depend on what the scheduler says it did.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from flowforge.core import schedule
from flowforge.core.dagfile import load_dag
from flowforge.core.model import RunState
from flowforge.core.records import Run
from flowforge.engine.scheduler import Scheduler
from flowforge.queues.memory import MemoryQueue
from flowforge.store import open_store
from flowforge.store.base import Store

# 2026-01-01 00:00:00.5 UTC: half a second past a whole second, as a real tick would be.
T0 = datetime(2026, 1, 1, tzinfo=UTC).timestamp() + 0.5
SUBMITTED = T0 - 0.7  # the DAGs' ticks count from 23:59:59.8: the first due is 00:00:00


def cron_dag(dag_id: str, schedule_text: str, *, max_active_runs: int = 16) -> str:
    return (
        f'id: {dag_id}\nschedule: "{schedule_text}"\nmax_active_runs: {max_active_runs}\n'
        "tasks:\n  - {id: t, command: 'true'}\n"
    )


@pytest.fixture
def evaluations(monkeypatch: pytest.MonkeyPatch) -> Callable[[], int]:
    """How many times a schedule has been evaluated (from an instant on) since the fixture started."""
    count = 0
    real = schedule.Ticks._from

    def counted(self: schedule.Ticks, start: float) -> Any:
        nonlocal count
        count += 1
        return real(self, start)

    monkeypatch.setattr(schedule.Ticks, "_from", counted)
    return lambda: count


def minute_dags(store: Store, n: int) -> None:
    """`n` DAGs firing once a minute, DAG i at second i % 60."""
    for i in range(n):
        text = cron_dag(f"d{i:04d}", f"{i % 60} * * * * *")
        store.put_dag(load_dag(text), text, SUBMITTED)


def scheduled(store: Store, dag_id: str | None = None) -> list[tuple[str, float]]:
    runs = store.list_runs(dag_id=dag_id, limit=100_000)
    return sorted((r.dag_id, r.logical_date) for r in runs if r.logical_date is not None)


def test_a_tick_evaluates_the_schedules_of_due_dags_only_however_many_dags_there_are(
    tmp_path: Path, evaluations: Callable[[], int]
) -> None:
    quiet: dict[int, int] = {}
    per_due: dict[int, float] = {}
    for n in (100, 400, 1600):
        store = open_store(f"sqlite:///{tmp_path / f'{n}.db'}")
        try:
            minute_dags(store, n)
            scheduler = Scheduler(store, MemoryQueue())
            scheduler.tick(T0)  # the first pass reads every DAG once: second 0's DAGs are due
            assert len(scheduled(store)) == len(range(0, n, 60))
            before = evaluations()
            scheduler.tick(T0 + 0.3)  # nothing new is due
            quiet[n] = evaluations() - before
            before = evaluations()
            scheduler.tick(T0 + 1.0)  # second 1's DAGs are due
            due = len(range(1, n, 60))
            assert len(scheduled(store)) == len(range(0, n, 60)) + due
            per_due[n] = (evaluations() - before) / due
        finally:
            store.close()
    assert quiet == {100: 0, 400: 0, 1600: 0}
    assert len(set(per_due.values())) == 1 and per_due[100] <= 4, per_due


def test_a_changed_schedule_is_followed_from_the_next_tick(store: Store) -> None:
    first = cron_dag("moved", "0 * * * * *")
    store.put_dag(load_dag(first), first, SUBMITTED)
    scheduler = Scheduler(store, MemoryQueue())
    scheduler.tick(T0)
    assert scheduled(store) == [("moved", T0 - 0.5)]
    moved = cron_dag("moved", "30 * * * * *")
    store.put_dag(load_dag(moved), moved, T0 + 1)
    for at in (T0 + 10, T0 + 30, T0 + 61):  # :30 is due now; :00 of the next minute no longer
        scheduler.tick(at)
    assert scheduled(store) == [("moved", T0 - 0.5), ("moved", T0 + 29.5)]


def test_a_dag_deactivated_and_submitted_again_picks_up_from_then(store: Store) -> None:
    text = cron_dag("back", "*/10 * * * * *")
    store.put_dag(load_dag(text), text, SUBMITTED)
    scheduler = Scheduler(store, MemoryQueue())
    scheduler.tick(T0)
    store.set_dag_flags("back", active=False)
    scheduler.tick(T0 + 25)
    assert scheduled(store) == [("back", T0 - 0.5)]
    store.put_dag(load_dag(text), text, T0 + 35)  # active again: ticks count from now
    scheduler.tick(T0 + 45)
    assert scheduled(store) == [("back", T0 - 0.5), ("back", T0 + 39.5)]


def test_the_loop_waits_for_the_next_tick_and_not_for_a_dag_at_its_run_limit(store: Store) -> None:
    busy = cron_dag("busy", "* * * * * *", max_active_runs=1)
    store.put_dag(load_dag(busy), busy, SUBMITTED)
    scheduler = Scheduler(store, MemoryQueue())
    scheduler.tick(T0)  # the run for 00:00:00
    assert scheduler.cron.wait_secs(T0 + 0.1, 1.0) == pytest.approx(0.4, abs=0.01)  # until 00:00:01
    scheduler.tick(T0 + 0.6)  # 00:00:01 is due, but the one run allowed is still active
    assert len(scheduled(store)) == 1
    assert scheduler.cron.wait_secs(T0 + 0.7, 1.0) == 1.0  # nothing to wake up early for
    [run] = store.list_runs(dag_id="busy", states=[RunState.QUEUED, RunState.RUNNING])
    store.stop_run(run.run_id, RunState.CANCELLED, "test", T0 + 0.8)
    scheduler.tick(T0 + 0.9)  # room again; 00:00:01 came while there was none: left out (catchup: false)
    assert len(scheduled(store)) == 1
    scheduler.tick(T0 + 1.6)  # room again: the tick of 00:00:02 has its run
    assert scheduled(store) == [("busy", T0 - 0.5), ("busy", T0 + 1.5)]


def test_a_tick_made_elsewhere_or_a_dag_gone_does_not_keep_the_other_runs_of_a_pass_from_being_made(
    store: Store,
) -> None:
    for dag_id in ("a", "b"):
        text = cron_dag(dag_id, "* * * * * *")
        store.put_dag(load_dag(text), text, SUBMITTED)
    store.create_run("a", triggered_by="schedule", params={}, now=T0, logical_date=T0 - 0.5)
    made = store.create_scheduled_runs(
        [("a", T0 - 0.5, {}), ("b", T0 - 0.5, {"k": "v"}), ("gone", T0, {})], T0
    )
    assert [type(m).__name__ for m in made] == ["Conflict", "Run", "NotFound"]
    assert scheduled(store) == [("a", T0 - 0.5), ("b", T0 - 0.5)]
    assert isinstance(made[1], Run)
    run = store.get_run(made[1].run_id)
    assert (run.state, run.triggered_by, run.params) == (RunState.QUEUED, "schedule", {"k": "v"})
    assert [t.state for t in store.task_instances(run.run_id)] == ["pending"]


# -- a real `flowforge up` ------------------------------------------------------------------------
PERIODS = (1, 2, 3, 5)  # seconds between ticks
ON_TIME_DAGS = 36
WATCH_SECS = 8.0


@pytest.mark.e2e
def test_up_makes_each_second_level_tick_once_and_on_time(tmp_path: Path) -> None:
    from tests.harness import start_up

    home = tmp_path / "home"
    proc = start_up(home, "--concurrency", "4")
    try:
        client = httpx.Client(base_url=proc.url, timeout=30)
        for i in range(ON_TIME_DAGS):
            text = cron_dag(f"on-time-{i:02d}", f"*/{PERIODS[i % len(PERIODS)]} * * * * *")
            assert client.post("/api/v1/dags", json={"yaml": text}).status_code in (200, 201)
        start = math.ceil(time.time()) + 1  # the first whole second after the DAGs are all in
        end = start + WATCH_SECS
        time.sleep(end + 1.5 - time.time())
        proc.check_alive()
    finally:
        proc.stop()
    store = open_store(f"sqlite:///{home / 'flowforge.db'}")
    try:
        runs = [
            r for r in store.list_runs(limit=100_000) if r.logical_date and start <= r.logical_date <= end
        ]
    finally:
        store.close()
    made = Counter((r.dag_id, r.logical_date) for r in runs)
    expected = {
        (f"on-time-{i:02d}", float(t))
        for i in range(ON_TIME_DAGS)
        for t in range(start, int(end) + 1)
        if t % PERIODS[i % len(PERIODS)] == 0
    }
    assert set(made) == expected and set(made.values()) == {1}
    late = max(r.created_at - (r.logical_date or 0.0) for r in runs)
    assert 0 <= late < 1.0, f"a run was made {late:.3f}s after its tick"
