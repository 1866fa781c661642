"""The execution API: workers that hold no database or queue credentials claim, renew, log and finish here.

`flowforge worker --api-url URL` calls these routes (through `engine.remote`) where a direct
worker calls the store and the queue; each route calls the very store method the direct worker
calls (`claim_task`, `renew_leases`, `append_log`, `finish_task`, `upsert_worker`; a finish
that claims the next task calls `finish_and_claim`, the two in one transaction), so the fencing
is the store's, the same for both. Only the worker token reaches them (`middleware`).

A claim long-polls: the request waits up to `?wait=` seconds for a ready task and is answered
as soon as one is claimed. Waiting requests hold no thread: one thread per API process takes
messages from the queue while some claim waits (`ClaimBroker`) and hands each to the oldest
waiting claim.

Times: a worker's clock may differ from the server's. The store records the server's time;
a worker's `retry_at` is read as a delay from the `now` it sent with it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from flowforge.api.errors import HttpError, error_body
from flowforge.api.models import SAFE_INT_MAX, errors
from flowforge.api.models.worker import (
    MAX_LEASE_SECS,
    ClaimedTask,
    ClaimRequest,
    Finished,
    FinishRequest,
    LogBatch,
    LogsAppended,
    Registered,
    Released,
    ReleaseRequest,
    Renewed,
    RenewRequest,
    WorkerBeat,
)
from flowforge.core.errors import NotFound, Unavailable
from flowforge.core.model import TaskState
from flowforge.core.records import TaskInstance, WorkerInfo
from flowforge.queues.base import Queue, TaskMessage
from flowforge.store.tasks import Finish

if TYPE_CHECKING:
    from flowforge.services import Services

log = logging.getLogger(__name__)

WORKER_PREFIX = "/api/v1/worker"
MAX_WAIT_SECS = 60.0  # the longest a claim may wait for a task
BROKER_POLL_SECS = 1.0  # one `Queue.get` of the broker; it notices that nobody waits within this
CLAIM_NOW_TRIES = 5  # stale messages a finish's claim drops before it answers with no next task
STOP_CHECK_SECS = 1.0  # a waiting claim notices the server stopping within this (its client going, at once)
_TASK_IDS = Query(None, max_length=10_000, description="only these tasks (repeat for more)")
_CLAIM_HELP = "also claim the next ready task, if there is one now, with a lease of this many seconds"
_CLAIM_NEXT = Query(None, gt=0, le=MAX_LEASE_SECS, description=_CLAIM_HELP)


class ClaimBroker:
    """Hands queue messages to waiting claims, oldest first, from one thread that takes from the queue.

    The queue's `get` blocks, so it is called from this thread only, and only while some claim
    waits. A claim waits on a `Future`: cancelling it (the wait ended, the worker stops) is atomic
    against its delivery, so a message is given to exactly one claim, or put back on the queue.
    """

    def __init__(self, queue: Queue, stopping: threading.Event) -> None:
        self.queue = queue
        self.stopping = stopping
        self._waiters: deque[tuple[str, Future[TaskMessage]]] = deque()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def wait(self, worker_id: str) -> Future[TaskMessage]:
        """A future that the next message not taken by an older claim is set on."""
        future: Future[TaskMessage] = Future()
        with self._cond:
            self._waiters.append((worker_id, future))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="claim-broker", daemon=True)
                self._thread.start()
            self._cond.notify()
        return future

    def waiting(self) -> int:
        """How many claims wait for a message now."""
        with self._cond:
            return sum(not f.done() for _, f in self._waiters)

    def release(self, worker_id: str) -> int:
        """End the waiting claims of `worker_id` with no task (it is stopping); returns how many."""
        with self._cond:
            ended = [f for w, f in self._waiters if w == worker_id and f.cancel()]
            self._prune()
        return len(ended)

    def _prune(self) -> None:
        """Forget the waiters that were cancelled (called with the lock held)."""
        if any(f.cancelled() for _, f in self._waiters):
            self._waiters = deque((w, f) for w, f in self._waiters if not f.cancelled())

    def _run(self) -> None:
        while not self.stopping.is_set():
            with self._cond:
                self._prune()
                if not self._waiters:
                    self._cond.wait(BROKER_POLL_SECS)
                    continue
            try:
                msg = self.queue.get(BROKER_POLL_SECS)
            except Exception:
                log.exception("could not take a task message for the waiting workers")
                self.stopping.wait(BROKER_POLL_SECS)
                continue
            if msg is not None and not self._hand(msg):
                give_back(self.queue, msg)

    def _hand(self, msg: TaskMessage) -> bool:
        with self._cond:
            while self._waiters:
                _, future = self._waiters.popleft()
                if future.set_running_or_notify_cancel():
                    future.set_result(msg)
                    return True
        return False


async def _client_gone(request: Request) -> None:
    """Return once the client has gone away (its connection closed): a waiting claim then ends at once,
    and a message handed to it goes back on the queue instead of to a worker that is no more."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def give_back(queue: Queue, msg: TaskMessage) -> None:
    """Put a message nobody claimed back on the queue; if that fails the scheduler pushes the task again."""
    try:
        queue.put([msg])
        queue.ack(msg)
    except Exception as exc:
        log.warning("could not give back a task message: %s", exc, extra={"run_id": msg.run_id})


def claimed_task(ti: TaskInstance) -> ClaimedTask:
    """The answer of a claim: the instance with its lease (the one answer that carries a lease token)."""
    assert ti.lease_token is not None
    fields = asdict(ti)
    return ClaimedTask(**{k: fields[k] for k in ClaimedTask.model_fields})


class WorkerRoutes:
    """The handlers of /api/v1/worker, bound to one set of services (their docstrings document them)."""

    def __init__(self, services: Services, broker: ClaimBroker) -> None:
        self.services = services
        self.store, self.queue = services.store, services.queue
        self.broker = broker

    def register(self, body: WorkerBeat) -> Registered:
        """Register a worker (or record its heartbeat); answers the heartbeat the deployment uses."""
        now = time.time()
        skew = now - body.last_heartbeat  # the worker's clock against ours
        self.store.upsert_worker(
            WorkerInfo(
                worker_id=body.worker_id,
                host=body.host,
                pid=body.pid,
                slots=body.slots,
                started_at=body.started_at + skew,
                last_heartbeat=now,
                running=tuple(body.running),
                state=body.state,
            )
        )
        return Registered(worker_id=body.worker_id, heartbeat_secs=self.services.settings.heartbeat_secs)

    async def claim(
        self,
        request: Request,
        body: ClaimRequest,
        wait: float = Query(0.0, ge=0, le=MAX_WAIT_SECS, description="seconds to wait for a ready task"),
    ) -> Response | ClaimedTask:
        """Claim the next ready task (the store's conditional claim, a fresh lease); 204 when none came in time.

        A message whose attempt is no longer queued (a duplicate, a cancelled run) is refused by
        the claim and dropped, and the wait goes on.
        """
        deadline = time.monotonic() + wait
        gone = asyncio.ensure_future(_client_gone(request))
        try:
            while True:
                msg = await self._next_message(body.worker_id, deadline, gone)
                if msg is None:
                    return Response(status_code=204)
                if gone.done():  # the worker went away (killed, cut off) as it was handed a message
                    give_back(self.queue, msg)
                    return Response(status_code=204)
                ti = await run_in_threadpool(self._claim, msg, body)
                if ti is not None:
                    return claimed_task(ti)
        finally:
            gone.cancel()

    async def _next_message(
        self, worker_id: str, deadline: float, gone: asyncio.Future[None]
    ) -> TaskMessage | None:
        """The next message for this claim, or None when the wait ends (its time, a stop, the client gone)."""
        if deadline <= time.monotonic():
            return await run_in_threadpool(self.queue.get, 0)
        future = self.broker.wait(worker_id)
        waiting = asyncio.wrap_future(future)
        while not waiting.done():
            left = deadline - time.monotonic()
            if left <= 0 or self.services.stopping.is_set() or gone.done():
                break
            either: set[asyncio.Future[Any]] = {waiting, gone}
            await asyncio.wait(
                either, timeout=min(left, STOP_CHECK_SECS), return_when=asyncio.FIRST_COMPLETED
            )
        if future.cancel():  # not handed a message (or released): nothing to give back
            return None
        return await waiting  # handed one meanwhile, or being handed one now

    def _claim(self, msg: TaskMessage, body: ClaimRequest) -> TaskInstance | None:
        try:
            ti = self.store.claim_task(
                msg.run_id, msg.task_id, msg.attempt, body.worker_id, time.time(), body.lease_secs
            )
        except Exception:
            give_back(self.queue, msg)
            raise
        self.queue.ack(msg)
        return ti if ti is not None and ti.lease_token is not None else None

    def release(self, body: ReleaseRequest) -> Released:
        """End the worker's waiting claims at once, with no task: it is stopping and takes no more work."""
        return Released(released=self.broker.release(body.worker_id))

    def renew(self, body: RenewRequest) -> Renewed | JSONResponse:
        """Renew every lease the worker holds; 409 listing those it lost (kill them, drop their results)."""
        leases = [(x.run_id, x.task_id, x.attempt, x.lease_token) for x in body.leases]
        lost = self.store.renew_leases(body.worker_id, leases, time.time(), body.lease_secs) if leases else []
        if lost:
            details = [
                {"run_id": r, "task_id": t, "attempt": a, "lease_token": token} for r, t, a, token in lost
            ]
            message = f"{len(lost)} lease(s) lost: those attempts are no longer this worker's; kill them"
            return JSONResponse(error_body("lease_lost", message, details), status_code=409)
        return Renewed(renewed=len(leases))

    def append_logs(self, body: LogBatch) -> LogsAppended | JSONResponse:
        """Append output chunks to their attempts' logs, in order.

        A chunk of an unknown attempt is refused and the others appended. When the store fails
        part-way (503), `details` says how many chunks were appended: send the rest again.
        """
        refused: list[dict[str, Any]] = []
        for done, c in enumerate(body.chunks):
            try:
                self.store.append_log(c.run_id, c.task_id, c.attempt, c.text)
            except NotFound as exc:
                refused.append(
                    {"run_id": c.run_id, "task_id": c.task_id, "attempt": c.attempt, "message": str(exc)}
                )
            except Unavailable as exc:
                log.warning("POST %s/logs: %s", WORKER_PREFIX, exc)
                message = "the database is unavailable; send the chunks after the first `appended` again"
                return JSONResponse(
                    error_body("unavailable", message, [{"appended": done}]),
                    status_code=503,
                    headers={"Retry-After": "1"},
                )
        return LogsAppended(appended=len(body.chunks) - len(refused), refused=refused)

    def finish(
        self,
        body: FinishRequest,
        claim: float | None = _CLAIM_NEXT,
    ) -> Finished | JSONResponse:
        """Record an attempt's result with its lease token (the store's finish); 409 when the lease is stale.

        A stale lease (the attempt was cancelled, timed out or given up as lost) records nothing.
        With `?claim=`, the answer also carries the worker's next task (`next`), claimed as
        `POST /claim` would without waiting: a busy worker takes its next task in the same round trip,
        and the store records the result and claims the next task in one transaction.
        """
        now = time.time()
        retry_at = None if body.retry_at is None else now + (body.retry_at - body.now)
        attempt_state = None if body.attempt_state is None else TaskState(body.attempt_state)
        result = Finish(TaskState(body.state), body.exit_code, body.error, retry_at, body.lease_token,
                        attempt_state, outputs=body.outputs)  # fmt: skip
        recorded, ti = self._finish_claiming(body, result, now, claim)
        if not recorded:
            stale = f"attempt {body.attempt} of {body.run_id}/{body.task_id} no longer holds this lease"
            raise HttpError(409, "lease_lost", stale + ": the result is not recorded")
        self.queue.wake_scheduler()
        if claim is None:
            return JSONResponse({"recorded": True})  # as before `?claim=`: no `next` at all
        return Finished(recorded=True, next=None if ti is None else claimed_task(ti))

    def _finish_claiming(
        self, body: FinishRequest, result: Finish, now: float, lease_secs: float | None
    ) -> tuple[bool, TaskInstance | None]:
        """Record the result; with `lease_secs`, claim the queue's next task (if any now) in the same transaction."""
        finished, worker_id = (body.run_id, body.task_id, body.attempt), body.worker_id
        msg = None
        try:
            msg = None if lease_secs is None else self.queue.get(0)
        except Exception as exc:  # the result is recorded all the same; the worker claims its next task anew
            log.warning("POST %s/finish: could not take the next task: %s", WORKER_PREFIX, exc)
        if msg is None or lease_secs is None:
            return self.store.finish_task(*finished, worker_id, now=now, **result._asdict()), None
        key = (msg.run_id, msg.task_id, msg.attempt)
        try:
            recorded, ti = self.store.finish_and_claim(
                finished, result, worker_id, now, claim=key, lease_secs=lease_secs
            )
        except Exception:
            give_back(self.queue, msg)
            raise
        if not recorded:  # nothing changed: the message goes to another worker
            give_back(self.queue, msg)
            return False, None
        try:  # the result is recorded: whatever fails now, the worker claims its next task anew
            self.queue.ack(msg)  # claimed, or stale (a duplicate, a cancelled run) and dropped
            if ti is None:
                ti = self._claim_now(ClaimRequest(worker_id=worker_id, lease_secs=lease_secs))
        except Exception as exc:
            log.warning("POST %s/finish: could not claim the next task: %s", WORKER_PREFIX, exc)
        return True, ti

    def _claim_now(self, body: ClaimRequest) -> TaskInstance | None:
        """Claim the next ready task without waiting; None when the queue holds none now."""
        for _ in range(CLAIM_NOW_TRIES):  # a stale message (a duplicate, a cancelled run) is dropped
            msg = self.queue.get(0)
            if msg is None:
                return None
            ti = self._claim(msg, body)
            if ti is not None:
                return ti
        return None

    # These three answer plain JSON as the store's records give it (no model to check it against):
    # a spec of a thousand tasks is sent as it is, not walked by the framework's encoder first.
    def get_run(self, run_id: str) -> JSONResponse:
        """A run as the worker needs it: its DAG version, params and logical date."""
        return JSONResponse(self.store.get_run(run_id).to_dict())

    def get_outputs(self, run_id: str, task_id: list[str] | None = _TASK_IDS) -> JSONResponse:
        """What the run's tasks pass downstream, by task id (those of `task_id`, by default all)."""
        return JSONResponse(self.store.task_outputs(run_id, task_id))

    def get_spec(self, dag_id: str, version: int = Path(ge=1, le=SAFE_INT_MAX)) -> JSONResponse:
        """One stored version of a DAG's spec (what its tasks run)."""
        return JSONResponse(self.store.get_dag_spec(dag_id, version).to_dict())


def json_answers(*codes: int) -> dict[int | str, dict[str, Any]]:
    """A plain JSON object (200) and the errors `codes`, for the OpenAPI document."""
    return {200: {"content": {"application/json": {"schema": {"type": "object"}}}}, **errors(*codes)}


def build_worker_router(services: Services, broker: ClaimBroker) -> APIRouter:
    """Routes under /api/v1/worker, bound to these services; their claims wait in `broker`."""
    r = WorkerRoutes(services, broker)
    router = APIRouter(prefix=WORKER_PREFIX, tags=["worker"])
    claim_answers = {**errors(403, 413, 422, 503), 204: {"description": "no task became ready in time"}}
    table: tuple[tuple[str, str, Any, Any, dict[int | str, dict[str, Any]]], ...] = (
        ("/register", "POST", r.register, Registered, errors(403, 413, 422, 503)),
        ("/heartbeat", "POST", r.register, Registered, errors(403, 413, 422, 503)),
        ("/claim", "POST", r.claim, ClaimedTask, claim_answers),
        ("/release", "POST", r.release, Released, errors(403, 413, 422)),
        ("/renew", "POST", r.renew, Renewed, errors(403, 409, 413, 422, 503)),
        ("/logs", "POST", r.append_logs, LogsAppended, errors(403, 413, 422, 503)),
        ("/finish", "POST", r.finish, Finished, errors(403, 409, 413, 422, 503)),
        ("/runs/{run_id}", "GET", r.get_run, None, json_answers(403, 404, 503)),
        ("/runs/{run_id}/outputs", "GET", r.get_outputs, None, json_answers(403, 404, 422, 503)),
        ("/dags/{dag_id}/versions/{version}", "GET", r.get_spec, None, json_answers(403, 404, 422, 503)),
    )
    for path, method, endpoint, model, answers in table:
        router.add_api_route(
            path, endpoint, methods=[method], status_code=200, response_model=model, responses=answers
        )
    return router
