"""Events stay in commit order under concurrent writers, and a finish that claims is one transaction.

A live view (SSE, `runs follow`, the TUI) polls `events_after(cursor)`: it must see every event
exactly once, in id order, and no event may commit later with an id at or below a cursor a
reader has already passed. Writers number their events as their transaction's last statement,
so the check runs on real PostgreSQL with many writers at once while a reader polls.
"""

from __future__ import annotations

import threading
import time

import pytest

from flowforge.core.model import TaskState
from flowforge.core.records import Event
from flowforge.store import Store, open_store
from flowforge.store.sql import SqlStore
from flowforge.store.tasks import Finish
from tests.test_store import T0, make_spec
from tests.test_worker_api import Api
from tests.test_worker_api import api as api  # the fixture: a served API, SQLite and PostgreSQL
from tests.test_worker_api_faults import THREE, finish_body

WRITERS = 8
TASKS_PER_WRITER = 15
RUNS = 2


def work_through(
    store: Store, run_id: str, task_ids: list[str], worker: str, errors: list[BaseException]
) -> None:
    """Queue, claim and finish each task in turn: three committed state changes each."""
    try:
        for n, task_id in enumerate(task_ids):
            now = time.time()
            assert store.queue_tasks(run_id, [(task_id, 0)], now) == [task_id]
            claimed = store.claim_task(run_id, task_id, 1, worker, now)
            assert claimed is not None
            state = TaskState.SUCCESS if n % 2 else TaskState.FAILED
            assert store.finish_task(
                run_id, task_id, 1, worker, state=state, now=now, lease_token=claimed.lease_token
            )
    except BaseException as exc:  # reported by the test's thread
        errors.append(exc)


def follow(store: Store, stop: threading.Event, seen: list[Event], errors: list[BaseException]) -> None:
    """Poll the log as a live view does, checking that each page starts above the cursor and goes up."""
    try:
        cursor = 0
        while True:
            done = stop.is_set()  # read before the poll: once set, this poll sees every commit
            page = store.events_after(cursor, limit=50)
            for event in page:
                assert event.id > cursor, f"event {event.id} appeared at or below the cursor {cursor}"
                cursor = event.id
            seen.extend(page)
            if done and not page:
                return
    except BaseException as exc:
        errors.append(exc)


def test_a_reader_sees_every_event_once_in_order_while_many_writers_commit(pg_url: str) -> None:
    tasks = tuple(f"t{i}" for i in range(WRITERS * TASKS_PER_WRITER))
    store = open_store(pg_url, pool_size=WRITERS + 2)
    try:
        spec = make_spec("wide", tasks)
        store.put_dag(spec, "wide", T0)
        run_ids = [
            store.create_run("wide", triggered_by="test", params={}, now=T0).run_id for _ in range(RUNS)
        ]
        stop, errors, seen = threading.Event(), [], []
        reader = threading.Thread(target=follow, args=(store, stop, seen, errors))
        reader.start()
        writers = [
            threading.Thread(
                target=work_through,
                args=(store, run_ids[w // WRITERS], list(tasks[w % WRITERS :: WRITERS]), f"w{w}", errors),
            )
            for w in range(WRITERS * RUNS)
        ]
        for thread in writers:
            thread.start()
        for thread in writers:
            thread.join()
        stop.set()
        reader.join(timeout=60)
        assert not reader.is_alive()
        assert not errors, errors
        everything = store.events_after(0, limit=100_000)
        assert seen == everything  # each once, in id order, nothing slipped in below the cursor
        task_events = [e for e in everything if e.kind == "task"]
        assert len(task_events) == 3 * len(tasks) * RUNS
        for run_id in run_ids:  # each task's own events in the order its changes were made
            for task_id in tasks:
                states = [e.state for e in task_events if (e.run_id, e.task_id) == (run_id, task_id)]
                assert states[:2] == ["queued", "running"] and states[2] in ("success", "failed")
    finally:
        store.close()


def test_finish_and_claim_records_both_in_one_transaction(store: Store) -> None:
    store.put_dag(make_spec(tasks=("a", "b", "c")), "src", T0)
    run_id = store.create_run("etl", triggered_by="t", params={}, now=T0).run_id
    store.queue_tasks(run_id, [("a", 0), ("b", 0)], T0 + 1)
    a = store.claim_task(run_id, "a", 1, "w1", T0 + 2)
    assert a is not None
    before = store.last_event_id()

    stale = Finish(TaskState.SUCCESS, exit_code=0, lease_token="not-the-lease")
    assert store.finish_and_claim((run_id, "a", 1), stale, "w1", T0 + 3, claim=(run_id, "b", 1)) == (
        False,
        None,
    )
    assert store.get_task_instance(run_id, "b").state == TaskState.QUEUED  # nothing changed
    assert store.last_event_id() == before

    result = Finish(TaskState.SUCCESS, exit_code=0, lease_token=a.lease_token, outputs={"rows": "3"})
    recorded, b = store.finish_and_claim((run_id, "a", 1), result, "w1", T0 + 3, claim=(run_id, "b", 1))
    assert recorded and b is not None
    assert (b.task_id, b.state, b.worker_id, b.started_at) == ("b", TaskState.RUNNING, "w1", T0 + 3)
    assert b.lease_token and b.lease_expires_at == T0 + 3 + 15
    assert store.task_outputs(run_id) == {"a": {"rows": "3"}}
    events = store.events_after(before)
    assert [(e.id, e.task_id, e.state, e.attempt) for e in events] == [
        (before + 1, "a", "success", 1),
        (before + 2, "b", "running", 1),
    ]

    # A stale message (c was never queued): the result is recorded all the same, nothing claimed.
    result = Finish(TaskState.FAILED, exit_code=1, lease_token=b.lease_token)
    assert store.finish_and_claim((run_id, "b", 1), result, "w1", T0 + 4, claim=(run_id, "c", 1)) == (
        True,
        None,
    )
    assert store.get_task_instance(run_id, "b").state == TaskState.FAILED
    assert store.get_task_instance(run_id, "c").state == TaskState.PENDING


def test_a_stale_finish_that_claims_leaves_the_next_task_for_another_worker(api: Api) -> None:
    api.submit(THREE)
    run_id = api.trigger("three")
    api.tick()
    claimed = api.claim("w1").json()
    stale = {**finish_body(claimed), "lease_token": "0" * 32}
    refused = api.worker.post("/api/v1/worker/finish", params={"claim": 30}, json=stale)
    assert refused.status_code == 409, refused.text
    assert api.task(run_id, claimed["task_id"])["state"] == "running"
    other = api.claim("w2")  # the message the refused finish took went back on the queue
    assert other.status_code == 200, other.text
    assert other.json()["task_id"] != claimed["task_id"]
    assert api.task(run_id, other.json()["task_id"])["worker_id"] == "w2"


@pytest.mark.parametrize("emits", [1, 2])
def test_a_transaction_gives_each_changed_row_one_event_with_its_state_at_commit(
    store: Store, emits: int
) -> None:
    """Emitting twice for one row (two changes in one transaction) still makes one event, of the committed state."""
    assert isinstance(store, SqlStore)
    store.put_dag(make_spec(), "src", T0)
    run_id = store.create_run("etl", triggered_by="t", params={}, now=T0).run_id
    before = store.last_event_id()
    with store._transaction() as cur:
        store._exec(cur, "UPDATE runs SET state = 'running' WHERE run_id = ?", (run_id,))
        store._emit_runs(cur, [run_id], T0 + 1)
        if emits == 2:
            store._exec(cur, "UPDATE runs SET state = 'failed' WHERE run_id = ?", (run_id,))
            store._emit_runs(cur, [run_id], T0 + 2)
    final = "failed" if emits == 2 else "running"
    assert [(e.id, e.kind, e.run_id, e.state, e.ts) for e in store.events_after(before)] == [
        (before + 1, "run", run_id, final, T0 + 1)
    ]
