"""The engine's shortcuts (caches, batched ticks, one-pass trigger rules) change nothing it decides."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterable

import pytest

import flowforge.engine.scheduler as scheduler_module
from flowforge.core.dagfile import load_dag
from flowforge.core.model import TASK_TERMINAL, TaskState, TriggerRule
from flowforge.core.states import Readiness, evaluate_trigger
from flowforge.engine.scheduler import Scheduler
from flowforge.engine.worker import Worker
from flowforge.queues.base import TaskMessage
from flowforge.queues.memory import MemoryQueue
from flowforge.store import open_store


def reference_trigger(rule: TriggerRule, upstream: Iterable[TaskState]) -> Readiness:
    """The rules as first written: four passes over the upstream states."""
    failed = {TaskState.FAILED, TaskState.UPSTREAM_FAILED, TaskState.CANCELLED}
    states = list(upstream)
    if not states:
        return Readiness.READY
    done = all(s in TASK_TERMINAL for s in states)
    n_success = sum(s == TaskState.SUCCESS for s in states)
    n_failed = sum(s in failed for s in states)
    n_skipped = sum(s == TaskState.SKIPPED for s in states)
    table = {
        TriggerRule.ALL_SUCCESS: Readiness.UPSTREAM_FAILED
        if n_failed
        else Readiness.SKIPPED
        if n_skipped
        else Readiness.READY
        if done
        else Readiness.WAIT,
        TriggerRule.ALL_DONE: Readiness.READY if done else Readiness.WAIT,
        TriggerRule.ALL_FAILED: Readiness.SKIPPED
        if n_success or n_skipped
        else Readiness.READY
        if done
        else Readiness.WAIT,
        TriggerRule.ONE_SUCCESS: Readiness.READY
        if n_success
        else Readiness.WAIT
        if not done
        else Readiness.UPSTREAM_FAILED
        if n_failed
        else Readiness.SKIPPED,
        TriggerRule.ONE_FAILED: Readiness.READY
        if n_failed
        else Readiness.SKIPPED
        if done
        else Readiness.WAIT,
        TriggerRule.NONE_FAILED: Readiness.UPSTREAM_FAILED
        if n_failed
        else Readiness.READY
        if done
        else Readiness.WAIT,
    }
    return table[rule]


@pytest.mark.parametrize("rule", list(TriggerRule))
def test_trigger_rules_agree_with_the_reference_on_every_small_combination(rule):
    for n in range(4):
        for upstream in itertools.combinations_with_replacement(list(TaskState), n):
            assert evaluate_trigger(rule, iter(upstream)) == reference_trigger(rule, upstream), upstream


def test_task_lookup_finds_every_task_and_refuses_unknown_ones():
    spec = load_dag("id: d\ntasks:\n" + "".join(f"  - {{id: t{i}, command: 'true'}}\n" for i in range(50)))
    assert [spec.task(f"t{i}").id for i in range(50)] == [t.id for t in spec.tasks]
    with pytest.raises(KeyError):
        spec.task("t50")


DAG_V1 = "id: cached\ntasks:\n  - {id: a, command: 'true'}\n"
DAG_V2 = "id: cached\ntasks:\n  - {id: a, command: 'true'}\n  - {id: b, command: 'true', depends_on: [a]}\n"


def test_parsed_specs_are_reused_per_version_and_a_new_version_is_seen(tmp_path):
    store = open_store(f"sqlite:///{tmp_path / 'ff.db'}")
    try:
        store.put_dag(load_dag(DAG_V1), DAG_V1, 1.0)
        first = store.list_dags()[0].spec
        assert store.list_dags()[0].spec is first, "the same version is parsed once"
        assert store.get_dag("cached").spec is first
        store.put_dag(load_dag(DAG_V2), DAG_V2, 2.0)
        latest = store.list_dags()[0]
        assert latest.version == 2 and [t.id for t in latest.spec.tasks] == ["a", "b"]
        assert [t.id for t in store.get_dag_spec("cached", 1).tasks] == ["a"]
        assert [t.id for t in store.get_dag_spec("cached", 2).tasks] == ["a", "b"]
    finally:
        store.close()


class CountingStore:
    """A real store that counts calls to some of its methods."""

    def __init__(self, store, names):
        self._store = store
        self.calls = {n: 0 for n in names}

    def __getattr__(self, name):
        attr = getattr(self._store, name)
        if name in self.calls:

            def counted(*args, **kwargs):
                self.calls[name] += 1
                return attr(*args, **kwargs)

            return counted
        return attr


def test_the_worker_reads_a_run_once_for_all_its_tasks(tmp_path):
    real = open_store(f"sqlite:///{tmp_path / 'ff.db'}")
    store = CountingStore(real, ["get_run"])
    queue = MemoryQueue()
    try:
        text = "id: wide\ntasks:\n" + "".join(f"  - {{id: t{i}, command: 'true'}}\n" for i in range(5))
        real.put_dag(load_dag(text), text, time.time())
        run = real.create_run("wide", triggered_by="test", params={}, now=time.time())
        Scheduler(real, queue).tick(time.time())
        worker = Worker(store, queue, slots=1)
        while (msg := queue.get(0)) is not None:
            assert worker.handle(msg)
        assert {ti.state for ti in real.task_instances(run.run_id)} == {TaskState.SUCCESS}
        assert store.calls["get_run"] == 1
    finally:
        queue.close()
        real.close()


def test_a_stopped_worker_waits_for_its_tasks_without_spinning(tmp_path):
    store = open_store(f"sqlite:///{tmp_path / 'ff.db'}")
    queue = MemoryQueue()
    try:
        text = "id: slow\ntasks:\n  - {id: s, command: 'sleep 0.8'}\n"
        store.put_dag(load_dag(text), text, time.time())
        run = store.create_run("slow", triggered_by="test", params={}, now=time.time())
        Scheduler(store, queue).tick(time.time())
        worker = Worker(store, queue, slots=1, heartbeat_secs=60)
        watches = 0
        watch = worker.watch

        def counted_watch() -> int:
            nonlocal watches
            watches += 1
            return watch()

        worker.watch = counted_watch  # type: ignore[method-assign]
        stop = threading.Event()
        thread = threading.Thread(target=worker.run, args=(stop, 10.0), daemon=True)
        thread.start()
        deadline = time.monotonic() + 5
        while store.get_task_instance(run.run_id, "s").state != TaskState.RUNNING:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        watches = 0
        stop.set()
        thread.join(10)
        assert not thread.is_alive()
        assert store.get_task_instance(run.run_id, "s").state == TaskState.SUCCESS
        # About one check per half second while the task drains; a busy loop made thousands.
        assert watches <= 10
    finally:
        queue.close()
        store.close()


class TickRecorder(Scheduler):
    """A scheduler whose ticks only note when they happened."""

    def __init__(self, queue):
        super().__init__(store=None, queue=queue)  # type: ignore[arg-type]
        self.ticks: list[float] = []
        self.ticked = threading.Event()

        self.housekeeping: list[bool] = []

    def lead(self, now):  # type: ignore[override]
        return True  # the only scheduler here: no lease to hold in a store

    def tick(self, now, *, housekeeping=True):  # type: ignore[override]
        self.ticks.append(time.monotonic())
        self.housekeeping.append(housekeeping)
        self.ticked.set()


def test_a_wake_is_held_while_the_queue_has_work_and_not_when_it_is_empty(monkeypatch):
    monkeypatch.setattr(scheduler_module, "BATCH_SECS", 0.6)
    queue = MemoryQueue()
    scheduler = TickRecorder(queue)
    stop = threading.Event()
    thread = threading.Thread(target=scheduler.run, args=(stop, 30.0), daemon=True)
    thread.start()
    try:
        assert scheduler.ticked.wait(5)  # the first tick, at start
        # Work still queued: the wake is held back (up to BATCH_SECS) to batch later events.
        queue.put([TaskMessage("r", "t", 1)])
        scheduler.ticked.clear()
        woken = time.monotonic()
        queue.wake_scheduler()
        assert scheduler.ticked.wait(5)
        assert scheduler.ticks[-1] - woken >= 0.5
        # Nothing queued: the wake ticks at once.
        assert queue.get(0) is not None
        time.sleep(0.05)
        scheduler.ticked.clear()
        woken = time.monotonic()
        queue.wake_scheduler()
        assert scheduler.ticked.wait(5)
        assert scheduler.ticks[-1] - woken < 0.4
    finally:
        stop.set()
        queue.close()
        thread.join(5)


def test_a_held_wake_ticks_as_soon_as_a_later_wake_finds_the_queue_empty(monkeypatch):
    monkeypatch.setattr(scheduler_module, "BATCH_SECS", 5.0)
    queue = MemoryQueue()
    scheduler = TickRecorder(queue)
    stop = threading.Event()
    thread = threading.Thread(target=scheduler.run, args=(stop, 30.0), daemon=True)
    thread.start()
    try:
        assert scheduler.ticked.wait(5)
        queue.put([TaskMessage("r", "t", 1)])
        scheduler.ticked.clear()
        queue.wake_scheduler()
        time.sleep(0.1)
        assert not scheduler.ticked.is_set(), "held while a message waits"
        assert queue.get(0) is not None
        queue.wake_scheduler()  # e.g. the task that message started has finished
        assert scheduler.ticked.wait(2)
    finally:
        stop.set()
        queue.close()
        thread.join(5)


def test_ticks_on_wakes_leave_housekeeping_to_one_tick_a_period():
    queue = MemoryQueue()
    scheduler = TickRecorder(queue)
    stop = threading.Event()
    thread = threading.Thread(target=scheduler.run, args=(stop, 0.3), daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while scheduler.housekeeping.count(True) < 4:  # a task finishing every 20 ms
            assert time.monotonic() < deadline, "cron and dead workers are still looked at every tick_secs"
            queue.wake_scheduler()
            time.sleep(0.02)
    finally:
        stop.set()
        queue.close()
        thread.join(5)
    assert scheduler.housekeeping[0], "the first tick does everything"
    full = [t for t, h in zip(scheduler.ticks, scheduler.housekeeping, strict=True) if h]
    # no more often than every tick_secs (0.3 s), however often it is woken (less a little jitter)
    assert all(b - a > 0.2 for a, b in itertools.pairwise(full)), full
    assert scheduler.housekeeping.count(False) > len(full)


CRON_DAG = "id: every-minute\nschedule: '* * * * *'\ntasks:\n  - {id: a, command: 'true'}\n"


def test_a_tick_without_housekeeping_creates_no_cron_run_and_reaps_no_worker(tmp_path):
    from flowforge.core.records import WorkerInfo

    store = open_store(f"sqlite:///{tmp_path / 'ff.db'}")
    queue = MemoryQueue()
    try:
        store.put_dag(load_dag(CRON_DAG), CRON_DAG, 0.0)
        store.upsert_worker(WorkerInfo("gone", "host", 1, 1, 0.0, 0.0))
        scheduler = Scheduler(store, queue, worker_dead_after=30)
        light = scheduler.tick(600.0, housekeeping=False)
        assert light.runs_created == 0 and light.workers_dead == 0
        assert store.list_runs() == [] and store.list_workers()[0].state == "alive"
        full = scheduler.tick(600.0)
        assert full.runs_created == 1 and full.workers_dead == 1
    finally:
        queue.close()
        store.close()


def test_the_lost_attempt_limit_is_set_by_its_environment_variable(tmp_path, monkeypatch):
    """FLOWFORGE_MAX_LOST_ATTEMPTS=0: a task whose worker died is retried under its retries only."""
    from flowforge.core.model import RunState
    from flowforge.core.records import WorkerInfo
    from flowforge.roles import make_scheduler
    from flowforge.services import build_services
    from flowforge.settings import Settings

    for bad in ("-1", "three", "1.5"):
        monkeypatch.setenv("FLOWFORGE_MAX_LOST_ATTEMPTS", bad)
        with pytest.raises(ValueError, match=f"FLOWFORGE_MAX_LOST_ATTEMPTS must be a whole number.*{bad!r}"):
            Settings.from_env(home=str(tmp_path))
    monkeypatch.setenv("FLOWFORGE_MAX_LOST_ATTEMPTS", "0")
    monkeypatch.setenv("FLOWFORGE_DB", f"sqlite:///{tmp_path / 'ff.db'}")
    services = build_services(Settings.from_env(home=str(tmp_path)))
    try:
        store, queue = services.store, services.queue
        dag = "id: once\ntasks:\n  - {id: t, command: 'true'}\n"
        store.put_dag(load_dag(dag), dag, time.time())
        run = store.create_run("once", triggered_by="test", params={}, now=time.time())
        scheduler = make_scheduler(services)
        scheduler.tick(time.time())
        msg = queue.get(1)
        assert msg is not None and store.claim_task(run.run_id, "t", 1, "ghost", time.time()) is not None
        store.upsert_worker(WorkerInfo("ghost", "elsewhere", 1, 1, 0.0, 0.0, (f"{run.run_id}/t",)))
        scheduler.tick(time.time())
        assert store.get_run(run.run_id).state == RunState.FAILED
        [lost] = store.attempts(run.run_id, "t")
        assert lost.state == TaskState.LOST and "the limit of 0 lost attempts" in lost.error
    finally:
        services.close()
