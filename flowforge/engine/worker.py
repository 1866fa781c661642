"""The worker: take a message, claim the attempt in the store, run it, record the result.

The leases of the attempts it holds are renewed and fenced by `leases.HeldLeases`.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar

from flowforge.core.errors import Unavailable
from flowforge.core.model import DagSpec, TaskSpec, TaskState
from flowforge.core.records import Run, TaskInstance, WorkerInfo
from flowforge.core.schedule import iso_utc
from flowforge.core.secrets import is_secret_key, secret_values
from flowforge.core.states import attempt_outcome
from flowforge.engine.executor import ExecResult, attempt_context, run_command, task_env
from flowforge.engine.leases import Held, HeldLeases, process_name
from flowforge.engine.logsink import DEFAULT_MAX_LOG_BYTES, LogBuffer
from flowforge.queues.base import Queue, TaskMessage
from flowforge.store.base import Store

if TYPE_CHECKING:  # the metrics are passed in; the engine does not import prometheus_client
    from flowforge.metrics import WorkerMetrics

log = logging.getLogger("flowforge.worker")

# How long one `get` waits for a message before the slot checks whether to stop.
POLL_SECS = 0.5
# While the store is unreachable a finished task's result is retried at this pace (doubling).
RECORD_RETRY_SECS, RECORD_RETRY_MAX_SECS = 0.5, 10.0
T = TypeVar("T")
# How often the worker checks that the attempts it runs are still theirs to run (a cancel, a
# run timeout, or a reaper gave them up): such a task is killed within about this long.
WATCH_SECS = 0.5
RUN_CACHE_SIZE = 1024


def new_worker_id() -> str:
    """`host-pid-random`: unique per process, readable in `flowforge workers`."""
    return process_name()


class Worker:
    """Runs task attempts in `slots` threads; one `handle` call per message."""

    def __init__(
        self,
        store: Store,
        queue: Queue,
        *,
        slots: int,
        worker_id: str | None = None,
        kill_grace: float = 5.0,
        heartbeat_secs: float = 5.0,
        lease_secs: float | None = None,
        clock: Callable[[], float] = time.time,
        base_env: dict[str, str] | None = None,
        metrics: WorkerMetrics | None = None,
        max_log_bytes: int = DEFAULT_MAX_LOG_BYTES,
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.queue = queue
        self.slots = slots
        self.worker_id = worker_id or new_worker_id()
        self.kill_grace = kill_grace
        self.heartbeat_secs = heartbeat_secs
        # An attempt's lease outlives a few missed renewals (every WATCH_SECS) but not a dead
        # worker: after this long without one, the scheduler gives the attempt up as lost.
        self.lease_secs = lease_secs if lease_secs is not None else 3 * heartbeat_secs
        # Renewed three times a lease at least, so that one slow renewal does not let it lapse.
        self.watch_secs = min(WATCH_SECS, self.lease_secs / 3)
        self.clock = clock
        self.base_env = dict(os.environ) if base_env is None else base_env
        # The secret-named variables a task inherits from this process (`task_env` drops FLOWFORGE_*):
        # their values are masked in every task's log, as those of the DAG's env are.
        self.inherited_secrets = {
            k: v for k, v in self.base_env.items() if is_secret_key(k) and not k.startswith("FLOWFORGE_")
        }
        self.max_log_bytes = max_log_bytes
        self.started_at = clock()
        self._specs: dict[tuple[str, int], DagSpec] = {}
        # A run's DAG version, params and logical date never change: read once per run, not per task.
        self._runs: dict[str, Run] = {}
        # The lease and process group of every attempt held here, by "run_id/task_id".
        self.leases = HeldLeases(
            store, self.worker_id, lease_secs=self.lease_secs, kill_grace=kill_grace, clock=clock
        )
        if metrics:
            metrics.slots.set(slots)

    # -- one message --------------------------------------------------------------------
    def handle(self, msg: TaskMessage) -> bool:
        """Claim and run one attempt; False when the claim was refused (stale or duplicate)."""
        try:
            return self._handle(msg)
        finally:
            self.queue.ack(msg)

    def _spec(self, dag_id: str, version: int) -> DagSpec:
        key = (dag_id, version)
        spec = self._specs.get(key)
        if spec is None:
            spec = self._specs[key] = self.store.get_dag_spec(dag_id, version)
        return spec

    def _run(self, run_id: str) -> Run:
        run = self._runs.get(run_id)
        if run is None:
            if len(self._runs) >= RUN_CACHE_SIZE:
                self._runs.clear()
            run = self._runs[run_id] = self.store.get_run(run_id)
        return run

    def _ctx(self, msg: TaskMessage, **more: Any) -> dict[str, Any]:
        """The context fields of a log line about this attempt."""
        return {
            "run_id": msg.run_id,
            "task_id": msg.task_id,
            "attempt": msg.attempt,
            "worker_id": self.worker_id,
            **more,
        }

    def _until_stored(self, what: str, msg: TaskMessage, call: Callable[[], T]) -> T:
        """`call()`, retried while the store is unavailable.

        Once an attempt is claimed, giving up would leave it `running` for good under a live
        worker; and a result exists only in this process until it is written.
        """
        delay = RECORD_RETRY_SECS
        while True:
            try:
                return call()
            except Unavailable as exc:
                log.warning("could not %s (%s); retrying in %.1fs", what, exc, delay, extra=self._ctx(msg))
                time.sleep(delay)
                delay = min(delay * 2, RECORD_RETRY_MAX_SECS)

    def _handle(self, msg: TaskMessage) -> bool:
        sent = time.monotonic()
        ti = self.store.claim_task(
            msg.run_id, msg.task_id, msg.attempt, self.worker_id, self.clock(), self.lease_secs
        )
        if ti is None or ti.lease_token is None:
            log.debug("claim refused", extra=self._ctx(msg))
            return False
        key = f"{msg.run_id}/{msg.task_id}"
        held = Held(msg.attempt, ti.lease_token, renewed=sent)
        busy = self.leases.add(key, held)  # from now on `watch` renews its lease
        if self.metrics:
            self.metrics.slots_busy.set(busy)
        try:
            return self._run_claimed(msg, held, ti)
        finally:
            busy = self.leases.remove(key)
            if self.metrics:
                self.metrics.slots_busy.set(busy)

    def _run_claimed(self, msg: TaskMessage, held: Held, claimed: TaskInstance) -> bool:
        run = self._until_stored("read the run", msg, lambda: self._run(msg.run_id))
        spec = self._until_stored("read the DAG", msg, lambda: self._spec(run.dag_id, run.dag_version))
        task = spec.task(msg.task_id)
        if self.metrics and claimed.queued_at is not None and claimed.started_at is not None:
            wait = max(0.0, claimed.started_at - claimed.queued_at)
            self.metrics.queue_wait_seconds.labels(run.dag_id).observe(wait)
        log.info("task started", extra=self._ctx(msg, dag_id=run.dag_id))
        result = self._execute(msg, held, run, spec, task)
        if self.metrics:
            self.metrics.task_duration_seconds.labels(run.dag_id).observe(result.duration)
        self._record(msg, held, run, task, result, claimed.lost_attempts)
        return True

    def _execute(self, msg: TaskMessage, held: Held, run: Run, spec: DagSpec, task: TaskSpec) -> ExecResult:
        """Run the attempt's command, its output going to the store with secrets masked."""
        upstream = self._upstream_outputs(msg, task)
        secrets = secret_values(self.inherited_secrets, spec.env, task.env, run.params, *upstream.values())
        sink = LogBuffer(self.store, msg.run_id, msg.task_id, msg.attempt, secrets, self.max_log_bytes)
        started = time.monotonic()
        try:
            return run_command(
                task.command,
                env=self._task_env(msg, held, run, spec, task, upstream),
                timeout=task.timeout_secs,
                sink=sink.write,
                kill_grace=self.kill_grace,
                on_start=lambda pgid: held.started(pgid, self.kill_grace),
            )
        except Exception as exc:
            # Whatever went wrong, the attempt ends now with the reason, not when its lease runs out.
            log.exception("task could not be run", extra=self._ctx(msg, dag_id=run.dag_id))
            # An error a store can keep: PostgreSQL text holds no NUL.
            reason = str(exc).replace("\x00", "\ufffd")
            return ExecResult(None, False, time.monotonic() - started, f"could not run the task: {reason}")
        finally:
            sink.close()

    def _upstream_outputs(self, msg: TaskMessage, task: TaskSpec) -> dict[str, dict[str, str]]:
        """The outputs of the task's direct upstream tasks that succeeded with some, in one read."""
        if not task.depends_on:
            return {}
        return self._until_stored(
            "read the upstream outputs", msg, lambda: self.store.task_outputs(msg.run_id, task.depends_on)
        )

    def _task_env(
        self,
        msg: TaskMessage,
        held: Held,
        run: Run,
        spec: DagSpec,
        task: TaskSpec,
        upstream: dict[str, dict[str, str]],
    ) -> dict[str, str]:
        """The attempt's environment (`executor.task_env`)."""
        return task_env(
            self.base_env,
            spec.env,
            task.env,
            attempt_context(
                dag_id=run.dag_id,
                run_id=run.run_id,
                task_id=task.id,
                attempt=msg.attempt,
                logical_date="" if run.logical_date is None else iso_utc(run.logical_date),
                params=run.params,
                lease_token=held.token,
                upstream_outputs=upstream,
            ),
        )

    def _record(
        self, msg: TaskMessage, held: Held, run: Run, task: TaskSpec, result: ExecResult, lost_attempts: int
    ) -> None:
        """Write the attempt's outcome to the store (waiting out an outage), wake the scheduler, and log it."""
        now, tries = self.clock(), msg.attempt - lost_attempts  # a lost attempt used no retry
        state, retry_at = attempt_outcome(
            tries, task.retries, result.succeeded, now, task.retry_delay_secs, task.max_retry_delay_secs
        )
        attempt_state = None
        if held.given_back and not result.succeeded:
            # The worker stopped, not the task: the attempt does not count against its retries.
            state, retry_at, attempt_state = TaskState.UP_FOR_RETRY, now, TaskState.LOST
            result = replace(
                result, error=f"worker {self.worker_id} stopped before the task ended; given back"
            )
        recorded = self._until_stored(
            "record the result",
            msg,
            lambda: self.store.finish_task(
                msg.run_id,
                msg.task_id,
                msg.attempt,
                self.worker_id,
                state=state,
                now=now,
                exit_code=result.exit_code,
                error=result.error,
                retry_at=retry_at,
                lease_token=held.token,
                attempt_state=attempt_state,
                outputs=result.outputs,
            ),
        )
        # The tasks waiting on this one are queued on the scheduler's next tick: it starts now, not
        # after this worker's log line.
        self.queue.wake_scheduler()
        context = self._ctx(
            msg, dag_id=run.dag_id, exit_code=result.exit_code, duration_secs=round(result.duration, 3)
        )
        if not recorded:
            log.info("result dropped: the attempt was stopped or given up meanwhile", extra=context)
        elif state == TaskState.SUCCESS:
            log.info("task succeeded", extra=context)
        else:
            log.warning("task %s: %s", state, result.error, extra=context)

    # -- loops ----------------------------------------------------------------------------
    def info(self, state: str = "alive") -> WorkerInfo:
        """This worker as the store shows it."""
        return WorkerInfo(
            worker_id=self.worker_id,
            host=socket.gethostname(),
            pid=os.getpid(),
            slots=self.slots,
            started_at=self.started_at,
            last_heartbeat=self.clock(),
            running=self.leases.keys(),
            state=state,
        )

    def _slot_loop(self, stop: threading.Event) -> None:
        while not stop.is_set():
            msg = self.queue.get(POLL_SECS)
            if msg is None:
                continue
            if stop.is_set():
                # Taken while the worker was being told to stop: claim nothing new, pass it on.
                self._give_back(msg)
                return
            try:
                self.handle(msg)
            except Exception:
                log.exception("task handling failed", extra=self._ctx(msg))

    def _give_back(self, msg: TaskMessage) -> None:
        """Put an unclaimed message back for another worker (a duplicate is refused by the claim)."""
        try:
            self.queue.put([msg])
            self.queue.ack(msg)
        except Exception as exc:  # the queue gives it back on close, or the scheduler pushes it again
            log.warning("could not give back a task message: %s", exc, extra=self._ctx(msg))

    def watch(self) -> int:
        """Renew the leases of the attempts held here and stop those no longer ours (`HeldLeases.renew`)."""
        return self.leases.renew()

    def run(self, stop: threading.Event, grace: float = 10.0) -> None:
        """Serve until `stop` is set: `slots` threads take messages, this one heartbeats.

        Once stopped, no new message is taken; running tasks get `grace` seconds to finish
        before their process groups are killed (their attempts then count as failed).
        """
        self.store.upsert_worker(self.info())
        threads = [
            threading.Thread(target=self._slot_loop, args=(stop,), name=f"slot-{i}", daemon=True)
            for i in range(self.slots)
        ]
        for t in threads:
            t.start()
        # Apart from the loop below, which may wait on the store: see `HeldLeases.fence`.
        threading.Thread(
            target=self.leases.fence_loop, args=(stop, threads), name="fence", daemon=True
        ).start()
        self._watch_until_drained(stop, threads, grace)
        if any(t.is_alive() for t in threads):
            log.warning(
                "killing %d task(s) still running after %.0fs grace",
                self.leases.kill_all(),
                grace,
                extra={"worker_id": self.worker_id},
            )
            for t in threads:
                t.join(5.0)
        self.store.upsert_worker(self.info(state="stopped"))

    def _watch_until_drained(
        self, stop: threading.Event, threads: list[threading.Thread], grace: float
    ) -> None:
        """Watch the leases and heartbeat until stopped and every slot is done, or `grace` is over.

        Watching and heartbeats go on through the grace period: a task cancelled while the
        worker drains is still stopped, and the worker is not taken for dead meanwhile.
        """
        next_beat = time.monotonic() + self.heartbeat_secs
        deadline: float | None = None  # set once stopped: the end of the grace period

        def busy() -> bool:
            return any(t.is_alive() for t in threads)

        while deadline is None or (busy() and time.monotonic() < deadline):
            if deadline is None:
                if stop.wait(self.watch_secs):
                    deadline = time.monotonic() + grace
            else:
                # Stopped: `stop.wait` no longer waits, so wait on a slot still draining instead
                # of spinning; this returns as soon as it is done.
                alive = [t for t in threads if t.is_alive()]
                if alive:
                    alive[0].join(min(self.watch_secs, max(0.0, deadline - time.monotonic())))
            self.watch()
            if time.monotonic() >= next_beat:
                next_beat = time.monotonic() + self.heartbeat_secs
                try:
                    self.store.upsert_worker(self.info())
                except Unavailable as exc:  # an outage: one line, no traceback
                    log.warning("heartbeat failed (%s); retrying", exc, extra={"worker_id": self.worker_id})
                except Exception:
                    log.exception("heartbeat failed", extra={"worker_id": self.worker_id})
