"""Contract suite for the Store protocol, part two: task instances, attempts and their leases,
and named leases, run against every backend in conftest.STORE_BACKENDS."""

from __future__ import annotations

import pytest

from flowforge.core.model import RunState, TaskState
from flowforge.store import Store
from flowforge.store.sql import SqlStore
from tests.test_store import T0, make_spec, raw, running_task


# -- task instances ---------------------------------------------------------------------------
def test_queue_claim_finish_happy_path_keeps_attempt_rows(store: Store) -> None:
    store.put_dag(make_spec(), "v1", T0)
    run_id = store.create_run("etl", triggered_by="t", params={}, now=T0).run_id
    assert store.queue_tasks(run_id, [("extract", 0), ("transform", 0)], T0 + 1) == ["extract", "transform"]
    ti = store.get_task_instance(run_id, "extract")
    assert (ti.state, ti.attempt, ti.queued_at) == (TaskState.QUEUED, 1, T0 + 1)

    claimed = store.claim_task(run_id, "extract", 1, "w1", T0 + 2)
    assert claimed is not None
    assert (claimed.state, claimed.worker_id, claimed.started_at) == (TaskState.RUNNING, "w1", T0 + 2)
    assert store.finish_task(run_id, "extract", 1, "w1", state=TaskState.SUCCESS, now=T0 + 3, exit_code=0)
    ti = store.get_task_instance(run_id, "extract")
    assert (ti.state, ti.ended_at, ti.exit_code) == (TaskState.SUCCESS, T0 + 3, 0)
    [a] = store.attempts(run_id, "extract")
    assert (a.attempt, a.state, a.worker_id, a.queued_at, a.started_at, a.ended_at, a.exit_code) == (
        1, TaskState.SUCCESS, "w1", T0 + 1, T0 + 2, T0 + 3, 0,
    )  # fmt: skip


def test_claim_is_fenced(store: Store) -> None:
    run_id = running_task(store)
    assert store.claim_task(run_id, "extract", 1, "w2", T0 + 3) is None  # duplicate message
    assert store.claim_task(run_id, "extract", 0, "w2", T0 + 3) is None  # stale attempt number
    assert store.claim_task(run_id, "transform", 1, "w2", T0 + 3) is None  # never queued
    ti = store.get_task_instance(run_id, "extract")
    assert (ti.worker_id, ti.started_at) == ("w1", T0 + 2)


@pytest.mark.parametrize(("worker", "attempt"), [("w2", 1), ("w1", 2), ("w1", 0)])
def test_finish_is_fenced(store: Store, worker: str, attempt: int) -> None:
    run_id = running_task(store)
    before = (store.get_task_instance(run_id, "extract"), store.attempts(run_id, "extract"))
    assert (
        store.finish_task(run_id, "extract", attempt, worker, state=TaskState.FAILED, now=T0 + 5, error="x")
        is False
    )
    assert (store.get_task_instance(run_id, "extract"), store.attempts(run_id, "extract")) == before


def test_finish_twice_is_fenced(store: Store) -> None:
    run_id = running_task(store)
    assert store.finish_task(run_id, "extract", 1, "w1", state=TaskState.SUCCESS, now=T0 + 3)
    assert not store.finish_task(run_id, "extract", 1, "w1", state=TaskState.FAILED, now=T0 + 4)
    assert store.get_task_instance(run_id, "extract").state == TaskState.SUCCESS


def test_finish_task_rejects_non_final_states(store: Store) -> None:
    run_id = running_task(store)
    with pytest.raises(ValueError):
        store.finish_task(run_id, "extract", 1, "w1", state=TaskState.SKIPPED, now=T0 + 3)


def test_queue_tasks_skips_tasks_that_moved_on(store: Store) -> None:
    run_id = running_task(store)  # extract is at attempt 1, running
    queued = store.queue_tasks(run_id, [("extract", 0), ("transform", 3), ("load", 0), ("ghost", 0)], T0 + 5)
    assert queued == ["load"]
    assert store.get_task_instance(run_id, "extract").state == TaskState.RUNNING
    assert store.get_task_instance(run_id, "transform").attempt == 0
    assert [a.attempt for a in store.attempts(run_id, "extract")] == [1]
    assert store.queue_tasks(run_id, [("load", 0)], T0 + 6) == []  # a duplicate decision
    assert store.queue_tasks(run_id, [], T0 + 6) == []


def test_retry_creates_a_new_attempt_and_keeps_the_failed_one(store: Store) -> None:
    run_id = running_task(store)
    ok = store.finish_task(
        run_id,
        "extract",
        1,
        "w1",
        state=TaskState.UP_FOR_RETRY,
        now=T0 + 3,
        exit_code=2,
        error="boom",
        retry_at=T0 + 5,
    )
    assert ok
    ti = store.get_task_instance(run_id, "extract")
    assert (ti.state, ti.retry_at, ti.error) == (TaskState.UP_FOR_RETRY, T0 + 5, "boom")
    assert store.queue_tasks(run_id, [("extract", 1)], T0 + 5) == ["extract"]
    ti = store.get_task_instance(run_id, "extract")
    assert (ti.state, ti.attempt, ti.retry_at, ti.error, ti.worker_id) == (
        TaskState.QUEUED,
        2,
        None,
        None,
        None,
    )
    assert store.claim_task(run_id, "extract", 1, "w1", T0 + 6) is None  # the old attempt is fenced off
    assert store.claim_task(run_id, "extract", 2, "w2", T0 + 6) is not None
    assert store.finish_task(run_id, "extract", 2, "w2", state=TaskState.SUCCESS, now=T0 + 7, exit_code=0)
    a1, a2 = store.attempts(run_id, "extract")
    assert (a1.attempt, a1.state, a1.worker_id, a1.exit_code, a1.error) == (
        1,
        TaskState.FAILED,
        "w1",
        2,
        "boom",
    )
    assert (a2.attempt, a2.state, a2.worker_id, a2.exit_code) == (2, TaskState.SUCCESS, "w2", 0)


def test_an_attempt_lost_for_free_is_counted_on_its_task(store: Store) -> None:
    """Lost attempts used no retry: the task instance counts them (the worker reads it on its claim)."""
    run_id = running_task(store)
    retry, lost = TaskState.UP_FOR_RETRY, TaskState.LOST
    assert store.finish_task(run_id, "extract", 1, "w1", state=retry, now=T0 + 3, attempt_state=lost)
    assert store.get_task_instance(run_id, "extract").lost_attempts == 1
    assert store.queue_tasks(run_id, [("extract", 1)], T0 + 4) == ["extract"]
    claimed = store.claim_task(run_id, "extract", 2, "w2", T0 + 5)
    assert claimed is not None and claimed.lost_attempts == 1
    # Lost too, but beyond the free ones: it counts against the task's retries.
    assert store.finish_task(
        run_id, "extract", 2, "w2", state=retry, now=T0 + 6, attempt_state=lost, free=False
    )
    ti = store.get_task_instance(run_id, "extract")
    assert (ti.state, ti.attempt, ti.lost_attempts) == (TaskState.UP_FOR_RETRY, 2, 1)
    assert [a.state for a in store.attempts(run_id, "extract")] == [TaskState.LOST, TaskState.LOST]
    assert "lost_attempts" not in ti.to_dict()  # the attempts say which were lost


def test_database_rejects_a_second_successful_attempt(store: Store) -> None:
    run_id = running_task(store)
    assert store.finish_task(run_id, "extract", 1, "w1", state=TaskState.SUCCESS, now=T0 + 3)
    assert isinstance(store, SqlStore)
    with pytest.raises(store.dialect.integrity_error):
        raw(
            store,
            "INSERT INTO attempts (run_id, task_id, attempt, state) VALUES (?, ?, ?, 'success')",
            (run_id, "extract", 2),
        )
    failed_row = "INSERT INTO attempts (run_id, task_id, attempt, state) VALUES (?, ?, ?, 'failed')"
    raw(store, failed_row, (run_id, "extract", 3))
    assert [a.attempt for a in store.attempts(run_id, "extract")] == [1, 3]


def test_set_task_states_is_conditional(store: Store) -> None:
    store.put_dag(make_spec(), "v1", T0)
    run_id = store.create_run("etl", triggered_by="t", params={}, now=T0).run_id
    moved = store.set_task_states(
        run_id, [("transform", 0), ("load", 1)], [TaskState.PENDING], TaskState.UPSTREAM_FAILED, T0 + 1
    )
    assert moved == ["transform"]
    ti = store.get_task_instance(run_id, "transform")
    assert (ti.state, ti.ended_at) == (TaskState.UPSTREAM_FAILED, T0 + 1)
    assert store.get_task_instance(run_id, "load").state == TaskState.PENDING
    assert store.set_task_states(run_id, [("load", 0)], [TaskState.RUNNING], TaskState.SKIPPED, T0 + 1) == []
    assert store.set_task_states(run_id, [("load", 0)], [], TaskState.SKIPPED, T0 + 1) == []
    with pytest.raises(ValueError):
        store.set_task_states(run_id, [("load", 0)], [TaskState.PENDING], TaskState.QUEUED, T0 + 1)


def test_set_task_states_closes_the_running_attempt(store: Store) -> None:
    run_id = running_task(store)  # e.g. its worker died
    moved = store.set_task_states(
        run_id, [("extract", 1)], [TaskState.RUNNING], TaskState.UP_FOR_RETRY, T0 + 9
    )
    assert moved == ["extract"]
    [a] = store.attempts(run_id, "extract")
    assert (a.state, a.ended_at) == (TaskState.FAILED, T0 + 9)
    # the dead worker's late report is fenced off
    assert not store.finish_task(run_id, "extract", 1, "w1", state=TaskState.SUCCESS, now=T0 + 10)


def test_set_task_states_pending_clears_the_last_result(store: Store) -> None:
    run_id = running_task(store)
    store.finish_task(run_id, "extract", 1, "w1", state=TaskState.FAILED, now=T0 + 3, exit_code=1, error="e")
    assert store.set_task_states(run_id, [("extract", 1)], [TaskState.FAILED], TaskState.PENDING, T0 + 4) == [
        "extract"
    ]
    ti = store.get_task_instance(run_id, "extract")
    assert (ti.state, ti.attempt, ti.exit_code, ti.error, ti.ended_at) == (
        TaskState.PENDING,
        1,
        None,
        None,
        None,
    )
    assert store.attempts(run_id, "extract")[0].state == TaskState.FAILED
    assert store.queue_tasks(run_id, [("extract", 1)], T0 + 5) == ["extract"]
    assert [a.attempt for a in store.attempts(run_id, "extract")] == [1, 2]


def test_active_task_counts_over_active_runs(store: Store) -> None:
    store.put_dag(make_spec("a"), "a", T0)
    store.put_dag(make_spec("b"), "b", T0)
    r1 = store.create_run("a", triggered_by="t", params={}, now=T0).run_id
    r2 = store.create_run("a", triggered_by="t", params={}, now=T0).run_id
    r3 = store.create_run("b", triggered_by="t", params={}, now=T0).run_id
    store.queue_tasks(r1, [("extract", 0), ("transform", 0)], T0)
    store.claim_task(r1, "extract", 1, "w", T0)
    store.queue_tasks(r2, [("extract", 0)], T0)
    store.queue_tasks(r3, [("extract", 0)], T0)
    assert store.active_task_counts() == {"a": 3, "b": 1}
    store.set_run_state(r3, [RunState.QUEUED], RunState.CANCELLED, T0)
    assert store.active_task_counts() == {"a": 3}


# -- leases -----------------------------------------------------------------------------------
def test_claim_gives_a_fresh_lease_token_and_finish_needs_it(store: Store) -> None:
    run_id = running_task(store)
    ti = store.get_task_instance(run_id, "extract")
    assert ti.lease_token and ti.lease_expires_at == T0 + 2 + 15.0
    assert "lease_token" not in ti.to_dict(), "the token is the worker's alone, never shown"
    assert not store.finish_task(
        run_id, "extract", 1, "w1", state=TaskState.SUCCESS, now=T0 + 3, lease_token="stale-token"
    )
    assert store.finish_task(
        run_id, "extract", 1, "w1", state=TaskState.SUCCESS, now=T0 + 3, lease_token=ti.lease_token
    )
    assert [a.state for a in store.attempts(run_id, "extract")] == [TaskState.SUCCESS]


def test_renew_leases_extends_held_ones_and_reports_lost_ones(store: Store) -> None:
    run_id = running_task(store)
    token = store.get_task_instance(run_id, "extract").lease_token
    assert token is not None
    held = (run_id, "extract", 1, token)
    assert store.renew_leases("w1", [held], T0 + 5, 10.0) == []
    assert store.get_task_instance(run_id, "extract").lease_expires_at == T0 + 15
    assert store.renew_leases("w2", [held], T0 + 6, 10.0) == [held], "another worker cannot renew it"
    # the reaper gives the attempt up: the holder learns it at its next renewal
    assert store.finish_task(
        run_id,
        "extract",
        1,
        "w1",
        state=TaskState.UP_FOR_RETRY,
        now=T0 + 20,
        lease_token=token,
        attempt_state=TaskState.LOST,
        retry_at=T0 + 22,
    )
    assert store.renew_leases("w1", [held], T0 + 21, 10.0) == [held]
    assert [a.state for a in store.attempts(run_id, "extract")] == [TaskState.LOST]


def test_at_most_one_live_attempt_per_task(store: Store) -> None:
    run_id = running_task(store)
    assert isinstance(store, SqlStore)
    with pytest.raises(store.dialect.integrity_error):
        raw(
            store,
            "INSERT INTO attempts (run_id, task_id, attempt, state) VALUES (?, ?, 9, 'queued')",
            (run_id, "extract"),
        )


def test_hold_lease_one_holder_at_a_time(store: Store) -> None:
    assert store.hold_lease("scheduler", "a", T0, 5.0)
    assert not store.hold_lease("scheduler", "b", T0 + 1, 5.0)
    assert store.hold_lease("scheduler", "a", T0 + 4, 5.0), "the holder renews"
    assert not store.hold_lease("scheduler", "b", T0 + 8.9, 5.0)
    assert store.hold_lease("scheduler", "b", T0 + 9.1, 5.0), "a lapsed lease is taken over"
    store.release_lease("scheduler", "a")  # not the holder: no effect
    assert not store.hold_lease("scheduler", "a", T0 + 10, 5.0)
    store.release_lease("scheduler", "b")
    assert store.hold_lease("scheduler", "a", T0 + 10, 5.0)


def test_lease_holder_names_the_unexpired_holder_only(store: Store) -> None:
    assert store.lease_holder("scheduler", T0) is None, "never taken"
    store.hold_lease("scheduler", "a", T0, 5.0)
    assert store.lease_holder("scheduler", T0 + 4.9) == "a"
    assert store.lease_holder("other", T0) is None
    assert store.lease_holder("scheduler", T0 + 5.1) is None, "lapsed"
    store.hold_lease("scheduler", "a", T0 + 6, 5.0)
    store.release_lease("scheduler", "a")
    assert store.lease_holder("scheduler", T0 + 6) is None, "released"
