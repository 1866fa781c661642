"""Rows map to records by column name, and the SQL store's parts compose without shadowing.

Each record type is read through one `Columns` (flowforge.store.db): these tests pin that the
columns it selects come back from each backend under exactly the dataclass's field names, in
order, and that every field survives a write and a read on every backend.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from flowforge.core.model import RunState, TaskState
from flowforge.core.records import Attempt, DagRecord, Event, Run, TaskInstance, WorkerInfo
from flowforge.store import Store
from flowforge.store.dags import DAG_COLUMNS
from flowforge.store.db import Columns, SqlBase
from flowforge.store.events import EVENT_COLUMNS
from flowforge.store.postgres import PostgresStore
from flowforge.store.runs import RUN_COLUMNS
from flowforge.store.sql import SqlStore
from flowforge.store.sqlite import SqliteStore
from flowforge.store.tasks import ATTEMPT_COLUMNS, TASK_COLUMNS
from flowforge.store.workers import WORKER_COLUMNS
from tests.test_store import T0, make_spec

RECORDS: list[tuple[type[Any], Columns[Any]]] = [
    (DagRecord, DAG_COLUMNS),
    (Run, RUN_COLUMNS),
    (TaskInstance, TASK_COLUMNS),
    (Attempt, ATTEMPT_COLUMNS),
    (WorkerInfo, WORKER_COLUMNS),
    (Event, EVENT_COLUMNS),
]


def field_names(record: type[Any]) -> list[str]:
    return [f.name for f in dataclasses.fields(record)]


@pytest.mark.parametrize(("record", "columns"), RECORDS, ids=[r.__name__ for r, _ in RECORDS])
def test_each_record_is_read_by_columns_named_after_its_fields(
    record: type[Any], columns: Columns[Any]
) -> None:
    assert columns.record is record
    assert list(columns.names) == field_names(record)


def test_the_database_returns_each_column_under_its_field_name(store: Store) -> None:
    assert isinstance(store, SqlStore)
    for record, columns in RECORDS:
        with store._transaction(write=False) as cur:
            store._exec(cur, columns.select + " LIMIT 0")
            returned = [d[0] for d in cur.description]  # type: ignore[attr-defined]
        assert returned == field_names(record), record.__name__


@pytest.mark.parametrize(
    "columns",
    [
        "run_id, task_id, attempt, state, worker_id, started_at, queued_at, ended_at, exit_code, error",
        "run_id, task_id, attempt, state, worker_id, queued_at, started_at, ended_at, exit_code, message",
        "run_id, task_id, attempt, state, worker_id, queued_at, started_at, ended_at, exit_code",
        "run_id, task_id, attempt, state, worker_id, queued_at, started_at, ended_at, exit_code, error, x",
        "run_id, task_id, attempt, state, worker_id, queued_at, started_at, ended_at, exit_code, err AS errors",
    ],
    ids=["reordered", "renamed", "missing", "extra", "misaliased"],
)
def test_columns_that_do_not_match_the_fields_are_refused(columns: str) -> None:
    with pytest.raises(TypeError, match="Attempt is read as columns"):
        Columns(Attempt, "attempts", columns)


def test_a_conversion_of_no_field_is_refused() -> None:
    with pytest.raises(TypeError, match="no fields"):
        Columns(Event, "events", EVENT_COLUMNS.columns, status=str)


def test_aliases_and_table_prefixes_name_the_field() -> None:
    assert DAG_COLUMNS.names[:3] == ("dag_id", "version", "spec")  # d.dag_id, ... AS version, ... AS spec
    assert RUN_COLUMNS.names[5] == "params"  # params_json AS params


# -- every field survives a round trip --------------------------------------------------------
def test_dag_record_round_trip(store: Store) -> None:
    store.put_dag(make_spec(), "v1", T0)
    spec = make_spec(tasks=("extract", "load"), description="two steps")
    store.put_dag(spec, "v2", T0 + 5)
    store.set_dag_flags("etl", paused=True, schedule_after=T0 + 7)
    rec = store.get_dag("etl")
    assert rec.spec.to_dict() == spec.to_dict()
    assert rec == DagRecord("etl", 2, rec.spec, "v2", True, True, T0, T0 + 5, T0 + 7)
    assert store.list_dags() == [rec]
    assert type(rec.active) is bool and type(rec.paused) is bool


def test_run_round_trip(store: Store) -> None:
    store.put_dag(make_spec(), "v1", T0)
    params = {"day": "2024-01-01", "n": [1, 2.5, None], "nested": {"ok": True}}
    run = store.create_run("etl", triggered_by="cron", params=params, now=T0, logical_date=T0 - 60)
    store.set_run_state(run.run_id, [RunState.QUEUED], RunState.RUNNING, T0 + 1)
    store.set_run_state(run.run_id, [RunState.RUNNING], RunState.SUCCESS, T0 + 2)
    expected = Run(run.run_id, "etl", 1, RunState.SUCCESS, "cron", params, T0 - 60, T0, T0 + 1, T0 + 2)
    assert store.get_run(run.run_id) == expected
    assert store.list_runs(dag_id="etl") == [expected]
    assert isinstance(store.get_run(run.run_id).state, RunState)


def test_task_instance_and_attempt_round_trip(store: Store) -> None:
    store.put_dag(make_spec(), "v1", T0)
    run_id = store.create_run("etl", triggered_by="t", params={}, now=T0).run_id
    store.queue_tasks(run_id, [("extract", 0)], T0 + 1)
    claimed = store.claim_task(run_id, "extract", 1, "w1", T0 + 2, lease_secs=30.0)
    assert claimed is not None and claimed.lease_token
    token = claimed.lease_token
    assert claimed == TaskInstance(
        run_id, "extract", TaskState.RUNNING, 1, None, T0 + 1, T0 + 2, None, None, None, "w1", token, T0 + 32
    )
    assert store.finish_task(
        run_id, "extract", 1, "w1", state=TaskState.UP_FOR_RETRY, now=T0 + 3, exit_code=2, error="boom",
        retry_at=T0 + 9, lease_token=token,
    )  # fmt: skip
    expected = TaskInstance(
        run_id, "extract", TaskState.UP_FOR_RETRY, 1, T0 + 9, T0 + 1, T0 + 2, T0 + 3, 2, "boom", "w1", token,
        T0 + 32,
    )  # fmt: skip
    assert store.get_task_instance(run_id, "extract") == expected
    assert store.task_instances(run_id)[0] == expected
    attempt = Attempt(run_id, "extract", 1, TaskState.FAILED, "w1", T0 + 1, T0 + 2, T0 + 3, 2, "boom")
    assert store.attempts(run_id, "extract") == [attempt]
    assert isinstance(store.attempts(run_id, "extract")[0].state, TaskState)


def test_worker_round_trip(store: Store) -> None:
    worker = WorkerInfo("w1", "host-a", 4321, 8, T0, T0 + 1, running=("r1/a", "r2/b"), state="stopped")
    store.upsert_worker(worker)
    assert store.list_workers() == [worker]


def test_event_round_trip(store: Store) -> None:
    store.put_dag(make_spec(), "v1", T0)
    run_id = store.create_run("etl", triggered_by="t", params={}, now=T0).run_id
    store.queue_tasks(run_id, [("extract", 0)], T0 + 1)
    last = store.last_event_id()
    assert store.events_after(last - 1) == [
        Event(last, T0 + 1, "task", "etl", run_id, "extract", "queued", 1)
    ]


# -- the parts of SqlStore --------------------------------------------------------------------
def parts() -> list[type[Any]]:
    """The classes SqlStore is composed of, from SqlStore itself down to SqlBase."""
    mro = SqlStore.__mro__
    return list(mro[: mro.index(SqlBase) + 1])


def test_no_part_of_the_sql_store_shadows_another() -> None:
    owner: dict[str, str] = {}
    for part in parts():
        for name in vars(part):
            if name.startswith("__") or name == "_abc_impl":  # Python's own, not the store's
                continue
            assert name not in owner, f"{name} is defined by both {owner[name]} and {part.__name__}"
            owner[name] = part.__name__


def test_the_driver_hooks_are_declared_once_and_implemented_by_each_driver() -> None:
    assert SqlStore.__abstractmethods__ == {"_begin", "close"}
    assert all(issubclass(part, SqlBase) for part in parts())
    for driver in (SqliteStore, PostgresStore):
        assert driver.__abstractmethods__ == frozenset()
        assert {"_begin", "close"} <= set(vars(driver))
