"""The shapes every answer shares: requests, errors, the answer base, paging, health; the documented error statuses."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

LIST_LIMIT_MAX = 500  # one page of any list: runs, DAGs, workers
# The largest integer every client (JavaScript too) holds exactly. It bounds offsets and cursors,
# so that the database is never handed a number it cannot store.
SAFE_INT_MAX = 2**53 - 1

# -- requests ----------------------------------------------------------------------------


class RequestBody(BaseModel):
    """A request body: unknown fields are an error, not silently ignored."""

    model_config = ConfigDict(extra="forbid")


class SubmitDagRequest(RequestBody):
    """Body of POST /api/v1/dags as JSON (a raw `application/yaml` body is the YAML itself)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"yaml": "id: hello\ntasks:\n  - id: say\n    command: echo hello\n"}]
        }
    )

    yaml: str = Field(description="the DAG file's text")


class TriggerRequest(RequestBody):
    """Body of POST /api/v1/runs."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"dag_id": "hello", "triggered_by": "api", "params": {}}]}
    )

    dag_id: str = Field(min_length=1, max_length=200)
    triggered_by: str = Field("api", min_length=1, max_length=64)
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="values for the DAG's declared params (scalars); tasks see FLOWFORGE_PARAM_*",
    )


class RetryRequest(RequestBody):
    """Body of POST /api/v1/runs/{run_id}/tasks/{task_id}/retry (optional)."""

    downstream: bool = Field(False, description="also run every downstream task again, successful ones too")


class BackfillRequest(RequestBody):
    """Body of POST /api/v1/dags/{dag_id}/backfill."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"start": "2026-01-01", "end": "2026-01-07", "dry_run": True}]}
    )

    start: str = Field(description="first logical date, ISO-8601; without an offset, in the DAG's timezone")
    end: str = Field(description="last logical date (inclusive), ISO-8601")
    dry_run: bool = Field(False, description="only list the ticks; create nothing")


# -- errors ------------------------------------------------------------------------------


class ErrorBody(BaseModel):
    """What went wrong: a stable code for programs, a sentence for people, and the particulars."""

    code: str = Field(description="e.g. not_found, conflict, invalid_request, invalid_dag, unauthorized")
    message: str
    details: list[dict[str, Any]] = Field(
        description="invalid_dag: {field, line, column, message} per problem; "
        "invalid_request: {loc, message, type} per field; otherwise usually empty"
    )


class ErrorResponse(BaseModel):
    """Every error answer: `{"error": {"code", "message", "details"}}`."""

    error: ErrorBody


# -- answers -----------------------------------------------------------------------------


class Answer(BaseModel):
    """An answer body: exactly these keys (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")


class Health(Answer):
    """GET /health."""

    status: Literal["ok"]


class Ready(Answer):
    """GET /ready: 200 when the store and queue answer and a scheduler leads, 503 (same shape) otherwise."""

    status: Literal["ready", "unavailable"]
    store: str = Field(description='"ok" or "unavailable (<error type>)"')
    queue: str = Field(description='"ok" or "unavailable (<error type>)"')
    scheduler: str = Field(description='"ok" while a scheduler holds the leader lease, else why not')
    leader: str | None = Field(description="the leading scheduler (host-pid-id), or null")


class Page(Answer):
    """Paging of a list answer."""

    limit: int = Field(description="the page size asked for")
    offset: int = Field(description="how many items were skipped")
    has_more: bool = Field(description="another page follows (ask again with offset + limit)")


# -- documented error statuses -----------------------------------------------------------

_ERROR_TEXT = {
    401: "no token, or a wrong one (when the server has a token)",
    403: "a read-only token on a request that changes something",
    404: "no such DAG, run, task or attempt",
    409: "not possible in the current state",
    413: "request body over the size limit",
    415: "a body that is neither JSON nor YAML",
    422: "invalid request: a parameter, a body field, or (on submit) the DAG itself",
    503: "the database or the queue is unavailable; try again shortly",
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: each status with the error shape, plus the 401 that any guarded route can give."""
    chosen = sorted({401, *statuses})
    return {s: {"model": ErrorResponse, "description": _ERROR_TEXT[s]} for s in chosen}


def describe_auth_and_errors(schema: dict[str, Any], public_paths: frozenset[str]) -> dict[str, Any]:
    """The generated OpenAPI document with bearer auth declared and only FlowForge's error shape in it.

    FastAPI documents a 422 of its own shape on every route with parameters; FlowForge answers
    with `ErrorResponse` instead, so those entries go (routes that can give a 422 list it themselves).
    """
    components = schema.setdefault("components", {})
    components.setdefault("securitySchemes", {})["bearer"] = {
        "type": "http",
        "scheme": "bearer",
        "description": "FLOWFORGE_API_TOKEN (every request), or FLOWFORGE_API_READ_TOKEN (GET and HEAD only); "
        "needed only when the server has a token",
    }
    default_422 = "#/components/schemas/HTTPValidationError"
    for path, operations in schema.get("paths", {}).items():
        for operation in operations.values():
            operation["security"] = [] if path in public_paths else [{"bearer": []}]
            responses = operation.get("responses", {})
            content = responses.get("422", {}).get("content", {}).get("application/json", {})
            if content.get("schema", {}).get("$ref") == default_422:
                del responses["422"]
    schemas = components.get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    return schema
