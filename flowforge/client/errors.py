"""The two ways a call to the API fails: an error answer (`ApiError`) or no answer (`ApiUnreachable`)."""

from __future__ import annotations

from typing import Any

import httpx


class ApiError(Exception):
    """The API answered with an error: HTTP status plus the body's code, message and details."""

    def __init__(self, status: int, code: str, message: str, details: list[Any] | None = None) -> None:
        super().__init__(f"{message} (HTTP {status}, {code})")
        self.status = status
        self.code = code
        self.message = message
        self.details = details or []


class ApiUnreachable(Exception):
    """No answer from the API: connection refused, DNS failure, timeout, broken connection."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"cannot reach the FlowForge API at {url} ({reason})")
        self.url = url
        self.reason = reason


def transport_reason(exc: httpx.TransportError) -> str:
    text = str(exc).strip()
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out{': ' + text if text else ''}"
    return text or type(exc).__name__


def api_error(resp: httpx.Response) -> ApiError:
    """An ApiError from an error answer, whether or not it is FlowForge's JSON error shape."""
    try:
        err = resp.json()["error"]
        return ApiError(
            resp.status_code, str(err["code"]), str(err["message"]), list(err.get("details") or [])
        )
    except (ValueError, KeyError, TypeError):
        text = resp.text.strip().splitlines()[0][:200] if resp.text.strip() else resp.reason_phrase
        return ApiError(resp.status_code, f"http_{resp.status_code}", text)
