"""POST /api/v1/prune: delete the history of runs that ended long ago (or count it: `dry_run`).

The route reads the age (and a cursor to go on from), calls `operations_prune.prune_history` for
at most about `REQUEST_BUDGET_SECS`, and answers with the counts and where to go on from; the
rules live there and in `Store.prune_runs`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import APIRouter

from flowforge import operations_prune as ops
from flowforge.api.errors import HttpError
from flowforge.api.models import PruneRequest, PruneResult, errors

if TYPE_CHECKING:  # services imports the engine; the API needs only the type
    from flowforge.services import Services


def _invalid(field: str, exc: ValueError) -> HttpError:
    """A 422 naming the body field whose value was refused."""
    details = [{"loc": ["body", field], "message": str(exc), "type": "value_error"}]
    return HttpError(422, "invalid_request", f"invalid request: body.{field}: {exc}", details)


def build_prune_router(services: Services) -> APIRouter:
    """The route POST /api/v1/prune, bound to these services."""
    router = APIRouter(prefix="/api/v1", tags=["system"])
    store = services.store

    def prune(body: PruneRequest) -> PruneResult:
        """Delete ended runs (success, failed, cancelled) that ended longer ago than `older_than`.

        Their task instances, attempts, logs and events go with them, in short batches; queued
        and running runs, DAGs and their versions always stay. The outcome counters of /metrics
        keep counting what was deleted. With `dry_run`, only counts what would be deleted. One
        request works for a few seconds at most: while `next` is not null, send it as `cursor`.
        """
        try:
            older_than = ops.parse_age(body.older_than)
        except ValueError as exc:
            raise _invalid("older_than", exc) from None
        try:
            resume = ops.read_cursor(body.cursor, older_than) if body.cursor else None
        except ValueError as exc:
            raise _invalid("cursor", exc) from None
        pruned = ops.prune_history(
            store, older_than, dry_run=body.dry_run, resume=resume, budget_secs=ops.REQUEST_BUDGET_SECS
        )
        return PruneResult(
            dry_run=pruned.dry_run,
            older_than=body.older_than,
            cutoff=pruned.cutoff,
            runs=pruned.runs,
            task_instances=pruned.task_instances,
            attempts=pruned.attempts,
            log_chunks=pruned.log_chunks,
            events=pruned.events,
            next=ops.cursor_text(pruned.next) if pruned.next else None,
        )

    router.add_api_route(
        "/prune",
        prune,
        methods=["POST"],
        status_code=200,
        response_model=PruneResult,
        responses=errors(403, 413, 422, 503),
    )
    return router
