"""One JSON error shape for every failure: `{"error": {"code", "message", "details"}}`."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from flowforge.core.errors import Conflict, DagValidationError, InvalidRequest, NotFound, Unavailable

log = logging.getLogger(__name__)

# Codes for the statuses Starlette raises on its own (unknown route, wrong method, ...).
_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    421: "misdirected_request",
    422: "invalid_request",
    503: "unavailable",
}

_UNPARSABLE_BODY = "There was an error parsing the body"  # FastAPI's detail, raised with a 400


class HttpError(Exception):
    """An error answer decided by a route: status, stable code, sentence, optional details."""

    def __init__(self, status: int, code: str, message: str, details: list[Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or []


class BodyTooLarge(StarletteHTTPException):
    """Raised from `receive` when a streamed body passes the limit; handled as a JSON 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(status_code=413, detail=f"request body is larger than {limit} bytes")


def error_body(code: str, message: str, details: list[Any] | None = None) -> dict[str, Any]:
    """The JSON error document."""
    return {"error": {"code": code, "message": message, "details": details or []}}


def error_response(
    status: int,
    code: str,
    message: str,
    details: list[Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """A JSON error response."""
    return JSONResponse(error_body(code, message, details), status_code=status, headers=headers)


def _validation_details(exc: RequestValidationError) -> list[dict[str, Any]]:
    # Only loc/message/type: pydantic's `input` and `ctx` may echo secrets or hold unserialisable objects.
    return [
        {
            "loc": [str(part) for part in e.get("loc", ())],
            "message": str(e.get("msg", "")),
            "type": str(e.get("type", "")),
        }
        for e in exc.errors()
    ]


def install_error_handlers(app: FastAPI) -> None:
    """Map FlowForge and framework exceptions to JSON error answers."""

    @app.exception_handler(HttpError)
    def _http_error(request: Request, exc: HttpError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.details)

    @app.exception_handler(NotFound)
    def _not_found(request: Request, exc: NotFound) -> JSONResponse:
        return error_response(404, "not_found", str(exc) or "not found")

    @app.exception_handler(InvalidRequest)
    def _invalid(request: Request, exc: InvalidRequest) -> JSONResponse:
        return error_response(422, exc.code, exc.message, exc.details)

    @app.exception_handler(Conflict)
    def _conflict(request: Request, exc: Conflict) -> JSONResponse:
        return error_response(409, "conflict", str(exc) or "conflict")

    @app.exception_handler(Unavailable)
    def _unavailable(request: Request, exc: Unavailable) -> JSONResponse:
        # The details (hosts, ports) go to the log, not to the client.
        log.warning("%s %s: %s", request.method, request.url.path, exc)
        return error_response(
            503, "unavailable", "the database or the queue is unavailable; try again shortly"
        )

    @app.exception_handler(DagValidationError)
    def _invalid_dag(request: Request, exc: DagValidationError) -> JSONResponse:
        n = exc.total  # every problem found; `problems` lists the first of them
        return error_response(
            422, "invalid_dag", f"DAG is invalid: {n:,} problem(s)", [p.to_dict() for p in exc.problems]
        )

    @app.exception_handler(RequestValidationError)
    def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        details = _validation_details(exc)
        first = details[0] if details else {"loc": [], "message": "invalid request"}
        where = ".".join(first["loc"])
        message = (
            f"invalid request: {where}: {first['message']}"
            if where
            else f"invalid request: {first['message']}"
        )
        return error_response(422, "invalid_request", message, details)

    @app.exception_handler(StarletteHTTPException)
    def _http_exception(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and exc.detail == _UNPARSABLE_BODY:
            # FastAPI's answer to a body it cannot decode (e.g. not UTF-8); JSON it cannot parse
            # is already a 422, and so is every other invalid body: keep one status for them all.
            return error_response(422, "invalid_request", "invalid request: the body is not valid JSON")
        code = _STATUS_CODES.get(exc.status_code, f"http_{exc.status_code}")
        message = str(exc.detail) if exc.detail else code.replace("_", " ")
        if exc.status_code == 404 and exc.detail == "Not Found":
            message = f"no such endpoint: {request.method} {request.url.path}"
        return error_response(exc.status_code, code, message, headers=getattr(exc, "headers", None))
