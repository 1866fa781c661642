"""Contract suite for the Store protocol, run against every backend in conftest.STORE_BACKENDS.

DAGs, runs, logs, workers, counts, migrations, concurrency and events here; task instances,
attempts and leases in test_store_tasks.py; the row-to-record mapping in test_store_rows.py.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from flowforge.core.errors import Conflict, NotFound
from flowforge.core.model import DagSpec, RunState, TaskSpec, TaskState
from flowforge.core.records import WorkerInfo
from flowforge.store import Store, open_store
from flowforge.store.schema import LATEST_VERSION, MIGRATIONS, SchemaTooNew
from flowforge.store.sql import SqlStore
from flowforge.store.sqlite import SqliteStore

T0 = 1_700_000_000.0


def make_spec(
    dag_id: str = "etl", tasks: tuple[str, ...] = ("extract", "transform", "load"), **kw: Any
) -> DagSpec:
    """A chain of echo tasks: each depends on the one before."""
    specs = tuple(
        TaskSpec(id=t, command=f"echo {t}", depends_on=(tasks[i - 1],) if i else ())
        for i, t in enumerate(tasks)
    )
    return DagSpec(id=dag_id, tasks=specs, **kw)


def raw(store: Store, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
    """Run SQL behind the protocol's back (to check constraints the protocol never violates)."""
    assert isinstance(store, SqlStore)
    with store._transaction() as cur:
        store._exec(cur, sql, params)
        return cur.fetchall() if sql.lstrip().upper().startswith("SELECT") else []


def running_task(store: Store, task_id: str = "extract", worker: str = "w1") -> str:
    """A run whose `task_id` is running attempt 1 on `worker`; returns the run id."""
    store.put_dag(make_spec(), "src", T0)
    run = store.create_run("etl", triggered_by="test", params={}, now=T0)
    assert store.queue_tasks(run.run_id, [(task_id, 0)], T0 + 1) == [task_id]
    assert store.claim_task(run.run_id, task_id, 1, worker, T0 + 2) is not None
    return run.run_id


# -- DAGs -------------------------------------------------------------------------------------
def test_put_dag_stores_version_1(store: Store) -> None:
    rec = store.put_dag(make_spec(), "id: etl", T0)
    assert (rec.dag_id, rec.version, rec.source, rec.active, rec.paused) == ("etl", 1, "id: etl", True, False)
    assert rec.spec.to_dict() == make_spec().to_dict()
    assert rec.created_at == rec.updated_at == T0
    assert store.get_dag("etl") == rec


def test_put_dag_same_spec_keeps_version(store: Store) -> None:
    store.put_dag(make_spec(), "id: etl", T0)
    rec = store.put_dag(make_spec(), "id: etl  # only a comment changed", T0 + 5)
    assert rec.version == 1
    assert rec.source == "id: etl"  # versions are immutable
    assert rec.updated_at == T0


def test_put_dag_changed_spec_adds_version(store: Store) -> None:
    store.put_dag(make_spec(), "v1", T0)
    rec = store.put_dag(make_spec(tasks=("extract", "load")), "v2", T0 + 5)
    assert (rec.version, rec.source, rec.created_at, rec.updated_at) == (2, "v2", T0, T0 + 5)
    assert [t.id for t in store.get_dag_spec("etl", 1).tasks] == ["extract", "transform", "load"]
    assert [t.id for t in store.get_dag_spec("etl", 2).tasks] == ["extract", "load"]
    assert store.put_dag(make_spec(tasks=("extract", "load"), description="x"), "v3", T0 + 6).version == 3


def test_put_dag_reactivates_inactive_dag(store: Store) -> None:
    store.put_dag(make_spec(), "v1", T0)
    assert store.set_dag_flags("etl", active=False).active is False
    rec = store.put_dag(make_spec(), "v1", T0 + 1)
    assert rec.active is True and rec.version == 1


def test_missing_dag_raises_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        store.get_dag("nope")
    with pytest.raises(NotFound):
        store.set_dag_flags("nope", paused=True)
    store.put_dag(make_spec(), "v1", T0)
    with pytest.raises(NotFound):
        store.get_dag_spec("etl", 2)


def test_list_dags_by_id_and_inactive_on_request(store: Store) -> None:
    for dag_id in ("b", "c", "a"):
        store.put_dag(make_spec(dag_id), dag_id, T0)
    store.set_dag_flags("c", active=False)
    assert [d.dag_id for d in store.list_dags()] == ["a", "b"]
    assert [d.dag_id for d in store.list_dags(include_inactive=True)] == ["a", "b", "c"]


def test_set_dag_flags_changes_only_given_flags(store: Store) -> None:
    store.put_dag(make_spec(), "v1", T0)
    assert store.set_dag_flags("etl", paused=True).paused is True
    rec = store.set_dag_flags("etl")
    assert (rec.active, rec.paused) == (True, True)
    assert store.set_dag_flags("etl", paused=False).paused is False


# -- runs -------------------------------------------------------------------------------------
def test_create_run_is_queued_with_every_task_pending_in_dag_order(store: Store) -> None:
    store.put_dag(make_spec(tasks=("z", "a", "m")), "v1", T0)
    run = store.create_run("etl", triggered_by="alice", params={"region": "eu"}, now=T0 + 1)
    assert (run.state, run.dag_version, run.triggered_by, run.params) == (
        RunState.QUEUED,
        1,
        "alice",
        {"region": "eu"},
    )
    assert store.get_run(run.run_id) == run
    tis = store.task_instances(run.run_id)
    assert [t.task_id for t in tis] == ["z", "a", "m"]
    assert all(t.state == TaskState.PENDING and t.attempt == 0 for t in tis)


def test_create_run_needs_an_active_dag(store: Store) -> None:
    with pytest.raises(NotFound):
        store.create_run("nope", triggered_by="t", params={}, now=T0)
    store.put_dag(make_spec(), "v1", T0)
    store.set_dag_flags("etl", active=False)
    with pytest.raises(NotFound):
        store.create_run("etl", triggered_by="t", params={}, now=T0)


def test_run_keeps_the_version_it_started_with(store: Store) -> None:
    store.put_dag(make_spec(), "v1", T0)
    run = store.create_run("etl", triggered_by="t", params={}, now=T0)
    store.put_dag(make_spec(tasks=("only",)), "v2", T0 + 1)
    assert store.get_run(run.run_id).dag_version == 1
    assert [t.task_id for t in store.task_instances(run.run_id)] == ["extract", "transform", "load"]
    assert store.create_run("etl", triggered_by="t", params={}, now=T0 + 2).dag_version == 2


def test_one_run_per_logical_date(store: Store) -> None:
    store.put_dag(make_spec(), "v1", T0)
    store.create_run("etl", triggered_by="cron", params={}, now=T0, logical_date=T0)
    with pytest.raises(Conflict):
        store.create_run("etl", triggered_by="cron", params={}, now=T0, logical_date=T0)
    store.create_run("etl", triggered_by="t", params={}, now=T0)  # manual runs have no logical date
    store.create_run("etl", triggered_by="t", params={}, now=T0)
    assert len(store.list_runs()) == 3


def test_missing_run_or_task_raises_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        store.get_run("nope")
    with pytest.raises(NotFound):
        store.task_instances("nope")
    with pytest.raises(NotFound):
        store.get_task_instance("nope", "extract")
    assert store.attempts("nope", "extract") == []


def test_list_runs_newest_first_filtered_and_paged(store: Store) -> None:
    store.put_dag(make_spec("a"), "a", T0)
    store.put_dag(make_spec("b"), "b", T0)
    ids = [store.create_run("ab"[i % 2], triggered_by="t", params={}, now=T0 + i).run_id for i in range(6)]
    store.set_run_state(ids[4], [RunState.QUEUED], RunState.RUNNING, T0 + 10)
    assert [r.run_id for r in store.list_runs()] == ids[::-1]
    assert [r.run_id for r in store.list_runs(dag_id="a")] == [ids[4], ids[2], ids[0]]
    assert [r.run_id for r in store.list_runs(states=[RunState.RUNNING])] == [ids[4]]
    assert [r.run_id for r in store.list_runs(dag_id="b", states=[RunState.RUNNING])] == []
    assert [r.run_id for r in store.list_runs(limit=2, offset=1)] == [ids[4], ids[3]]
    assert store.list_runs(offset=6) == []


def test_set_run_state_is_conditional_and_stamps_times(store: Store) -> None:
    store.put_dag(make_spec(), "v1", T0)
    run_id = store.create_run("etl", triggered_by="t", params={}, now=T0).run_id
    assert store.set_run_state(run_id, [RunState.RUNNING], RunState.SUCCESS, T0 + 1) is False
    assert store.get_run(run_id).state == RunState.QUEUED
    assert store.set_run_state(run_id, [RunState.QUEUED], RunState.RUNNING, T0 + 2) is True
    assert store.set_run_state(run_id, [RunState.RUNNING], RunState.FAILED, T0 + 3) is True
    run = store.get_run(run_id)
    assert (run.state, run.started_at, run.ended_at) == (RunState.FAILED, T0 + 2, T0 + 3)
    assert (
        store.set_run_state(run_id, [RunState.QUEUED, RunState.RUNNING], RunState.CANCELLED, T0 + 4) is False
    )
    assert store.set_run_state(run_id, [], RunState.CANCELLED, T0 + 4) is False


# -- logs -------------------------------------------------------------------------------------
def test_logs_append_and_read_with_cursor(store: Store) -> None:
    run_id = running_task(store)
    assert store.read_log(run_id, "extract", 1) == ("", 0)
    store.append_log(run_id, "extract", 1, "hello\n")
    store.append_log(run_id, "extract", 1, "")  # nothing to keep
    store.append_log(run_id, "extract", 1, "world\n")
    text, cursor = store.read_log(run_id, "extract", 1)
    assert text == "hello\nworld\n"
    assert store.read_log(run_id, "extract", 1, after=cursor) == ("", cursor)
    store.append_log(run_id, "extract", 1, "more")
    assert store.read_log(run_id, "extract", 1, after=cursor)[0] == "more"
    assert store.read_log(run_id, "extract", 2) == ("", 0)  # another attempt's log is separate
    with pytest.raises(NotFound):
        store.append_log(run_id, "extract", 7, "no such attempt")


# -- workers and overview ---------------------------------------------------------------------
def test_workers_upsert_and_list(store: Store) -> None:
    w1 = WorkerInfo("w1", "host-a", 10, 4, T0, T0 + 1)
    w2 = WorkerInfo("w2", "host-b", 20, 2, T0, T0 + 2, running=("r/extract",))
    store.upsert_worker(w1)
    store.upsert_worker(w2)
    assert store.list_workers() == [w2, w1]
    beat = WorkerInfo("w1", "host-a", 10, 4, T0, T0 + 5, running=("r/load", "r/x"), state="stopped")
    store.upsert_worker(beat)
    assert store.list_workers() == [beat, w2]


def test_a_dead_worker_lists_no_running_task(store: Store) -> None:
    """Its attempts were given up as lost and may have run elsewhere since: it runs none of them."""
    alive = WorkerInfo("w1", "host-a", 10, 4, T0, T0 + 1, running=("r/extract", "r/load"))
    store.upsert_worker(alive)
    assert store.list_workers() == [alive]
    store.upsert_worker(replace(alive, state="dead"))
    assert store.list_workers() == [replace(alive, state="dead", running=())]
    store.upsert_worker(replace(alive, last_heartbeat=T0 + 9))  # it was only cut off: it beats again
    assert store.list_workers() == [replace(alive, last_heartbeat=T0 + 9)]


def test_counts(store: Store) -> None:
    for dag_id in ("a", "b", "c", "d"):
        store.put_dag(make_spec(dag_id), dag_id, T0)
    store.set_dag_flags("b", paused=True)
    store.set_dag_flags("c", active=False)
    r = store.create_run("a", triggered_by="t", params={}, now=T0).run_id
    store.create_run("a", triggered_by="t", params={}, now=T0)
    store.set_run_state(r, [RunState.QUEUED], RunState.RUNNING, T0)
    store.queue_tasks(r, [("extract", 0)], T0)
    c = store.counts()
    assert c["dags"] == {"active": 2, "paused": 1, "inactive": 1}
    assert c["runs"] == {"queued": 1, "running": 1, "success": 0, "failed": 0, "cancelled": 0}
    assert c["tasks"]["pending"] == 5 and c["tasks"]["queued"] == 1 and c["tasks"]["running"] == 0
    assert set(c["tasks"]) == {str(s) for s in TaskState}


# -- migrations -------------------------------------------------------------------------------
def test_migrations_are_idempotent(store: Store) -> None:
    assert isinstance(store, SqlStore)
    store.put_dag(make_spec(), "v1", T0)
    assert store.migrate() == LATEST_VERSION
    assert store.migrate() == LATEST_VERSION
    assert raw(store, "SELECT COUNT(*) FROM schema_version")[0][0] == LATEST_VERSION
    assert store.get_dag("etl").version == 1


def test_the_lost_attempt_count_is_filled_in_by_its_migration(store: Store) -> None:
    """A database from before `task_instances.lost_attempts`: the count is taken from the attempts."""
    run_id = running_task(store)
    assert store.finish_task(
        run_id, "extract", 1, "w1", state=TaskState.UP_FOR_RETRY, now=T0 + 3, attempt_state=TaskState.LOST
    )
    raw(store, "ALTER TABLE task_instances DROP COLUMN lost_attempts")
    for statement in dict(MIGRATIONS)[4]:  # migration 4 alone: later ones must not run twice
        raw(store, statement)
    assert store.get_task_instance(run_id, "extract").lost_attempts == 1
    assert store.get_task_instance(run_id, "transform").lost_attempts == 0


def test_newer_schema_is_refused(store: Store) -> None:
    assert isinstance(store, SqlStore)
    raw(store, "INSERT INTO schema_version (version, applied_at) VALUES (?, ?)", (LATEST_VERSION + 1, T0))
    with pytest.raises(SchemaTooNew, match="newer FlowForge"):
        store.migrate()


def test_reopening_a_file_keeps_data_and_refuses_a_newer_schema(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'deep' / 'dir' / 'ff.db'}"
    with_data = open_store(url)
    with_data.put_dag(make_spec(), "v1", T0)
    with_data.close()
    again = open_store(url)  # migrations already applied: a no-op
    assert again.get_dag("etl").version == 1
    raw(again, "INSERT INTO schema_version (version, applied_at) VALUES (?, ?)", (LATEST_VERSION + 1, T0))
    again.close()
    with pytest.raises(SchemaTooNew, match=f"version {LATEST_VERSION + 1}"):
        open_store(url)


def test_sqlite_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    rel = SqliteStore.from_url("sqlite:///rel/ff.db")
    rel.close()
    assert (tmp_path / "rel" / "ff.db").exists()
    with pytest.raises(ValueError):
        SqliteStore.from_url("sqlite:/nope")


# -- concurrency ------------------------------------------------------------------------------
def claim_concurrently(stores: list[Store], run_id: str, task_ids: list[str]) -> Counter[str]:
    """8 threads each try to claim every task; returns how often each task was claimed."""
    claims: Counter[str] = Counter()
    lock = threading.Lock()
    start = threading.Barrier(8)

    def worker(n: int) -> None:
        s = stores[n % len(stores)]
        start.wait()
        for tid in task_ids:
            if s.claim_task(run_id, tid, 1, f"w{n}", T0 + 2) is not None:
                with lock:
                    claims[tid] += 1

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return claims


def queued_run(store: Store, n: int = 50) -> tuple[str, list[str]]:
    """A run of `n` independent tasks, all queued at attempt 1."""
    task_ids = [f"t{i:02d}" for i in range(n)]
    store.put_dag(DagSpec(id="wide", tasks=tuple(TaskSpec(id=t, command="true") for t in task_ids)), "w", T0)
    run_id = store.create_run("wide", triggered_by="t", params={}, now=T0).run_id
    assert store.queue_tasks(run_id, [(t, 0) for t in task_ids], T0 + 1) == task_ids
    return run_id, task_ids


def test_concurrent_claims_each_task_exactly_once(store: Store) -> None:
    run_id, task_ids = queued_run(store)
    claims = claim_concurrently([store], run_id, task_ids)
    assert claims == Counter({t: 1 for t in task_ids})
    assert all(ti.state == TaskState.RUNNING for ti in store.task_instances(run_id))


def test_concurrent_claims_across_connections(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ff.db'}"
    stores = [open_store(url) for _ in range(4)]  # as if four processes shared the file
    try:
        run_id, task_ids = queued_run(stores[0])
        assert claim_concurrently(stores, run_id, task_ids) == Counter({t: 1 for t in task_ids})
    finally:
        for s in stores:
            s.close()


def test_every_state_change_is_an_event_in_order(store) -> None:
    from flowforge.core.dagfile import load_dag

    text = "id: ev\ntasks:\n  - {id: a, command: 'true'}\n  - {id: b, command: 'true', depends_on: [a]}\n"
    start = store.last_event_id()
    store.put_dag(load_dag(text), text, 1.0)
    run = store.create_run("ev", triggered_by="t", params={}, now=2.0)
    store.set_run_state(run.run_id, [RunState.QUEUED], RunState.RUNNING, 3.0)
    store.queue_tasks(run.run_id, [("a", 0)], 4.0)
    store.claim_task(run.run_id, "a", 1, "w", 5.0)
    store.finish_task(run.run_id, "a", 1, "w", state=TaskState.SUCCESS, now=6.0)
    assert store.claim_task(run.run_id, "a", 1, "w", 7.0) is None  # refused: no event
    store.stop_run(run.run_id, RunState.CANCELLED, "stop", 8.0)
    events = store.events_after(start)
    assert [(e.kind, e.task_id, e.state) for e in events] == [
        ("dag", None, None),
        ("run", None, "queued"),
        ("run", None, "running"),
        ("task", "a", "queued"),
        ("task", "a", "running"),
        ("task", "a", "success"),
        ("run", None, "cancelled"),
    ]
    assert [e.id for e in events] == list(range(start + 1, start + 8))
    assert {e.dag_id for e in events} == {"ev"} and events[3].attempt == 1
    assert store.events_after(events[4].id, limit=1)[0].state == "success"
    assert store.last_event_id() == events[-1].id
    store.prune_events(keep=2)
    assert [e.id for e in store.events_after(0)] == [e.id for e in events[-2:]]


def test_outcome_counts_by_dag_and_state(store: Store) -> None:
    run_id = running_task(store)  # etl: extract running attempt 1
    assert store.finish_task(run_id, "extract", 1, "w1", state=TaskState.UP_FOR_RETRY, now=T0 + 3)
    assert store.queue_tasks(run_id, [("extract", 1)], T0 + 4) == ["extract"]
    store.put_dag(make_spec("other", tasks=("a",)), "src", T0)
    other = store.create_run("other", triggered_by="test", params={}, now=T0)
    store.queue_tasks(other.run_id, [("a", 0)], T0 + 1)
    store.stop_run(other.run_id, RunState.CANCELLED, "cancelled", T0 + 2)
    counts = store.outcome_counts()
    assert counts["runs"] == {("other", "cancelled"): 1}
    assert counts["attempts"] == {("etl", "failed"): 1, ("etl", "queued"): 1, ("other", "cancelled"): 1}
    assert counts["retries"] == {("etl", "failed"): 0, ("etl", "queued"): 1, ("other", "cancelled"): 0}


def test_a_trigger_with_the_same_idempotency_key_returns_the_same_run(store: Store) -> None:
    store.put_dag(make_spec(), "src", T0)
    first = store.create_run("etl", triggered_by="ci", params={}, now=T0, idempotency_key="build-42")
    again = store.create_run("etl", triggered_by="ci", params={}, now=T0 + 1, idempotency_key="build-42")
    other = store.create_run("etl", triggered_by="ci", params={}, now=T0 + 2, idempotency_key="build-43")
    plain = [store.create_run("etl", triggered_by="ci", params={}, now=T0 + 3) for _ in range(2)]
    assert again.run_id == first.run_id and again.created_at == first.created_at
    assert len({first.run_id, other.run_id, *(r.run_id for r in plain)}) == 4
    assert len(store.list_runs(dag_id="etl")) == 4
