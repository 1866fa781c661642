"""The scheduler: applies the core's plan to the store and the queue, one `tick(now)` at a time."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from flowforge.core.errors import Conflict
from flowforge.core.graph import topological_order
from flowforge.core.model import DagSpec, RunState, TaskState
from flowforge.core.plan import TaskView, plan_run
from flowforge.core.records import Run, TaskInstance
from flowforge.core.schedule import due_ticks
from flowforge.core.states import attempt_outcome
from flowforge.queues.base import Queue, TaskMessage
from flowforge.store.base import LEADER_LEASE, Store

if TYPE_CHECKING:  # the metrics are passed in; the engine does not import prometheus_client
    from flowforge.metrics import SchedulerMetrics

log = logging.getLogger("flowforge.scheduler")

LEADER_TTL_SECS = 5.0  # a standby takes over within about this long after the leader died
ACTIVE_RUN_LIMIT = 100_000  # every active run is looked at on each tick
BATCH_SECS = 0.05  # longest a wake is held back while the queue still has work (see run)
EVENTS_KEPT = 100_000  # the event log is a window for live views, not history
PRUNE_EVERY_SECS = 60.0
# A task queued this long without a claim while no message at all waits in the queue is not
# waiting its turn: its message is gone (Redis restarted empty or was flushed, or a worker froze
# after taking it). It is pushed again then, rather than after `requeue_after`.
STRANDED_SECS = 3.0


@dataclass
class TickReport:
    """What one tick changed, for logs, metrics and tests."""

    runs_created: int = 0  # by the cron schedule
    runs_started: int = 0
    runs_finished: int = 0
    tasks_queued: int = 0
    tasks_requeued: int = 0
    tasks_not_run: int = 0  # upstream_failed or skipped
    workers_dead: int = 0

    @property
    def changed(self) -> bool:
        """True when the tick wrote anything."""
        return any(vars(self).values())


class Scheduler:
    """Makes ready tasks `queued` and pushes them; starts and finishes runs; reaps dead workers."""

    def __init__(
        self,
        store: Store,
        queue: Queue,
        *,
        requeue_after: float = 60.0,
        worker_dead_after: float = 30.0,
        leader_ttl: float = LEADER_TTL_SECS,
        clock: Callable[[], float] = time.time,
        metrics: SchedulerMetrics | None = None,
    ) -> None:
        self.store = store
        self.metrics = metrics
        # Only the holder of the "scheduler" lease acts; another scheduler stands by and takes
        # over once the lease lapses (the holder died) or is released (it stopped).
        self.holder = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.leader_ttl = leader_ttl
        self.is_leader = False
        self.queue = queue
        self.requeue_after = requeue_after
        self.worker_dead_after = worker_dead_after
        self.clock = clock
        self._specs: dict[tuple[str, int], tuple[DagSpec, list[str]]] = {}
        # No worker is declared dead before this time (set after the store was unreachable).
        self._reap_after = 0.0
        # When each queued attempt was last pushed by this process (run, task, attempt) -> time.
        self._pushed: dict[tuple[str, str, int], float] = {}
        self._drained: bool | None = None  # the queue held no message (asked once per tick, when needed)
        self._pruned_at = 0.0

    def _spec(self, run: Run) -> tuple[DagSpec, list[str]]:
        key = (run.dag_id, run.dag_version)
        entry = self._specs.get(key)
        if entry is None:
            spec = self.store.get_dag_spec(run.dag_id, run.dag_version)
            entry = self._specs[key] = (spec, topological_order(spec))
        return entry

    # -- one pass ---------------------------------------------------------------------------
    def tick(self, now: float, *, housekeeping: bool = True) -> TickReport:
        """One pass over every active run; safe to call at any time, as often as wanted.

        Without `housekeeping` (the loop's ticks on a wake, between its ticks of every
        `tick_secs`) the pass leaves out what needs doing only about once a second, cron
        schedules and dead workers, and so reads two tables less per finished task.
        """
        report = TickReport()
        self._drained = None
        runs = self._active_runs()
        if housekeeping and self._schedule(now, runs, report):
            runs = self._active_runs()
        dead = self._reap_workers(now, report) if housekeeping else set()
        if now - self._pruned_at >= PRUNE_EVERY_SECS:
            self.store.prune_events(EVENTS_KEPT)
            self._pruned_at = now
        running_runs = defaultdict(int)
        for run in runs:
            if run.state == RunState.RUNNING:
                running_runs[run.dag_id] += 1
        instances: dict[str, list[TaskInstance]] = {}
        active_tasks: dict[str, int] = defaultdict(int)
        for run in runs:
            if run.state == RunState.RUNNING:
                tis = instances[run.run_id] = self.store.task_instances(run.run_id)
                active_tasks[run.dag_id] += sum(
                    ti.state in (TaskState.QUEUED, TaskState.RUNNING) for ti in tis
                )
        for run in runs:
            spec, order = self._spec(run)
            if run.state == RunState.QUEUED:
                if running_runs[run.dag_id] >= spec.max_active_runs:
                    continue
                if not self.store.set_run_state(run.run_id, [RunState.QUEUED], RunState.RUNNING, now):
                    continue
                running_runs[run.dag_id] += 1
                report.runs_started += 1
                log.info("run started", extra={"run_id": run.run_id, "dag_id": run.dag_id})
                run = replace(run, state=RunState.RUNNING)
                instances[run.run_id] = self.store.task_instances(run.run_id)
            tis = instances[run.run_id]
            if self._timed_out(run, spec, now):
                continue
            if housekeeping:
                tis = self._reap_lost_attempts(run, spec, tis, dead, now)
            self._requeue_lost(run, tis, now, report)
            views = {ti.task_id: TaskView(ti.state, ti.attempt, ti.retry_at) for ti in tis}
            capacity = spec.max_active_tasks - active_tasks[run.dag_id]
            plan = plan_run(spec, order, views, now, capacity=max(capacity, 0))
            if plan.to_upstream_failed:
                report.tasks_not_run += len(
                    self.store.set_task_states(
                        run.run_id,
                        plan.to_upstream_failed,
                        [TaskState.PENDING],
                        TaskState.UPSTREAM_FAILED,
                        now,
                    )
                )
            if plan.to_skip:
                report.tasks_not_run += len(
                    self.store.set_task_states(
                        run.run_id, plan.to_skip, [TaskState.PENDING], TaskState.SKIPPED, now
                    )
                )
            if plan.to_queue:
                queued = set(self.store.queue_tasks(run.run_id, plan.to_queue, now))
                messages = [
                    TaskMessage(run.run_id, tid, att + 1) for tid, att in plan.to_queue if tid in queued
                ]
                self.queue.put(messages)
                for m in messages:
                    self._pushed[(m.run_id, m.task_id, m.attempt)] = now
                    log.debug(
                        "task queued", extra={"run_id": m.run_id, "task_id": m.task_id, "attempt": m.attempt}
                    )
                if self.metrics:
                    self.metrics.observe_queued(
                        run, spec, tis, [q for q in plan.to_queue if q[0] in queued], now
                    )
                report.tasks_queued += len(messages)
                active_tasks[run.dag_id] += len(messages)
            if plan.run_state is not None:
                if self.store.set_run_state(run.run_id, [RunState.RUNNING], plan.run_state, now):
                    report.runs_finished += 1
                    self._forget(run.run_id)
                    log.info("run %s", plan.run_state, extra={"run_id": run.run_id, "dag_id": run.dag_id})
        return report

    def _active_runs(self) -> list[Run]:
        """Queued and running runs, oldest first (backfilled ones in logical-date order)."""
        runs = self.store.list_runs(states=[RunState.QUEUED, RunState.RUNNING], limit=ACTIVE_RUN_LIMIT)
        return sorted(runs, key=lambda r: (r.created_at, r.logical_date or 0.0, r.run_id))

    def _schedule(self, now: float, runs: list[Run], report: TickReport) -> bool:
        """Create the runs that cron ticks up to `now` call for; True when any was created.

        Unique (dag_id, logical_date) makes this safe with two schedulers: the second one's
        insert of the same tick is refused (Conflict) and skipped.
        """
        dags = [d for d in self.store.list_dags() if d.spec.schedule and not d.paused]
        if not dags:
            return False
        latest = self.store.latest_logical_dates()
        active = defaultdict(int)
        for run in runs:
            active[run.dag_id] += 1
        created = False
        for dag in dags:
            spec = dag.spec
            assert spec.schedule is not None
            after = max(latest.get(dag.dag_id, dag.schedule_after), dag.schedule_after)
            room = spec.max_active_runs - active[dag.dag_id]
            for tick in due_ticks(spec.schedule, spec.timezone, after, now, catchup=spec.catchup, limit=room):
                try:
                    run = self.store.create_run(
                        dag.dag_id,
                        triggered_by="schedule",
                        params=dict(spec.params),
                        now=now,
                        logical_date=tick,
                    )
                except Conflict:
                    continue  # another scheduler made this tick's run first
                created = True
                report.runs_created += 1
                log.info("scheduled run for %s", tick, extra={"run_id": run.run_id, "dag_id": dag.dag_id})
        return created

    def _timed_out(self, run: Run, spec: DagSpec, now: float) -> bool:
        """Fail a run past its `run_timeout_secs` (workers then kill its tasks); True when it did."""
        limit = spec.run_timeout_secs
        if limit is None or run.started_at is None or now - run.started_at <= limit:
            return False
        reason = f"run timed out after {limit:g}s"
        if self.store.stop_run(run.run_id, RunState.FAILED, reason, now):
            log.warning(reason, extra={"run_id": run.run_id, "dag_id": run.dag_id})
            self._forget(run.run_id)
        return True

    def _forget(self, run_id: str) -> None:
        for key in [k for k in self._pushed if k[0] == run_id]:
            del self._pushed[key]

    def _requeue_lost(self, run: Run, tis: list[TaskInstance], now: float, report: TickReport) -> None:
        """Push again every attempt queued longer than `requeue_after` without a claim.

        The message may have been lost (a queue restart, a worker dying between pop and
        claim, or this process restarting); a duplicate is harmless, the claim refuses it.
        When the queue is empty, `STRANDED_SECS` is long enough.
        """
        again = []
        for ti in tis:
            if ti.state != TaskState.QUEUED:
                continue
            key = (run.run_id, ti.task_id, ti.attempt)
            last = self._pushed.get(key)  # None: queued by an earlier process
            if (
                last is None
                or now - last >= self.requeue_after
                or (now - last >= STRANDED_SECS and self._queue_drained())
            ):
                again.append(TaskMessage(run.run_id, ti.task_id, ti.attempt))
                self._pushed[key] = now
        if again:
            self.queue.put(again)
            report.tasks_requeued += len(again)

    def _queue_drained(self) -> bool:
        """True when no message waits in the queue; asked at most once per tick."""
        if self._drained is None:
            try:
                self._drained = self.queue.size() == 0
            except Exception:  # unreachable: requeue_after still applies
                self._drained = False
        return self._drained

    # -- dead workers ---------------------------------------------------------------------------
    def _reap_workers(self, now: float, report: TickReport) -> set[str]:
        """Mark workers whose heartbeat is older than `worker_dead_after` dead; return their ids."""
        dead = set()
        for w in self.store.list_workers():
            if (
                w.state == "alive"
                and now - w.last_heartbeat > self.worker_dead_after
                and now >= self._reap_after
            ):
                try:
                    # Messages it took but never acked go back at once; if this fails, the
                    # re-push of tasks left queued (requeue_after) still delivers them.
                    self.queue.release_consumer(w.worker_id)
                except Exception:
                    log.warning(
                        "could not give back the queue messages of dead worker %s",
                        w.worker_id,
                        exc_info=True,
                        extra={"worker_id": w.worker_id},
                    )
                self.store.upsert_worker(replace(w, state="dead"))
                dead.add(w.worker_id)
                report.workers_dead += 1
                log.warning(
                    "worker %s missed its heartbeats: marked dead",
                    w.worker_id,
                    extra={"worker_id": w.worker_id},
                )
            elif w.state == "dead":
                dead.add(w.worker_id)
        return dead

    def _reap_lost_attempts(
        self, run: Run, spec: DagSpec, tis: list[TaskInstance], dead: set[str], now: float
    ) -> list[TaskInstance]:
        """Give up as `lost` every running attempt whose lease expired or whose worker is dead.

        The task is retried under its budget like after a failure. Conditional on the lease
        token, so a late renewal or a second scheduler doing the same cannot record it twice;
        the old worker's late result is refused.
        """
        out = []
        for ti in tis:
            expired = (
                ti.lease_expires_at is not None and ti.lease_expires_at < now and now >= self._reap_after
            )
            if ti.state == TaskState.RUNNING and (expired or ti.worker_id in dead):
                task = spec.task(ti.task_id)
                state, retry_at = attempt_outcome(
                    ti.attempt, task.retries, False, now, task.retry_delay_secs, task.max_retry_delay_secs
                )
                error = (
                    f"lost: worker {ti.worker_id} died or lost contact while running the task (lease expired)"
                )
                if self.store.finish_task(
                    run.run_id,
                    ti.task_id,
                    ti.attempt,
                    ti.worker_id or "",
                    state=state,
                    now=now,
                    error=error,
                    retry_at=retry_at,
                    lease_token=ti.lease_token,
                    attempt_state=TaskState.LOST,
                ):
                    log.warning(
                        "attempt lost: %s",
                        error,
                        extra={
                            "run_id": run.run_id,
                            "task_id": ti.task_id,
                            "attempt": ti.attempt,
                            "dag_id": run.dag_id,
                            "worker_id": ti.worker_id,
                        },
                    )
                    ti = replace(ti, state=state, retry_at=retry_at)
            out.append(ti)
        return out

    # -- loop ---------------------------------------------------------------------------------
    def lead(self, now: float) -> bool:
        """Take or keep the scheduler lease; True while this scheduler is the one that acts."""
        was = self.is_leader
        self.is_leader = self.store.hold_lease(LEADER_LEASE, self.holder, now, self.leader_ttl)
        if self.metrics:
            self.metrics.is_leader.set(int(self.is_leader))
        if self.is_leader != was:
            log.info(
                "this scheduler is %s",
                "now the leader" if self.is_leader else "standing by",
                extra={"holder": self.holder},
            )
        return self.is_leader

    def run(self, stop: threading.Event, tick_secs: float = 1.0) -> None:
        """Tick whenever woken (a task finished, a run was triggered) and at least every `tick_secs`.

        Stands by without acting while another scheduler holds the lease.
        """
        housekept = float("-inf")  # monotonic time of the last tick with housekeeping
        try:
            while not stop.is_set():
                housekeeping = time.monotonic() - housekept >= tick_secs
                try:
                    if housekeeping:
                        housekept = time.monotonic()
                        if not self.lead(self.clock()):
                            stop.wait(tick_secs)
                            continue
                    started = time.perf_counter()
                    self.tick(self.clock(), housekeeping=housekeeping)
                    if self.metrics:
                        self.metrics.loop_seconds.observe(time.perf_counter() - started)
                except Exception:
                    log.exception("scheduler tick failed; retrying")
                    # Workers could not heartbeat either if the store was down: once it is back,
                    # give them a full dead-after period before declaring any of them dead.
                    self._reap_after = self.clock() + self.worker_dead_after
                    stop.wait(tick_secs)
                if self.queue.wait_for_wake(tick_secs):
                    self._hold_while_queue_busy(stop)
        finally:
            if self.is_leader:
                try:
                    self.store.release_lease(LEADER_LEASE, self.holder)  # the standby need not wait
                except Exception:
                    log.warning("could not release the scheduler lease", exc_info=True)
                self.is_leader = False
                if self.metrics:
                    self.metrics.is_leader.set(0)

    def _hold_while_queue_busy(self, stop: threading.Event) -> None:
        """After a wake, wait up to `BATCH_SECS` while messages still wait in the queue.

        A message waiting means no worker is idle, so a later tick costs no worker any time,
        and one tick then handles many finished tasks: a tick reads every task of each active
        run, and ticking once per finished task made a wide run quadratic. Once the queue is
        empty (a worker may soon be idle) the next wake ticks at once.
        """
        deadline = time.monotonic() + BATCH_SECS
        while not stop.is_set():
            remaining = deadline - time.monotonic()
            try:
                if remaining <= 0 or self.queue.size() == 0:
                    return
            except Exception:
                return  # the tick will report what is wrong with the queue
            self.queue.wait_for_wake(remaining)
