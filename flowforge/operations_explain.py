"""Why a task is in its state right now, in plain words: the rule behind `flowforge explain`.

`explain_task` reads the run, the task instance, its DAG, the workers, the queue and the
scheduler's lease, and answers with a list of reasons (a short code and a sentence each) and a
one-line summary. It changes nothing. The run-level note (why a queued run waits) is
`operations.waiting_note`, reused here. Times in the sentences are UTC, ISO-8601.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from flowforge.core.model import TASK_TERMINAL, DagSpec, RunState, TaskSpec, TaskState
from flowforge.core.records import DagRecord, Run, TaskInstance, WorkerInfo
from flowforge.core.states import Readiness, evaluate_trigger
from flowforge.operations import waiting_note
from flowforge.queues.base import Queue
from flowforge.store.base import LEADER_LEASE, Store

# A worker silent for this many heartbeats is declared dead by the scheduler (roles.py: 3 beats).
DEAD_AFTER_BEATS = 3


@dataclass(frozen=True)
class Reason:
    """One reason: a stable code for scripts and a sentence for people."""

    code: str
    message: str


@dataclass(frozen=True)
class Explanation:
    """Why a task is in its state: a one-line summary and the reasons behind it."""

    run_id: str
    task_id: str
    state: TaskState
    run_state: RunState
    summary: str
    reasons: tuple[Reason, ...]


@dataclass(frozen=True)
class _Facts:
    """Everything the rules read, taken once."""

    now: float
    run: Run
    ti: TaskInstance
    dag: DagRecord
    spec: DagSpec
    task: TaskSpec
    states: dict[str, TaskState]
    workers: tuple[WorkerInfo, ...]
    dead_after: float  # seconds of silence after which a worker is declared dead
    leader: str | None


def explain_task(
    store: Store, queue: Queue, run_id: str, task_id: str, *, heartbeat_secs: float, now: float | None = None
) -> Explanation:
    """Why the task is in its state now; NotFound for an unknown run or task."""
    now = time.time() if now is None else now
    run = store.get_run(run_id)
    ti = store.get_task_instance(run_id, task_id)
    spec = store.get_dag_spec(run.dag_id, run.dag_version)
    tasks = store.task_instances(run_id)
    facts = _Facts(
        now=now,
        run=run,
        ti=ti,
        dag=store.get_dag(run.dag_id),
        spec=spec,
        task=spec.task(task_id),
        states={t.task_id: t.state for t in tasks},
        workers=tuple(store.list_workers()),
        dead_after=DEAD_AFTER_BEATS * heartbeat_secs,
        leader=store.lease_holder(LEADER_LEASE, now),
    )
    if ti.state in TASK_TERMINAL:
        reasons = _ended(facts, store)
    elif ti.state == TaskState.RUNNING:
        reasons = _running(facts)
    elif ti.state == TaskState.QUEUED:
        reasons = _queued(facts, queue)
    else:
        reasons = _waiting(facts, store, tasks)
    reasons += _dag_flags(facts) + _scheduler(facts)
    return Explanation(run_id, task_id, ti.state, run.state, _summary(facts, reasons), tuple(reasons))


# -- helpers ------------------------------------------------------------------------------------------
def _at(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _secs(seconds: float) -> str:
    return f"{max(seconds, 0.0):.0f} s"


def _alive(facts: _Facts) -> list[WorkerInfo]:
    """Workers that say they are alive and beat within the time after which they are declared dead."""
    return [
        w for w in facts.workers if w.state == "alive" and facts.now - w.last_heartbeat <= facts.dead_after
    ]


def _slots(facts: _Facts, queue: Queue | None = None) -> list[Reason]:
    """Whether a worker can take the task: workers alive, their free slots, the queue's depth."""
    alive = _alive(facts)
    out: list[Reason] = []
    if queue is not None:
        out.append(Reason("queue_depth", f"{queue.size()} message(s) wait in the queue to be taken"))
    if not alive:
        out.append(Reason("no_worker", "no worker is alive (none has sent a heartbeat lately): start one"))
        return out
    slots = sum(w.slots for w in alive)
    busy = sum(len(w.running) for w in alive)
    if busy >= slots:
        out.append(Reason("workers_busy", f"all {slots} slot(s) of {len(alive)} alive worker(s) are busy"))
    else:
        out.append(Reason("workers", f"{len(alive)} worker(s) alive, {slots - busy} of {slots} slot(s) free"))
    return out


def _task_slot(facts: _Facts, store: Store) -> list[Reason]:
    """The DAG's max_active_tasks, when it holds back a task that is ready."""
    limit = facts.spec.max_active_tasks
    active = store.active_task_counts().get(facts.run.dag_id, 0)
    if active < limit:
        return [Reason("ready", "ready: the scheduler queues it at its next tick")]
    return [
        Reason(
            "max_active_tasks",
            f"waiting for a task slot: {active} task(s) of {facts.run.dag_id} queued or running, "
            f"max_active_tasks is {limit}",
        )
    ]


# -- by state -----------------------------------------------------------------------------------------
def _waiting(facts: _Facts, store: Store, tasks: Sequence[TaskInstance]) -> list[Reason]:
    """A pending or up-for-retry task: its run, its upstream and trigger rule, or its backoff."""
    if facts.run.state == RunState.QUEUED:
        note = waiting_note(store, facts.run, tasks) or "the run has not started yet"
        return [Reason("run_queued", f"its run is queued: {note}")]
    if facts.run.state != RunState.RUNNING:
        return [Reason("run_ended", f"its run has ended ({facts.run.state}): it will not run")]
    if facts.ti.state == TaskState.UP_FOR_RETRY:
        return _retry(facts, store)
    return _pending(facts, store)


def _pending(facts: _Facts, store: Store) -> list[Reason]:
    task, states = facts.task, facts.states
    upstream = [(u, states[u]) for u in task.depends_on]
    out: list[Reason] = []
    if upstream:
        unfinished = [f"{u} ({s})" for u, s in upstream if s not in TASK_TERMINAL]
        finished = [f"{u} ({s})" for u, s in upstream if s in TASK_TERMINAL]
        if unfinished:
            out.append(Reason("upstream", "waits for upstream: " + ", ".join(unfinished)))
        if finished:
            out.append(Reason("upstream_done", "upstream finished: " + ", ".join(finished)))
    verdict = evaluate_trigger(task.trigger_rule, (s for _, s in upstream))
    rule = task.trigger_rule
    if verdict is Readiness.WAIT:
        out.append(Reason("trigger_rule", f"trigger rule {rule} can still be met; it decides when they end"))
    elif verdict is Readiness.READY:
        out.append(Reason("trigger_rule", f"trigger rule {rule} is met"))
        out += _task_slot(facts, store)
    else:
        out.append(
            Reason(
                "trigger_rule_unmet",
                f"trigger rule {rule} can no longer be met: it becomes {verdict} at the next scheduler tick",
            )
        )
    return out


def _retry(facts: _Facts, store: Store) -> list[Reason]:
    ti, task = facts.ti, facts.task
    used = ti.attempt - ti.lost_attempts
    text = f"attempt {used} of {task.retries + 1} failed"
    if ti.lost_attempts:
        text += f" ({ti.lost_attempts} more attempt(s) were lost with their worker and used no retry)"
    if ti.retry_at is not None and ti.retry_at > facts.now:
        text += f"; next try at {_at(ti.retry_at)} (in {_secs(ti.retry_at - facts.now)})"
        return [Reason("retry_backoff", text)]
    out = [Reason("retry_backoff", text + "; its backoff is over")]
    return out + _task_slot(facts, store)


def _queued(facts: _Facts, queue: Queue) -> list[Reason]:
    ti = facts.ti
    since = f"queued since {_at(ti.queued_at)}"
    if ti.queued_at is not None:
        since += f" ({_secs(facts.now - ti.queued_at)} ago)"
    since += f", attempt {ti.attempt}; waiting for a worker to take it"
    return [Reason("queued", since), *_slots(facts, queue)]


def _running(facts: _Facts) -> list[Reason]:
    ti, now = facts.ti, facts.now
    text = f"running on worker {ti.worker_id} since {_at(ti.started_at)}, attempt {ti.attempt}"
    out = [Reason("running", text)]
    expires = ti.lease_expires_at
    if expires is not None:
        when = f"in {_secs(expires - now)}" if expires >= now else f"{_secs(now - expires)} ago"
        out.append(Reason("lease", f"its lease expires at {_at(expires)} ({when}); the worker renews it"))
    worker = next((w for w in facts.workers if w.worker_id == ti.worker_id), None)
    if worker is None:
        return out
    silent = now - worker.last_heartbeat
    if worker.state != "alive" or silent > 2 * facts.dead_after / DEAD_AFTER_BEATS:  # 2 beats missed
        due = [worker.last_heartbeat + facts.dead_after - now] + ([expires - now] if expires else [])
        out.append(
            Reason(
                "worker_stale",
                f"the worker's heartbeat is {_secs(silent)} old ({worker.state}): it looks dead; "
                f"the lease will be reaped in about {_secs(min(due))}",
            )
        )
    return out


def _ended(facts: _Facts, store: Store) -> list[Reason]:
    ti, state = facts.ti, facts.ti.state
    if state in (TaskState.UPSTREAM_FAILED, TaskState.SKIPPED):
        upstream = ", ".join(f"{u} ({facts.states[u]})" for u in facts.task.depends_on)
        return [
            Reason(
                "not_run",
                f"it never ran: trigger rule {facts.task.trigger_rule} could not be met (upstream: {upstream})",
            )
        ]
    attempts = store.attempts(ti.run_id, ti.task_id)
    lost = sum(a.state == TaskState.LOST for a in attempts)
    text = f"{state} at {_at(ti.ended_at)} after {ti.attempt} attempt(s) of {facts.task.retries + 1}"
    if lost:
        text += f", {lost} of them lost with their worker"
    if ti.exit_code is not None:
        text += f"; exit code {ti.exit_code}"
    if ti.error:
        text += f"; {ti.error}"
    return [Reason("ended", text)]


# -- the DAG and the scheduler ------------------------------------------------------------------------
def _dag_flags(facts: _Facts) -> list[Reason]:
    if facts.ti.state in TASK_TERMINAL:
        return []
    dag, run = facts.dag, facts.run
    if not dag.active:
        return [Reason("dag_inactive", f"DAG {dag.dag_id} is inactive: no new runs; this run carries on")]
    if dag.paused:
        kind = "scheduled" if run.triggered_by == "schedule" else "manual"
        return [
            Reason(
                "dag_paused",
                f"DAG {dag.dag_id} is paused: no new scheduled runs are made; this {kind} run carries on",
            )
        ]
    return []


def _scheduler(facts: _Facts) -> list[Reason]:
    """No leading scheduler: nothing is queued, retried or reaped (a queued task needs only a worker)."""
    if facts.leader is not None or facts.ti.state in TASK_TERMINAL or facts.ti.state == TaskState.QUEUED:
        return []
    return [
        Reason(
            "no_scheduler",
            "no scheduler is running (nobody holds the scheduler lease): nothing is started, queued, "
            "retried or reaped until one runs",
        )
    ]


# What holds a task back, most telling first: the summary names the first of these it finds.
_BLOCKERS = (
    "no_scheduler",
    "run_queued",
    "no_worker",
    "workers_busy",
    "max_active_tasks",
    "worker_stale",
    "trigger_rule_unmet",
    "retry_backoff",
    "upstream",
)


def _summary(facts: _Facts, reasons: Sequence[Reason]) -> str:
    """The task's state and its most telling reason: what blocks it, else the first one."""
    by_code = {r.code: r for r in reversed(reasons)}
    found = (by_code[c] for c in _BLOCKERS if c in by_code)
    first = next(found, reasons[0] if reasons else None)
    head = f"{facts.ti.task_id} is {facts.ti.state}"
    return f"{head}: {first.message}" if first else head
