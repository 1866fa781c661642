"""What FlowForge does when asked: the product rules, as plain functions over the store and the queue.

Submit a DAG, trigger a run, pause, unpause and deactivate a DAG, backfill its schedule, cancel
and retry runs, say why a run waits, show a task with its attempts, read a page of a task's log,
and tell whether FlowForge is ready. The API routes call these (so do the tests, and anything
else that acts on FlowForge without HTTP). Each takes plain values, returns core records or the
small results below, and raises the errors of `flowforge.core.errors` (NotFound, Conflict,
InvalidRequest, DagValidationError, Unavailable), which the API maps to statuses. Nothing here
knows about HTTP.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from flowforge.core.dagfile import load_dag, load_dag_file
from flowforge.core.errors import Conflict, InvalidRequest, NotFound, Unavailable
from flowforge.core.model import TASK_ACTIVE, TASK_TERMINAL, DagSpec, RunState, TaskSpec, TaskState
from flowforge.core.params import resolve_params
from flowforge.core.plan import tasks_to_clear
from flowforge.core.records import Attempt, DagRecord, Run, TaskInstance
from flowforge.core.schedule import parse_instant, ticks_between
from flowforge.operations_stats import SlowNotes, slow_notes
from flowforge.queues.base import Queue
from flowforge.store.base import LEADER_LEASE, Store

log = logging.getLogger(__name__)

MAX_BACKFILL_RUNS = 1000  # per request: a typo in a date must not create a million runs


# -- results ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Submission:
    """A DAG as stored by a submit, and what the submit did."""

    record: DagRecord
    created: bool  # the DAG id was new
    changed: bool  # a new version was stored (False: identical to the latest)


@dataclass(frozen=True)
class Trigger:
    """A run started by hand, and whether its DAG is paused (a manual trigger runs anyway)."""

    run: Run
    dag_paused: bool


@dataclass(frozen=True)
class BackfillTick:
    """One schedule tick of a backfill: the run made for it, or that it had one already."""

    logical_date: float
    run_id: str | None  # None on a dry run, or when the tick had a run already
    existed: bool


@dataclass(frozen=True)
class Backfill:
    """Every tick of a backfill's range, oldest first."""

    dag_id: str
    dry_run: bool
    ticks: tuple[BackfillTick, ...]

    @property
    def created(self) -> int:
        """Runs this backfill created."""
        return sum(t.run_id is not None for t in self.ticks)


@dataclass(frozen=True)
class RunSnapshot:
    """A run with its task instances (in the DAG's order) and why it waits, if it waits for a slot."""

    run: Run
    tasks: tuple[TaskInstance, ...]
    waiting: str | None
    outputs: dict[str, dict[str, str]]  # what each task that succeeded with outputs passes downstream
    slow: SlowNotes  # by task id: the running tasks that run well past their usual time


@dataclass(frozen=True)
class Retry:
    """A run after a retry, and the tasks the retry made pending again."""

    snapshot: RunSnapshot
    cleared: tuple[str, ...]


@dataclass(frozen=True)
class TaskHistory:
    """A task instance, every attempt of it, and its spec at the run's DAG version."""

    instance: TaskInstance
    attempts: tuple[Attempt, ...]
    spec: TaskSpec | None  # None when that DAG version is no longer stored


@dataclass(frozen=True)
class LogExcerpt:
    """A piece of an attempt's log: read on from `cursor` until `done`."""

    run_id: str
    task_id: str
    attempt: int  # 0 when the task has had no attempt yet
    text: str
    cursor: int
    done: bool  # the attempt has ended and all of its log was read
    more: bool = False  # the piece stopped at the size limit; more is there already


@dataclass(frozen=True)
class Readiness:
    """Each part "ok" or why not, and the scheduler that leads (host-pid-id), if one does."""

    store: str = "ok"
    queue: str = "ok"
    scheduler: str = "ok"
    leader: str | None = None

    @property
    def ready(self) -> bool:
        """The store and the queue answer, and a scheduler leads."""
        return self.store == self.queue == self.scheduler == "ok"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, with the overall `status`: "ready" or "unavailable"."""
        return {"status": "ready" if self.ready else "unavailable", **asdict(self)}


# -- DAGs ------------------------------------------------------------------------------------------
def submit_dag(
    store: Store, queue: Queue, text: str, *, max_bytes: int, source: str = "<request>"
) -> Submission:
    """Validate and store a DAG file's text; a changed DAG gets a new version. Raises DagValidationError."""
    spec = load_dag(text, source=source, max_bytes=max_bytes)
    return _store_dag(store, queue, spec, text)


def submit_dag_file(store: Store, queue: Queue, path: Path) -> Submission:
    """`submit_dag` for a file on disk (unreadable or invalid: DagValidationError naming it)."""
    spec = load_dag_file(path)
    return _store_dag(store, queue, spec, path.read_text(encoding="utf-8"))


def _store_dag(store: Store, queue: Queue, spec: DagSpec, text: str) -> Submission:
    try:
        previous: int | None = store.get_dag(spec.id).version
    except NotFound:
        previous = None
    record = store.put_dag(spec, text, time.time())
    queue.wake_scheduler()  # a new or changed schedule is seen now, not at the next tick
    return Submission(
        record, created=previous is None, changed=previous is None or record.version != previous
    )


def pause_dag(store: Store, dag_id: str) -> DagRecord:
    """Stop scheduling a DAG; runs in flight carry on, and manual triggers still run."""
    return store.set_dag_flags(dag_id, paused=True)


def unpause_dag(store: Store, queue: Queue, dag_id: str) -> DagRecord:
    """Resume scheduling a DAG.

    The ticks missed while it was paused are replayed only with `catchup: true`; otherwise its
    ticks count from now.
    """
    now = time.time()
    record = store.get_dag(dag_id)
    skip_missed = record.paused and not record.spec.catchup
    record = store.set_dag_flags(dag_id, paused=False, schedule_after=now if skip_missed else None)
    queue.wake_scheduler()
    return record


def deactivate_dag(store: Store, dag_id: str) -> DagRecord:
    """No new runs of the DAG; its history stays. Submitting it again reactivates it."""
    return store.set_dag_flags(dag_id, active=False)


def active_dag(store: Store, dag_id: str) -> DagRecord:
    """The DAG's latest version; NotFound for an unknown or a deactivated DAG."""
    record = store.get_dag(dag_id)
    if not record.active:
        raise NotFound(f"DAG {dag_id!r} is inactive; activate it or submit it again")
    return record


def backfill_ticks(spec: DagSpec, start: str, end: str) -> list[float]:
    """The DAG's schedule ticks in [start, end] (ISO-8601; without an offset in the DAG's timezone).

    Raises InvalidRequest: `no_schedule` for a DAG without one, `invalid_range` for dates that do
    not parse, an end before the start, or more than MAX_BACKFILL_RUNS ticks.
    """
    if not spec.schedule:
        raise InvalidRequest(
            "no_schedule", f"DAG {spec.id!r} has no schedule, so it has no ticks to backfill"
        )
    try:
        first, last = parse_instant(start, spec.timezone), parse_instant(end, spec.timezone)
        if last < first:
            raise ValueError(f"end {end} is before start {start}")
        return ticks_between(spec.schedule, spec.timezone, first, last, MAX_BACKFILL_RUNS)
    except ValueError as exc:
        raise InvalidRequest("invalid_range", str(exc)) from exc


def backfill(
    store: Store, queue: Queue, dag_id: str, start: str, end: str, *, dry_run: bool = False
) -> Backfill:
    """A run for every tick in [start, end] that has none yet; with `dry_run` only the list.

    The runs wait `queued` and start as `max_active_runs` allows, oldest tick first. A tick whose
    run the scheduler makes meanwhile counts as one that existed: no tick ever gets two runs.
    """
    spec = active_dag(store, dag_id).spec
    ticks = backfill_ticks(spec, start, end)
    existing = store.logical_dates(dag_id, ticks[0], ticks[-1]) if ticks else set()
    now = time.time()
    out = []
    for tick in ticks:
        run_id = None
        existed = tick in existing
        if not dry_run and not existed:
            try:
                run = store.create_run(
                    dag_id, triggered_by="backfill", params=dict(spec.params), now=now, logical_date=tick
                )
                run_id = run.run_id
            except Conflict:
                existed = True  # the scheduler made this tick's run meanwhile
        out.append(BackfillTick(tick, run_id, existed))
    if not dry_run:
        queue.wake_scheduler()
    return Backfill(dag_id, dry_run, tuple(out))


# -- runs ------------------------------------------------------------------------------------------
def trigger_run(
    store: Store,
    queue: Queue,
    dag_id: str,
    *,
    params: Mapping[str, Any] | None = None,
    triggered_by: str = "api",
    idempotency_key: str | None = None,
) -> Trigger:
    """Start a run of the DAG's latest version now (paused or not), and wake the scheduler.

    The params are the DAG's declared defaults overridden by `params` (InvalidRequest for one the
    DAG does not declare, or a value that is not a scalar). With an `idempotency_key` the DAG
    already has a run for, that run is returned and nothing new is started.
    """
    record = active_dag(store, dag_id)
    resolved = resolve_params(record.spec.params, params or {})
    run = store.create_run(
        dag_id, triggered_by=triggered_by, params=resolved, now=time.time(), idempotency_key=idempotency_key
    )
    queue.wake_scheduler()
    return Trigger(run, dag_paused=record.paused)


def run_snapshot(store: Store, run_id: str) -> RunSnapshot:
    """A run with all its task instances and why it waits; NotFound."""
    run, tasks, outputs = store.run_view(run_id)  # one connection, not three checkouts
    slow = slow_notes(store, run, tasks, time.time())
    return RunSnapshot(run, tuple(tasks), waiting_note(store, run, tasks), outputs, slow)


def waiting_note(store: Store, run: Run, tasks: Sequence[TaskInstance]) -> str | None:
    """Why a run or its tasks are not moving when they wait for a slot; None when they do not."""
    if run.state == RunState.QUEUED:
        limit = store.get_dag_spec(run.dag_id, run.dag_version).max_active_runs
        busy = len(store.list_runs(dag_id=run.dag_id, states=[RunState.RUNNING], limit=limit + 1))
        if busy >= limit:
            return (
                f"waiting for a run slot: {busy} run(s) of {run.dag_id} running, max_active_runs is {limit}"
            )
        return "waiting for the scheduler to start it"
    queued = sum(ti.state == TaskState.QUEUED for ti in tasks)
    if run.state == RunState.RUNNING and queued:
        return f"{queued} task(s) queued, waiting for a free worker slot"
    return None


def cancel_run(store: Store, run_id: str) -> RunSnapshot:
    """End a run as cancelled: its running tasks are killed, the rest become cancelled.

    Raises Conflict when the run had already ended, NotFound for an unknown run.
    """
    if not store.stop_run(run_id, RunState.CANCELLED, "cancelled by request", time.time()):
        raise Conflict(f"run {run_id!r} has already ended ({store.get_run(run_id).state})")
    return run_snapshot(store, run_id)


def retry_run(
    store: Store, queue: Queue, run_id: str, task_id: str | None = None, *, downstream: bool = False
) -> Retry:
    """Run tasks of a run again, in the same run, and wake the scheduler.

    Without `task_id`: the failed, upstream-failed and cancelled tasks (Conflict when there are
    none). With it: that finished task and what never ran because of it; with `downstream`,
    every task below it, successful ones too. Conflict for a task that has not finished.
    """
    run = store.get_run(run_id)
    spec = store.get_dag_spec(run.dag_id, run.dag_version)
    states = {ti.task_id: ti.state for ti in store.task_instances(run_id)}
    if task_id is not None and task_id not in states:
        raise NotFound(f"no task {task_id!r} in run {run_id!r}")
    chosen = tasks_to_clear(spec, states, task_id, downstream)
    if not chosen:
        raise Conflict(f"run {run_id!r} has no failed task to retry")
    cleared = store.clear_tasks(run_id, chosen, time.time())
    queue.wake_scheduler()
    return Retry(run_snapshot(store, run_id), tuple(cleared))


# -- tasks and logs --------------------------------------------------------------------------------
def task_history(store: Store, run_id: str, task_id: str) -> TaskHistory:
    """One task instance with every attempt and its spec at the run's DAG version; NotFound."""
    run = store.get_run(run_id)
    instance = store.get_task_instance(run_id, task_id)
    attempts = tuple(store.attempts(run_id, task_id))
    try:
        spec: TaskSpec | None = store.get_dag_spec(run.dag_id, run.dag_version).task(task_id)
    except (NotFound, KeyError):
        spec = None  # the version row is gone; the instance is still worth showing
    return TaskHistory(instance, attempts, spec)


def attempt_ended(instance: TaskInstance, attempt: int) -> bool:
    """Attempt `attempt` of this task instance will write no more log: it is not the one running."""
    return not (attempt == instance.attempt and instance.state in TASK_ACTIVE)


def log_attempt(store: Store, run_id: str, task_id: str, attempt: int | None) -> tuple[TaskInstance, int]:
    """The task instance and the attempt whose log to read: `attempt`, or by default the latest.

    The number is 0 when the task has had no attempt yet. NotFound for an attempt it never had.
    """
    instance = store.get_task_instance(run_id, task_id)
    if attempt is None:
        return instance, instance.attempt
    if attempt > instance.attempt:
        raise NotFound(
            f"task {task_id!r} of run {run_id!r} has no attempt {attempt} (latest: {instance.attempt})"
        )
    return instance, attempt


def read_log_page(
    store: Store, instance: TaskInstance, attempt: int, after: int, max_bytes: int
) -> LogExcerpt:
    """The log of an attempt (from `log_attempt`) after cursor `after`, at most about `max_bytes`."""
    run_id, task_id = instance.run_id, instance.task_id
    if attempt == 0:  # never attempted yet: an empty log, done only if it never will be
        return LogExcerpt(run_id, task_id, 0, "", 0, done=instance.state in TASK_TERMINAL)
    ended = attempt_ended(instance, attempt)
    text, cursor = store.read_log(run_id, task_id, attempt, after, max_bytes=max_bytes)
    # A page that stopped at the limit has more behind it; a smallest read tells for sure.
    more = bool(text) and bool(store.read_log(run_id, task_id, attempt, cursor, max_bytes=0)[0])
    return LogExcerpt(run_id, task_id, attempt, text, cursor, done=ended and not more, more=more)


# -- readiness -------------------------------------------------------------------------------------
def readiness(store: Store, queue: Queue) -> Readiness:
    """Whether FlowForge can do work: the store and the queue answer, and a scheduler leads.

    Never raises: a part that fails is reported by its exception's type only (its text may carry
    a connection URL with a password), and logged.
    """
    store_state, scheduler, leader = "ok", "ok", None
    try:
        # Reading the lease is the store's probe too.
        leader = store.lease_holder(LEADER_LEASE, time.time())
    except Exception as exc:
        outage = isinstance(exc, Unavailable)  # one line; anything else keeps its traceback
        log.warning("readiness: the store is unavailable: %s", exc, exc_info=not outage)
        store_state = f"unavailable ({type(exc).__name__})"
        scheduler = "unknown (the store is unavailable)"
    else:
        if leader is None:
            scheduler = "no leader (no running scheduler holds the scheduler lease)"
    queue_state = "ok"
    try:
        queue.size()
    except Exception as exc:
        outage = isinstance(exc, Unavailable)  # one line; anything else keeps its traceback
        log.warning("readiness: the queue is unavailable: %s", exc, exc_info=not outage)
        queue_state = f"unavailable ({type(exc).__name__})"
    return Readiness(store_state, queue_state, scheduler, leader)
