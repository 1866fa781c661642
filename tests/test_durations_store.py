"""Store.ended_runs and Store.success_durations, on every backend (conftest.STORE_BACKENDS)."""

from __future__ import annotations

from typing import Any

import pytest

from flowforge.core.model import RunState, TaskState
from flowforge.store import Store, open_store
from flowforge.store import tasks as task_store
from flowforge.store.runs import ENDED_RUNS
from flowforge.store.sql import SqlStore
from flowforge.store.tasks import TASK_SUCCESSES
from tests.durations_support import ended_run, parallel_dag, run_task, running_run

T0 = 1_700_000_000.0


def statements(store: Store, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The SQL statements the store runs from now on."""
    assert isinstance(store, SqlStore)
    seen: list[str] = []
    real = store._exec

    def counted(cur: Any, sql: str, params: Any = ()) -> Any:
        seen.append(sql)
        return real(cur, sql, params)

    monkeypatch.setattr(store, "_exec", counted)
    return seen


# -- ended runs ---------------------------------------------------------------------------------
def test_ended_runs_are_the_last_to_end_first_with_their_times(store: Store) -> None:
    store.put_dag(parallel_dag("etl", ("a",)), "src", T0)
    slow = ended_run(store, "etl", T0, {"a": 500.0})  # started first, ended last
    fast = ended_run(store, "etl", T0 + 10, {"a": 5.0}, RunState.FAILED)
    mid = ended_run(store, "etl", T0 + 20, {"a": 50.0}, RunState.CANCELLED)
    found = store.ended_runs("etl", 10)
    assert [r.run_id for r in found] == [slow, mid, fast]
    assert [(r.state, r.started_at, r.ended_at) for r in found] == [
        (RunState.SUCCESS, T0, T0 + 500),
        (RunState.CANCELLED, T0 + 20, T0 + 70),
        (RunState.FAILED, T0 + 10, T0 + 15),
    ]
    assert [r.run_id for r in store.ended_runs("etl", 2)] == [slow, mid]
    assert [r.run_id for r in store.ended_runs("etl", 1)] == [slow]


def test_ended_runs_leave_out_runs_in_flight_reopened_runs_and_other_dags(store: Store) -> None:
    store.put_dag(parallel_dag("etl", ("a",)), "src", T0)
    store.put_dag(parallel_dag("other", ("a",)), "src", T0)
    done = ended_run(store, "etl", T0, {"a": 5.0})
    ended_run(store, "other", T0, {"a": 5.0})
    running_run(store, "etl", {"a": T0 + 100})
    store.create_run("etl", triggered_by="test", params={}, now=T0 + 200)  # queued
    reopened = ended_run(store, "etl", T0 + 300, {"a": 5.0}, RunState.FAILED)
    store.clear_tasks(reopened, ["a"], T0 + 400)  # a retry: the run is running again
    assert [r.run_id for r in store.ended_runs("etl", 50)] == [done]
    assert store.ended_runs("nope", 50) == []


def test_a_run_cancelled_before_it_started_has_no_start(store: Store) -> None:
    store.put_dag(parallel_dag("etl", ("a",)), "src", T0)
    run = store.create_run("etl", triggered_by="test", params={}, now=T0)
    assert store.stop_run(run.run_id, RunState.CANCELLED, "cancelled by request", T0 + 3)
    [found] = store.ended_runs("etl", 5)
    assert (found.run_id, found.state, found.started_at, found.ended_at) == (
        run.run_id,
        RunState.CANCELLED,
        None,
        T0 + 3,
    )


# -- successful attempts ------------------------------------------------------------------------
def test_success_durations_are_each_tasks_last_successes_newest_first(store: Store) -> None:
    store.put_dag(parallel_dag("etl", ("a", "b", "c", "d")), "src", T0)
    for i in range(25):
        ended_run(store, "etl", T0 + i * 1000, {"a": float(i + 1), "b": 100.0 + i})
    failed = ended_run(store, "etl", T0 + 90_000, {"a": 999.0, "c": 999.0}, RunState.FAILED)
    assert failed
    found = store.success_durations("etl", ["a", "b", "c", "d"], 20)
    assert found["a"] == [float(i + 1) for i in range(24, 4, -1)]  # the last 20, newest first
    assert found["b"] == [100.0 + i for i in range(24, 4, -1)]
    assert set(found) == {"a", "b"}  # c only failed, d never ran
    assert store.success_durations("etl", ["a"], 3) == {"a": [25.0, 24.0, 23.0]}
    assert store.success_durations("etl", [], 20) == {}
    assert store.success_durations("etl", ["a", "a"], 2) == {"a": [25.0, 24.0]}
    assert store.success_durations("nope", ["a"], 20) == {}


def test_success_durations_read_only_the_dags_own_attempts_and_no_running_one(store: Store) -> None:
    store.put_dag(parallel_dag("etl", ("a",)), "src", T0)
    store.put_dag(parallel_dag("other", ("a",)), "src", T0)
    ended_run(store, "etl", T0, {"a": 7.0})
    ended_run(store, "other", T0, {"a": 70.0})
    running_run(store, "etl", {"a": T0 + 50})
    assert store.success_durations("etl", ["a"]) == {"a": [7.0]}
    assert store.success_durations("other", ["a"]) == {"a": [70.0]}


def test_a_success_cleared_by_a_retry_still_tells_how_long_the_task_took(store: Store) -> None:
    store.put_dag(parallel_dag("etl", ("a",)), "src", T0)
    run_id = ended_run(store, "etl", T0, {"a": 7.0})
    assert store.clear_tasks(run_id, ["a"], T0 + 100) == ["a"]
    assert store.queue_tasks(run_id, [("a", 1)], T0 + 101) == ["a"]
    assert store.claim_task(run_id, "a", 2, "w1", T0 + 101)
    assert store.finish_task(run_id, "a", 2, "w1", state=TaskState.SUCCESS, now=T0 + 110)
    assert store.success_durations("etl", ["a"]) == {"a": [9.0, 7.0]}


def test_success_durations_is_one_statement_for_a_set_of_tasks(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = tuple(f"t{i}" for i in range(12))
    store.put_dag(parallel_dag("etl", ids), "src", T0)
    ended_run(store, "etl", T0, {t: float(i) for i, t in enumerate(ids)})
    seen = statements(store, monkeypatch)
    found = store.success_durations("etl", ids)
    assert found == {t: [float(i)] for i, t in enumerate(ids)}
    assert len(seen) == 1, seen


def test_success_durations_of_more_tasks_than_one_statement_takes(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = tuple(f"t{i}" for i in range(7))
    store.put_dag(parallel_dag("etl", ids), "src", T0)
    ended_run(store, "etl", T0, {t: float(i) for i, t in enumerate(ids)})
    run_task(store, ended_run(store, "etl", T0 + 100, {"t0": 1.5}), "t1", T0 + 100, None)
    monkeypatch.setattr(task_store, "SUCCESS_BATCH", 3)
    seen = statements(store, monkeypatch)
    found = store.success_durations("etl", ids)
    assert found == {t: [float(i)] for i, t in enumerate(ids)} | {"t0": [1.5, 0.0]}
    assert len(seen) == 3  # 3 + 3 + 1 tasks


# -- the indexes they read ------------------------------------------------------------------------
def test_both_queries_read_an_index_not_the_table() -> None:
    store = open_store("sqlite://:memory:")
    try:
        assert isinstance(store, SqlStore)
        with store._transaction(write=False) as cur:
            runs = store._exec(cur, "EXPLAIN QUERY PLAN " + ENDED_RUNS, ("etl", 50)).fetchall()
            tasks = store._exec(cur, "EXPLAIN QUERY PLAN " + TASK_SUCCESSES, ("etl", "a", 20)).fetchall()
        assert [row[3] for row in runs] == [
            "SEARCH runs USING INDEX runs_dag_ended (dag_id=? AND ended_at>?)"
        ]  # in the index's order: nothing to sort
        assert [row[3] for row in tasks] == [
            "SEARCH attempts USING INDEX attempts_task_success (dag_id=? AND task_id=?)"
        ]
    finally:
        store.close()
