"""Run routes: list, trigger, detail, task instances with their attempts, and task logs."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from flowforge.api.errors import HttpError
from flowforge.api.models import (
    LIST_LIMIT_MAX,
    SAFE_INT_MAX,
    LogPage,
    RetryRequest,
    RunDetail,
    RunList,
    RunRetried,
    TaskDetail,
    TaskList,
    TriggeredRun,
    TriggerRequest,
    errors,
)
from flowforge.api.routes_events import LOG_PAGE_BYTES, SSE_HEADERS, StreamContext, log_stream
from flowforge.api.views import run_view, task_spec_view
from flowforge.core.errors import Conflict, NotFound
from flowforge.core.model import TASK_ACTIVE, TASK_TERMINAL, RunState, TaskState
from flowforge.core.params import resolve_params
from flowforge.core.plan import tasks_to_clear
from flowforge.core.records import Run, TaskInstance

if TYPE_CHECKING:  # services imports the engine; the API needs only the type
    from flowforge.services import Services


def _parse_states(state: str | None) -> list[RunState] | None:
    """`?state=failed,cancelled` → [RunState.FAILED, RunState.CANCELLED]; 422 on an unknown name."""
    if not state:
        return None
    names = [s.strip() for s in state.split(",") if s.strip()]
    try:
        return [RunState(s) for s in names]
    except ValueError as exc:
        valid = ", ".join(s.value for s in RunState)
        raise HttpError(422, "invalid_request", f"unknown run state in {state!r} (valid: {valid})") from exc


def build_run_router(services: Services) -> APIRouter:
    """Routes under /api/v1/runs, bound to these services."""
    router = APIRouter(prefix="/api/v1/runs", tags=["runs"])
    store, queue = services.store, services.queue

    @router.get("", response_model=RunList, responses=errors(422, 503))
    def list_runs(
        dag_id: str | None = Query(None, description="only runs of this DAG"),
        state: str | None = Query(None, description="only runs in this state (comma-separated for several)"),
        limit: int = Query(50, ge=1, le=LIST_LIMIT_MAX, description="page size"),
        offset: int = Query(0, ge=0, le=SAFE_INT_MAX, description="runs to skip"),
    ) -> dict[str, Any]:
        """Runs, newest first, filtered and paged."""
        # One run more than asked tells whether another page follows, without counting them all.
        runs = store.list_runs(
            dag_id=dag_id or None, states=_parse_states(state), limit=limit + 1, offset=offset
        )
        return {
            "runs": [run_view(r) for r in runs[:limit]],
            "limit": limit,
            "offset": offset,
            "has_more": len(runs) > limit,
        }

    @router.post("", status_code=201, response_model=TriggeredRun, responses=errors(403, 404, 413, 422, 503))
    def trigger_run(body: TriggerRequest) -> dict[str, Any]:
        """Start a run of a DAG's latest version now, and wake the scheduler."""
        record = store.get_dag(body.dag_id)
        if not record.active:
            raise NotFound(f"DAG {body.dag_id!r} is inactive; submit it again to reactivate it")
        params = resolve_params(record.spec.params, body.params)
        run = store.create_run(body.dag_id, triggered_by=body.triggered_by, params=params, now=time.time())
        queue.wake_scheduler()
        return {**run_view(run), "dag_paused": record.paused}

    def run_detail(run_id: str) -> dict[str, Any]:
        run = store.get_run(run_id)
        tis = store.task_instances(run_id)
        out = run_view(run)
        out["tasks"] = [ti.to_dict() for ti in tis]
        out["waiting"] = _waiting_note(run, tis)
        return out

    def _waiting_note(run: Run, tis: list[TaskInstance]) -> str | None:
        """Why a run or its tasks are not moving, when they wait for a slot."""
        if run.state == RunState.QUEUED:
            limit = store.get_dag_spec(run.dag_id, run.dag_version).max_active_runs
            busy = len(store.list_runs(dag_id=run.dag_id, states=[RunState.RUNNING], limit=limit + 1))
            if busy >= limit:
                return f"waiting for a run slot: {busy} run(s) of {run.dag_id} running, max_active_runs is {limit}"
            return "waiting for the scheduler to start it"
        queued = sum(ti.state == TaskState.QUEUED for ti in tis)
        if run.state == RunState.RUNNING and queued:
            return f"{queued} task(s) queued, waiting for a free worker slot"
        return None

    @router.get("/{run_id}", response_model=RunDetail, responses=errors(404, 503))
    def get_run(run_id: str) -> dict[str, Any]:
        """A run with all its task instances, and why it waits when it waits for a slot."""
        return run_detail(run_id)

    @router.post("/{run_id}/cancel", response_model=RunDetail, responses=errors(403, 404, 409, 503))
    def cancel_run(run_id: str) -> dict[str, Any]:
        """Cancel a run: its running tasks are killed, the rest become cancelled. 409 when it had ended."""
        if not store.stop_run(run_id, RunState.CANCELLED, "cancelled by request", time.time()):
            raise Conflict(f"run {run_id!r} has already ended ({store.get_run(run_id).state})")
        return run_detail(run_id)

    def _retry(run_id: str, task_id: str | None, downstream: bool) -> dict[str, Any]:
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
        out = run_detail(run_id)
        out["cleared"] = cleared
        return out

    @router.post("/{run_id}/retry", response_model=RunRetried, responses=errors(403, 404, 409, 503))
    def retry_failed(run_id: str) -> dict[str, Any]:
        """Run the failed (and upstream-failed, cancelled) tasks of a run again, in the same run."""
        return _retry(run_id, None, False)

    @router.post(
        "/{run_id}/tasks/{task_id}/retry",
        response_model=RunRetried,
        responses=errors(403, 404, 409, 413, 422, 503),
    )
    def retry_task(run_id: str, task_id: str, body: RetryRequest | None = None) -> dict[str, Any]:
        """Run a finished task again (and what never ran because of it; with `downstream`, all below it)."""
        return _retry(run_id, task_id, bool(body and body.downstream))

    @router.get("/{run_id}/tasks", response_model=TaskList, responses=errors(404, 503))
    def list_tasks(run_id: str) -> dict[str, Any]:
        """The task instances of a run, in the DAG's task order."""
        return {"tasks": [ti.to_dict() for ti in store.task_instances(run_id)]}

    @router.get("/{run_id}/tasks/{task_id}", response_model=TaskDetail, responses=errors(404, 503))
    def get_task(run_id: str, task_id: str) -> dict[str, Any]:
        """One task instance with every attempt and the task's spec at the run's DAG version."""
        run = store.get_run(run_id)
        ti = store.get_task_instance(run_id, task_id)
        out = ti.to_dict()
        out["attempts"] = [a.to_dict() for a in store.attempts(run_id, task_id)]
        try:
            out["spec"] = task_spec_view(
                store.get_dag_spec(run.dag_id, run.dag_version).task(task_id).to_dict()
            )
        except (NotFound, KeyError):
            out["spec"] = None  # the version row is gone; the instance is still worth showing
        return out

    @router.get(
        "/{run_id}/tasks/{task_id}/logs",
        response_model=LogPage,
        responses={
            200: {
                "content": {"text/plain": {"schema": {"type": "string"}}},
                "description": "with follow=1: the log",
            },
            **errors(404, 422, 503),
        },
    )
    def get_logs(
        request: Request,
        run_id: str,
        task_id: str,
        attempt: int | None = Query(
            None, ge=1, le=SAFE_INT_MAX, description="attempt number; default the latest"
        ),
        after: int = Query(
            0, ge=0, le=SAFE_INT_MAX, description="cursor from a previous answer; 0 = from the start"
        ),
        follow: bool = Query(False, description="stream the log as plain text until the attempt ends"),
    ) -> Any:
        """Log text of one attempt after a cursor, the next cursor, and whether more can come.

        An answer carries at most about 1 MiB of text (`more` is then true): read on from `cursor`.
        With `follow=1` the answer is the log itself as `text/plain`, streamed as the task writes it.
        """
        ti = store.get_task_instance(run_id, task_id)
        if attempt is None:
            attempt = ti.attempt
            if attempt == 0:  # never attempted yet: an empty log, done only if it never will be
                return {
                    "run_id": run_id,
                    "task_id": task_id,
                    "attempt": 0,
                    "text": "",
                    "cursor": 0,
                    "done": ti.state in TASK_TERMINAL,
                }
        elif attempt > ti.attempt:
            raise NotFound(
                f"task {task_id!r} of run {run_id!r} has no attempt {attempt} (latest: {ti.attempt})"
            )
        if follow:
            stream = log_stream(
                StreamContext(request, services.stopping), store, run_id, task_id, attempt, after
            )
            return StreamingResponse(stream, media_type="text/plain; charset=utf-8", headers=SSE_HEADERS)
        ended = not (attempt == ti.attempt and ti.state in TASK_ACTIVE)
        text, cursor = store.read_log(run_id, task_id, attempt, after, max_bytes=LOG_PAGE_BYTES)
        # A page that stopped at the limit has more behind it; a smallest read tells for sure.
        more = bool(text) and bool(store.read_log(run_id, task_id, attempt, cursor, max_bytes=0)[0])
        return {
            "run_id": run_id,
            "task_id": task_id,
            "attempt": attempt,
            "text": text,
            "cursor": cursor,
            "done": ended and not more,
            "more": more,
        }

    return router
