"""Leases: the attempts a worker holds (renewed, watched, fenced) and the scheduler's leader lease.

A worker's claim on an attempt is a lease in the store, with a token that is new on every
claim. The worker renews the leases it holds several times per lease. When the store refuses a
renewal (the run was cancelled or timed out, or the scheduler gave the attempt up as lost), the
task is killed: its result would be refused too. When the store cannot be reached for a whole
lease, the worker fences itself: it kills those tasks, since their leases lapse in the store and
another worker may be given the attempts.

The scheduler's side: a worker whose heartbeats stopped is declared dead, and an attempt whose
lease lapsed or whose worker is dead is given up as lost (`Reaper`). A lost attempt is the
platform's fault, not the task's: it is retried at once without using one of the task's retries,
up to `max_lost_attempts` per task instance (a task that keeps killing its worker must not be
retried for ever); beyond that, a lost attempt counts against the task's retries like a failed
one. Only the scheduler that holds the leader lease acts; another one stands by and takes over
once that lease lapses (its holder died) or is released (its holder stopped).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from flowforge.core.model import DagSpec, TaskState
from flowforge.core.records import Run, TaskInstance
from flowforge.core.states import attempt_outcome
from flowforge.engine.executor import terminate_group
from flowforge.queues.base import Queue
from flowforge.store.base import LEADER_LEASE, Store

# The lines about a worker's leases are the worker's; the rest are the scheduler's.
worker_log = logging.getLogger("flowforge.worker")
scheduler_log = logging.getLogger("flowforge.scheduler")

# How often the worker looks for attempts whose lease may have lapsed (see `HeldLeases.fence`);
# while it holds none, at most every FENCE_IDLE_SECS (a third of a lease if that is shorter).
FENCE_CHECK_SECS = 0.1
FENCE_IDLE_SECS = 1.0
LEADER_TTL_SECS = 5.0  # a standby scheduler takes over within about this long after the leader died
# Lost attempts per task instance retried without using a retry (FLOWFORGE_MAX_LOST_ATTEMPTS).
MAX_LOST_ATTEMPTS = 3


def process_name() -> str:
    """`host-pid-random`: unique per process, readable in `flowforge workers` and in the leader lease."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


@dataclass
class Held:
    """An attempt a worker claimed: its lease token and, once started, its process group."""

    attempt: int
    token: str
    renewed: float  # monotonic time of the last claim or renewal the store accepted (taken before the call)
    pgid: int | None = None
    lost: bool = False  # the lease was refused: kill the task, drop its result
    given_back: bool = False  # killed at shutdown: another attempt runs it, whatever its budget

    def started(self, pgid: int, kill_grace: float) -> None:
        """Note the task's process group; stop it at once if the attempt was given up while it started."""
        self.pgid = pgid
        if self.lost:
            terminate_group(pgid, kill_grace)

    def stop(self, kill_grace: float) -> None:
        """The attempt is no longer this worker's: mark it lost and terminate its process group."""
        self.lost = True
        if self.pgid is not None:
            terminate_group(self.pgid, kill_grace)


class HeldLeases:
    """The attempts one worker holds, by `run_id/task_id`: renewed, watched and fenced."""

    def __init__(
        self,
        store: Store,
        worker_id: str,
        *,
        lease_secs: float,
        kill_grace: float,
        clock: Callable[[], float],
    ) -> None:
        self.store = store
        self.worker_id = worker_id
        self.lease_secs = lease_secs
        self.kill_grace = kill_grace
        self.clock = clock
        self._held: dict[str, Held] = {}
        self._lock = threading.Lock()

    def add(self, key: str, held: Held) -> int:
        """Hold `key` from now on (its lease is renewed); returns how many attempts are held."""
        with self._lock:
            self._held[key] = held
            return len(self._held)

    def remove(self, key: str) -> int:
        """Stop holding `key`; returns how many attempts are still held."""
        with self._lock:
            self._held.pop(key, None)
            return len(self._held)

    def keys(self) -> tuple[str, ...]:
        """The held attempts' `run_id/task_id`, sorted."""
        with self._lock:
            return tuple(sorted(self._held))

    def renew(self) -> int:
        """Renew the held leases; stop the tasks whose lease the store refused. Returns how many.

        The store is the source of truth: when a run is cancelled or times out, or the lease
        lapsed and the scheduler gave the attempt up as lost, the renewal is refused, and the
        task's process group is killed (its result would be refused too). When the store
        cannot be reached for a whole lease, `fence` kills the tasks.
        """
        with self._lock:
            held = dict(self._held)
        if not held:
            return 0
        leases: list[tuple[str, str, int, str]] = []
        for key, h in held.items():
            run_id, task_id = key.split("/", 1)
            leases.append((run_id, task_id, h.attempt, h.token))
        sent = time.monotonic()
        try:
            lost = self.store.renew_leases(self.worker_id, leases, self.clock(), self.lease_secs)
        except Exception as exc:
            worker_log.warning(
                "could not renew leases (%s); retrying", exc, extra={"worker_id": self.worker_id}
            )
            return self.fence()
        refused = {f"{run_id}/{task_id}" for run_id, task_id, _, _ in lost}
        for key, h in held.items():
            if key not in refused:
                h.renewed = max(h.renewed, sent)
        for run_id, task_id, attempt, _ in lost:
            worker_log.info(
                "stopping task: its attempt is no longer this worker's",
                extra={"run_id": run_id, "task_id": task_id, "attempt": attempt, "worker_id": self.worker_id},
            )
            held[f"{run_id}/{task_id}"].stop(self.kill_grace)
        return len(lost)

    def fence(self) -> int:
        """Kill every task whose lease was not renewed for a whole lease; returns how many.

        By then the store lets the lease lapse and the scheduler may hand the attempt to another
        worker, so the task must not run on here. This touches no store: a renewal stuck on an
        unreachable database (or a process that was paused) cannot hold it up.
        """
        now = time.monotonic()
        with self._lock:
            stale = [h for h in self._held.values() if not h.lost and now - h.renewed >= self.lease_secs]
        if stale:
            worker_log.error(
                "no lease renewed for %.1fs: fencing myself, killing %d task(s)",
                self.lease_secs,
                len(stale),
                extra={"worker_id": self.worker_id},
            )
        for h in stale:
            h.stop(self.kill_grace)
        return len(stale)

    def fence_loop(self, stop: threading.Event, slots: Sequence[threading.Thread]) -> None:
        """Fence every FENCE_CHECK_SECS until stopped and every slot is done (run in its own thread)."""
        idle = min(FENCE_IDLE_SECS, self.lease_secs / 3)
        while not stop.is_set() or any(t.is_alive() for t in slots):
            time.sleep(FENCE_CHECK_SECS if self._held else idle)
            self.fence()

    def kill_all(self) -> int:
        """SIGKILL the process group of every held task, giving the attempts back; returns how many."""
        with self._lock:
            held = list(self._held.values())
        for h in held:
            h.given_back = True
        groups = [h.pgid for h in held if h.pgid is not None]
        for pgid in groups:
            try:
                os.killpg(pgid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        return len(groups)


class LeaderLease:
    """The scheduler lease, held by one scheduler process at a time for `ttl` seconds per renewal."""

    def __init__(self, store: Store, ttl: float = LEADER_TTL_SECS) -> None:
        self.store = store
        self.ttl = ttl
        self.holder = process_name()
        self.held = False

    def hold(self, now: float) -> bool:
        """Take or keep the lease; True while this process holds it."""
        was = self.held
        self.held = self.store.hold_lease(LEADER_LEASE, self.holder, now, self.ttl)
        if self.held != was:
            scheduler_log.info(
                "this scheduler is %s",
                "now the leader" if self.held else "standing by",
                extra={"holder": self.holder},
            )
        return self.held

    def release(self) -> None:
        """Give the lease up, if held, so that a standby need not wait for it to lapse."""
        if not self.held:
            return
        try:
            self.store.release_lease(LEADER_LEASE, self.holder)
        except Exception:
            scheduler_log.warning("could not release the scheduler lease", exc_info=True)
        self.held = False


class Reaper:
    """Declares workers dead when their heartbeats stop; gives up as lost the attempts they held."""

    def __init__(
        self, store: Store, queue: Queue, worker_dead_after: float, max_lost_attempts: int = MAX_LOST_ATTEMPTS
    ) -> None:
        self.store = store
        self.queue = queue
        self.worker_dead_after = worker_dead_after
        self.max_lost_attempts = max_lost_attempts
        # No worker is declared dead, nor lease taken as lapsed, before this time.
        self.not_before = 0.0

    def postpone(self, now: float) -> None:
        """Declare no worker dead for a full `worker_dead_after` from `now`.

        Called when the store was unreachable: the workers could not heartbeat either.
        """
        self.not_before = now + self.worker_dead_after

    def reap_workers(self, now: float) -> tuple[set[str], int]:
        """Mark workers whose heartbeat is older than `worker_dead_after` dead.

        Returns the ids of every dead worker, and how many were declared dead now.
        """
        dead: set[str] = set()
        newly = 0
        for w in self.store.list_workers():
            if (
                w.state == "alive"
                and now - w.last_heartbeat > self.worker_dead_after
                and now >= self.not_before
            ):
                try:
                    # Messages it took but never acked go back at once; if this fails, the
                    # re-push of tasks left queued (requeue_after) still delivers them.
                    self.queue.release_consumer(w.worker_id)
                except Exception:
                    scheduler_log.warning(
                        "could not give back the queue messages of dead worker %s",
                        w.worker_id,
                        exc_info=True,
                        extra={"worker_id": w.worker_id},
                    )
                self.store.upsert_worker(replace(w, state="dead"))
                dead.add(w.worker_id)
                newly += 1
                scheduler_log.warning(
                    "worker %s missed its heartbeats: marked dead",
                    w.worker_id,
                    extra={"worker_id": w.worker_id},
                )
            elif w.state == "dead":
                dead.add(w.worker_id)
        return dead, newly

    def reap_attempts(
        self, run: Run, spec: DagSpec, tis: list[TaskInstance], dead: set[str], now: float
    ) -> list[TaskInstance]:
        """Give up as `lost` every running attempt whose lease expired or whose worker is dead.

        The task is retried at once without using a retry, up to `max_lost_attempts` lost
        attempts; beyond that the attempt counts against the task's retries. Conditional
        on the lease token, so a late renewal or a second scheduler doing the same cannot record
        it twice; the old worker's late result is refused. Returns `tis` as they are now.
        """
        out = []
        for ti in tis:
            expired = ti.lease_expires_at is not None and ti.lease_expires_at < now and now >= self.not_before
            if ti.state == TaskState.RUNNING and (expired or ti.worker_id in dead):
                ti = self._give_up(run, spec, ti, ti.worker_id in dead, now)
            out.append(ti)
        return out

    def _give_up(self, run: Run, spec: DagSpec, ti: TaskInstance, dead: bool, now: float) -> TaskInstance:
        state, retry_at, free, error = self._verdict(spec, ti, dead, now)
        if not self.store.finish_task(
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
            free=free,
        ):
            return ti
        scheduler_log.warning(
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
        return replace(ti, state=state, retry_at=retry_at, lost_attempts=ti.lost_attempts + free)

    def _verdict(
        self, spec: DagSpec, ti: TaskInstance, dead: bool, now: float
    ) -> tuple[TaskState, float | None, bool, str]:
        """What becomes of a lost attempt: the task's state, its retry time, whether it is free, the error."""
        what = "died" if dead else "lost contact while running the task (its lease expired)"
        if ti.lost_attempts < self.max_lost_attempts:
            error = (
                f"lost: worker {ti.worker_id} {what}; retried without using a retry"
                f" ({ti.lost_attempts + 1} of {self.max_lost_attempts} lost attempts)"
            )
            return TaskState.UP_FOR_RETRY, now, True, error
        task = spec.task(ti.task_id)
        # The retries used so far: the attempts made, but for those lost without using one.
        state, retry_at = attempt_outcome(
            ti.attempt - ti.lost_attempts,
            task.retries,
            False,
            now,
            task.retry_delay_secs,
            task.max_retry_delay_secs,
        )
        error = (
            f"lost: worker {ti.worker_id} {what}; counted against the task's retries: the limit of"
            f" {self.max_lost_attempts} lost attempts retried without using a retry is reached"
        )
        return state, retry_at, False, error
