"""Automatic retention (FLOWFORGE_RETENTION_DAYS): the leading scheduler prunes, a batch per tick."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from flowforge.core.model import RunState
from flowforge.engine.retention import RETENTION_FIRST_SECS
from flowforge.engine.scheduler import Scheduler
from flowforge.queues.memory import MemoryQueue
from flowforge.roles import make_scheduler
from flowforge.services import build_services
from flowforge.settings import Settings
from flowforge.store import Store, open_store
from tests.harness import wait_until
from tests.prune_support import (
    DAY,
    NOW,
    bulk_history,
    ended_run,
    queued_run,
    running_run,
    submit,
    table_counts,
)


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Store:
    return open_store(f"sqlite:///{tmp_path / 'ff.db'}")


def test_the_scheduler_prunes_a_batch_per_tick_once_shortly_after_start_then_hourly(
    sqlite_store: Store,
) -> None:
    store = sqlite_store
    bulk_history(store, runs=1_200, tasks=1, ended=NOW - 40 * DAY)
    submit(store)
    recent = ended_run(store, NOW - 29 * DAY)
    scheduler = Scheduler(store, MemoryQueue(), retention_secs=30 * DAY, clock=lambda: NOW)
    assert scheduler.tick(NOW).runs_pruned == 0  # just started: not yet
    assert scheduler.tick(NOW + RETENTION_FIRST_SECS - 1).runs_pruned == 0
    pruned = [scheduler.tick(NOW + RETENTION_FIRST_SECS + i).runs_pruned for i in range(4)]
    assert pruned == [500, 500, 200, 0]  # one short batch per tick, then the pass is over
    assert table_counts(store)["runs"] == 1 and store.get_run(recent)
    # The next pass comes an hour after the last one ended; runs ended since are pruned then.
    late = NOW + RETENTION_FIRST_SECS + 3
    assert scheduler.tick(late + 1800).runs_pruned == 0
    assert scheduler.tick(late + 3600 + 2 * DAY).runs_pruned == 1  # `recent` is 31 days old now
    # Ticks without housekeeping (a wake between the tick_secs ticks) never prune.
    bulk_history(store, runs=3, tasks=1, ended=NOW - 40 * DAY, dag_id="later")
    assert scheduler.tick(late + 7300 + 2 * DAY, housekeeping=False).runs_pruned == 0


def test_without_retention_nothing_is_ever_pruned(sqlite_store: Store) -> None:
    bulk_history(sqlite_store, runs=10, tasks=1, ended=NOW - 4000 * DAY)
    scheduler = Scheduler(sqlite_store, MemoryQueue())
    for hour in range(3):
        assert scheduler.tick(NOW + hour * 3600).runs_pruned == 0
    assert table_counts(sqlite_store)["runs"] == 10


def test_retention_days_makes_a_running_scheduler_prune(tmp_path: Path) -> None:
    """`FLOWFORGE_RETENTION_DAYS=30` (here with a pass every 0.2 s), the scheduler as `up` builds it."""
    settings = Settings(
        home=tmp_path,
        db_url=f"sqlite:///{tmp_path / 'ff.db'}",
        queue_url="memory://",
        retention_days=30,
        retention_every_secs=0.2,
    )
    services = build_services(settings)
    try:
        store, now = services.store, time.time()
        submit(store, at=now - 400 * DAY)
        old = [
            ended_run(store, now - 31 * DAY, s)
            for s in (RunState.SUCCESS, RunState.FAILED, RunState.CANCELLED)
        ]
        kept = [
            ended_run(store, now - 29 * DAY),
            running_run(store, now - 90 * DAY),
            queued_run(store, now - 90 * DAY),
        ]
        scheduler = make_scheduler(services)
        stop = threading.Event()
        thread = threading.Thread(target=scheduler.run, args=(stop, 0.05), daemon=True)
        thread.start()
        try:
            wait_until("the old runs to be pruned", lambda: table_counts(store)["runs"] == 3, timeout=30)
        finally:
            stop.set()
            thread.join(10)
        assert {r.run_id for r in store.list_runs(limit=10)} == set(kept)
        assert all(r not in {e.run_id for e in store.events_after(0, limit=10_000)} for r in old)
    finally:
        services.close()


def test_the_setting_is_read_and_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLOWFORGE_RETENTION_DAYS", raising=False)
    assert Settings.from_env().retention_days == 0
    monkeypatch.setenv("FLOWFORGE_RETENTION_DAYS", "90")
    assert Settings.from_env().retention_days == 90
    for bad, says in (("-1", "whole number"), ("30d", "whole number"), ("36526", "at most 36525")):
        monkeypatch.setenv("FLOWFORGE_RETENTION_DAYS", bad)
        with pytest.raises(ValueError, match=f"FLOWFORGE_RETENTION_DAYS must be.*{says}|{says}"):
            Settings.from_env()
