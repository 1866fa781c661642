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
# How often the worker checks that the attempts it runs are still theirs to run (a cancel, a
# run timeout, or a reaper gave them up): such a task is killed within about this long.
WATCH_SECS = 0.5
RUN_CACHE_SIZE = 1024


def new_worker_id() -> str:
    """`host-pid-random`: unique per process, readable in `flowforge workers`."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class LogBuffer:
    """Writes a task's output to the store in chunks, with the task's secret values masked."""

    def __init__(self, store: Store, run_id: str, task_id: str, attempt: int, secrets: list[str]) -> None:
        self.store = store
        self.key = (run_id, task_id, attempt)
        self.masker = LogMasker(secrets)

    def write(self, text: str) -> None:
        """Append one chunk (the executor already batches output)."""
        self._append(self.masker.feed(text))

    def close(self) -> None:
        """Write what the masker held back."""
        self._append(self.masker.flush())

    def _append(self, text: str) -> None:
        if not text:
            return
        try:
            self.store.append_log(*self.key, text)
        except Exception:  # a log write must never kill the task's bookkeeping
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
        clock: Callable[[], float] = time.time,
        base_env: dict[str, str] | None = None,
    ) -> None:
        self.store = store
        self.queue = queue
        self.slots = slots
        self.worker_id = worker_id or new_worker_id()
        self.kill_grace = kill_grace
        self.heartbeat_secs = heartbeat_secs
        self.clock = clock
        self.base_env = dict(os.environ) if base_env is None else base_env
        self.started_at = clock()
        self._specs: dict[tuple[str, int], DagSpec] = {}
        # A run's DAG version, params and logical date never change: read once per run, not per task.
        self._runs: dict[str, Run] = {}
        # "run_id/task_id" -> (attempt, process group id) of every task running here
        self._running: dict[str, tuple[int, int]] = {}
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

    def _handle(self, msg: TaskMessage) -> bool:
        ti = self.store.claim_task(msg.run_id, msg.task_id, msg.attempt, self.worker_id, self.clock())
        if ti is None:
            log.debug("claim refused", extra={"run_id": msg.run_id, "task_id": msg.task_id, "attempt": msg.attempt})
            return False
        run = self._run(msg.run_id)
        spec = self._spec(run.dag_id, run.dag_version)
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
        key = f"{msg.run_id}/{msg.task_id}"
        sink = LogBuffer(self.store, msg.run_id, msg.task_id, msg.attempt, secret_values(spec.env, task.env, run.params))

        def remember(pgid: int) -> None:
            with self._lock:
                self._running[key] = (msg.attempt, pgid)

        try:
            result = run_command(
                task.command, env=env, timeout=task.timeout_secs, sink=sink.write,
                kill_grace=self.kill_grace, on_start=remember,
            )
        finally:
            sink.close()
            with self._lock:
                self._running.pop(key, None)
        now = self.clock()
        state, retry_at = attempt_outcome(
            msg.attempt, task.retries, result.succeeded, now, task.retry_delay_secs, task.max_retry_delay_secs
        )
        recorded = self.store.finish_task(
            msg.run_id, msg.task_id, msg.attempt, self.worker_id,
            state=state, now=now, exit_code=result.exit_code, error=result.error, retry_at=retry_at,
        )
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
        """Stop the tasks whose attempt is no longer this worker's to run; returns how many.

        The store is the source of truth: when a run is cancelled or times out, or the attempt
        was handed to another worker, the instance is no longer `running` at this attempt.
        """
        with self._lock:
            running = list(self._running.items())
        stopped = 0
        for key, (attempt, pgid) in running:
            run_id, task_id = key.split("/", 1)
            try:
                ti = self.store.get_task_instance(run_id, task_id)
            except Exception:
                log.exception("could not check a running task", extra={"run_id": run_id, "task_id": task_id})
                continue
            if ti.state != TaskState.RUNNING or ti.attempt != attempt or ti.worker_id != self.worker_id:
                log.info("stopping task: its attempt is now %s", ti.state,
                         extra={"run_id": run_id, "task_id": task_id, "attempt": attempt})
                terminate_group(pgid, self.kill_grace)
                stopped += 1
        return stopped

    def kill_running(self) -> int:
        """SIGKILL the process groups of every task this worker runs; returns how many."""
        with self._lock:
            groups = [pgid for _, pgid in self._running.values()]
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
