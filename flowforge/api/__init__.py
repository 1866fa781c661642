"""The REST API and the web page: `create_app(services)` builds the FastAPI app.

`create_app` is imported on first use, so that the API client and the CLI can read the answer
models (`flowforge.api.models`) without loading FastAPI and every route.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flowforge.api.app import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from flowforge.api.app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
