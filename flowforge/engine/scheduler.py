"""The scheduler: applies the core's plan to the store and the queue, one `tick(now)` at a time."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from flowforge.core.errors import Unavailable
from flowforge.core.graph import topological_order
from flowforge.core.model import DagSpec, RunState, TaskState
from flowforge.core.plan import DagShape, plan_tasks
from flowforge.core.records import Run, TaskInstance
from flowforge.engine.books import Books, Load, RunBook
from flowforge.engine.cron import CronIndex
from flowforge.engine.leadership import KeptLease, LeadLost
from flowforge.engine.leases import LEADER_TTL_SECS, MAX_LOST_ATTEMPTS, LeaderLease, Reaper
from flowforge.engine.retention import RETENTION_EVERY_SECS, RETENTION_FIRST_SECS, Retention
from flowforge.queues.base import Queue, TaskMessage
from flowforge.store.base import Store

if TYPE_CHECKING:  # the metrics are passed in; the engine does not import prometheus_client
    from flowforge.metrics import SchedulerMetrics

log = logging.getLogger("flowforge.scheduler")

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
    runs_pruned: int = 0  # deleted by retention

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
        max_lost_attempts: int = MAX_LOST_ATTEMPTS,
        clock: Callable[[], float] = time.time,
        metrics: SchedulerMetrics | None = None,
        retention_secs: float | None = None,
        retention_every: float = RETENTION_EVERY_SECS,
    ) -> None:
        self.store = store
        self.metrics = metrics
        # Only the holder of the "scheduler" lease acts; another scheduler stands by and takes
        # over once the lease lapses (the holder died) or is released (it stopped).
        self.leader = LeaderLease(store, leader_ttl)
        self.queue = queue
        self.requeue_after = requeue_after
        self.worker_dead_after = worker_dead_after
        self.clock = clock
        self._specs: dict[tuple[str, int], tuple[DagSpec, DagShape]] = {}
        # The running runs' task instances, read in full once and then kept up to date from the
        # event log: a tick reads and plans what changed since the last one (see `books`).
        self.books = Books(store)
        # Declares workers dead and gives their attempts (and those whose lease lapsed) up as lost.
        # Their tasks are retried without using a retry, up to `max_lost_attempts` lost attempts each.
        self.reaper = Reaper(store, queue, worker_dead_after, max_lost_attempts)
        # When each queued attempt was last pushed by this process (run, task, attempt) -> time.
        self._pushed: dict[tuple[str, str, int], float] = {}
        self._drained: bool | None = None  # the queue held no message (asked once per tick, when needed)
        self._pruned_at = 0.0
        # Renewed between the steps of a tick while `run` drives it (see `leadership`).
        self.kept = KeptLease(lambda now: self.lead(now), leader_ttl, clock)
        # The `now` of this leader's last cron pass, None when it was not leading then: ticks due
        # since that pass are all made, even with `catchup: false` (a late pass is no downtime).
        self._scheduled_at: float | None = None
        # Every scheduled DAG's next tick: a cron pass touches only the DAGs that are due.
        self.cron = CronIndex(store)
        # With `retention_secs`, runs that ended longer ago are deleted, a batch per housekeeping tick.
        self.retention = (
            Retention(store, retention_secs, retention_every, min(RETENTION_FIRST_SECS, retention_every))
            if retention_secs
            else None
        )

    def _spec(self, run: Run) -> tuple[DagSpec, DagShape]:
        key = (run.dag_id, run.dag_version)
        entry = self._specs.get(key)
        if entry is None:
            spec = self.store.get_dag_spec(run.dag_id, run.dag_version)
            entry = self._specs[key] = (spec, DagShape.of(spec, topological_order(spec)))
        return entry

    # -- one pass ---------------------------------------------------------------------------
    def tick(self, now: float, *, housekeeping: bool = True) -> TickReport:
        """One pass over every active run; safe to call at any time, as often as wanted.

        Without `housekeeping` (the loop's ticks on a wake, between its ticks of every
        `tick_secs`) the pass leaves out what needs doing only about once a second, cron
        schedules and dead workers, and so reads two tables less per finished task.
        """
        report = TickReport()
        try:
            self._tick(now, housekeeping, report)
        except LeadLost:
            self.books.forget()
            log.warning("the scheduler lease was lost during a tick; this scheduler stopped acting")
        except BaseException:
            self.books.forget()  # what it wrote before failing is not known: read everything again
            raise
        return report

    def _tick(self, now: float, housekeeping: bool, report: TickReport) -> None:
        self._drained = None
        runs = self._active_runs()
        # Cron runs are made on every tick with housekeeping, and on any tick a cron tick is due by.
        if (housekeeping or self.cron.due(now)) and self._schedule(now, runs, report, housekeeping):
            runs = self._active_runs()
        dead: set[str] = set()
        if housekeeping:
            dead, report.workers_dead = self.reaper.reap_workers(now)
        if now - self._pruned_at >= PRUNE_EVERY_SECS:
            self.store.prune_events(EVENTS_KEPT)
            self._pruned_at = now
        running = {r.run_id: self._spec(r)[1] for r in runs if r.state == RunState.RUNNING}
        self.books.refresh(running, full=housekeeping)
        load = Load.of(runs, self.books)
        for run in runs:
            self.kept.check()
            spec, shape = self._spec(run)
            if run.state == RunState.QUEUED:
                started = self._start(run, spec, load, now, report)
                if started is None:
                    continue
                run = started
            book = self.books.runs.get(run.run_id)
            if book is None or self._timed_out(run, spec, now):
                continue
            if housekeeping:
                self._reap(run, spec, shape, book, dead, now)
            self._requeue_lost(run, shape, book, now, report)
            self._advance(run, spec, shape, book, load, now, report)
        if housekeeping and self.retention is not None:
            report.runs_pruned = self._retain(now)
        if housekeeping:
            self.store.fold_counts()  # keeps the counts of /status and /metrics quick to read

    def _retain(self, now: float) -> int:
        """One retention batch, last in the tick; a failure is logged and the batch tried again next tick."""
        assert self.retention is not None
        try:
            return self.retention.step(now)
        except Exception:
            log.warning("retention: deleting old runs failed; trying again", exc_info=True)
            return 0

    def _start(self, run: Run, spec: DagSpec, load: Load, now: float, report: TickReport) -> Run | None:
        """Start a queued run if its DAG has room for one more; the run as started, or None."""
        if load.running_runs[run.dag_id] >= spec.max_active_runs:
            return None
        if not self.store.set_run_state(run.run_id, [RunState.QUEUED], RunState.RUNNING, now):
            return None
        load.running_runs[run.dag_id] += 1
        report.runs_started += 1
        log.info("run started", extra={"run_id": run.run_id, "dag_id": run.dag_id})
        load.active_tasks[run.dag_id] += self.books.read(run.run_id).active
        return replace(run, state=RunState.RUNNING)

    def _reap(
        self, run: Run, spec: DagSpec, shape: DagShape, book: RunBook, dead: set[str], now: float
    ) -> None:
        """Give up the run's lost attempts (see `Reaper.reap_attempts`), and book what that changed."""
        for ti in self.reaper.reap_attempts(run, spec, list(book.tis.values()), dead, now):
            if ti is not book.tis[ti.task_id]:
                book.put(ti, shape)

    def _advance(
        self,
        run: Run,
        spec: DagSpec,
        shape: DagShape,
        book: RunBook,
        load: Load,
        now: float,
        report: TickReport,
    ) -> None:
        """Apply the core's plan for one running run: skip, fail upstream, queue, or end it."""
        capacity = spec.max_active_tasks - load.active_tasks[run.dag_id]
        plan = plan_tasks(spec, shape, book.tis, book.candidates(), book.counts, now, max(capacity, 0))
        self.books.tasks_planned += plan.evaluated
        # Evaluated again next time: the tasks held back, and those decided (should a write not take).
        book.dirty = set(plan.held)
        book.dirty.update(t for t, _ in plan.to_queue + plan.to_upstream_failed + plan.to_skip)
        if plan.to_upstream_failed:
            report.tasks_not_run += len(
                self.store.set_task_states(
                    run.run_id, plan.to_upstream_failed, [TaskState.PENDING], TaskState.UPSTREAM_FAILED, now
                )
            )
        if plan.to_skip:
            report.tasks_not_run += len(
                self.store.set_task_states(
                    run.run_id, plan.to_skip, [TaskState.PENDING], TaskState.SKIPPED, now
                )
            )
        if plan.to_queue:
            queued = self._queue(run, spec, list(book.tis.values()), plan.to_queue, now)
            report.tasks_queued += queued
            load.active_tasks[run.dag_id] += queued
        if plan.run_state is not None and self.store.set_run_state(
            run.run_id, [RunState.RUNNING], plan.run_state, now
        ):
            report.runs_finished += 1
            self._forget(run.run_id)
            log.info("run %s", plan.run_state, extra={"run_id": run.run_id, "dag_id": run.dag_id})

    def _queue(
        self, run: Run, spec: DagSpec, tis: list[TaskInstance], to_queue: list[tuple[str, int]], now: float
    ) -> int:
        """Make these (task_id, attempt before) `queued` in the store and push them; returns how many."""
        queued = set(self.store.queue_tasks(run.run_id, to_queue, now))
        messages = [TaskMessage(run.run_id, tid, att + 1) for tid, att in to_queue if tid in queued]
        self.queue.put(messages)
        for m in messages:
            self._pushed[(m.run_id, m.task_id, m.attempt)] = now
            log.debug("task queued", extra={"run_id": m.run_id, "task_id": m.task_id, "attempt": m.attempt})
        if self.metrics:
            self.metrics.observe_queued(run, spec, tis, [q for q in to_queue if q[0] in queued], now)
        return len(messages)

    def _active_runs(self) -> list[Run]:
        """Queued and running runs, oldest first (backfilled ones in logical-date order)."""
        runs = self.store.list_runs(states=[RunState.QUEUED, RunState.RUNNING], limit=ACTIVE_RUN_LIMIT)
        return sorted(runs, key=lambda r: (r.created_at, r.logical_date or 0.0, r.run_id))

    def _schedule(self, now: float, runs: list[Run], report: TickReport, refresh: bool) -> bool:
        """Create the runs that cron ticks up to `now` call for (see `cron.CronIndex`)."""
        created = self.cron.make_runs(now, runs, self._scheduled_at, self.kept.check, refresh=refresh)
        self._scheduled_at = now  # not after a failed pass: the next one makes what this one did not
        report.runs_created += created
        return created > 0

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
        self.books.drop(run_id)
        for key in [k for k in self._pushed if k[0] == run_id]:
            del self._pushed[key]

    def _requeue_lost(self, run: Run, shape: DagShape, book: RunBook, now: float, report: TickReport) -> None:
        """Push again every attempt queued longer than `requeue_after` without a claim.

        The message may have been lost (a queue restart, a worker dying between pop and
        claim, or this process restarting); a duplicate is harmless, the claim refuses it.
        When the queue is empty, `STRANDED_SECS` is long enough.
        """
        again = []
        for tid in sorted(book.queued, key=shape.index.__getitem__):
            ti = book.tis[tid]
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

    # -- loop ---------------------------------------------------------------------------------
    @property
    def holder(self) -> str:
        """This scheduler's name in the leader lease."""
        return self.leader.holder

    @property
    def is_leader(self) -> bool:
        """True while this scheduler holds the leader lease."""
        return self.leader.held

    def lead(self, now: float) -> bool:
        """Take or keep the scheduler lease; True while this scheduler is the one that acts."""
        leading = self.leader.hold(now)
        if self.metrics:
            self.metrics.is_leader.set(int(leading))
        if not leading:
            self.books.forget()  # another scheduler may act meanwhile: its changes are read in full
            self._scheduled_at = None  # when it leads again, the ticks missed meanwhile are a gap
        return leading

    def run(self, stop: threading.Event, tick_secs: float = 1.0) -> None:
        """Tick whenever woken (a task finished, a run was triggered) and at least every `tick_secs`.

        Stands by without acting while another scheduler holds the lease.
        """
        housekept = float("-inf")  # monotonic time of the last tick with housekeeping
        self.kept.keep()
        try:
            while not stop.is_set():
                housekeeping = time.monotonic() - housekept >= tick_secs
                try:
                    if not self.kept.leading():
                        stop.wait(tick_secs)
                        continue
                    if housekeeping:
                        housekept = time.monotonic()
                    started = time.perf_counter()
                    report = self.tick(self.clock(), housekeeping=housekeeping)
                    self._timed(time.perf_counter() - started, housekeeping, report)
                except Exception as exc:
                    if isinstance(exc, Unavailable):  # an outage: one line, no traceback
                        log.warning("scheduler tick failed (%s); retrying", exc)
                    else:
                        log.exception("scheduler tick failed; retrying")
                    # Workers could not heartbeat either if the store was down: once it is back,
                    # give them a full dead-after period before declaring any of them dead.
                    self.reaper.postpone(self.clock())
                    stop.wait(tick_secs)
                # Until the next cron tick at the latest: its run is made on time, not up to a tick late.
                if self.queue.wait_for_wake(self.cron.wait_secs(self.clock(), tick_secs)):
                    self._hold_while_queue_busy(stop)
        finally:
            if self.is_leader:
                self.leader.release()  # the standby need not wait
                if self.metrics:
                    self.metrics.is_leader.set(0)

    def _timed(self, secs: float, housekeeping: bool, report: TickReport) -> None:
        """Observe how long a tick took; at debug level, log it too (the cron benchmark reads it)."""
        if self.metrics:
            self.metrics.loop_seconds.observe(secs)
        if log.isEnabledFor(logging.DEBUG):
            extra = {"tick_ms": round(secs * 1000, 3), "housekeeping": housekeeping}
            log.debug("tick took %.1f ms", secs * 1000, extra={**extra, "runs_created": report.runs_created})

    def _hold_while_queue_busy(self, stop: threading.Event) -> None:
        """After a wake, wait up to `BATCH_SECS` while messages still wait in the queue.

        A message waiting means no worker is idle, so a later tick costs no worker any time,
        and one tick then handles many finished tasks: each tick has a cost of its own (the
        active runs listed, the event log read), paid once for the batch. Once the queue is
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
