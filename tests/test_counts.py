"""The counts of /status and /metrics, kept by triggers as rows change: right after every kind of
change, the same before and after a fold, right under concurrent writers, and as quick to read with
a long history as with a short one."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from flowforge.core.model import RunState, TaskState
from flowforge.store import Store, counts, open_store
from flowforge.store.sql import SqlStore
from tests.prune_support import DAY, NOW, bulk_history, by_state, ended_run, raw, submit


def truth(store: Store) -> dict[str, dict[str, int]]:
    """Runs and task instances per state, counted from the tables."""
    return {"runs": by_state(store, "runs"), "tasks": by_state(store, "task_instances")}


def nonzero(counted: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    return {k: {s: n for s, n in counted[k].items() if n} for k in ("runs", "tasks")}


def attempts_truth(store: Store) -> dict[tuple[str, str], int]:
    rows = raw(store, "SELECT dag_id, state, COUNT(*) FROM attempts GROUP BY dag_id, state")
    return {(d, s): int(n) for d, s, n in rows}


def check(store: Store) -> dict[str, Any]:
    """The counts agree with the tables, and read the same after a fold (which leaves no delta)."""
    before = store.counts(), store.outcome_counts()
    assert nonzero(before[0]) == truth(store)
    store.fold_counts()
    assert raw(store, "SELECT COUNT(*) FROM count_deltas")[0][0] == 0
    assert (store.counts(), store.outcome_counts()) == before
    return before[1]


def test_counts_follow_every_change_and_the_outcomes_never_go_down(store: Store) -> None:
    submit(store)
    assert check(store) == {"runs": {}, "attempts": {}, "retries": {}}
    run_id = store.create_run("etl", triggered_by="test", params={}, now=NOW).run_id  # trigger
    check(store)
    assert store.set_run_state(run_id, [RunState.QUEUED], RunState.RUNNING, NOW)
    assert store.queue_tasks(run_id, [("extract", 0)], NOW) == ["extract"]
    assert store.claim_task(run_id, "extract", 1, "w1", NOW) is not None  # claim
    assert store.counts()["tasks"]["running"] == 1
    check(store)
    assert store.finish_task(run_id, "extract", 1, "w1", state=TaskState.UP_FOR_RETRY, now=NOW, retry_at=NOW)
    assert store.queue_tasks(run_id, [("extract", 1)], NOW) == ["extract"]  # the retry
    assert store.claim_task(run_id, "extract", 2, "w1", NOW) is not None
    assert store.finish_task(run_id, "extract", 2, "w1", state=TaskState.SUCCESS, now=NOW)  # finish
    assert store.set_task_states(run_id, [("load", 0)], [TaskState.PENDING], TaskState.UPSTREAM_FAILED, NOW)
    assert store.set_run_state(run_id, [RunState.RUNNING], RunState.FAILED, NOW)
    outcomes = check(store)
    assert outcomes["runs"] == {("etl", "failed"): 1}
    assert outcomes["attempts"] == {("etl", "failed"): 1, ("etl", "success"): 1}
    assert outcomes["retries"] == {("etl", "failed"): 0, ("etl", "success"): 1}
    # Cleared and run again, the run ends twice: both ends count, the first is not taken back.
    assert store.clear_tasks(run_id, ["load"], NOW) == ["load"]
    assert store.counts()["runs"] == {
        **dict.fromkeys(("queued", "success", "failed", "cancelled"), 0),
        "running": 1,
    }
    check(store)
    assert store.stop_run(run_id, RunState.CANCELLED, "cancelled by the test", NOW)
    outcomes = check(store)
    assert outcomes["runs"] == {("etl", "failed"): 1, ("etl", "cancelled"): 1}
    # A prune takes the rows out of the state counts, and nothing out of the outcome counts.
    assert store.prune_runs(NOW + DAY).runs == 1
    assert check(store) == outcomes
    assert nonzero(store.counts()) == {"runs": {}, "tasks": {}}


def test_bulk_writes_are_counted_too(store: Store) -> None:
    """Rows written by any statement count, however many it changes at once."""
    bulk_history(store, runs=20, tasks=30, ended=NOW)
    outcomes = check(store)
    assert outcomes["runs"] == {("wide", "success"): 20}
    assert outcomes["attempts"] == attempts_truth(store) == {("wide", "success"): 600}
    raw(store, "UPDATE task_instances SET state = 'failed' WHERE task_id = 't0'")
    assert check(store)["runs"] == {("wide", "success"): 20}


def test_a_reader_folds_when_too_many_deltas_pile_up(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(counts, "FOLD_AFTER", 50)
    bulk_history(store, runs=3, tasks=30, ended=NOW)  # about 200 deltas
    assert raw(store, "SELECT COUNT(*) FROM count_deltas")[0][0] > 50
    counted = store.counts()
    assert raw(store, "SELECT COUNT(*) FROM count_deltas")[0][0] == 0
    assert store.counts() == counted and counted["tasks"]["success"] == 90


def test_the_rows_a_count_reads_do_not_grow_with_history(store: Store) -> None:
    """Folded, the counts are read from count_totals alone: as many rows for 4 runs as for 64."""
    submit(store)
    ended_run(store, NOW - DAY)
    sizes = []
    for runs in (4, 16, 64):
        bulk_history(store, runs=runs, tasks=20, ended=NOW - runs, dag_id="wide")
        store.fold_counts()
        sizes.append(raw(store, "SELECT COUNT(*) FROM count_totals")[0][0])
        assert raw(store, "SELECT COUNT(*) FROM count_deltas")[0][0] == 0
    assert sizes[0] == sizes[1] == sizes[2]
    assert store.counts()["runs"]["success"] == 4 + 16 + 64 + 1


def drop_count_triggers(store: Store) -> None:
    assert isinstance(store, SqlStore)
    if store.dialect.name == "postgresql":
        for table in ("runs", "task_instances", "attempts"):
            raw(store, f"DROP FUNCTION flowforge_count_{table}() CASCADE")  # with its triggers
        return
    for (name,) in raw(store, "SELECT name FROM sqlite_master WHERE type = 'trigger'"):
        raw(store, f"DROP TRIGGER {name}")


def test_the_migration_starts_the_totals_from_the_rows_and_what_prunes_recorded(store: Store) -> None:
    """A database of schema 7 (counted by GROUP BY, prunes in pruned_outcomes) keeps its counts."""
    assert isinstance(store, SqlStore)
    submit(store)
    ended_run(store, NOW - DAY, RunState.FAILED)
    ended_run(store, NOW)
    drop_count_triggers(store)
    for statement in (
        "DROP TABLE count_totals",
        "DROP TABLE count_deltas",
        "CREATE TABLE pruned_outcomes (kind TEXT NOT NULL, dag_id TEXT NOT NULL, state TEXT NOT NULL,"
        " n BIGINT NOT NULL, retries BIGINT NOT NULL DEFAULT 0, PRIMARY KEY (kind, dag_id, state))",
        "INSERT INTO pruned_outcomes VALUES ('run', 'etl', 'success', 5, 0), ('attempt', 'etl', 'success', 9, 4)",
        "DELETE FROM schema_version WHERE version >= 8",
    ):
        raw(store, statement)
    store.migrate()
    outcomes = store.outcome_counts()
    assert outcomes["runs"] == {("etl", "failed"): 1, ("etl", "success"): 6}
    made = attempts_truth(store)
    assert outcomes["attempts"] == {**made, ("etl", "success"): made[("etl", "success")] + 9}
    assert outcomes["retries"][("etl", "success")] == 2 + 4
    assert nonzero(store.counts()) == truth(store)
    # The triggers are back: the next change counts.
    ended_run(store, NOW)
    assert store.outcome_counts()["runs"][("etl", "success")] == 7
    assert nonzero(store.counts()) == truth(store)


def test_concurrent_writers_never_lose_a_count(pg_url: str) -> None:
    """Eight threads move tasks through their states at once while another folds: no count is lost."""
    store = open_store(pg_url, pool_size=12)
    try:
        text = "id: many\ntasks:\n" + "".join(f"  - {{id: t{i}, command: 'true'}}\n" for i in range(10))
        submit(store, text)
        errors: list[BaseException] = []
        stop = threading.Event()

        def work(n: int) -> None:
            try:
                for k in range(4):
                    run_id = store.create_run("many", triggered_by="test", params={}, now=NOW + k).run_id
                    store.set_run_state(run_id, [RunState.QUEUED], RunState.RUNNING, NOW)
                    for i in range(10):
                        assert store.queue_tasks(run_id, [(f"t{i}", 0)], NOW) == [f"t{i}"]
                        assert store.claim_task(run_id, f"t{i}", 1, f"w{n}", NOW) is not None
                        end = TaskState.SUCCESS if (i + k) % 3 else TaskState.FAILED
                        assert store.finish_task(run_id, f"t{i}", 1, f"w{n}", state=end, now=NOW)
                    store.set_run_state(run_id, [RunState.RUNNING], RunState.SUCCESS, NOW)
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        def fold() -> None:
            while not stop.is_set():
                store.fold_counts()

        folder = threading.Thread(target=fold)
        folder.start()
        writers = [threading.Thread(target=work, args=(n,)) for n in range(8)]
        for t in writers:
            t.start()
        for t in writers:
            t.join()
        stop.set()
        folder.join()
        assert not errors, errors
        outcomes = check(store)
        assert outcomes["runs"] == {("many", "success"): 32}
        assert outcomes["attempts"] == attempts_truth(store)
        assert sum(outcomes["attempts"].values()) == 320
    finally:
        store.close()


def test_a_retried_run_counts_each_end_in_metrics_even_after_a_restart(store: Store) -> None:
    """flowforge_runs_total counts ends: failed once, then success once, read by a fresh process."""
    from prometheus_client import CollectorRegistry, generate_latest

    from flowforge.metrics import StoreCounters

    submit(store)
    run_id = ended_run(store, NOW, RunState.FAILED)
    assert store.clear_tasks(run_id, ["load"], NOW + 1) == ["load"]
    assert store.queue_tasks(run_id, [("load", 1)], NOW + 2) == ["load"]
    assert store.claim_task(run_id, "load", 2, "w1", NOW + 2) is not None
    assert store.finish_task(run_id, "load", 2, "w1", state=TaskState.SUCCESS, now=NOW + 3)
    assert store.set_run_state(run_id, [RunState.RUNNING], RunState.SUCCESS, NOW + 4)
    registry = CollectorRegistry()
    registry.register(StoreCounters(store))  # a process started after all this
    text = generate_latest(registry).decode()
    assert 'flowforge_runs_total{dag_id="etl",state="failed"} 1.0' in text
    assert 'flowforge_runs_total{dag_id="etl",state="success"} 1.0' in text
    assert 'flowforge_task_retries_total{dag_id="etl"} 2.0' in text  # extract's second try, load's
