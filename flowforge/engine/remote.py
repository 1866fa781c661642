"""An API-mode worker's way to its work: the store and queue methods the worker loop calls, over HTTP.

`flowforge worker --api-url URL` runs the same `Worker` (same slots, executor, leases and
fencing) over an `ExecutionClient` in place of the store and the queue: each method the loop
calls is one call of the API's execution routes (`api/routes_worker.py`), which call the same
store methods a direct worker calls. The worker holds no database or Redis credentials, only the
worker token.

- `get` long-polls `POST /claim`: the API takes the message *and* claims the attempt, so what
  `get` returns is already claimed, and `claim_task` hands out that claim (one round trip a task).
  An idle slot waits in one request; `stop_claiming` ends the waits when the worker stops.
- `finish_task` also claims the slot's next task (`?claim=`), which the slot's next `get` returns
  without a request: a busy slot makes one round trip a task.
- `renew_leases` and `finish_task` send the lease tokens; a stale one is a 409, which the loop
  treats as a direct store's refusal: the task is killed, its result dropped. A lease whose task
  ended here, its result on its way, is neither renewed nor reported lost.
- `get_run` and `get_dag_spec` are read once per worker, whichever slots ask at the same time.
- `append_log` is batched: one thread ships the chunks of every slot in few requests, and a
  finish waits until its attempt's output is shipped.
- An unreachable API raises `Unavailable`, as an unreachable store does: results are retried,
  logs held, and a worker that cannot renew its leases for a whole lease fences itself.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import quote

import httpx

from flowforge.core.errors import NotFound, Unavailable
from flowforge.core.model import DagSpec, RunState, TaskState
from flowforge.core.records import Run, TaskInstance, WorkerInfo
from flowforge.engine.remote_http import (
    BACKOFF_MAX_SECS,
    BACKOFF_MIN_SECS,
    CALL_TIMEOUT_SECS,
    ExecutionApi,
    LogShipper,
    Refused,
    message_of,
)
from flowforge.engine.worker import Worker, new_worker_id
from flowforge.queues.base import Queue, TaskMessage
from flowforge.settings import Settings
from flowforge.store.base import Store

if TYPE_CHECKING:  # the metrics are passed in; the engine does not import prometheus_client
    from flowforge.metrics import WorkerMetrics

log = logging.getLogger("flowforge.worker")

# One claim waits this long for a ready task before asking again: an idle slot costs a request this
# often. Under the 60 s idle timeout of common proxies and load balancers, with room to spare.
LONG_POLL_SECS = 45.0
CACHE_SIZE = 256  # runs and DAG specs kept; past it, the cache starts afresh
ENDED_KEPT = 1024  # lease tokens of attempts whose task ended here, remembered (see `renew_leases`)


class ExecutionClient:
    """The store and queue methods `engine.worker.Worker` calls, answered by the API's execution routes.

    Pass it as both the worker's store and its queue. It serves one worker (`worker_id`).
    """

    def __init__(self, url: str, token: str, *, worker_id: str, slots: int, lease_secs: float = 15.0) -> None:
        self.api = ExecutionApi(url, token, connections=slots + 8)
        self.worker_id = worker_id
        self.lease_secs = lease_secs
        self.heartbeat_secs: float | None = None  # the deployment's, once registered
        self.logs = LogShipper(self.api)
        self._claims: dict[TaskMessage, TaskInstance] = {}
        self._lock = threading.Lock()
        # What a task's run is and what its DAG version runs never change: read once per worker,
        # however many slots start tasks of the same run at once (`_cached`).
        self._cache: dict[tuple[str, str, int], Any] = {}
        self._reading = threading.Lock()
        self._ended: deque[str] = deque(maxlen=ENDED_KEPT)
        self._next: dict[int, TaskMessage] = {}  # by slot thread: claimed with its last finish
        self._stopping = threading.Event()
        self._failures = 0

    # -- the worker as a whole -----------------------------------------------------------------
    def register(self, info: WorkerInfo) -> float:
        """Register the worker; the heartbeat period the deployment uses. `Refused`, `Unavailable`."""
        resp = self.api.call("POST", "/register", body=_beat(info))
        _expect(resp, "register")
        self.heartbeat_secs = float(resp.json()["heartbeat_secs"])
        return self.heartbeat_secs

    def stop_claiming(self) -> None:
        """Take no more tasks: later `get` calls return None, and the waiting ones end now."""
        self._stopping.set()
        try:
            self.api.call("POST", "/release", body={"worker_id": self.worker_id}, timeout=5.0)
        except Unavailable as exc:
            log.warning("could not end this worker's waiting claims: %s", exc)

    def release_on(self, stop: threading.Event) -> None:
        """Call `stop_claiming` once `stop` is set (from a thread of its own)."""

        def release() -> None:
            stop.wait()
            self.stop_claiming()

        threading.Thread(target=release, name="release", daemon=True).start()

    def close(self) -> None:
        """Ship the log output left, then close the connections."""
        self._stopping.set()
        with self._lock:
            left, self._next = list(self._next.values()), {}
        self.put(left)  # claimed with a last result as the worker stopped: left to their leases
        self.logs.close()
        self.api.close()

    # -- the queue's methods ---------------------------------------------------------------------
    def get(self, timeout: float) -> TaskMessage | None:
        """Claim the next ready task, long-polling up to LONG_POLL_SECS (not `timeout`); None when none came.

        Never raises: an unreachable API is logged and waited out, pacing the calls.
        """
        with self._lock:
            claimed = self._next.pop(threading.get_ident(), None)
        if claimed is not None:  # handed with this slot's last result: no round trip
            return claimed
        if self._stopping.is_set():
            self._stopping.wait(timeout)
            return None
        body = {"worker_id": self.worker_id, "lease_secs": self.lease_secs}
        try:
            resp = self.api.call(
                "POST",
                "/claim",
                body=body,
                timeout=LONG_POLL_SECS + CALL_TIMEOUT_SECS,
                params={"wait": LONG_POLL_SECS},
            )
            _expect(resp, "claim a task")
        except (Unavailable, RuntimeError) as exc:
            self._failures += 1
            delay = min(BACKOFF_MIN_SECS * 2 ** min(self._failures - 1, 8), BACKOFF_MAX_SECS)
            if self._failures == 1 or self._failures % 50 == 0:
                log.warning("could not claim a task (%s); retrying in %.1fs", exc, delay)
            self._stopping.wait(delay)
            return None
        if self._failures:
            log.warning("the API is reachable again after %d failed claim(s)", self._failures)
            self._failures = 0
        if resp.status_code == 204:
            return None
        ti = _claimed(resp.json(), self.worker_id)
        msg = TaskMessage(ti.run_id, ti.task_id, ti.attempt)
        with self._lock:
            self._claims[msg] = ti
        return msg

    def ack(self, message: TaskMessage) -> None:
        """The loop is done with the message (the API acked it on the queue when it claimed)."""
        with self._lock:
            self._claims.pop(message, None)

    def put(self, messages: list[TaskMessage]) -> None:
        """A message taken as the worker stopped: its claim is left to lapse, and its attempt is given up
        as lost (without using a retry) when its lease runs out."""
        for msg in messages:
            log.warning(
                "a task claimed as this worker stopped is left to its lease",
                extra={"run_id": msg.run_id, "task_id": msg.task_id, "attempt": msg.attempt},
            )

    def wake_scheduler(self) -> None:
        """Nothing to do: the API wakes the scheduler when it records a result."""

    # -- the store's methods ---------------------------------------------------------------------
    def claim_task(
        self, run_id: str, task_id: str, attempt: int, worker_id: str, now: float, lease_secs: float = 15.0
    ) -> TaskInstance | None:
        """The claim the API made when `get` took this message (None when there is none: do not run it)."""
        with self._lock:
            return self._claims.get(TaskMessage(run_id, task_id, attempt))

    def renew_leases(
        self, worker_id: str, leases: Sequence[tuple[str, str, int, str]], now: float, lease_secs: float
    ) -> list[tuple[str, str, int, str]]:
        """Renew the leases; those the API says are lost (409).

        The leases were listed before the call: an attempt whose task ended meanwhile, its result
        being recorded, is neither renewed nor said to be lost (there is no task left to stop).
        """
        with self._lock:
            ended = set(self._ended)
        leases = [lease for lease in leases if lease[3] not in ended]
        if not leases:
            return []
        body = {
            "worker_id": worker_id,
            "lease_secs": lease_secs,
            "leases": [{"run_id": r, "task_id": t, "attempt": a, "lease_token": k} for r, t, a, k in leases],
        }
        resp = self.api.call("POST", "/renew", body=body)
        if resp.status_code == 409:
            lost = resp.json()["error"]["details"]
            with self._lock:
                ended = set(self._ended)
            return [
                (d["run_id"], d["task_id"], int(d["attempt"]), d["lease_token"])
                for d in lost
                if d["lease_token"] not in ended
            ]
        _expect(resp, "renew leases")
        return []

    def finish_task(
        self,
        run_id: str,
        task_id: str,
        attempt: int,
        worker_id: str,
        *,
        state: TaskState,
        now: float,
        exit_code: int | None = None,
        error: str | None = None,
        retry_at: float | None = None,
        lease_token: str | None = None,
        attempt_state: TaskState | None = None,
        free: bool | None = None,
        outputs: Mapping[str, str] | None = None,
    ) -> bool:
        """Record the result with the lease token, once the attempt's output is shipped; False on a 409.

        Unless the worker is stopping, the same call claims this slot's next task (`?claim=`),
        which its next `get` returns.
        """
        if lease_token is None or free is not None:
            raise ValueError("an API-mode worker finishes an attempt with its lease token, and nothing more")
        if not self.logs.flush():
            raise Unavailable("the attempt's log output is not shipped yet")
        body: dict[str, Any] = {
            "run_id": run_id,
            "task_id": task_id,
            "attempt": attempt,
            "worker_id": worker_id,
            "lease_token": lease_token,
            "state": str(state),
            "now": now,
            "exit_code": exit_code,
            "error": error,
            "retry_at": retry_at,
            "attempt_state": None if attempt_state is None else str(attempt_state),
        }
        if outputs is not None:
            body["outputs"] = dict(outputs)
        with self._lock:  # no renewal of it while its result is on its way (see `renew_leases`)
            self._ended.append(lease_token)
        params = None if self._stopping.is_set() else {"claim": self.lease_secs}
        try:
            resp = self.api.call("POST", "/finish", body=body, params=params)
        except Unavailable:  # not recorded: keep renewing the lease while the result is retried
            with self._lock:
                self._ended.remove(lease_token)
            raise
        if resp.status_code == 409:
            return False
        following = _expect(resp, "record the result").json().get("next")
        with self._lock:
            if following:
                ti = _claimed(following, self.worker_id)
                msg = TaskMessage(ti.run_id, ti.task_id, ti.attempt)
                self._claims[msg] = ti
                self._next[threading.get_ident()] = msg
        return True

    def append_log(self, run_id: str, task_id: str, attempt: int, text: str) -> None:
        """Queue a chunk for the log shipper (`Unavailable` while too much output waits for the API)."""
        self.logs.add(run_id, task_id, attempt, text)

    def upsert_worker(self, worker: WorkerInfo) -> None:
        """Heartbeat (or register). The last one, `stopped`, is best effort: unsaid, the worker is
        declared dead after three missed heartbeats, which ends the same way."""
        try:
            _expect(self.api.call("POST", "/heartbeat", body=_beat(worker)), "heartbeat")
        except Unavailable as exc:
            if worker.state != "stopped":
                raise
            log.warning(
                "could not say that this worker stopped: %s", exc, extra={"worker_id": worker.worker_id}
            )

    def get_run(self, run_id: str) -> Run:
        """The run (its DAG version, params, logical date); the state read first, kept since."""

        def read() -> Run:
            d = _expect(self.api.call("GET", f"/runs/{_segment(run_id)}"), "read the run").json()
            return Run(**{**d, "state": RunState(d["state"])})

        return cast(Run, self._cached(("run", run_id, 0), read))

    def get_dag_spec(self, dag_id: str, version: int) -> DagSpec:
        """One version of a DAG's spec."""

        def read() -> DagSpec:
            resp = self.api.call("GET", f"/dags/{_segment(dag_id)}/versions/{int(version)}")
            return DagSpec.from_dict(_expect(resp, "read the DAG").json())

        return cast(DagSpec, self._cached(("spec", dag_id, int(version)), read))

    def _cached(self, key: tuple[str, str, int], read: Callable[[], Any]) -> Any:
        """The value under `key`, read (once, whichever slots ask at the same time) when not yet kept."""
        with self._reading:
            if key not in self._cache:
                if len(self._cache) >= CACHE_SIZE:
                    self._cache.clear()
                self._cache[key] = read()
            return self._cache[key]

    def task_outputs(self, run_id: str, task_ids: Sequence[str] | None = None) -> dict[str, dict[str, str]]:
        """What the run's tasks (of `task_ids`, by default all) pass downstream."""
        params = {} if task_ids is None else {"task_id": list(task_ids)}
        resp = self.api.call("GET", f"/runs/{_segment(run_id)}/outputs", params=params)
        return {k: dict(v) for k, v in _expect(resp, "read upstream outputs").json().items()}


def connect_worker(
    settings: Settings, api_url: str, metrics: WorkerMetrics | None = None
) -> tuple[Worker, ExecutionClient]:
    """Register with the API at `api_url` and build the worker over it, with the API's heartbeat period.

    Raises `Refused` (a wrong or missing worker token, or an answer that is no execution API's)
    and `Unavailable` (the API cannot be reached); nothing is left open then.
    """
    if not settings.worker_token:
        raise Refused("no worker token: set FLOWFORGE_WORKER_TOKEN (the API server's) or --token-file FILE")
    worker_id = new_worker_id()
    client = ExecutionClient(api_url, settings.worker_token, worker_id=worker_id, slots=settings.concurrency)
    now = time.time()
    try:
        heartbeat = client.register(
            WorkerInfo(worker_id, socket.gethostname(), os.getpid(), settings.concurrency, now, now)
        )
    except RuntimeError as exc:
        client.close()
        raise Refused(str(exc)) from None
    except BaseException:
        client.close()
        raise
    worker = Worker(
        cast(Store, client),  # the part of the Store protocol a worker calls
        cast(Queue, client),  # and of the Queue protocol
        slots=settings.concurrency,
        worker_id=worker_id,
        kill_grace=settings.kill_grace_secs,
        heartbeat_secs=heartbeat,
        max_log_bytes=settings.max_log_bytes,
        metrics=metrics,
    )
    client.lease_secs = worker.lease_secs
    return worker, client


def _segment(value: str) -> str:
    """`value` as one path segment."""
    return quote(value, safe="")


def _expect(resp: httpx.Response, what: str) -> httpx.Response:
    """`resp` when it is a success; NotFound for a 404, RuntimeError for another refusal."""
    if resp.status_code == 404:
        raise NotFound(message_of(resp))
    if not resp.is_success:
        raise RuntimeError(f"could not {what}: the API answered {resp.status_code}: {message_of(resp)}")
    return resp


def _beat(info: WorkerInfo) -> dict[str, Any]:
    return {**info.to_dict(), "state": "stopped" if info.state == "stopped" else "alive"}


def _claimed(d: Mapping[str, Any], worker_id: str) -> TaskInstance:
    """The task instance a claim answer describes: running here under its new lease."""
    return TaskInstance(
        run_id=str(d["run_id"]),
        task_id=str(d["task_id"]),
        state=TaskState.RUNNING,
        attempt=int(d["attempt"]),
        queued_at=d.get("queued_at"),
        started_at=d.get("started_at"),
        worker_id=worker_id,
        lease_token=str(d["lease_token"]),
        lease_expires_at=d.get("lease_expires_at"),
        lost_attempts=int(d.get("lost_attempts", 0)),
    )
