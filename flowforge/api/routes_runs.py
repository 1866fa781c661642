"""Run routes: list, trigger, detail, task instances with their attempts, and task logs."""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from ..core.errors import NotFound
from ..core.model import TASK_ACTIVE, TASK_TERMINAL, RunState
from .errors import HttpError
from .views import run_view, task_spec_view

if TYPE_CHECKING:  # services imports the engine; the API needs only the type
    from ..services import Services


class TriggerRequest(BaseModel):
    """Body of POST /api/v1/runs."""

    model_config = ConfigDict(extra="forbid")

    dag_id: str = Field(min_length=1, max_length=200)
    triggered_by: str = Field("api", min_length=1, max_length=64)
    params: dict[str, Any] = Field(default_factory=dict)


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


def _is_scalar(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)  # NaN/Infinity would not survive JSON or an env var
    return isinstance(value, str | int | bool)


def merge_params(declared: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """The DAG's declared defaults overridden by the given values; 422 on undeclared or non-scalar."""
    unknown = sorted(k for k in given if k not in declared)
    if unknown:
        known = ", ".join(sorted(declared)) or "none"
        raise HttpError(
            422,
            "invalid_params",
            f"param(s) not declared by the DAG: {', '.join(unknown)} (declared: {known})",
            [{"param": k, "message": "not declared by the DAG"} for k in unknown],
        )
    # Params reach tasks as environment variables, so only scalars make sense.
    bad = sorted(k for k, v in given.items() if not _is_scalar(v))
    if bad:
        raise HttpError(
            422,
            "invalid_params",
            f"param(s) must be a string, number or boolean: {', '.join(bad)}",
            [{"param": k, "message": "must be a string, number or boolean"} for k in bad],
        )
    return {**declared, **given}


def build_run_router(services: Services) -> APIRouter:
    """Routes under /api/v1/runs, bound to these services."""
    router = APIRouter(prefix="/api/v1/runs", tags=["runs"])
    store, queue = services.store, services.queue

    @router.get("")
    def list_runs(
        dag_id: str | None = Query(None, description="only runs of this DAG"),
        state: str | None = Query(None, description="only runs in this state (comma-separated for several)"),
        limit: int = Query(50, ge=1, le=500),
        offset: int = Query(0, ge=0),
    ) -> dict[str, Any]:
        """Runs, newest first, filtered and paged."""
        runs = store.list_runs(dag_id=dag_id or None, states=_parse_states(state), limit=limit, offset=offset)
        return {"runs": [run_view(r) for r in runs], "limit": limit, "offset": offset}

    @router.post("", status_code=201)
    def trigger_run(body: TriggerRequest) -> dict[str, Any]:
        """Start a run of a DAG's latest version now, and wake the scheduler."""
        record = store.get_dag(body.dag_id)
        if not record.active:
            raise NotFound(f"DAG {body.dag_id!r} is inactive; submit it again to reactivate it")
        params = merge_params(record.spec.params, body.params)
        run = store.create_run(body.dag_id, triggered_by=body.triggered_by, params=params, now=time.time())
        queue.wake_scheduler()
        return run_view(run)

    @router.get("/{run_id}")
    def get_run(run_id: str) -> dict[str, Any]:
        """A run with all its task instances."""
        run = store.get_run(run_id)
        out = run_view(run)
        out["tasks"] = [ti.to_dict() for ti in store.task_instances(run_id)]
        return out

    @router.get("/{run_id}/tasks")
    def list_tasks(run_id: str) -> dict[str, Any]:
        """The task instances of a run, in the DAG's task order."""
        return {"tasks": [ti.to_dict() for ti in store.task_instances(run_id)]}

    @router.get("/{run_id}/tasks/{task_id}")
    def get_task(run_id: str, task_id: str) -> dict[str, Any]:
        """One task instance with every attempt and the task's spec at the run's DAG version."""
        run = store.get_run(run_id)
        ti = store.get_task_instance(run_id, task_id)
        out = ti.to_dict()
        out["attempts"] = [a.to_dict() for a in store.attempts(run_id, task_id)]
        try:
            out["spec"] = task_spec_view(store.get_dag_spec(run.dag_id, run.dag_version).task(task_id).to_dict())
        except (NotFound, KeyError):
            out["spec"] = None  # the version row is gone; the instance is still worth showing
        return out

    @router.get("/{run_id}/tasks/{task_id}/logs")
    def get_logs(
        run_id: str,
        task_id: str,
        attempt: int | None = Query(None, ge=1, description="attempt number; default the latest"),
        after: int = Query(0, ge=0, description="cursor from a previous answer; 0 = from the start"),
    ) -> dict[str, Any]:
        """Log text of one attempt after a cursor, the next cursor, and whether more can come."""
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
            raise NotFound(f"task {task_id!r} of run {run_id!r} has no attempt {attempt} (latest: {ti.attempt})")
        text, cursor = store.read_log(run_id, task_id, attempt, after)
        done = not (attempt == ti.attempt and ti.state in TASK_ACTIVE)
        return {"run_id": run_id, "task_id": task_id, "attempt": attempt, "text": text, "cursor": cursor, "done": done}

    return router
