"""Scheduler and worker together, in-process: on SQLite + the in-process queue, and on PostgreSQL + Redis."""

from __future__ import annotations

import itertools
import threading
import time

import pytest

from flowforge.core.dagfile import load_dag
from flowforge.core.model import RunState, TaskState
from flowforge.core.records import WorkerInfo
from flowforge.engine.scheduler import Scheduler
from flowforge.engine.worker import Worker, new_worker_id
from flowforge.queues import open_queue
from flowforge.queues.base import TaskMessage
from flowforge.store import open_store


class Engine:
    """A store, a queue, and (once started) a scheduler and a worker running in threads."""

    def __init__(self, tmp_path, slots=2, db_url=None, queue_url="memory://", **worker_options):
        self.store = open_store(db_url or f"sqlite:///{tmp_path / 'ff.db'}")
        worker_id = new_worker_id()
        self.queue = open_queue(queue_url, consumer=worker_id)
        self.stop = threading.Event()
        self.scheduler = Scheduler(self.store, self.queue, worker_dead_after=2.0)
        self.worker = Worker(
            self.store,
            self.queue,
            slots=slots,
            worker_id=worker_id,
            kill_grace=0.5,
            heartbeat_secs=0.2,
            **worker_options,
        )
        self.threads: list[threading.Thread] = []

    def start(self):
        self.threads = [
            threading.Thread(target=self.scheduler.run, args=(self.stop, 0.1), daemon=True),
            threading.Thread(target=self.worker.run, args=(self.stop, 5.0), daemon=True),
        ]
        for t in self.threads:
            t.start()
        return self

    def submit(self, yaml_text: str):
        spec = load_dag(yaml_text, "test.yaml")
        return self.store.put_dag(spec, yaml_text, time.time())

    def trigger(self, dag_id: str, params=None):
        run = self.store.create_run(dag_id, triggered_by="test", params=params or {}, now=time.time())
        self.queue.wake_scheduler()
        return run

    def wait(self, run_id: str, timeout: float = 20.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.store.get_run(run_id)
            if run.state in (RunState.SUCCESS, RunState.FAILED, RunState.CANCELLED):
                return run
            time.sleep(0.02)
        states = {ti.task_id: ti.state for ti in self.store.task_instances(run_id)}
        raise AssertionError(f"run {run_id} did not finish: {states}")

    def claimed_elsewhere(self, yaml_text: str, dag_id: str, worker_id: str, **claim):
        """Trigger a run of a one-task DAG and claim its task `t` as another worker would; (run, claimed)."""
        self.submit(yaml_text)
        run = self.trigger(dag_id)
        now = time.time()
        self.scheduler.tick(now)
        msg = self.queue.get(1)
        return run, self.store.claim_task(run.run_id, "t", msg.attempt, worker_id, now, **claim)

    def states(self, run_id: str) -> dict[str, TaskState]:
        return {ti.task_id: ti.state for ti in self.store.task_instances(run_id)}

    def log(self, run_id: str, task_id: str, attempt: int = 1) -> str:
        return self.store.read_log(run_id, task_id, attempt)[0]

    def close(self):
        self.stop.set()
        self.queue.close()
        for t in self.threads:
            t.join(10)
        self.store.close()


# "postgres+redis" is skipped unless FLOWFORGE_TEST_PG and FLOWFORGE_TEST_REDIS are set.
ENGINE_BACKENDS = ["sqlite+memory", "postgres+redis"]


@pytest.fixture(params=ENGINE_BACKENDS)
def engine(request, tmp_path):
    if request.param == "postgres+redis":
        urls = request.getfixturevalue("pg_url"), request.getfixturevalue("redis_url")
        e = Engine(tmp_path, db_url=urls[0], queue_url=urls[1])
    else:
        e = Engine(tmp_path)
    yield e
    e.close()


DIAMOND = """
id: etl
env: {STAGE: dag}
tasks:
  - id: extract-a
    command: echo a; sleep 0.2
  - id: extract-b
    command: echo b; sleep 0.2
  - id: transform
    command: echo "transform $STAGE $WHERE"
    depends_on: [extract-a, extract-b]
    env: {WHERE: task}
  - id: load
    command: echo load
    depends_on: [transform]
"""


def test_diamond_runs_in_dependency_order_with_logs(engine):
    engine.start()
    engine.submit(DIAMOND)
    run = engine.trigger("etl")
    done = engine.wait(run.run_id)
    assert done.state == RunState.SUCCESS
    assert done.started_at is not None and done.ended_at >= done.started_at
    tis = {ti.task_id: ti for ti in engine.store.task_instances(run.run_id)}
    assert all(ti.state == TaskState.SUCCESS and ti.attempt == 1 for ti in tis.values())
    assert tis["transform"].started_at >= max(tis["extract-a"].ended_at, tis["extract-b"].ended_at)
    assert tis["load"].started_at >= tis["transform"].ended_at
    # both extracts ran at the same time on the two slots
    assert tis["extract-a"].started_at < tis["extract-b"].ended_at
    assert tis["extract-b"].started_at < tis["extract-a"].ended_at
    assert engine.log(run.run_id, "transform") == "transform dag task\n"


def test_failure_marks_downstream_upstream_failed_and_runs_handlers(engine):
    engine.start()
    engine.submit("""
id: fails
tasks:
  - {id: boom, command: "echo going down; exit 3"}
  - {id: after, command: "echo never", depends_on: [boom]}
  - {id: after-after, command: "echo never", depends_on: [after]}
  - {id: on-failure, command: "echo handled", depends_on: [boom], trigger_rule: one_failed}
  - {id: on-success, command: "echo nope", depends_on: [boom], trigger_rule: all_success}
""")
    run = engine.trigger("fails")
    assert engine.wait(run.run_id).state == RunState.FAILED
    states = engine.states(run.run_id)
    assert states == {
        "boom": TaskState.FAILED,
        "after": TaskState.UPSTREAM_FAILED,
        "after-after": TaskState.UPSTREAM_FAILED,
        "on-failure": TaskState.SUCCESS,
        "on-success": TaskState.UPSTREAM_FAILED,
    }
    ti = engine.store.get_task_instance(run.run_id, "boom")
    assert ti.exit_code == 3 and ti.error == "exit code 3"
    assert engine.log(run.run_id, "on-failure") == "handled\n"


def test_retries_with_backoff_keep_every_attempt(engine):
    engine.start()
    engine.submit("""
id: flaky
retry_delay_secs: 0.2
tasks:
  - id: flaky
    retries: 3
    command: 'echo "try $FLOWFORGE_ATTEMPT"; [ "$FLOWFORGE_ATTEMPT" -ge 3 ]'
""")
    run = engine.trigger("flaky")
    assert engine.wait(run.run_id).state == RunState.SUCCESS
    attempts = engine.store.attempts(run.run_id, "flaky")
    assert [a.attempt for a in attempts] == [1, 2, 3]
    assert [a.state for a in attempts] == [TaskState.FAILED, TaskState.FAILED, TaskState.SUCCESS]
    assert [a.exit_code for a in attempts] == [1, 1, 0]
    # backoff: 0.2 * 2**1 = 0.4 s before attempt 2, 0.2 * 2**2 = 0.8 s before attempt 3
    assert attempts[1].started_at - attempts[0].ended_at >= 0.4
    assert attempts[2].started_at - attempts[1].ended_at >= 0.8
    assert [engine.log(run.run_id, "flaky", n) for n in (1, 2, 3)] == ["try 1\n", "try 2\n", "try 3\n"]


def test_retry_budget_runs_out(engine):
    engine.start()
    engine.submit("""
id: hopeless
retry_delay_secs: 0.01
tasks:
  - {id: t, command: "exit 1", retries: 2}
""")
    run = engine.trigger("hopeless")
    assert engine.wait(run.run_id).state == RunState.FAILED
    assert len(engine.store.attempts(run.run_id, "t")) == 3


def test_timeout_fails_the_task(engine):
    engine.start()
    engine.submit("""
id: slow
tasks:
  - {id: stuck, command: "echo started; sleep 30", timeout_secs: 0.5}
""")
    run = engine.trigger("slow")
    start = time.monotonic()
    assert engine.wait(run.run_id).state == RunState.FAILED
    assert time.monotonic() - start < 5
    ti = engine.store.get_task_instance(run.run_id, "stuck")
    assert "timed out after 0.5s" in ti.error
    assert engine.log(run.run_id, "stuck") == "started\n"


def test_params_reach_the_task(engine):
    engine.start()
    engine.submit("""
id: p
params: {region: eu, size: 3}
tasks:
  - {id: t, command: 'echo "$FLOWFORGE_PARAM_REGION $FLOWFORGE_PARAM_SIZE $FLOWFORGE_DAG_ID"'}
""")
    run = engine.trigger("p", params={"region": "us", "size": 3})
    assert engine.wait(run.run_id).state == RunState.SUCCESS
    assert engine.log(run.run_id, "t") == "us 3 p\n"


def test_the_task_sees_its_attempt_and_lease_token(engine):
    """FLOWFORGE_LEASE_TOKEN is the claim's fencing token, the one the store recorded the result under."""
    engine.start()
    engine.submit("""
id: fenced
tasks:
  - {id: t, command: 'echo "$FLOWFORGE_RUN_ID $FLOWFORGE_TASK_ID $FLOWFORGE_ATTEMPT $FLOWFORGE_LEASE_TOKEN"'}
""")
    run = engine.trigger("fenced")
    assert engine.wait(run.run_id).state == RunState.SUCCESS
    token = engine.store.get_task_instance(run.run_id, "t").lease_token
    assert token and len(token) == 32
    assert engine.log(run.run_id, "t") == f"{run.run_id} t 1 {token}\n"


def test_max_active_tasks_limits_parallelism(engine):
    engine.start()
    engine.submit("""
id: narrow
max_active_tasks: 1
tasks:
  - {id: a, command: "sleep 0.2"}
  - {id: b, command: "sleep 0.2"}
  - {id: c, command: "sleep 0.2"}
""")
    run = engine.trigger("narrow")
    assert engine.wait(run.run_id).state == RunState.SUCCESS
    spans = sorted((ti.started_at, ti.ended_at) for ti in engine.store.task_instances(run.run_id))
    for (_, e1), (s2, _) in itertools.pairwise(spans):
        assert s2 >= e1, "two tasks of the DAG ran at once"


def test_max_active_runs_queues_extra_runs(engine):
    engine.start()
    engine.submit("""
id: one-at-a-time
max_active_runs: 1
tasks:
  - {id: a, command: "sleep 0.3"}
""")
    first = engine.trigger("one-at-a-time")
    second = engine.trigger("one-at-a-time")
    r1, r2 = engine.wait(first.run_id), engine.wait(second.run_id)
    assert r1.state == r2.state == RunState.SUCCESS
    assert r2.started_at >= r1.ended_at


def test_lost_message_is_pushed_again(engine):
    """A task queued in the store whose message never reached the queue still runs."""
    engine.submit("id: lost\ntasks:\n  - {id: t, command: echo found}\n")
    run = engine.trigger("lost")
    now = time.time()
    engine.store.set_run_state(run.run_id, [RunState.QUEUED], RunState.RUNNING, now)
    assert engine.store.queue_tasks(run.run_id, [("t", 0)], now) == ["t"]  # queued, no message
    assert engine.queue.size() == 0
    engine.start()  # a fresh scheduler has never pushed it: it does so at once
    assert engine.wait(run.run_id).state == RunState.SUCCESS
    assert engine.log(run.run_id, "t") == "found\n"


def test_a_message_lost_from_an_empty_queue_is_pushed_again_soon(engine):
    """Redis restarted empty: a queued task is pushed again after STRANDED_SECS, not requeue_after."""
    from flowforge.engine.scheduler import STRANDED_SECS

    engine.submit("id: stranded\ntasks:\n  - {id: a, command: echo a}\n  - {id: b, command: echo b}\n")
    run = engine.trigger("stranded")
    now = time.time()
    engine.scheduler.tick(now)
    assert engine.queue.size() == 2
    first = engine.queue.get(1)  # gone with the queue's data: taken, never claimed nor acked
    engine.scheduler.tick(now + STRANDED_SECS + 0.1)
    assert engine.queue.size() == 1, "another message still waits: nothing is pushed again yet"
    second = engine.queue.get(1)  # lost as well: now the queue is empty
    assert {first.task_id, second.task_id} == {"a", "b"}
    engine.scheduler.tick(now + STRANDED_SECS + 0.2)
    assert engine.queue.size() == 2, "an empty queue and tasks queued for long: both pushed again"
    assert engine.scheduler.requeue_after > STRANDED_SECS + 0.2
    engine.start()
    assert engine.wait(run.run_id).state == RunState.SUCCESS
    assert [len(engine.store.attempts(run.run_id, t)) for t in ("a", "b")] == [1, 1]


def test_duplicate_message_runs_the_attempt_once(engine):
    engine.submit("id: dup\ntasks:\n  - {id: t, command: echo once}\n")
    run = engine.trigger("dup")
    engine.scheduler.tick(time.time())
    msg = engine.queue.get(1)
    assert msg == TaskMessage(run.run_id, "t", 1)
    assert engine.worker.handle(msg) is True
    assert engine.worker.handle(msg) is False  # the claim refuses the duplicate
    assert len(engine.store.attempts(run.run_id, "t")) == 1
    assert engine.log(run.run_id, "t") == "once\n"


def ghost_died(engine, run_id: str, ghost: str) -> None:
    """Record `ghost` as a worker that was running task `t` of the run and stopped heartbeating long ago."""
    now = time.time()
    engine.store.upsert_worker(WorkerInfo(ghost, "elsewhere", 1, 1, now - 100, now - 100, (f"{run_id}/t",)))


def test_a_dead_workers_attempt_is_retried_without_using_a_retry(engine):
    """`retries: 0` (the default), and the worker running the task was SIGKILLed: the task still runs."""
    run, claimed = engine.claimed_elsewhere(
        "id: orphan\ntasks:\n  - {id: t, command: echo rescued}\n", "orphan", "ghost"
    )
    assert claimed is not None
    ghost_died(engine, run.run_id, "ghost")
    engine.start()
    assert engine.wait(run.run_id).state == RunState.SUCCESS
    attempts = engine.store.attempts(run.run_id, "t")
    assert [(a.attempt, a.state, a.worker_id) for a in attempts] == [
        (1, TaskState.LOST, "ghost"),
        (2, TaskState.SUCCESS, engine.worker.worker_id),
    ]
    assert (
        attempts[0].error == "lost: worker ghost died; retried without using a retry (1 of 3 lost attempts)"
    )
    assert engine.log(run.run_id, "t", 2) == "rescued\n"
    assert {w.worker_id: w.state for w in engine.store.list_workers()}["ghost"] == "dead"


def test_a_lost_attempt_leaves_the_task_all_its_retries(engine):
    """Attempt 1 lost with its worker, attempt 2 fails: `retries: 1` still allows attempt 3."""
    dag = """
id: budget
retry_delay_secs: 0.01
tasks:
  - {id: t, command: '[ "$FLOWFORGE_ATTEMPT" -ge 3 ] && echo third', retries: 1}
"""
    run, _ = engine.claimed_elsewhere(dag, "budget", "ghost")
    ghost_died(engine, run.run_id, "ghost")
    engine.start()
    assert engine.wait(run.run_id).state == RunState.SUCCESS
    attempts = engine.store.attempts(run.run_id, "t")
    assert [a.state for a in attempts] == [TaskState.LOST, TaskState.FAILED, TaskState.SUCCESS]
    assert engine.log(run.run_id, "t", 3) == "third\n"


def test_lost_attempts_beyond_the_limit_count_against_the_retries(engine):
    """A task whose worker keeps dying is retried for free `max_lost_attempts` times, then no longer."""
    engine.submit("id: crasher\ntasks:\n  - {id: t, command: 'true'}\n")  # retries: 0
    scheduler = Scheduler(engine.store, engine.queue, worker_dead_after=2.0, max_lost_attempts=1)
    run = engine.trigger("crasher")
    for attempt, ghost in enumerate(["ghost-1", "ghost-2"], 1):
        scheduler.tick(time.time())  # gives the previous attempt up as lost, queues the next one
        msg = engine.queue.get(1)
        assert msg is not None and msg.attempt == attempt
        assert engine.store.claim_task(run.run_id, "t", attempt, ghost, time.time()) is not None
        engine.queue.ack(msg)
        ghost_died(engine, run.run_id, ghost)
    scheduler.tick(time.time())
    assert engine.store.get_run(run.run_id).state == RunState.FAILED
    attempts = engine.store.attempts(run.run_id, "t")
    assert [a.state for a in attempts] == [TaskState.LOST, TaskState.LOST]
    assert (
        attempts[0].error == "lost: worker ghost-1 died; retried without using a retry (1 of 1 lost attempts)"
    )
    assert attempts[1].error == (
        "lost: worker ghost-2 died; counted against the task's retries:"
        " the limit of 1 lost attempts retried without using a retry is reached"
    )
    assert engine.store.get_task_instance(run.run_id, "t").state == TaskState.FAILED


def test_a_dead_worker_lists_no_running_task(engine, tmp_path):
    """`flowforge workers` (GET /api/v1/workers): a dead worker's tasks ran elsewhere since; it runs none."""
    from fastapi.testclient import TestClient

    from flowforge.api import create_app
    from flowforge.services import Services
    from flowforge.settings import Settings

    run, _ = engine.claimed_elsewhere(
        "id: moved\nretry_delay_secs: 0.01\ntasks:\n  - {id: t, command: 'true', retries: 1}\n",
        "moved",
        "ghost",
    )
    ghost_died(engine, run.run_id, "ghost")
    settings = Settings(home=tmp_path, db_url="unused://", queue_url="unused://")
    with TestClient(create_app(Services(settings, engine.store, engine.queue), api_token="")) as api:
        assert {w["worker_id"]: w["running"] for w in api.get("/api/v1/workers").json()["workers"]} == {
            "ghost": [f"{run.run_id}/t"]
        }
        engine.start()
        assert engine.wait(run.run_id).state == RunState.SUCCESS
        workers = {w["worker_id"]: w for w in api.get("/api/v1/workers").json()["workers"]}
    assert (workers["ghost"]["state"], workers["ghost"]["running"]) == ("dead", [])


def test_a_run_keeps_its_dag_version(engine):
    engine.submit("id: v\ntasks:\n  - {id: t, command: echo one}\n")
    run = engine.trigger("v")
    engine.submit("id: v\ntasks:\n  - {id: t, command: echo two}\n  - {id: u, command: echo new}\n")
    engine.start()
    assert engine.wait(run.run_id).state == RunState.SUCCESS
    assert engine.log(run.run_id, "t") == "one\n"
    assert set(engine.states(run.run_id)) == {"t"}
    run2 = engine.trigger("v")
    assert engine.wait(run2.run_id).state == RunState.SUCCESS
    assert engine.log(run2.run_id, "t") == "two\n"


def test_many_independent_tasks_all_run(engine):
    tasks = "\n".join(f"  - {{id: t{i:03d}, command: 'true'}}" for i in range(100))
    engine.start()
    engine.submit(f"id: wide\nmax_active_tasks: 1000\ntasks:\n{tasks}\n")
    run = engine.trigger("wide")
    assert engine.wait(run.run_id).state == RunState.SUCCESS
    assert set(engine.states(run.run_id).values()) == {TaskState.SUCCESS}


def test_worker_heartbeat_is_visible(engine):
    engine.start()
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        workers = {w.worker_id: w for w in engine.store.list_workers()}
        if engine.worker.worker_id in workers:
            break
        time.sleep(0.05)
    w = workers[engine.worker.worker_id]
    assert w.state == "alive" and w.slots == 2
    assert time.time() - w.last_heartbeat < 2


def test_an_expired_lease_is_lost_and_its_late_result_refused(engine):
    """A worker that stopped renewing (paused, cut off) loses its attempt; its late finish is fenced."""
    dag = "id: leased\nretry_delay_secs: 0.01\ntasks:\n  - {id: t, command: echo second, retries: 1}\n"
    run, stale = engine.claimed_elsewhere(dag, "leased", "paused-worker", lease_secs=0.2)
    now = time.time()
    assert stale is not None and stale.lease_token
    assert engine.store.renew_leases("paused-worker", [(run.run_id, "t", 1, "not-the-token")], now, 5) == [
        (run.run_id, "t", 1, "not-the-token")
    ]
    # the lease lapses; the worker is "paused" and renews nothing
    while time.time() <= stale.lease_expires_at:
        time.sleep(0.01)
    engine.start()
    assert engine.wait(run.run_id).state == RunState.SUCCESS
    # the paused worker wakes up and reports: too late, fenced by its token
    assert not engine.store.finish_task(
        run.run_id,
        "t",
        1,
        "paused-worker",
        state=TaskState.SUCCESS,
        now=time.time(),
        lease_token=stale.lease_token,
    )
    assert engine.store.renew_leases(
        "paused-worker", [(run.run_id, "t", 1, stale.lease_token)], time.time(), 5
    )
    attempts = engine.store.attempts(run.run_id, "t")
    assert [a.state for a in attempts] == [TaskState.LOST, TaskState.SUCCESS]
    assert engine.log(run.run_id, "t", 2) == "second\n"


def test_worker_kills_a_task_whose_lease_it_lost(engine, tmp_path):
    engine.submit(f"""
id: stolen
tasks:
  - {{id: t, command: "echo $$ > {tmp_path}/pid; exec sleep 60"}}
""")
    run = engine.trigger("stolen")
    engine.start()
    deadline = time.monotonic() + 10
    while not ((tmp_path / "pid").exists() and (tmp_path / "pid").read_text().strip()):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    ti = engine.store.get_task_instance(run.run_id, "t")
    # the scheduler gives the attempt up (as if the lease had lapsed): the worker must stop the task
    assert engine.store.finish_task(
        run.run_id,
        "t",
        ti.attempt,
        ti.worker_id,
        state=TaskState.FAILED,
        now=time.time(),
        lease_token=ti.lease_token,
        attempt_state=TaskState.LOST,
    )
    from tests.test_executor import pid_alive

    pid = int((tmp_path / "pid").read_text())
    deadline = time.monotonic() + 5
    while pid_alive(pid):
        assert time.monotonic() < deadline, "the worker did not kill a task whose lease it lost"
        time.sleep(0.05)


def test_a_worker_whose_renewals_hang_fences_itself_within_a_lease(engine, tmp_path):
    """The store stops answering (a partition): the worker kills its task about a lease after its last
    renewal, while the renewal call still hangs, since the scheduler may soon hand the attempt elsewhere."""
    engine.submit(f"""
id: cutoff
tasks:
  - {{id: t, command: "echo $$ > {tmp_path}/pid; exec sleep 60", retries: 0}}
""")
    engine.trigger("cutoff")
    release = threading.Event()

    class HangingRenewals:
        """The store, except that lease renewals hang once `hang` is set."""

        hang = threading.Event()
        renewals = 0

        def __getattr__(self, name):
            return getattr(engine.store, name)

        def renew_leases(self, *args, **kwargs):
            if self.hang.is_set():
                release.wait(30)
            self.renewals += 1
            return engine.store.renew_leases(*args, **kwargs)

    store = HangingRenewals()
    engine.worker = Worker(store, engine.queue, slots=1, kill_grace=0.5, heartbeat_secs=0.2, lease_secs=1.0)
    engine.start()
    try:
        deadline = time.monotonic() + 10
        while not ((tmp_path / "pid").exists() and (tmp_path / "pid").read_text().strip()):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        seen = store.renewals
        while store.renewals < seen + 2:  # a renewal or two go through
            assert time.monotonic() < deadline
            time.sleep(0.02)
        store.hang.set()
        cut = time.monotonic()
        from tests.test_executor import pid_alive

        pid = int((tmp_path / "pid").read_text())
        while pid_alive(pid):
            # a lease (1 s) after the last renewal, with room for a busy machine
            assert time.monotonic() - cut < 1.0 + 2.0, "the worker ran its task on without a lease"
            time.sleep(0.02)
    finally:
        release.set()


def test_one_scheduler_leads_and_a_standby_takes_over(engine):
    """Two schedulers on one store: only the lease holder acts; the other takes over when it stops."""
    first, second = engine.scheduler, Scheduler(engine.store, engine.queue, leader_ttl=0.5)
    now = time.time()
    assert first.lead(now) and not second.lead(now)
    assert first.lead(now + 0.1), "the holder keeps its lease"
    assert second.lead(now + 5.7), "a lease not renewed lapses"
    assert not first.lead(now + 5.8)
    engine.store.release_lease("scheduler", second.holder)
    assert first.lead(now + 5.9), "a released lease is free at once"


def test_a_standby_scheduler_does_nothing_until_it_leads(engine, monkeypatch):
    engine.submit("id: led\ntasks:\n  - {id: t, command: echo led}\n")
    other = Scheduler(engine.store, engine.queue, leader_ttl=30)
    assert other.lead(time.time())  # another scheduler holds the lease for a long while
    tries = []  # each time the standby tried to lead, and whether it did
    lead = engine.scheduler.lead
    monkeypatch.setattr(engine.scheduler, "lead", lambda now: tries.append(lead(now)) or tries[-1])
    run = engine.trigger("led")
    engine.start()
    deadline = time.monotonic() + 10
    while len(tries) < 5:  # several passes of its loop, every one refused
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert not any(tries)
    assert engine.store.get_run(run.run_id).state == RunState.QUEUED, "a standby must not act"
    engine.store.release_lease("scheduler", other.holder)
    assert engine.wait(run.run_id).state == RunState.SUCCESS
    assert engine.scheduler.is_leader


def test_a_stopping_worker_claims_no_message_it_takes_after_the_signal(engine):
    """SIGTERM lands while an idle slot waits for a message, and one arrives: it goes to another worker."""
    engine.submit("id: late\ntasks:\n  - {id: t, command: echo late}\n")
    run = engine.trigger("late")
    engine.scheduler.tick(time.time())
    stop = threading.Event()

    class SignalledWhileWaiting:
        """The queue, with the stop signal arriving during the slot's `get`."""

        def __getattr__(self, name):
            return getattr(engine.queue, name)

        def get(self, timeout):
            msg = engine.queue.get(timeout)
            stop.set()
            return msg

    stopping = Worker(engine.store, SignalledWhileWaiting(), slots=1, kill_grace=0.5, heartbeat_secs=0.2)
    stopping.run(stop, grace=1.0)
    assert engine.store.get_task_instance(run.run_id, "t").state == TaskState.QUEUED, (
        "claimed after the signal"
    )
    assert engine.store.attempts(run.run_id, "t")[0].worker_id is None
    engine.start()  # the message was given back: another worker runs the task at once
    assert engine.wait(run.run_id, timeout=10).state == RunState.SUCCESS
    assert engine.store.attempts(run.run_id, "t")[0].worker_id == engine.worker.worker_id


def test_a_stopping_worker_lets_short_tasks_finish_and_gives_back_the_rest(engine, tmp_path):
    engine.submit("""
id: drain
tasks:
  - {id: short, command: "sleep 0.5; echo short done"}
  - {id: long, command: '[ "$FLOWFORGE_ATTEMPT" -ge 2 ] && echo second || exec sleep 60', retries: 0}
""")
    run = engine.trigger("drain")
    stop = threading.Event()
    first = threading.Thread(target=engine.worker.run, args=(stop, 1.5), daemon=True)
    first.start()
    engine.scheduler.tick(time.time())
    deadline = time.monotonic() + 10
    while {ti.state for ti in engine.store.task_instances(run.run_id)} != {TaskState.RUNNING}:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    stop.set()  # SIGTERM: take nothing new, let running tasks go on for the grace period
    first.join(15)
    short = engine.store.get_task_instance(run.run_id, "short")
    assert short.state == TaskState.SUCCESS, "a task shorter than the grace period finishes"
    long_attempts = engine.store.attempts(run.run_id, "long")
    assert [a.state for a in long_attempts] == [TaskState.LOST]
    assert "given back" in long_attempts[0].error
    assert engine.store.get_task_instance(run.run_id, "long").state == TaskState.UP_FOR_RETRY
    # a new worker runs it again, although its retry budget was 0: the worker stopped, not the task
    engine.worker = Worker(engine.store, engine.queue, slots=2, kill_grace=0.5, heartbeat_secs=0.2)
    engine.start()
    assert engine.wait(run.run_id).state == RunState.SUCCESS
    assert engine.log(run.run_id, "long", 2) == "second\n"
