"""A tick reads and plans what changed since the last one, and decides what a full read decides."""

from __future__ import annotations

import time

import pytest

from flowforge.core.dagfile import load_dag
from flowforge.core.model import RunState, TaskState
from flowforge.engine.scheduler import Scheduler
from flowforge.engine.worker import Worker
from flowforge.queues.memory import MemoryQueue
from flowforge.store import open_store


def chains(width: int, length: int) -> str:
    """`width` independent chains of `length` tasks each."""
    lines = ["id: chains", "max_active_tasks: 10000", "max_active_runs: 100", "tasks:"]
    for c in range(width):
        for i in range(length):
            after = f", depends_on: [c{c}t{i - 1}]" if i else ""
            lines.append(f"  - {{id: c{c}t{i}, command: 'true'{after}}}")
    return "\n".join(lines) + "\n"


def one_finished_task_tick(tmp_path, runs: int, width: int, length: int) -> tuple[int, int, int]:
    """Rows read, tasks evaluated and tasks queued by the wake tick after one task of one run finished."""
    store = open_store(f"sqlite:///{tmp_path / f'ff-{runs}-{width}.db'}")
    queue = MemoryQueue()
    try:
        text = chains(width, length)
        store.put_dag(load_dag(text), text, time.time())
        for _ in range(runs):
            store.create_run("chains", triggered_by="test", params={}, now=time.time())
        scheduler = Scheduler(store, queue)
        scheduler.tick(time.time())  # reads everything, queues every chain's first task
        scheduler.tick(time.time(), housekeeping=False)  # takes in the tick's own changes
        msg = queue.get(0)
        assert msg is not None and Worker(store, queue, slots=1).handle(msg)
        books = scheduler.books
        read, planned = books.rows_read, books.tasks_planned
        report = scheduler.tick(time.time(), housekeeping=False)
        next_task = msg.task_id.replace("t0", "t1")
        assert store.get_task_instance(msg.run_id, next_task).state == TaskState.QUEUED
        return books.rows_read - read, books.tasks_planned - planned, report.tasks_queued
    finally:
        queue.close()
        store.close()


def test_a_tick_after_one_task_finished_reads_and_plans_the_same_few_tasks_however_many_there_are(tmp_path):
    small = one_finished_task_tick(tmp_path, runs=2, width=3, length=3)
    large = one_finished_task_tick(tmp_path, runs=8, width=25, length=6)
    # No task instance read (the event log says what changed); the finished task's child alone
    # evaluated, and queued: the same with 1,200 tasks in 8 runs as with 18 in 2.
    assert small == large == (0, 1, 1)


MIXED = """
id: mixed
max_active_tasks: 2
retry_delay_secs: 0.01
tasks:
  - {id: a, command: 'true'}
  - {id: b, command: 'exit 1'}
  - {id: flaky, command: '[ "$FLOWFORGE_ATTEMPT" -ge 2 ]', retries: 2}
  - {id: hopeless, command: 'exit 1', retries: 1}
  - {id: c, command: 'true', depends_on: [a, b]}
  - {id: d, command: 'true', depends_on: [b], trigger_rule: one_failed}
  - {id: e, command: 'true', depends_on: [c], trigger_rule: all_done}
  - {id: f, command: 'true', depends_on: [a], trigger_rule: all_failed}
  - {id: g, command: 'true', depends_on: [f]}
  - {id: h, command: 'true', depends_on: [d, e, flaky], trigger_rule: none_failed}
  - {id: i, command: 'true', depends_on: [hopeless, a], trigger_rule: one_success}
  - {id: j, command: 'true', depends_on: [g, i], trigger_rule: all_done}
"""


def drive(
    tmp_path, name: str, housekeeping: bool
) -> tuple[RunState, dict[str, tuple[TaskState, int]], list[int]]:
    """Run MIXED to its end, ticking with or without housekeeping; its outcome, and the most tasks active."""
    store = open_store(f"sqlite:///{tmp_path / name}")
    queue = MemoryQueue()
    try:
        store.put_dag(load_dag(MIXED), MIXED, time.time())
        run = store.create_run("mixed", triggered_by="test", params={}, now=time.time())
        scheduler = Scheduler(store, queue)
        worker = Worker(store, queue, slots=1)
        scheduler.tick(time.time())
        deadline = time.monotonic() + 30
        active: list[int] = []
        while store.get_run(run.run_id).state == RunState.RUNNING:
            assert time.monotonic() < deadline
            tis = store.task_instances(run.run_id)
            active.append(sum(ti.state in (TaskState.QUEUED, TaskState.RUNNING) for ti in tis))
            if (msg := queue.get(0)) is not None:
                worker.handle(msg)
            else:
                time.sleep(0.02)  # a retry's delay
            scheduler.tick(time.time(), housekeeping=housekeeping)
        states = {ti.task_id: (ti.state, ti.attempt) for ti in store.task_instances(run.run_id)}
        return store.get_run(run.run_id).state, states, active
    finally:
        queue.close()
        store.close()


def test_ticks_that_follow_the_event_log_decide_what_ticks_that_read_everything_decide(tmp_path):
    full = drive(tmp_path, "full.db", housekeeping=True)
    light = drive(tmp_path, "light.db", housekeeping=False)
    assert light[:2] == full[:2]
    assert full[0] == RunState.FAILED
    assert full[1]["flaky"] == (TaskState.SUCCESS, 2) and full[1]["hopeless"] == (TaskState.FAILED, 2)
    assert full[1]["c"][0] == TaskState.UPSTREAM_FAILED and full[1]["e"][0] == TaskState.SUCCESS
    assert full[1]["f"][0] == full[1]["g"][0] == TaskState.SKIPPED
    assert full[1]["h"][0] == TaskState.SUCCESS and full[1]["j"][0] == TaskState.SUCCESS
    assert max(light[2]) == max(full[2]) == 2  # max_active_tasks holds either way


@pytest.mark.parametrize("change", ["cancel", "clear"])
def test_a_run_changed_from_outside_is_seen_by_the_next_wake_tick(tmp_path, change):
    store = open_store(f"sqlite:///{tmp_path / 'ff.db'}")
    queue = MemoryQueue()
    try:
        text = chains(1, 3)
        store.put_dag(load_dag(text), text, time.time())
        run = store.create_run("chains", triggered_by="test", params={}, now=time.time())
        scheduler = Scheduler(store, queue)
        worker = Worker(store, queue, slots=1)
        scheduler.tick(time.time())
        while store.get_run(run.run_id).state == RunState.RUNNING:
            if (msg := queue.get(0)) is not None:
                worker.handle(msg)
            scheduler.tick(time.time(), housekeeping=False)
        assert store.get_run(run.run_id).state == RunState.SUCCESS
        # Run it again from the middle: the books learn of it from the events alone.
        store.clear_tasks(run.run_id, ["c0t1", "c0t2"], time.time())
        scheduler.tick(time.time(), housekeeping=False)
        assert store.get_task_instance(run.run_id, "c0t1").state == TaskState.QUEUED
        if change == "cancel":
            store.stop_run(run.run_id, RunState.CANCELLED, "cancelled", time.time())
        while (msg := queue.get(0)) is not None:
            worker.handle(msg)
            scheduler.tick(time.time(), housekeeping=False)
        want = RunState.CANCELLED if change == "cancel" else RunState.SUCCESS
        assert store.get_run(run.run_id).state == want
        assert store.get_task_instance(run.run_id, "c0t2").state == (
            TaskState.CANCELLED if change == "cancel" else TaskState.SUCCESS
        )
    finally:
        queue.close()
        store.close()
