"""The REST API and the web page: `create_app(services)` builds the FastAPI app."""

from __future__ import annotations

from flowforge.api.app import create_app

__all__ = ["create_app"]
