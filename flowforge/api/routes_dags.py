"""DAG routes: list, submit (JSON or raw YAML), detail, deactivate, pause and unpause."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, Query, Request

from ..core.dagfile import load_dag
from ..core.errors import NotFound
from .errors import HttpError
from .views import dag_view

if TYPE_CHECKING:  # services imports the engine; the API needs only the type
    from ..services import Services

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
            raise HttpError(422, "invalid_request", f"YAML body is not valid UTF-8 (byte {exc.start})") from exc
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
_SUBMIT_BODY_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"type": "object", "properties": {"yaml": {"type": "string"}}, "required": ["yaml"]}
            },
            "application/yaml": {"schema": {"type": "string"}},
        },
    }
}


def build_dag_router(services: Services) -> APIRouter:
    """Routes under /api/v1/dags, bound to these services."""
    router = APIRouter(prefix="/api/v1/dags", tags=["dags"])
    store, queue = services.store, services.queue
    max_yaml = services.settings.max_yaml_bytes

    @router.get("")
    def list_dags(include_inactive: bool = Query(False, description="also list deactivated DAGs")) -> dict[str, Any]:
        """Every DAG (latest version each), with its next scheduled run."""
        now = time.time()
        return {"dags": [dag_view(r, now) for r in store.list_dags(include_inactive=include_inactive)]}

    @router.post("", status_code=201, openapi_extra=_SUBMIT_BODY_DOC)
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

    @router.get("/{dag_id}")
    def get_dag(dag_id: str) -> dict[str, Any]:
        """One DAG with its tasks, version, source and next run."""
        return dag_view(store.get_dag(dag_id), time.time(), detail=True)

    @router.delete("/{dag_id}")
    def deactivate_dag(dag_id: str) -> dict[str, Any]:
        """Deactivate a DAG: no new runs; its history stays. Submitting it again reactivates it."""
        return dag_view(store.set_dag_flags(dag_id, active=False), time.time(), detail=True)

    @router.post("/{dag_id}/pause")
    def pause_dag(dag_id: str) -> dict[str, Any]:
        """Stop scheduling a DAG (runs in flight carry on)."""
        return dag_view(store.set_dag_flags(dag_id, paused=True), time.time(), detail=True)

    @router.post("/{dag_id}/unpause")
    def unpause_dag(dag_id: str) -> dict[str, Any]:
        """Resume scheduling a DAG."""
        record = store.set_dag_flags(dag_id, paused=False)
        queue.wake_scheduler()
        return dag_view(record, time.time(), detail=True)

    return router
