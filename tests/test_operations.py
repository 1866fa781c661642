"""The product rules of `flowforge.operations`, on a real store (every backend) and the in-memory queue.

No HTTP here: these are the functions the API routes call. A small stand-in for the workers
(`Engine.settle`) claims each queued task and finishes it as the test says, and the real
scheduler moves the runs on, so that runs fail, succeed and get retried as they would for a user.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from flowforge import operations as ops
from flowforge.core.dagfile import load_dag
from flowforge.core.errors import Conflict, DagValidationError, InvalidRequest, NotFound
from flowforge.core.model import RunState, TaskState
from flowforge.engine.scheduler import Scheduler
from flowforge.queues.memory import MemoryQueue
from flowforge.store import Store
from flowforge.store.base import LEADER_LEASE

MAX_YAML = 1024 * 1024
CHAIN = """\
id: chain
params: {region: eu, size: 1}
tasks:
  - {id: a, command: 'true'}
  - {id: b, command: 'true', depends_on: [a]}
  - {id: c, command: 'true', depends_on: [b]}
  - {id: d, command: 'true'}
"""
DAILY = """\
id: daily
schedule: "@daily"
params: {region: eu}
tasks:
  - {id: t, command: 'true'}
"""


def hourly(catchup: bool) -> str:
    return f'id: hourly\nschedule: "@hourly"\ncatchup: {str(catchup).lower()}\ntasks:\n  - {{id: t, command: "true"}}\n'


class Engine:
    """The store, the in-memory queue, the real scheduler, and a worker that does as it is told."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.queue = MemoryQueue()
        self.scheduler = Scheduler(store, self.queue)

    def submit(self, text: str) -> ops.Submission:
        return ops.submit_dag(self.store, self.queue, text, max_bytes=MAX_YAML)

    def trigger(self, dag_id: str = "chain", **kw: Any) -> str:
        return ops.trigger_run(self.store, self.queue, dag_id, **kw).run.run_id

    def settle(
        self, failing: frozenset[str] = frozenset(), *, start_only: frozenset[str] = frozenset()
    ) -> None:
        """Tick and work until nothing moves: tasks in `failing` fail, those in `start_only` keep running."""
        idle = 0
        for _ in range(100):
            self.scheduler.tick(time.time())
            message = self.queue.get(0)
            if message is None:
                idle += 1  # a tick may end one run and start the next only on the tick after
                if idle == 3:
                    return
                continue
            idle = 0
            now = time.time()
            ti = self.store.claim_task(message.run_id, message.task_id, message.attempt, "w1", now)
            assert ti is not None
            if message.task_id in start_only:
                continue
            state = TaskState.FAILED if message.task_id in failing else TaskState.SUCCESS
            self.store.append_log(
                message.run_id, message.task_id, message.attempt, f"{message.task_id} ran\n"
            )
            assert self.store.finish_task(
                message.run_id,
                message.task_id,
                message.attempt,
                "w1",
                state=state,
                now=now,
                exit_code=0 if state == TaskState.SUCCESS else 1,
                lease_token=ti.lease_token,
            )
        raise AssertionError("the run never settled")

    def states(self, run_id: str) -> dict[str, str]:
        return {ti.task_id: str(ti.state) for ti in self.store.task_instances(run_id)}

    def run_state(self, run_id: str) -> RunState:
        return self.store.get_run(run_id).state


@pytest.fixture
def engine(store: Store) -> Iterator[Engine]:
    e = Engine(store)
    yield e
    e.queue.close()


# -- submit ----------------------------------------------------------------------------------------
def test_submit_tells_new_changed_and_identical_versions(engine: Engine) -> None:
    first = engine.submit(CHAIN)
    assert (first.created, first.changed, first.record.version) == (True, True, 1)
    same = engine.submit(CHAIN)
    assert (same.created, same.changed, same.record.version) == (False, False, 1)
    changed = engine.submit(CHAIN.replace("size: 1", "size: 2"))
    assert (changed.created, changed.changed, changed.record.version) == (False, True, 2)
    assert engine.queue.wait_for_wake(0) is True  # the scheduler sees a new schedule at once


def test_an_invalid_dag_is_refused_with_its_problems_and_nothing_is_stored(engine: Engine) -> None:
    with pytest.raises(DagValidationError) as err:
        engine.submit("id: broken\ntasks:\n  - {id: a, command: 'true', depends_on: [ghost]}\n")
    assert "ghost" in str(err.value)
    assert engine.store.list_dags(include_inactive=True) == []


# -- trigger ---------------------------------------------------------------------------------------
def test_trigger_merges_params_over_the_declared_defaults_and_wakes_the_scheduler(engine: Engine) -> None:
    engine.submit(CHAIN)
    engine.queue.wait_for_wake(0)
    trigger = ops.trigger_run(engine.store, engine.queue, "chain", params={"size": 5}, triggered_by="cli")
    assert trigger.run.state == RunState.QUEUED and trigger.dag_paused is False
    assert (trigger.run.triggered_by, trigger.run.params) == ("cli", {"region": "eu", "size": 5})
    assert engine.queue.wait_for_wake(0) is True
    assert set(engine.states(trigger.run.run_id).values()) == {"pending"}


@pytest.mark.parametrize(
    ("params", "named"),
    [({"colour": "red"}, "colour"), ({"size": [1, 2]}, "size"), ({"bad-name": 1}, "bad-name")],
)
def test_trigger_refuses_bad_params_and_starts_nothing(
    engine: Engine, params: dict[str, object], named: str
) -> None:
    engine.submit(CHAIN)
    with pytest.raises(InvalidRequest) as err:
        ops.trigger_run(engine.store, engine.queue, "chain", params=params)
    assert err.value.code == "invalid_params" and named in err.value.message
    assert engine.store.list_runs() == []


def test_trigger_of_an_unknown_or_deactivated_dag_is_not_found(engine: Engine) -> None:
    with pytest.raises(NotFound):
        engine.trigger("ghost")
    engine.submit(CHAIN)
    assert ops.deactivate_dag(engine.store, "chain").active is False
    with pytest.raises(NotFound, match="inactive; activate it or submit it again"):
        engine.trigger()
    again = engine.submit(CHAIN)  # submitting it again reactivates it
    assert again.record.active and not again.changed
    engine.trigger()
    assert len(engine.store.list_runs()) == 1


def test_a_trigger_with_the_same_idempotency_key_gets_the_same_run(engine: Engine) -> None:
    engine.submit(CHAIN)
    first = engine.trigger(idempotency_key="build-42")
    assert engine.trigger(idempotency_key="build-42") == first
    other = engine.trigger(idempotency_key="build-43")
    assert other != first
    assert len(engine.store.list_runs(dag_id="chain")) == 2


# -- pause and unpause -----------------------------------------------------------------------------
def test_a_paused_dag_still_runs_when_triggered_by_hand(engine: Engine) -> None:
    engine.submit(CHAIN)
    assert ops.pause_dag(engine.store, "chain").paused is True
    trigger = ops.trigger_run(engine.store, engine.queue, "chain")
    assert trigger.dag_paused is True
    engine.settle()
    assert engine.run_state(trigger.run.run_id) == RunState.SUCCESS


@pytest.mark.parametrize(("catchup", "runs_after_unpause"), [(False, 0), (True, 3)])
def test_unpause_replays_the_ticks_missed_while_paused_only_with_catchup(
    engine: Engine, catchup: bool, runs_after_unpause: int
) -> None:
    now = time.time()
    text = hourly(catchup)
    engine.store.put_dag(load_dag(text), text, now - 3 * 3600)  # stored three hours ago
    ops.pause_dag(engine.store, "hourly")
    engine.scheduler.tick(now)
    assert engine.store.list_runs(dag_id="hourly") == []
    record = ops.unpause_dag(engine.store, engine.queue, "hourly")
    assert record.paused is False and engine.queue.wait_for_wake(0) is True
    engine.scheduler.tick(time.time())
    assert len(engine.store.list_runs(dag_id="hourly")) == runs_after_unpause


def test_unpausing_a_dag_that_was_not_paused_changes_nothing(engine: Engine) -> None:
    before = engine.submit(hourly(False)).record
    after = ops.unpause_dag(engine.store, engine.queue, "hourly")
    assert (after.paused, after.schedule_after) == (False, before.schedule_after)


def test_pause_and_unpause_of_an_unknown_dag_are_not_found(engine: Engine) -> None:
    with pytest.raises(NotFound):
        ops.pause_dag(engine.store, "ghost")
    with pytest.raises(NotFound):
        ops.unpause_dag(engine.store, engine.queue, "ghost")


# -- backfill --------------------------------------------------------------------------------------
def test_backfill_dry_run_lists_the_ticks_and_creates_nothing(engine: Engine) -> None:
    engine.submit(DAILY)
    dry = ops.backfill(engine.store, engine.queue, "daily", "2026-01-01", "2026-01-07", dry_run=True)
    assert len(dry.ticks) == 7 and dry.created == 0
    assert all(t.run_id is None and not t.existed for t in dry.ticks)
    assert engine.store.list_runs(dag_id="daily") == []


def test_backfill_creates_a_run_per_tick_that_has_none(engine: Engine) -> None:
    engine.submit(DAILY)
    made = ops.backfill(engine.store, engine.queue, "daily", "2026-01-01", "2026-01-07")
    assert made.created == 7
    runs = engine.store.list_runs(dag_id="daily")
    assert sorted(r.logical_date or 0 for r in runs) == [t.logical_date for t in made.ticks]
    assert {(r.triggered_by, r.state, r.params["region"]) for r in runs} == {
        ("backfill", RunState.QUEUED, "eu")
    }
    again = ops.backfill(engine.store, engine.queue, "daily", "2026-01-06", "2026-01-08")
    assert [(t.existed, t.run_id is not None) for t in again.ticks] == [
        (True, False),
        (True, False),
        (False, True),
    ]
    assert again.created == 1 and len(engine.store.list_runs(dag_id="daily")) == 8


def test_backfill_counts_a_tick_the_scheduler_took_meanwhile_as_existing(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine.submit(DAILY)
    ops.backfill(engine.store, engine.queue, "daily", "2026-01-02", "2026-01-02")  # "the scheduler"
    # The backfill read the existing runs before that run was made: it sees none.
    monkeypatch.setattr(engine.store, "logical_dates", lambda *args: set())
    raced = ops.backfill(engine.store, engine.queue, "daily", "2026-01-01", "2026-01-03")
    assert [(t.existed, t.run_id is not None) for t in raced.ticks] == [
        (False, True),
        (True, False),
        (False, True),
    ]
    assert raced.created == 2 and len(engine.store.list_runs(dag_id="daily")) == 3


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        ("2026-01-07", "2026-01-01", "before start"),
        ("yesterday", "2026-01-01", "not an ISO-8601 date"),
        ("2020-01-01", "2026-01-01", "more than 1000 ticks"),
    ],
)
def test_backfill_refuses_bad_ranges(engine: Engine, start: str, end: str, message: str) -> None:
    engine.submit(DAILY)
    with pytest.raises(InvalidRequest) as err:
        ops.backfill(engine.store, engine.queue, "daily", start, end)
    assert err.value.code == "invalid_range" and message in err.value.message
    assert engine.store.list_runs() == []


def test_backfill_needs_an_active_scheduled_dag(engine: Engine) -> None:
    engine.submit(CHAIN)
    with pytest.raises(InvalidRequest) as err:
        ops.backfill(engine.store, engine.queue, "chain", "2026-01-01", "2026-01-02")
    assert err.value.code == "no_schedule"
    engine.submit(DAILY)
    ops.deactivate_dag(engine.store, "daily")
    with pytest.raises(NotFound, match="inactive"):
        ops.backfill(engine.store, engine.queue, "daily", "2026-01-01", "2026-01-02")


# -- cancel ----------------------------------------------------------------------------------------
def test_cancel_ends_the_run_and_every_task_once(engine: Engine) -> None:
    engine.submit(CHAIN)
    run_id = engine.trigger()
    engine.settle(start_only=frozenset({"a", "d"}))
    assert engine.states(run_id) == {"a": "running", "b": "pending", "c": "pending", "d": "running"}
    snapshot = ops.cancel_run(engine.store, run_id)
    assert snapshot.run.state == RunState.CANCELLED and snapshot.waiting is None
    assert {str(ti.state) for ti in snapshot.tasks} == {"cancelled"}
    with pytest.raises(Conflict, match="has already ended \\(cancelled\\)"):
        ops.cancel_run(engine.store, run_id)
    with pytest.raises(NotFound):
        ops.cancel_run(engine.store, "no-such-run")


# -- retry -----------------------------------------------------------------------------------------
def test_retry_runs_the_failed_task_and_what_never_ran_because_of_it(engine: Engine) -> None:
    engine.submit(CHAIN)
    run_id = engine.trigger()
    engine.settle(failing=frozenset({"b"}))
    assert engine.run_state(run_id) == RunState.FAILED
    assert engine.states(run_id) == {"a": "success", "b": "failed", "c": "upstream_failed", "d": "success"}
    retry = ops.retry_run(engine.store, engine.queue, run_id)
    assert retry.cleared == ("b", "c")
    assert retry.snapshot.run.state == RunState.RUNNING
    assert engine.queue.wait_for_wake(0) is True
    engine.settle()
    assert engine.run_state(run_id) == RunState.SUCCESS
    assert [(a.attempt, a.state) for a in engine.store.attempts(run_id, "b")] == [
        (1, TaskState.FAILED),
        (2, TaskState.SUCCESS),
    ]
    assert len(engine.store.attempts(run_id, "a")) == 1  # a successful task is not run again
    with pytest.raises(Conflict, match="no failed task to retry"):
        ops.retry_run(engine.store, engine.queue, run_id)


def test_retry_of_one_task_with_and_without_downstream(engine: Engine) -> None:
    engine.submit(CHAIN)
    run_id = engine.trigger()
    engine.settle()
    assert engine.run_state(run_id) == RunState.SUCCESS
    assert ops.retry_run(engine.store, engine.queue, run_id, "a").cleared == ("a",)
    engine.settle()
    assert ops.retry_run(engine.store, engine.queue, run_id, "a", downstream=True).cleared == ("a", "b", "c")
    engine.settle()
    assert engine.run_state(run_id) == RunState.SUCCESS
    attempts = {t: len(engine.store.attempts(run_id, t)) for t in "abcd"}
    assert attempts == {"a": 3, "b": 2, "c": 2, "d": 1}
    with pytest.raises(NotFound, match="no task 'zzz'"):
        ops.retry_run(engine.store, engine.queue, run_id, "zzz")


def test_retry_of_a_running_task_is_refused(engine: Engine) -> None:
    engine.submit(CHAIN)
    run_id = engine.trigger()
    engine.settle(start_only=frozenset({"a"}))
    with pytest.raises(Conflict, match="running"):
        ops.retry_run(engine.store, engine.queue, run_id, "a")
    assert len(engine.store.attempts(run_id, "a")) == 1


# -- the waiting note ------------------------------------------------------------------------------
def test_the_waiting_note_says_why_a_run_does_not_move(engine: Engine) -> None:
    engine.submit(CHAIN.replace("id: chain\n", "id: chain\nmax_active_runs: 1\n"))
    first, second = engine.trigger(), engine.trigger()
    assert ops.run_snapshot(engine.store, first).waiting == "waiting for the scheduler to start it"
    engine.scheduler.tick(time.time())  # starts the first run; the second has no slot
    assert engine.run_state(first) == RunState.RUNNING
    assert ops.run_snapshot(engine.store, second).waiting == (
        "waiting for a run slot: 1 run(s) of chain running, max_active_runs is 1"
    )
    assert ops.run_snapshot(engine.store, first).waiting == "2 task(s) queued, waiting for a free worker slot"
    engine.settle()
    assert ops.run_snapshot(engine.store, first).waiting is None
    assert engine.run_state(second) == RunState.SUCCESS


# -- tasks, logs, readiness ------------------------------------------------------------------------
def test_task_history_and_log_pages(engine: Engine) -> None:
    engine.submit(CHAIN)
    run_id = engine.trigger()
    instance, attempt = ops.log_attempt(engine.store, run_id, "a", None)
    page = ops.read_log_page(engine.store, instance, attempt, 0, 1024)
    assert (page.attempt, page.text, page.done) == (0, "", False)  # not attempted yet, but it will be
    engine.settle()
    history = ops.task_history(engine.store, run_id, "b")
    assert history.instance.state == TaskState.SUCCESS and history.spec is not None
    assert [a.attempt for a in history.attempts] == [1] and history.spec.depends_on == ("a",)
    instance, attempt = ops.log_attempt(engine.store, run_id, "b", None)
    page = ops.read_log_page(engine.store, instance, attempt, 0, 1024)
    assert (page.attempt, page.text, page.done, page.more) == (1, "b ran\n", True, False)
    assert ops.read_log_page(engine.store, instance, attempt, page.cursor, 1024).text == ""
    with pytest.raises(NotFound, match="has no attempt 2"):
        ops.log_attempt(engine.store, run_id, "b", 2)


def test_readiness_needs_a_leading_scheduler(engine: Engine) -> None:
    waiting = ops.readiness(engine.store, engine.queue)
    assert waiting.to_dict() == {
        "status": "unavailable",
        "store": "ok",
        "queue": "ok",
        "scheduler": "no leader (no running scheduler holds the scheduler lease)",
        "leader": None,
    }
    assert engine.store.hold_lease(LEADER_LEASE, "host-1-abc", time.time(), 30.0)
    ready = ops.readiness(engine.store, engine.queue)
    assert ready.ready and ready.leader == "host-1-abc" and ready.to_dict()["status"] == "ready"
