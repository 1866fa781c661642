"""DAG routes: list, submit (JSON or raw YAML), detail, deactivate, activate, pause, unpause, backfill;
the schedule preview, the run statistics and the stored versions.

Each route reads its request, calls one function of `flowforge.operations` (or one store read),
and answers with the model `views` builds; the rules themselves live in operations.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

from fastapi import APIRouter, Depends, Path, Query, Request

from flowforge import operations as ops
from flowforge.api import views
from flowforge.api.errors import HttpError
from flowforge.api.models import (
    LIST_LIMIT_MAX,
    SAFE_INT_MAX,
    BackfillRequest,
    BackfillResult,
    DagDetail,
    DagList,
    DagStats,
    DagSubmitted,
    DagVersionDetail,
    DagVersionList,
    DagVersionOut,
    SchedulePreview,
    SubmitDagRequest,
    errors,
)
from flowforge.core.preview import MAX_PREVIEW, preview_of
from flowforge.core.schedule import parse_instant
from flowforge.dagfolder import activate_dag
from flowforge.operations_stats import STATS_RUNS_DEFAULT, STATS_RUNS_MAX, dag_stats

if TYPE_CHECKING:  # services imports the engine; the API needs only the type
    from flowforge.services import Services

YAML_TYPES = frozenset({"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml"})


async def raw_body(request: Request) -> bytes:
    """The request body as bytes.

    The only async function in the API: reading the ASGI body is inherently async, while the
    route itself stays a sync `def` run in the thread pool like every other route.
    """
    return await request.body()


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def _yaml_text(request: Request, body: bytes) -> str:
    """The YAML document a submit carries, from `{"yaml": "..."}` or a raw YAML body."""
    media = _media_type(request)
    if media in YAML_TYPES:
        try:
            return body.decode("utf-8-sig")  # a BOM is no part of the document
        except UnicodeDecodeError as exc:
            raise HttpError(
                422, "invalid_request", f"YAML body is not valid UTF-8 (byte {exc.start})"
            ) from exc
    if media == "application/json" or media.endswith("+json"):
        try:
            doc = json.loads(body)
        except ValueError as exc:
            raise HttpError(422, "invalid_request", f"body is not valid JSON: {exc}") from exc
        if not isinstance(doc, dict) or not isinstance(doc.get("yaml"), str):
            raise HttpError(422, "invalid_request", 'expected a JSON object {"yaml": "<DAG YAML text>"}')
        extra = sorted(set(doc) - {"yaml"})
        if extra:
            raise HttpError(422, "invalid_request", f"unknown field(s) in body: {', '.join(extra)}")
        return str(doc["yaml"])
    raise HttpError(
        415,
        "unsupported_media_type",
        'send {"yaml": "..."} as application/json, or the YAML itself as application/yaml',
    )


# The body is read raw (JSON or YAML), so FastAPI cannot infer it: describe it for /docs by hand.
_EXAMPLE_DAG = SubmitDagRequest.model_json_schema()["examples"][0]["yaml"]
_SUBMIT_BODY_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": SubmitDagRequest.model_json_schema()},
            "application/yaml": {"schema": {"type": "string", "examples": [_EXAMPLE_DAG]}},
        },
    }
}


class DagRoutes:
    """The handlers of /api/v1/dags, bound to one set of services (their docstrings document them)."""

    def __init__(self, services: Services) -> None:
        self.store, self.queue = services.store, services.queue
        self.max_yaml = services.settings.max_yaml_bytes

    def list_dags(
        self,
        include_inactive: bool = Query(False, description="also list deactivated DAGs"),
        limit: int = Query(LIST_LIMIT_MAX, ge=1, le=LIST_LIMIT_MAX, description="page size"),
        offset: int = Query(0, ge=0, le=SAFE_INT_MAX, description="DAGs to skip"),
    ) -> DagList:
        """DAGs by id (latest version each), with their next scheduled run, paged."""
        now = time.time()
        records = self.store.list_dags(include_inactive=include_inactive)
        return DagList(
            dags=[views.dag_summary(r, now) for r in records[offset : offset + limit]],
            limit=limit,
            offset=offset,
            has_more=offset + limit < len(records),
            total=len(records),
        )

    def submit_dag(self, request: Request, body: bytes = Depends(raw_body)) -> DagSubmitted:
        """Validate and store a DAG; a changed DAG gets a new version. Invalid → 422, nothing stored."""
        text = _yaml_text(request, body)
        if len(text.encode("utf-8")) > self.max_yaml:
            raise HttpError(413, "payload_too_large", f"DAG YAML is larger than {self.max_yaml} bytes")
        submission = ops.submit_dag(self.store, self.queue, text, max_bytes=self.max_yaml)
        return views.dag_submitted(submission, time.time())

    def get_dag(self, dag_id: str) -> DagDetail:
        """One DAG with its tasks, version, source and next run."""
        return views.dag_detail(self.store.get_dag(dag_id), time.time())

    def deactivate_dag(self, dag_id: str) -> DagDetail:
        """Deactivate a DAG: no new runs; its history stays. Submitting it again reactivates it."""
        return views.dag_detail(ops.deactivate_dag(self.store, dag_id), time.time())

    def activate_dag(self, dag_id: str) -> DagDetail:
        """Activate a deactivated DAG at its latest version; missed ticks replay only with `catchup: true`."""
        return views.dag_detail(activate_dag(self.store, self.queue, dag_id), time.time())

    def pause_dag(self, dag_id: str) -> DagDetail:
        """Stop scheduling a DAG (runs in flight carry on)."""
        return views.dag_detail(ops.pause_dag(self.store, dag_id), time.time())

    def unpause_dag(self, dag_id: str) -> DagDetail:
        """Resume scheduling a DAG; the ticks missed while paused are replayed only with `catchup: true`."""
        return views.dag_detail(ops.unpause_dag(self.store, self.queue, dag_id), time.time())

    def backfill(self, dag_id: str, body: BackfillRequest) -> BackfillResult:
        """Create a run for every tick in [start, end] that has none yet (or only list them: `dry_run`).

        The runs wait `queued` and start as `max_active_runs` allows, oldest tick first.
        """
        outcome = ops.backfill(self.store, self.queue, dag_id, body.start, body.end, dry_run=body.dry_run)
        return views.backfill_result(outcome)

    def schedule(
        self,
        dag_id: str,
        count: int = Query(10, ge=1, le=MAX_PREVIEW, description="how many ticks"),
        after: str | None = Query(
            None,
            alias="from",
            max_length=64,
            description="ISO-8601 date or date-time (the DAG's timezone without an offset); default now",
        ),
    ) -> SchedulePreview:
        """The next ticks of a DAG's schedule, in its timezone and UTC, with daylight-saving notes."""
        record = self.store.get_dag(dag_id)
        spec = record.spec
        try:
            start = time.time() if after is None else parse_instant(after, spec.timezone)
        except ValueError as exc:
            raise HttpError(422, "invalid_request", f"from: {exc}") from exc
        found = preview_of(spec.schedule, spec.timezone, start, count)
        return SchedulePreview(dag_id=dag_id, active=record.active, paused=record.paused, **found)

    def stats(
        self,
        dag_id: str,
        runs: int = Query(
            STATS_RUNS_DEFAULT, ge=1, le=STATS_RUNS_MAX, description="how many of the last ended runs to read"
        ),
    ) -> DagStats:
        """How long the DAG's last ended runs took (p50, p95 of the successful ones) and how many succeeded."""
        return views.dag_stats(dag_stats(self.store, dag_id, runs))

    def list_versions(
        self,
        dag_id: str,
        limit: int = Query(LIST_LIMIT_MAX, ge=1, le=LIST_LIMIT_MAX, description="page size"),
        offset: int = Query(0, ge=0, le=SAFE_INT_MAX, description="versions to skip"),
    ) -> DagVersionList:
        """A DAG's stored versions, newest first: number, spec hash, when stored."""
        latest = self.store.get_dag(dag_id).version
        found = self.store.list_dag_versions(dag_id, limit + 1, offset)
        versions = [
            DagVersionOut(
                version=v.version, spec_hash=v.spec_hash, created_at=v.created_at, latest=v.version == latest
            )
            for v in found[:limit]
        ]
        return DagVersionList(
            dag_id=dag_id,
            latest_version=latest,
            versions=versions,
            limit=limit,
            offset=offset,
            has_more=len(found) > limit,
        )

    def get_version(self, dag_id: str, version: int = Path(ge=1, le=SAFE_INT_MAX)) -> DagVersionDetail:
        """One stored version of a DAG with its YAML source (secret-looking values masked)."""
        latest = self.store.get_dag(dag_id).version
        v = self.store.get_dag_version(dag_id, version)
        return DagVersionDetail(
            dag_id=dag_id,
            version=v.version,
            spec_hash=v.spec_hash,
            created_at=v.created_at,
            latest=v.version == latest,
            source=views.masked_source(v.source or ""),
        )


def build_dag_router(services: Services) -> APIRouter:
    """Routes under /api/v1/dags, bound to these services."""
    r = DagRoutes(services)
    router = APIRouter(prefix="/api/v1/dags", tags=["dags"])
    # path, method, handler, success status, answer model, documented error answers
    table = (
        ("", "GET", r.list_dags, 200, DagList, errors(422, 503)),
        ("", "POST", r.submit_dag, 201, DagSubmitted, errors(403, 413, 415, 422, 503)),
        ("/{dag_id}", "GET", r.get_dag, 200, DagDetail, errors(404, 503)),
        ("/{dag_id}", "DELETE", r.deactivate_dag, 200, DagDetail, errors(403, 404, 503)),
        ("/{dag_id}/activate", "POST", r.activate_dag, 200, DagDetail, errors(403, 404, 503)),
        ("/{dag_id}/pause", "POST", r.pause_dag, 200, DagDetail, errors(403, 404, 503)),
        ("/{dag_id}/unpause", "POST", r.unpause_dag, 200, DagDetail, errors(403, 404, 503)),
        ("/{dag_id}/backfill", "POST", r.backfill, 201, BackfillResult, errors(403, 404, 413, 422, 503)),
        ("/{dag_id}/schedule", "GET", r.schedule, 200, SchedulePreview, errors(404, 422, 503)),
        ("/{dag_id}/stats", "GET", r.stats, 200, DagStats, errors(404, 422, 503)),
        ("/{dag_id}/versions", "GET", r.list_versions, 200, DagVersionList, errors(404, 422, 503)),
        ("/{dag_id}/versions/{version}", "GET", r.get_version, 200, DagVersionDetail, errors(404, 422, 503)),
    )
    for path, method, endpoint, status, model, answers in table:
        router.add_api_route(
            path,
            endpoint,
            methods=[method],
            status_code=status,
            response_model=model,
            responses=answers,
            openapi_extra=_SUBMIT_BODY_DOC if endpoint == r.submit_dag else None,
        )
    return router
