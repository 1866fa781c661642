"""The two ways a call to the API fails: an error answer (`ApiError`) or no answer (`ApiUnreachable`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flowforge.client.transport import Response


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


def api_error(resp: Response) -> ApiError:
    """An ApiError from an error answer, whether or not it is FlowForge's JSON error shape."""
    try:
        err = resp.json()["error"]
        return ApiError(resp.status, str(err["code"]), str(err["message"]), list(err.get("details") or []))
    except (ValueError, KeyError, TypeError):
        text = resp.text.strip().splitlines()[0][:200] if resp.text.strip() else resp.reason
        return ApiError(resp.status, f"http_{resp.status}", text)
