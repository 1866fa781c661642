"""Run routes: list, trigger, detail, cancel, retry, task instances with their attempts, why a task
is in its state, and task logs.

Each route reads its request, calls one function of `flowforge.operations` (or one store read),
and answers with the model `views` builds; the rules themselves live in operations.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from flowforge import operations as ops
from flowforge.api import views
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
    TaskExplanation,
    TaskList,
    TriggeredRun,
    TriggerRequest,
    errors,
)
from flowforge.api.routes_events import LOG_PAGE_BYTES, LimitedStream, StreamContext, log_stream
from flowforge.core.model import RunState
from flowforge.operations_explain import explain_task

if TYPE_CHECKING:  # services imports the engine; the API needs only the type
    from flowforge.services import Services

_LOG_ANSWERS = {
    200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "with follow=1: the log"},
    **errors(404, 422, 503),
}


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


class RunRoutes:
    """The handlers of /api/v1/runs, bound to one set of services (their docstrings document them)."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.store, self.queue = services.store, services.queue

    def list_runs(
        self,
        dag_id: str | None = Query(None, description="only runs of this DAG"),
        state: str | None = Query(None, description="only runs in this state (comma-separated for several)"),
        limit: int = Query(50, ge=1, le=LIST_LIMIT_MAX, description="page size"),
        offset: int = Query(0, ge=0, le=SAFE_INT_MAX, description="runs to skip"),
    ) -> RunList:
        """Runs, newest first, filtered and paged."""
        # One run more than asked tells whether another page follows, without counting them all.
        runs = self.store.list_runs(
            dag_id=dag_id or None, states=_parse_states(state), limit=limit + 1, offset=offset
        )
        page = [views.run_out(r) for r in runs[:limit]]
        return RunList(runs=page, limit=limit, offset=offset, has_more=len(runs) > limit)

    def trigger_run(self, body: TriggerRequest) -> TriggeredRun:
        """Start a run of a DAG's latest version now, and wake the scheduler."""
        trigger = ops.trigger_run(
            self.store, self.queue, body.dag_id, params=body.params, triggered_by=body.triggered_by
        )
        return views.triggered_run(trigger)

    def get_run(self, run_id: str) -> RunDetail:
        """A run with all its task instances, and why it waits when it waits for a slot."""
        return views.run_detail(ops.run_snapshot(self.store, run_id))

    def cancel_run(self, run_id: str) -> RunDetail:
        """Cancel a run: its running tasks are killed, the rest become cancelled. 409 when it had ended."""
        return views.run_detail(ops.cancel_run(self.store, run_id))

    def retry_failed(self, run_id: str) -> RunRetried:
        """Run the failed (and upstream-failed, cancelled) tasks of a run again, in the same run."""
        return views.run_retried(ops.retry_run(self.store, self.queue, run_id))

    def retry_task(self, run_id: str, task_id: str, body: RetryRequest | None = None) -> RunRetried:
        """Run a finished task again (and what never ran because of it; with `downstream`, all below it)."""
        downstream = bool(body and body.downstream)
        return views.run_retried(
            ops.retry_run(self.store, self.queue, run_id, task_id, downstream=downstream)
        )

    def list_tasks(self, run_id: str) -> TaskList:
        """The task instances of a run, in the DAG's task order."""
        return TaskList(tasks=[views.task_out(ti) for ti in self.store.task_instances(run_id)])

    def get_task(self, run_id: str, task_id: str) -> TaskDetail:
        """One task instance with every attempt and the task's spec at the run's DAG version."""
        return views.task_detail(ops.task_history(self.store, run_id, task_id))

    def explain_task(self, run_id: str, task_id: str) -> TaskExplanation:
        """Why a task is in its state right now: a one-line summary and the reasons, each a code and a sentence."""
        heartbeat = self.services.settings.heartbeat_secs
        answer = explain_task(self.store, self.queue, run_id, task_id, heartbeat_secs=heartbeat)
        return TaskExplanation.model_validate(asdict(answer))

    def get_logs(
        self,
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
    ) -> LogPage | StreamingResponse:
        """Log text of one attempt after a cursor, the next cursor, and whether more can come.

        An answer carries at most about 1 MiB of text (`more` is then true): read on from `cursor`.
        With `follow=1` the answer is the log itself as `text/plain`, streamed as the task writes it.
        """
        instance, number = ops.log_attempt(self.store, run_id, task_id, attempt)
        if follow and number:
            context = StreamContext(request, self.services.stopping)
            stream = log_stream(context, self.store, run_id, task_id, number, after)
            return LimitedStream(self.services.streams, stream, "text/plain; charset=utf-8")
        return views.log_page(ops.read_log_page(self.store, instance, number, after, LOG_PAGE_BYTES))


def build_run_router(services: Services) -> APIRouter:
    """Routes under /api/v1/runs, bound to these services."""
    r = RunRoutes(services)
    router = APIRouter(prefix="/api/v1/runs", tags=["runs"])
    # path, method, handler, success status, answer model, documented error answers
    table = (
        ("", "GET", r.list_runs, 200, RunList, errors(422, 503)),
        ("", "POST", r.trigger_run, 201, TriggeredRun, errors(403, 404, 413, 422, 503)),
        ("/{run_id}", "GET", r.get_run, 200, RunDetail, errors(404, 503)),
        ("/{run_id}/cancel", "POST", r.cancel_run, 200, RunDetail, errors(403, 404, 409, 503)),
        ("/{run_id}/retry", "POST", r.retry_failed, 200, RunRetried, errors(403, 404, 409, 503)),
        (
            "/{run_id}/tasks/{task_id}/retry",
            "POST",
            r.retry_task,
            200,
            RunRetried,
            errors(403, 404, 409, 413, 422, 503),
        ),
        ("/{run_id}/tasks", "GET", r.list_tasks, 200, TaskList, errors(404, 503)),
        ("/{run_id}/tasks/{task_id}", "GET", r.get_task, 200, TaskDetail, errors(404, 503)),
        ("/{run_id}/tasks/{task_id}/logs", "GET", r.get_logs, 200, LogPage, _LOG_ANSWERS),
        ("/{run_id}/tasks/{task_id}/explain", "GET", r.explain_task, 200, TaskExplanation, errors(404, 503)),
    )
    for path, method, endpoint, status, model, answers in table:
        router.add_api_route(
            path, endpoint, methods=[method], status_code=status, response_model=model, responses=answers
        )
    return router
