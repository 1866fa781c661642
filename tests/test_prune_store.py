"""Store.prune_runs on SQLite and PostgreSQL: what goes, what stays, the counts, and the batches."""

from __future__ import annotations

from typing import Any

import pytest

from flowforge.core.errors import NotFound
from flowforge.core.model import RunState, TaskState
from flowforge.operations_prune import prune_history
from flowforge.store import Store
from flowforge.store.base import PRUNE_BATCH_RUNS, PRUNE_BATCH_TASKS, PruneBatch
from flowforge.store.sql import SqlStore
from tests.prune_support import (
    DAY,
    NOW,
    bulk_history,
    by_state,
    ended_run,
    queued_run,
    raw,
    rows_of,
    running_run,
    submit,
    table_counts,
)

CUTOFF = NOW - 30 * DAY


@pytest.fixture
def history(store: Store) -> dict[str, Any]:
    """Old ended runs of every end state, a recent one, and old runs that have not ended."""
    submit(store)
    old = {
        s: ended_run(store, NOW - 40 * DAY, s)
        for s in (RunState.SUCCESS, RunState.FAILED, RunState.CANCELLED)
    }
    return {
        "old": old,
        "recent": ended_run(store, NOW - 29 * DAY),
        "running": running_run(store, NOW - 90 * DAY),
        "queued": queued_run(store, NOW - 90 * DAY),
    }


def prune_all(store: Store, before: float = CUTOFF, **kw: Any) -> tuple[PruneBatch, int]:
    """Every batch until none is left: the totals and how many batches (each one transaction) it took."""
    totals = {"runs": 0, "task_instances": 0, "attempts": 0, "log_chunks": 0, "events": 0}
    after, batches = None, 0
    while True:
        batch = store.prune_runs(before, after=after, **kw)
        batches += 1
        for key in totals:
            totals[key] += getattr(batch, key)
        if batch.last is None:
            return PruneBatch(**totals), batches
        after = batch.last


def test_old_ended_runs_go_with_all_their_rows_and_everything_else_stays(
    store: Store, history: dict[str, Any]
) -> None:
    old = list(history["old"].values())
    kept = [history["recent"], history["running"], history["queued"]]
    before = {run_id: rows_of(store, run_id) for run_id in old + kept}
    expected = {t: sum(before[r][t] for r in old) for t in before[old[0]]}
    assert all(expected[t] > 0 for t in expected), expected  # every table has rows to prune
    total_before = table_counts(store)

    totals, _ = prune_all(store)

    assert totals == PruneBatch(
        runs=3,
        task_instances=expected["task_instances"],
        attempts=expected["attempts"],
        log_chunks=expected["task_logs"],
        events=expected["events"],
    )
    for run_id in old:
        assert rows_of(store, run_id) == dict.fromkeys(before[run_id], 0), run_id
        with pytest.raises(NotFound):
            store.get_run(run_id)
        with pytest.raises(NotFound):
            store.task_instances(run_id)
        assert store.attempts(run_id, "extract") == [] and store.read_log(run_id, "extract", 1) == ("", 0)
    for run_id in kept:
        assert rows_of(store, run_id) == before[run_id], run_id
    assert table_counts(store) == {t: total_before[t] - expected[t] for t in total_before}
    assert not {e.run_id for e in store.events_after(0, limit=10_000)} & set(old)
    # The DAG and its versions are never deleted, and the events of the DAG itself stay.
    assert store.get_dag("etl").version == 1 and len(store.list_dag_versions("etl", 10)) == 1
    assert any(e.kind == "dag" for e in store.events_after(0, limit=10_000))
    assert store.get_run(history["running"]).state == RunState.RUNNING
    assert store.get_task_instance(history["running"], "extract").state == TaskState.RUNNING


def test_a_prune_is_idempotent(store: Store, history: dict[str, Any]) -> None:
    first, _ = prune_all(store)
    assert first.runs == 3
    left = table_counts(store)
    again, batches = prune_all(store)
    assert again == PruneBatch() and batches == 1
    assert table_counts(store) == left


def test_a_dry_run_counts_what_a_prune_deletes_and_deletes_nothing(
    store: Store, history: dict[str, Any]
) -> None:
    tables, counts, outcomes = table_counts(store), store.counts(), store.outcome_counts()
    dry, _ = prune_all(store, dry_run=True)
    assert table_counts(store) == tables and store.counts() == counts and store.outcome_counts() == outcomes
    real, _ = prune_all(store)
    assert dry == real and real.runs == 3


def test_the_counts_follow_the_tables_and_the_outcome_counts_never_go_down(
    store: Store, history: dict[str, Any]
) -> None:
    outcomes = store.outcome_counts()
    prune_all(store)
    counts = store.counts()
    assert {s: n for s, n in counts["runs"].items() if n} == by_state(store, "runs")
    assert {s: n for s, n in counts["tasks"].items() if n} == by_state(store, "task_instances")
    assert counts["runs"]["success"] == 1 and counts["runs"]["failed"] == 0  # the recent run
    # Ended runs and attempts made stay counted for /metrics, exactly as before the prune.
    assert store.outcome_counts() == outcomes
    assert outcomes["runs"][("etl", "failed")] == 1 and outcomes["retries"][("etl", "success")] >= 2


def test_a_run_re_opened_by_a_retry_is_not_pruned(store: Store, history: dict[str, Any]) -> None:
    failed = history["old"][RunState.FAILED]
    assert store.clear_tasks(failed, ["load"], NOW) == ["load"]  # running again, though it ended long ago
    totals, _ = prune_all(store)
    assert totals.runs == 2 and store.get_run(failed).state == RunState.RUNNING


def test_batches_are_bounded_by_runs_and_by_task_instances(store: Store) -> None:
    submit(store)
    runs = [ended_run(store, NOW - (60 - i) * DAY) for i in range(7)]  # 2 task instances each
    batch = store.prune_runs(CUTOFF, max_runs=3)
    assert (batch.runs, batch.task_instances) == (3, 6)
    batch = store.prune_runs(CUTOFF, after=batch.last, max_runs=10, max_tasks=5)
    assert (batch.runs, batch.task_instances) == (2, 4)  # a third run would pass 5 task instances
    batch = store.prune_runs(CUTOFF, after=batch.last, max_runs=10, max_tasks=1)
    assert (batch.runs, batch.task_instances) == (1, 2)  # a run larger than the budget goes alone
    batch = store.prune_runs(CUTOFF, after=batch.last)
    assert batch.runs == 1 and batch.last is None
    # Oldest first: the runs left are none; the order showed in what each batch took.
    assert all(raw(store, "SELECT 1 FROM runs WHERE run_id = ?", (r,)) == [] for r in runs)


def test_a_dry_run_pages_through_the_batches_without_deleting(store: Store) -> None:
    submit(store)
    for i in range(5):
        ended_run(store, NOW - (60 - i) * DAY)
    pages, batch = [], store.prune_runs(CUTOFF, dry_run=True, max_runs=2)
    while True:
        pages.append(batch.runs)
        if batch.last is None:
            break
        batch = store.prune_runs(CUTOFF, after=batch.last, dry_run=True, max_runs=2)
    assert pages == [2, 2, 1] and table_counts(store)["runs"] == 5


def test_the_cutoff_is_strict_and_reads_the_end_time(store: Store) -> None:
    submit(store)
    at_cutoff = ended_run(store, CUTOFF)
    long_started_recently_ended = ended_run(store, CUTOFF + 1)  # started 10 minutes before the cutoff
    assert prune_all(store)[0].runs == 0
    assert store.get_run(at_cutoff) and store.get_run(long_started_recently_ended)
    assert prune_all(store, before=CUTOFF + 0.5)[0].runs == 1


def test_100k_task_instances_go_in_short_batches(store: Store) -> None:
    """A year of a wide DAG: 1,000 runs of 100 tasks, pruned in transactions of bounded size."""
    bulk_history(store, runs=1_000, tasks=100, ended=NOW - 200 * DAY)
    submit(store)
    recent = ended_run(store, NOW - DAY)
    sizes, after = [], None
    while True:  # what each batch holds, read as a dry run
        batch = store.prune_runs(CUTOFF, after=after, dry_run=True)
        sizes.append(batch.task_instances)
        if (after := batch.last) is None:
            break
    assert max(sizes) == PRUNE_BATCH_TASKS and sum(sizes) == 100_000 and len(sizes) == 20
    assert isinstance(store, SqlStore)
    transactions: list[int] = []
    real = store._transaction

    def counted(write: bool = True) -> Any:
        transactions.append(write)
        return real(write)

    store._transaction = counted  # type: ignore[method-assign]
    try:
        pruned = prune_history(store, 30 * DAY, now=NOW)
    finally:
        del store._transaction
    per_batch = PRUNE_BATCH_TASKS // 100  # runs whose task instances fit in one batch
    assert per_batch < PRUNE_BATCH_RUNS
    assert (pruned.runs, pruned.task_instances, pruned.attempts, pruned.log_chunks) == (
        1_000,
        100_000,
        100_000,
        100_000,
    )
    assert pruned.batches == 1_000 // per_batch  # 20 batches of 50 runs, 5,000 task instances each
    assert len(transactions) == pruned.batches  # one transaction per batch, and nothing else
    assert table_counts(store)["task_instances"] == 2 and store.get_run(recent)


def test_the_prune_queries_read_indexes(store: Store) -> None:
    """The cutoff query and each delete read an index, not every row of a long history."""
    assert isinstance(store, SqlStore)
    plans = {
        "oldest": "SELECT ended_at, run_id FROM runs WHERE ended_at < ? ORDER BY ended_at, run_id LIMIT 500",
        "events": "SELECT COUNT(*) FROM events WHERE run_id IN (?, ?)",
        "task_logs": "SELECT COUNT(*) FROM task_logs WHERE run_id IN (?, ?)",
        "attempts": "SELECT COUNT(*) FROM attempts WHERE run_id IN (?, ?)",
    }
    for name, sql in plans.items():
        params = (CUTOFF,) if name == "oldest" else ("a", "b")
        if store.dialect.name == "sqlite":
            plan = " ".join(str(row[-1]) for row in raw(store, "EXPLAIN QUERY PLAN " + sql, params))
            assert "SCAN" not in plan.replace("SCAN CONSTANT ROW", ""), (name, plan)
        else:
            with store._transaction() as cur:
                cur.execute("SET LOCAL enable_seqscan = off")  # tiny tables: show the index can serve it
                store._exec(cur, "EXPLAIN " + sql, params)
                plan = " ".join(row[0] for row in cur.fetchall())
            assert "Seq Scan" not in plan and "Index" in plan, (name, plan)


def test_a_prune_with_a_time_budget_goes_on_where_it_stopped(store: Store) -> None:
    bulk_history(store, runs=1_100, tasks=1, ended=NOW - 40 * DAY)
    first = prune_history(store, 30 * DAY, now=NOW, budget_secs=0)  # stops after its first batch
    assert (first.runs, first.batches) == (500, 1) and first.next is not None
    assert first.next[0] == first.cutoff == CUTOFF
    rest = prune_history(store, 30 * DAY, resume=first.next)
    assert (rest.runs, rest.batches, rest.next, rest.cutoff) == (600, 2, None, CUTOFF)
    assert table_counts(store)["runs"] == 0
