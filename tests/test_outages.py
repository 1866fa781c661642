"""PostgreSQL unreachable for a while in the middle of a run: nothing is lost, nobody is declared dead."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar
from urllib.parse import urlsplit

from flowforge.core.dagfile import load_dag
from flowforge.core.errors import Unavailable
from flowforge.core.model import RunState, TaskState
from flowforge.core.records import WorkerInfo
from flowforge.engine.scheduler import Scheduler
from flowforge.engine.worker import Worker, new_worker_id
from flowforge.queues import open_queue
from flowforge.store.postgres import PostgresStore
from tests.backends import TcpProxy

T = TypeVar("T")


def retrying(read: Callable[[], T], timeout: float = 10.0) -> T:
    """`read()`, tried again while the store is still reconnecting after the outage."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return read()
        except Unavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


DAG = """\
id: outage
tasks:
  - {id: slow, command: "sleep 1; echo done"}
  - {id: after, command: echo after, depends_on: [slow]}
"""


def test_a_database_outage_mid_task_loses_nothing(pg_url: str, redis_url: str) -> None:
    target = urlsplit(pg_url)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 5432).start()
    # Calls fail after 1 s without a connection, so the outage is felt quickly.
    store = PostgresStore(
        pg_url.replace(target.netloc, f"{target.username}@127.0.0.1:{proxy.port}", 1), timeout=1.0
    )
    worker_id = new_worker_id()
    queue = open_queue(redis_url, consumer=worker_id)
    # Dead after 5 s: longer than the outage, this test is about results and logs surviving it.
    scheduler = Scheduler(store, queue, worker_dead_after=5.0)
    # A lease longer than the outage: the task runs on, and its result waits for the store. (With a
    # shorter one the worker would rightly fence itself and kill the task: test_engine covers that.)
    worker = Worker(
        store, queue, slots=1, worker_id=worker_id, heartbeat_secs=0.2, lease_secs=6.0, kill_grace=0.5
    )
    stop = threading.Event()
    threads = [
        threading.Thread(target=scheduler.run, args=(stop, 0.1), daemon=True),
        threading.Thread(target=worker.run, args=(stop, 5.0), daemon=True),
    ]
    try:
        store.put_dag(load_dag(DAG, "outage.yaml"), DAG, time.time())
        run = store.create_run("outage", triggered_by="test", params={}, now=time.time())
        for t in threads:
            t.start()
        queue.wake_scheduler()
        deadline = time.monotonic() + 10
        while store.get_task_instance(run.run_id, "slow").state != TaskState.RUNNING:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        proxy.stop()  # the task finishes while neither its output nor its result can be written
        time.sleep(2.5)
        proxy.start()
        deadline = time.monotonic() + 30
        while (state := retrying(lambda: store.get_run(run.run_id).state)) not in (
            RunState.SUCCESS,
            RunState.FAILED,
        ):
            assert time.monotonic() < deadline, {
                ti.task_id: ti.state for ti in store.task_instances(run.run_id)
            }
            time.sleep(0.05)
        assert state == RunState.SUCCESS
        for task_id in ("slow", "after"):
            [attempt] = store.attempts(run.run_id, task_id)  # not retried: the worker was never declared dead
            assert attempt.state == TaskState.SUCCESS and attempt.worker_id == worker_id
        assert store.read_log(run.run_id, "slow", 1)[0] == "done\n"
        assert {w.worker_id: w.state for w in store.list_workers()}[worker_id] == "alive"
    finally:
        stop.set()
        queue.close()
        for t in threads:
            t.join(15)
        proxy.stop()
        store.close()


def test_no_worker_is_declared_dead_right_after_an_outage(pg_url: str) -> None:
    """Heartbeats could not be written while the database was away: the scheduler waits a full period."""
    target = urlsplit(pg_url)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 5432).start()
    store = PostgresStore(
        pg_url.replace(target.netloc, f"{target.username}@127.0.0.1:{proxy.port}", 1), timeout=0.5
    )
    queue = open_queue("memory://")
    scheduler = Scheduler(store, queue, worker_dead_after=3.0)
    stop = threading.Event()
    thread = threading.Thread(target=scheduler.run, args=(stop, 0.1), daemon=True)
    try:
        now = time.time()
        # Its last heartbeat is old: only the outage explains it (in this test, nothing ever will).
        store.upsert_worker(WorkerInfo("quiet", "elsewhere", 1, 1, now - 10, now - 10))
        proxy.stop()
        thread.start()
        time.sleep(1.0)  # ticks fail meanwhile
        proxy.start()
        restored = time.monotonic()
        while time.monotonic() - restored < 1.5:  # well within the grace of 3 s
            assert retrying(lambda: {w.worker_id: w.state for w in store.list_workers()})["quiet"] == "alive"
            time.sleep(0.1)
        deadline = restored + 10
        while retrying(lambda: {w.worker_id: w.state for w in store.list_workers()})["quiet"] != "dead":
            assert time.monotonic() < deadline, "the silent worker was never declared dead"
            time.sleep(0.1)
    finally:
        stop.set()
        queue.close()
        thread.join(10)
        proxy.stop()
        store.close()
