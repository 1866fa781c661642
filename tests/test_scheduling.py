"""Cron schedules, catch-up, pause and backfill, driven with a fake clock (no test waits for a minute)."""

from __future__ import annotations

import itertools
import threading
import time
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient

from flowforge.api import create_app
from flowforge.core.dagfile import load_dag
from flowforge.core.model import RunState
from flowforge.engine.scheduler import Scheduler
from flowforge.queues.memory import MemoryQueue
from flowforge.services import Services
from flowforge.settings import Settings
from flowforge.store import open_store


def utc(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def iso(ts: float, tz: str = "UTC") -> str:
    return datetime.fromtimestamp(ts, ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M")


def dag(
    schedule: str,
    *,
    dag_id: str = "cron",
    catchup: bool = False,
    max_active_runs: int = 16,
    tz: str = "UTC",
    params: str = "",
) -> str:
    return (
        f'id: {dag_id}\nschedule: "{schedule}"\ntimezone: {tz}\ncatchup: {str(catchup).lower()}\n'
        f"max_active_runs: {max_active_runs}\n{params}tasks:\n  - {{id: t, command: 'true'}}\n"
    )


class Clocked:
    """A store, a queue and a scheduler whose `tick(now)` the test drives with made-up times."""

    def __init__(self, tmp_path):
        self.path = tmp_path / "ff.db"
        self.store = open_store(f"sqlite:///{self.path}")
        self.queue = MemoryQueue()
        self.scheduler = Scheduler(self.store, self.queue)

    def submit(self, text: str, now: float):
        return self.store.put_dag(load_dag(text), text, now)

    def scheduled(self, dag_id: str = "cron", tz: str = "UTC") -> list[str]:
        runs = self.store.list_runs(dag_id=dag_id, limit=1000)
        return sorted(iso(r.logical_date, tz) for r in runs if r.logical_date is not None)

    def finish_all(self, now: float) -> None:
        for run in self.store.list_runs(states=[RunState.QUEUED, RunState.RUNNING], limit=1000):
            self.store.set_run_state(run.run_id, [RunState.QUEUED], RunState.RUNNING, now)
            self.store.stop_run(run.run_id, RunState.CANCELLED, "test", now)


@pytest.fixture
def clocked(tmp_path):
    c = Clocked(tmp_path)
    yield c
    c.store.close()


def test_hourly_ticks_make_one_run_each_and_never_twice(clocked):
    clocked.submit(dag("@hourly"), utc("2026-01-01T00:10:00"))
    clocked.scheduler.tick(utc("2026-01-01T00:59:59"))
    assert clocked.scheduled() == []
    clocked.scheduler.tick(utc("2026-01-01T01:00:00"))
    clocked.scheduler.tick(utc("2026-01-01T01:00:01"))
    clocked.scheduler.tick(utc("2026-01-01T01:30:00"))
    assert clocked.scheduled() == ["2026-01-01 01:00"]
    clocked.scheduler.tick(utc("2026-01-01T02:00:00"))
    assert clocked.scheduled() == ["2026-01-01 01:00", "2026-01-01 02:00"]
    run = clocked.store.list_runs(dag_id="cron", limit=1)[0]
    assert run.triggered_by == "schedule"


def test_six_field_cron_has_seconds_first(clocked):
    clocked.submit(dag("30 0 * * * *"), utc("2026-01-01T00:00:00"))  # second 30 of minute 0 of every hour
    clocked.scheduler.tick(utc("2026-01-01T00:00:29"))
    assert clocked.scheduled() == []
    clocked.scheduler.tick(utc("2026-01-01T00:00:30"))
    clocked.scheduler.tick(utc("2026-01-01T00:59:00"))
    assert clocked.scheduled() == ["2026-01-01 00:00"]
    assert clocked.store.list_runs(dag_id="cron")[0].logical_date == utc("2026-01-01T00:00:30")


def test_without_catchup_downtime_makes_one_run_for_the_latest_tick(clocked):
    clocked.submit(dag("@hourly"), utc("2026-01-01T00:00:00"))
    clocked.scheduler.tick(utc("2026-01-01T05:30:00"))  # the scheduler was down for five ticks
    assert clocked.scheduled() == ["2026-01-01 05:00"]


def test_with_catchup_every_missed_tick_gets_a_run_oldest_first_within_max_active_runs(clocked):
    clocked.submit(dag("@hourly", catchup=True, max_active_runs=2), utc("2026-01-01T00:00:00"))
    now = utc("2026-01-01T05:30:00")
    clocked.scheduler.tick(now)
    assert clocked.scheduled() == ["2026-01-01 01:00", "2026-01-01 02:00"]
    clocked.scheduler.tick(now)  # both still active: no room
    assert len(clocked.scheduled()) == 2
    clocked.finish_all(now)
    clocked.scheduler.tick(now)
    assert clocked.scheduled()[-2:] == ["2026-01-01 03:00", "2026-01-01 04:00"]
    clocked.finish_all(now)
    clocked.scheduler.tick(now)
    clocked.finish_all(now)
    clocked.scheduler.tick(now)
    assert clocked.scheduled() == [f"2026-01-01 0{h}:00" for h in range(1, 6)]


@pytest.mark.parametrize(
    "start, end, expected",
    [
        # Spring forward in Berlin: 02:30 does not exist on 29 March; croniter fires at 03:00 instead.
        (
            "2026-03-27T12:00:00",
            "2026-03-31T12:00:00",
            ["2026-03-28 02:30", "2026-03-29 03:00", "2026-03-30 02:30", "2026-03-31 02:30"],
        ),
        # Fall back: 02:30 happens twice on 25 October; each real instant is a distinct tick.
        (
            "2026-10-24T12:00:00",
            "2026-10-26T12:00:00",
            ["2026-10-25 02:30", "2026-10-25 02:30", "2026-10-26 02:30"],
        ),
    ],
)
def test_daily_schedule_across_dst_changes(clocked, start, end, expected):
    tz = "Europe/Berlin"
    clocked.submit(dag("30 2 * * *", catchup=True, tz=tz), utc(start))
    now = utc(start)
    while now <= utc(end):  # a tick every ten minutes of fake time
        clocked.scheduler.tick(now)
        clocked.finish_all(now)
        now += 600
    assert clocked.scheduled(tz=tz) == expected
    dates = sorted(r.logical_date for r in clocked.store.list_runs(dag_id="cron", limit=100))
    assert all(b > a for a, b in itertools.pairwise(dates)), "logical dates must be distinct and increasing"


def test_two_schedulers_racing_never_make_the_same_tick_twice(clocked):
    clocked.submit(dag("* * * * *", catchup=True, max_active_runs=100), utc("2026-01-01T00:00:00"))
    stores = [open_store(f"sqlite:///{clocked.path}") for _ in range(2)]
    schedulers = [Scheduler(s, MemoryQueue()) for s in stores]
    barrier = threading.Barrier(2)

    def race(scheduler: Scheduler) -> None:
        barrier.wait()
        for minute in range(1, 31):
            scheduler.tick(utc("2026-01-01T00:00:00") + 60 * minute)

    threads = [threading.Thread(target=race, args=(s,)) for s in schedulers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s in stores:
        s.close()
    ticks = clocked.scheduled()
    assert len(ticks) == len(set(ticks)) == 30


def test_paused_dag_gets_no_scheduled_run_and_manual_trigger_still_works(clocked):
    clocked.submit(dag("@hourly"), utc("2026-01-01T00:00:00"))
    clocked.store.set_dag_flags("cron", paused=True)
    clocked.scheduler.tick(utc("2026-01-01T03:00:00"))
    assert clocked.scheduled() == []
    run = clocked.store.create_run("cron", triggered_by="cli", params={}, now=utc("2026-01-01T03:00:00"))
    clocked.scheduler.tick(utc("2026-01-01T03:00:01"))
    assert clocked.store.get_run(run.run_id).state == RunState.RUNNING


def test_deactivated_dag_is_not_scheduled_until_submitted_again(clocked):
    text = dag("@hourly", catchup=True)
    clocked.submit(text, utc("2026-01-01T00:00:00"))
    clocked.store.set_dag_flags("cron", active=False)
    clocked.scheduler.tick(utc("2026-01-01T03:00:00"))
    assert clocked.scheduled() == []
    clocked.submit(text, utc("2026-01-01T03:30:00"))  # reactivated: ticks count from here
    clocked.scheduler.tick(utc("2026-01-01T04:00:00"))
    assert clocked.scheduled() == ["2026-01-01 04:00"]


# -- through the API: unpause and backfill use the real clock -------------------------------------


@pytest.fixture
def api(clocked, tmp_path):
    settings = Settings(home=tmp_path, db_url="sqlite://", queue_url="memory://")
    with TestClient(create_app(Services(settings, clocked.store, clocked.queue), api_token="")) as client:
        yield client


@pytest.mark.parametrize("catchup, runs_after_unpause", [(False, 0), (True, 3)])
def test_unpause_replays_missed_ticks_only_with_catchup(clocked, api, catchup, runs_after_unpause):
    now = time.time()
    clocked.submit(dag("@hourly", catchup=catchup), now - 3 * 3600)
    assert api.post("/api/v1/dags/cron/pause").status_code == 200
    clocked.scheduler.tick(now)
    assert clocked.scheduled() == []
    assert api.post("/api/v1/dags/cron/unpause").status_code == 200
    clocked.scheduler.tick(now)
    assert len(clocked.scheduled()) == runs_after_unpause


def test_backfill_dry_run_then_create_then_nothing_left(clocked, api):
    clocked.submit(dag("@daily", max_active_runs=2), utc("2026-02-01T00:00:00"))
    body = {"start": "2026-01-01", "end": "2026-01-07", "dry_run": True}
    dry = api.post("/api/v1/dags/cron/backfill", json=body)
    assert dry.status_code == 201
    assert [t["logical_date"] for t in dry.json()["ticks"]] == [
        f"2026-01-0{d}T00:00:00Z" for d in range(1, 8)
    ]
    assert dry.json()["created"] == 0 and clocked.scheduled() == []
    made = api.post("/api/v1/dags/cron/backfill", json={**body, "dry_run": False}).json()
    assert made["created"] == 7 and clocked.scheduled() == [f"2026-01-0{d} 00:00" for d in range(1, 8)]
    again = api.post(
        "/api/v1/dags/cron/backfill",
        json={**body, "start": "2026-01-06", "end": "2026-01-08", "dry_run": False},
    ).json()
    assert [(t["logical_date"][:10], t["existed"]) for t in again["ticks"]] == [
        ("2026-01-06", True),
        ("2026-01-07", True),
        ("2026-01-08", False),
    ]
    assert again["created"] == 1
    # paced by max_active_runs: the scheduler starts the two oldest ticks first
    clocked.scheduler.tick(time.time())
    running = clocked.store.list_runs(dag_id="cron", states=[RunState.RUNNING])
    assert sorted(iso(r.logical_date) for r in running) == ["2026-01-01 00:00", "2026-01-02 00:00"]


@pytest.mark.parametrize(
    "body, code",
    [
        ({"start": "2026-01-07", "end": "2026-01-01"}, "invalid_range"),
        ({"start": "yesterday", "end": "2026-01-01"}, "invalid_range"),
        ({"start": "2020-01-01", "end": "2026-01-01"}, "invalid_range"),  # more than 1000 ticks
    ],
)
def test_backfill_rejects_bad_ranges(clocked, api, body, code):
    clocked.submit(dag("@daily"), utc("2026-02-01T00:00:00"))
    answer = api.post("/api/v1/dags/cron/backfill", json=body)
    assert answer.status_code == 422 and answer.json()["error"]["code"] == code
    assert clocked.scheduled() == []


def test_backfill_of_an_unscheduled_dag_is_refused(clocked, api):
    text = "id: plain\ntasks:\n  - {id: t, command: 'true'}\n"
    clocked.store.put_dag(load_dag(text), text, time.time())
    answer = api.post("/api/v1/dags/plain/backfill", json={"start": "2026-01-01", "end": "2026-01-02"})
    assert answer.status_code == 422 and answer.json()["error"]["code"] == "no_schedule"


def test_dags_show_their_next_run(clocked, api):
    clocked.submit(dag("@hourly"), time.time())
    listed = api.get("/api/v1/dags").json()["dags"][0]
    nxt = datetime.fromisoformat(listed["next_run"].replace("Z", "+00:00"))
    assert nxt.minute == 0 and nxt.second == 0 and 0 < nxt.timestamp() - time.time() <= 3600
