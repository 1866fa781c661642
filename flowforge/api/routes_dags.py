"""DAG routes: list, submit (JSON or raw YAML), detail, deactivate, pause and unpause."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, Query, Request

from flowforge.api.errors import HttpError
from flowforge.api.models import (
    LIST_LIMIT_MAX,
    SAFE_INT_MAX,
    BackfillRequest,
    BackfillResult,
    DagDetail,
    DagList,
    DagSubmitted,
    SubmitDagRequest,
    errors,
)
from flowforge.api.views import dag_view
from flowforge.core.dagfile import load_dag
from flowforge.core.errors import Conflict, InvalidRequest, NotFound
from flowforge.core.schedule import iso_utc, parse_instant, ticks_between

if TYPE_CHECKING:  # services imports the engine; the API needs only the type
    from flowforge.services import Services

MAX_BACKFILL_RUNS = 1000  # per request: a typo in a date must not create a million runs


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


def build_dag_router(services: Services) -> APIRouter:
    """Routes under /api/v1/dags, bound to these services."""
    router = APIRouter(prefix="/api/v1/dags", tags=["dags"])
    store, queue = services.store, services.queue
    max_yaml = services.settings.max_yaml_bytes

    @router.get("", response_model=DagList, responses=errors(422, 503))
    def list_dags(
        include_inactive: bool = Query(False, description="also list deactivated DAGs"),
        limit: int = Query(LIST_LIMIT_MAX, ge=1, le=LIST_LIMIT_MAX, description="page size"),
        offset: int = Query(0, ge=0, le=SAFE_INT_MAX, description="DAGs to skip"),
    ) -> dict[str, Any]:
        """DAGs by id (latest version each), with their next scheduled run, paged."""
        now = time.time()
        records = store.list_dags(include_inactive=include_inactive)
        return {
            "dags": [dag_view(r, now) for r in records[offset : offset + limit]],
            "limit": limit,
            "offset": offset,
            "has_more": offset + limit < len(records),
            "total": len(records),
        }

    @router.post(
        "",
        status_code=201,
        openapi_extra=_SUBMIT_BODY_DOC,
        response_model=DagSubmitted,
        responses=errors(403, 413, 415, 422, 503),
    )
    def submit_dag(request: Request, body: bytes = Depends(raw_body)) -> dict[str, Any]:
        """Validate and store a DAG; a changed DAG gets a new version. Invalid → 422, nothing stored."""
        text = _yaml_text(request, body)
        if len(text.encode("utf-8")) > max_yaml:
            raise HttpError(413, "payload_too_large", f"DAG YAML is larger than {max_yaml} bytes")
        spec = load_dag(text, source="<request>", max_bytes=max_yaml)
        try:
            previous: int | None = store.get_dag(spec.id).version
        except NotFound:
            previous = None
        now = time.time()
        record = store.put_dag(spec, text, now)
        queue.wake_scheduler()  # a new or changed schedule is seen now, not at the next tick
        out = dag_view(record, now, detail=True)
        out["created"] = previous is None
        out["changed"] = previous is None or record.version != previous
        return out

    @router.get("/{dag_id}", response_model=DagDetail, responses=errors(404, 503))
    def get_dag(dag_id: str) -> dict[str, Any]:
        """One DAG with its tasks, version, source and next run."""
        return dag_view(store.get_dag(dag_id), time.time(), detail=True)

    @router.delete("/{dag_id}", response_model=DagDetail, responses=errors(403, 404, 503))
    def deactivate_dag(dag_id: str) -> dict[str, Any]:
        """Deactivate a DAG: no new runs; its history stays. Submitting it again reactivates it."""
        return dag_view(store.set_dag_flags(dag_id, active=False), time.time(), detail=True)

    @router.post("/{dag_id}/pause", response_model=DagDetail, responses=errors(403, 404, 503))
    def pause_dag(dag_id: str) -> dict[str, Any]:
        """Stop scheduling a DAG (runs in flight carry on)."""
        return dag_view(store.set_dag_flags(dag_id, paused=True), time.time(), detail=True)

    @router.post("/{dag_id}/unpause", response_model=DagDetail, responses=errors(403, 404, 503))
    def unpause_dag(dag_id: str) -> dict[str, Any]:
        """Resume scheduling a DAG; the ticks missed while paused are replayed only with `catchup: true`."""
        now = time.time()
        record = store.get_dag(dag_id)
        skip_missed = record.paused and not record.spec.catchup
        record = store.set_dag_flags(dag_id, paused=False, schedule_after=now if skip_missed else None)
        queue.wake_scheduler()
        return dag_view(record, now, detail=True)

    @router.post(
        "/{dag_id}/backfill",
        status_code=201,
        response_model=BackfillResult,
        responses=errors(403, 404, 413, 422, 503),
    )
    def backfill(dag_id: str, body: BackfillRequest) -> dict[str, Any]:
        """Create a run for every tick in [start, end] that has none yet (or only list them: `dry_run`).

        The runs wait `queued` and start as `max_active_runs` allows, oldest tick first.
        """
        record = store.get_dag(dag_id)
        spec = record.spec
        if not record.active:
            raise NotFound(f"DAG {dag_id!r} is inactive; submit it again to reactivate it")
        if not spec.schedule:
            raise InvalidRequest(
                "no_schedule", f"DAG {dag_id!r} has no schedule, so it has no ticks to backfill"
            )
        try:
            start, end = parse_instant(body.start, spec.timezone), parse_instant(body.end, spec.timezone)
            if end < start:
                raise ValueError(f"end {body.end} is before start {body.start}")
            ticks = ticks_between(spec.schedule, spec.timezone, start, end, MAX_BACKFILL_RUNS)
        except ValueError as exc:
            raise InvalidRequest("invalid_range", str(exc)) from exc
        existing = store.logical_dates(dag_id, start, end)
        now = time.time()
        out = []
        for tick in ticks:
            entry: dict[str, Any] = {
                "logical_date": iso_utc(tick),
                "run_id": None,
                "existed": tick in existing,
            }
            if not body.dry_run and not entry["existed"]:
                try:
                    run = store.create_run(
                        dag_id, triggered_by="backfill", params=dict(spec.params), now=now, logical_date=tick
                    )
                    entry["run_id"] = run.run_id
                except Conflict:
                    entry["existed"] = True  # the scheduler made this tick's run meanwhile
            out.append(entry)
        if not body.dry_run:
            queue.wake_scheduler()
        return {
            "dag_id": dag_id,
            "dry_run": body.dry_run,
            "ticks": out,
            "created": sum(e["run_id"] is not None for e in out),
        }

    return router
