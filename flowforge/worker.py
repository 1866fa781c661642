"""The worker: take a message, claim the attempt in the store, run it, record the result."""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TypeVar

from .core.errors import Unavailable
from .core.model import DagSpec, TaskState
from .core.records import Run, WorkerInfo
from .core.schedule import iso_utc
from .core.secrets import LogMasker, secret_values
from .core.states import attempt_outcome
from .executor import attempt_context, run_command, task_env, terminate_group
from .queues.base import Queue, TaskMessage
from .store.base import Store

log = logging.getLogger(__name__)

# How long one `get` waits for a message before the slot checks whether to stop.
POLL_SECS = 0.5
# While the store is unreachable a finished task's result is retried at this pace (doubling).
RECORD_RETRY_SECS, RECORD_RETRY_MAX_SECS = 0.5, 10.0
T = TypeVar("T")
# Task output held in memory while the store is unreachable; beyond this the oldest is dropped.
MAX_PENDING_LOG_CHARS = 4 * 1024 * 1024
# How often the worker checks that the attempts it runs are still theirs to run (a cancel, a
# run timeout, or a reaper gave them up): such a task is killed within about this long.
WATCH_SECS = 0.5
RUN_CACHE_SIZE = 1024


def new_worker_id() -> str:
    """`host-pid-random`: unique per process, readable in `flowforge workers`."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


@dataclass
class Held:
    """An attempt this worker claimed: its lease token and, once started, its process group."""

    attempt: int
    token: str
    pgid: int | None = None
    lost: bool = False  # the lease was refused: kill the task, drop its result
    given_back: bool = False  # killed at shutdown: another attempt runs it, whatever its budget


class LogBuffer:
    """Writes a task's output to the store in chunks, with the task's secret values masked."""

    def __init__(self, store: Store, run_id: str, task_id: str, attempt: int, secrets: list[str]) -> None:
        self.store = store
        self.key = (run_id, task_id, attempt)
        self.masker = LogMasker(secrets)
        self._pending = ""  # output not yet written because the store was unavailable

    def write(self, text: str) -> None:
        """Append one chunk (the executor already batches output)."""
        self._append(self.masker.feed(text))

    def close(self) -> None:
        """Write what the masker held back, and what an outage held up (waiting for the store to return)."""
        self._append(self.masker.flush())
        delay = RECORD_RETRY_SECS
        while self._pending:
            time.sleep(delay)
            delay = min(delay * 2, RECORD_RETRY_MAX_SECS)
            self._append("")

    def _append(self, text: str) -> None:
        text = self._pending + text
        if not text:
            return
        try:
            self.store.append_log(*self.key, text)
            self._pending = ""
        except Unavailable as exc:
            if not self._pending:
                log.warning("could not store log output (%s); keeping it to write later", exc,
                            extra={"run_id": self.key[0], "task_id": self.key[1]})
            # Kept, up to a bound, and written with the next chunk or on close.
            self._pending = text[-MAX_PENDING_LOG_CHARS:]
        except Exception:  # a log write must never kill the task's bookkeeping
            self._pending = ""
            log.exception("could not store log chunk", extra={"run_id": self.key[0], "task_id": self.key[1]})


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
    ) -> None:
        self.store = store
        self.queue = queue
        self.slots = slots
        self.worker_id = worker_id or new_worker_id()
        self.kill_grace = kill_grace
        self.heartbeat_secs = heartbeat_secs
        # An attempt's lease outlives a few missed renewals (every WATCH_SECS) but not a dead
        # worker: after this long without one, the scheduler gives the attempt up as lost.
        self.lease_secs = lease_secs if lease_secs is not None else 3 * heartbeat_secs
        self._renewed_at = time.monotonic()
        self.clock = clock
        self.base_env = dict(os.environ) if base_env is None else base_env
        self.started_at = clock()
        self._specs: dict[tuple[str, int], DagSpec] = {}
        # A run's DAG version, params and logical date never change: read once per run, not per task.
        self._runs: dict[str, Run] = {}
        # "run_id/task_id" -> the lease and process group of every attempt held here
        self._running: dict[str, Held] = {}
        self._lock = threading.Lock()

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
                log.warning("could not %s (%s); retrying in %.1fs", what, exc, delay,
                            extra={"run_id": msg.run_id, "task_id": msg.task_id, "attempt": msg.attempt})
                time.sleep(delay)
                delay = min(delay * 2, RECORD_RETRY_MAX_SECS)

    def _handle(self, msg: TaskMessage) -> bool:
        ti = self.store.claim_task(msg.run_id, msg.task_id, msg.attempt, self.worker_id, self.clock(), self.lease_secs)
        if ti is None or ti.lease_token is None:
            log.debug("claim refused", extra={"run_id": msg.run_id, "task_id": msg.task_id, "attempt": msg.attempt})
            return False
        key = f"{msg.run_id}/{msg.task_id}"
        held = Held(msg.attempt, ti.lease_token)
        with self._lock:
            self._running[key] = held  # from now on `watch` renews its lease
        try:
            return self._run_claimed(msg, held)
        finally:
            with self._lock:
                self._running.pop(key, None)

    def _run_claimed(self, msg: TaskMessage, held: Held) -> bool:
        run = self._until_stored("read the run", msg, lambda: self._run(msg.run_id))
        spec = self._until_stored("read the DAG", msg, lambda: self._spec(run.dag_id, run.dag_version))
        task = spec.task(msg.task_id)
        env = task_env(
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
            ),
        )
        sink = LogBuffer(self.store, msg.run_id, msg.task_id, msg.attempt, secret_values(spec.env, task.env, run.params))

        def remember(pgid: int) -> None:
            held.pgid = pgid
            if held.lost:  # given up while the process was starting
                terminate_group(pgid, self.kill_grace)

        try:
            result = run_command(
                task.command, env=env, timeout=task.timeout_secs, sink=sink.write,
                kill_grace=self.kill_grace, on_start=remember,
            )
        finally:
            sink.close()
        now = self.clock()
        state, retry_at = attempt_outcome(
            msg.attempt, task.retries, result.succeeded, now, task.retry_delay_secs, task.max_retry_delay_secs
        )
        attempt_state = None
        if held.given_back and not result.succeeded:
            # The worker stopped, not the task: the attempt does not count against its retries.
            state, retry_at, attempt_state = TaskState.UP_FOR_RETRY, now, TaskState.LOST
            result = replace(result, error=f"worker {self.worker_id} stopped before the task ended; given back")
        recorded = self._until_stored("record the result", msg, lambda: self.store.finish_task(
            msg.run_id, msg.task_id, msg.attempt, self.worker_id,
            state=state, now=now, exit_code=result.exit_code, error=result.error, retry_at=retry_at,
            lease_token=held.token, attempt_state=attempt_state,
        ))
        if not recorded:
            log.info("result dropped: the attempt was stopped or given up meanwhile",
                     extra={"run_id": msg.run_id, "task_id": msg.task_id, "attempt": msg.attempt})
        self.queue.wake_scheduler()
        return True

    # -- loops ----------------------------------------------------------------------------
    def info(self, state: str = "alive") -> WorkerInfo:
        """This worker as the store shows it."""
        with self._lock:
            running = tuple(sorted(self._running))
        return WorkerInfo(
            worker_id=self.worker_id, host=socket.gethostname(), pid=os.getpid(), slots=self.slots,
            started_at=self.started_at, last_heartbeat=self.clock(), running=running, state=state,
        )

    def _slot_loop(self, stop: threading.Event) -> None:
        while not stop.is_set():
            msg = self.queue.get(POLL_SECS)
            if msg is None:
                continue
            try:
                self.handle(msg)
            except Exception:
                log.exception("task handling failed", extra={"run_id": msg.run_id, "task_id": msg.task_id})

    def watch(self) -> int:
        """Renew the leases of the attempts held here; stop those that are no longer ours. Returns how many.

        The store is the source of truth: when a run is cancelled or times out, or the lease
        lapsed and the scheduler gave the attempt up as lost, the renewal is refused, and the
        task's process group is killed (its result would be refused too). When the store
        cannot be reached for longer than a lease, the worker fences itself: it kills every
        task, since the scheduler will have handed them to another worker by then.
        """
        with self._lock:
            held = dict(self._running)
        if not held:
            self._renewed_at = time.monotonic()
            return 0
        leases = [(*key.split("/", 1), h.attempt, h.token) for key, h in held.items()]
        try:
            lost = self.store.renew_leases(self.worker_id, leases, self.clock(), self.lease_secs)  # type: ignore[arg-type]
        except Exception as exc:
            if time.monotonic() - self._renewed_at < self.lease_secs:
                log.warning("could not renew leases (%s); retrying", exc)
                return 0
            log.error("no lease renewed for %.0fs: fencing myself, killing %d task(s)",
                      self.lease_secs, len(held))
            lost = leases  # type: ignore[assignment]
        else:
            self._renewed_at = time.monotonic()
        for run_id, task_id, attempt, _ in lost:
            h = held[f"{run_id}/{task_id}"]
            h.lost = True
            log.info("stopping task: its attempt is no longer this worker's",
                     extra={"run_id": run_id, "task_id": task_id, "attempt": attempt})
            if h.pgid is not None:
                terminate_group(h.pgid, self.kill_grace)
        return len(lost)

    def kill_running(self) -> int:
        """SIGKILL the process groups of every task this worker runs; returns how many."""
        with self._lock:
            held = list(self._running.values())
        for h in held:
            h.given_back = True
        groups = [h.pgid for h in held if h.pgid is not None]
        for pgid in groups:
            try:
                os.killpg(pgid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        return len(groups)

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
        next_beat = time.monotonic() + self.heartbeat_secs
        deadline: float | None = None  # set once stopped: the end of the grace period

        def busy() -> bool:
            return any(t.is_alive() for t in threads)

        # Watching and heartbeats go on through the grace period: a task cancelled while the
        # worker drains is still stopped, and the worker is not taken for dead meanwhile.
        while deadline is None or (busy() and time.monotonic() < deadline):
            if deadline is None:
                if stop.wait(WATCH_SECS):
                    deadline = time.monotonic() + grace
            else:
                # Stopped: `stop.wait` no longer waits, so wait on a slot still draining instead
                # of spinning; this returns as soon as it is done.
                alive = [t for t in threads if t.is_alive()]
                if alive:
                    alive[0].join(min(WATCH_SECS, max(0.0, deadline - time.monotonic())))
            self.watch()
            if time.monotonic() >= next_beat:
                next_beat = time.monotonic() + self.heartbeat_secs
                try:
                    self.store.upsert_worker(self.info())
                except Exception:
                    log.exception("heartbeat failed")
        if busy():
            log.warning("killing %d task(s) still running after %.0fs grace", self.kill_running(), grace)
            for t in threads:
                t.join(5.0)
        self.store.upsert_worker(self.info(state="stopped"))
