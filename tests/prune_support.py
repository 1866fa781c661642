"""History to prune, for the retention tests: runs made through the store as the engine makes them,
and bulk history written straight into the tables (for size), with row counts read from the tables.
"""

from __future__ import annotations

import uuid
from typing import Any

from flowforge.core.dagfile import load_dag
from flowforge.core.model import RunState, TaskState
from flowforge.store import Store
from flowforge.store.sql import SqlStore

DAY = 86400.0
NOW = 1_800_000_000.0  # the tests' "now"; prunes cut at NOW - 30 days
DAG = """\
id: etl
tasks:
  - {id: extract, command: 'true', retries: 1}
  - {id: load, command: 'true', depends_on: [extract]}
"""
TABLES = ("runs", "task_instances", "attempts", "task_logs", "events")


def raw(store: Store, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> list[Any]:
    """Rows of one statement run behind the protocol's back (`?` placeholders)."""
    assert isinstance(store, SqlStore)
    with store._transaction() as cur:
        store._exec(cur, sql, params)
        return cur.fetchall() if sql.lstrip().upper().startswith(("SELECT", "EXPLAIN")) else []


def submit(store: Store, text: str = DAG, at: float = NOW - 400 * DAY) -> None:
    store.put_dag(load_dag(text), text, at)


def ended_run(store: Store, ended: float, state: RunState = RunState.SUCCESS) -> str:
    """A run of `etl` whose tasks each ran (extract twice: a retry), wrote a log, and that ended at `ended`."""
    start = ended - 600
    run_id = store.create_run("etl", triggered_by="test", params={}, now=start).run_id
    assert store.set_run_state(run_id, [RunState.QUEUED], RunState.RUNNING, start)
    if state == RunState.CANCELLED:
        store.queue_tasks(run_id, [("extract", 0)], start)
        assert store.stop_run(run_id, RunState.CANCELLED, "cancelled by the test", ended)
        return run_id
    _attempt(store, run_id, "extract", 1, TaskState.UP_FOR_RETRY, start)
    _attempt(store, run_id, "extract", 2, TaskState.SUCCESS, start + 60)
    last = TaskState.SUCCESS if state == RunState.SUCCESS else TaskState.FAILED
    _attempt(store, run_id, "load", 1, last, start + 120)
    assert store.set_run_state(run_id, [RunState.RUNNING], state, ended)
    return run_id


def _attempt(store: Store, run_id: str, task_id: str, attempt: int, result: TaskState, at: float) -> None:
    assert store.queue_tasks(run_id, [(task_id, attempt - 1)], at) == [task_id]
    assert store.claim_task(run_id, task_id, attempt, "w1", at) is not None
    store.append_log(run_id, task_id, attempt, f"{task_id} attempt {attempt}\n")
    retry_at = at + 1 if result == TaskState.UP_FOR_RETRY else None
    assert store.finish_task(run_id, task_id, attempt, "w1", state=result, now=at + 1, retry_at=retry_at)


def running_run(store: Store, started: float) -> str:
    """A run started at `started` whose first task is running still."""
    run_id = store.create_run("etl", triggered_by="test", params={}, now=started).run_id
    assert store.set_run_state(run_id, [RunState.QUEUED], RunState.RUNNING, started)
    assert store.queue_tasks(run_id, [("extract", 0)], started) == ["extract"]
    assert store.claim_task(run_id, "extract", 1, "w1", started) is not None
    store.append_log(run_id, "extract", 1, "still going\n")
    return run_id


def queued_run(store: Store, created: float) -> str:
    """A run created at `created` that has not started (its DAG at max_active_runs, say)."""
    return store.create_run("etl", triggered_by="test", params={}, now=created).run_id


def rows_of(store: Store, run_id: str) -> dict[str, int]:
    """How many rows of each table belong to one run."""
    return {t: raw(store, f"SELECT COUNT(*) FROM {t} WHERE run_id = ?", (run_id,))[0][0] for t in TABLES}


def table_counts(store: Store) -> dict[str, int]:
    """Rows in each pruned table."""
    return {t: raw(store, f"SELECT COUNT(*) FROM {t}")[0][0] for t in TABLES}


def by_state(store: Store, table: str) -> dict[str, int]:
    """Rows of `runs` or `task_instances` per state, read from the table."""
    return {s: n for s, n in raw(store, f"SELECT state, COUNT(*) FROM {table} GROUP BY state")}


def bulk_history(store: Store, runs: int, tasks: int, ended: float, dag_id: str = "wide") -> list[str]:
    """`runs` successful runs of a `tasks`-task DAG that ended at `ended`, written straight into the tables.

    Each task instance has one attempt and one log piece: built with bulk inserts, for size.
    """
    text = f"id: {dag_id}\ntasks:\n" + "".join(f"  - {{id: t{i}, command: 'true'}}\n" for i in range(tasks))
    submit(store, text)
    ids = [uuid.uuid4().hex[:16] for _ in range(runs)]
    assert isinstance(store, SqlStore)
    with store._transaction() as cur:
        store._exec_many(
            cur,
            "INSERT INTO runs (run_id, dag_id, dag_version, state, triggered_by, params_json, created_at,"
            " started_at, ended_at) VALUES (?, ?, 1, 'success', 'test', '{}', ?, ?, ?)",
            [(r, dag_id, ended - 60, ended - 60, ended) for r in ids],
        )
        store._exec_many(
            cur,
            "INSERT INTO task_instances (run_id, task_id, position, state, attempt, ended_at)"
            " VALUES (?, ?, ?, 'success', 1, ?)",
            [(r, f"t{i}", i, ended) for r in ids for i in range(tasks)],
        )
        store._exec_many(
            cur,
            "INSERT INTO attempts (run_id, task_id, attempt, state, worker_id, ended_at, dag_id)"
            " VALUES (?, ?, 1, 'success', 'w1', ?, ?)",
            [(r, f"t{i}", ended, dag_id) for r in ids for i in range(tasks)],
        )
        store._exec_many(
            cur,
            "INSERT INTO task_logs (run_id, task_id, attempt, seq, data) VALUES (?, ?, 1, 1, 'ok')",
            [(r, f"t{i}") for r in ids for i in range(tasks)],
        )
    return ids
