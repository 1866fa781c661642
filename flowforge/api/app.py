"""The app factory: routes, JSON errors, bearer-token auth, body limit and security headers.

No CORS middleware, so no other site's page can read an answer; CrossSiteWriteMiddleware refuses
their requests that would change something.
"""

from __future__ import annotations

import hmac
import logging
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from prometheus_client import CollectorRegistry
from starlette.datastructures import Headers, MutableHeaders
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from flowforge import __version__
from flowforge.api.errors import BodyTooLarge, CatchAllMiddleware, error_response, install_error_handlers
from flowforge.api.models import describe_auth_and_errors
from flowforge.api.routes_dags import build_dag_router
from flowforge.api.routes_events import build_events_router
from flowforge.api.routes_runs import build_run_router
from flowforge.api.routes_system import STATIC_DIR, StoreCollector, build_system_router
from flowforge.metrics import ApiMetrics, RequestMetricsMiddleware, StoreCounters

if TYPE_CHECKING:  # services imports the engine; the API needs only the type
    from flowforge.services import Services

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024
# Reachable without a token: liveness, and the static page shell (it holds no data; its API calls
# carry the token). Everything else needs one when a token is configured (DESIGN §7).
_PUBLIC_PATHS = frozenset({"/health", "/", "/favicon.ico"})
_PUBLIC_PREFIXES = ("/static/",)
# Swagger UI and ReDoc load their scripts from a CDN, which a strict CSP would block.
_NO_CSP_PREFIXES = ("/docs", "/redoc")
PAGE_CSP = "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"


class BodyLimitMiddleware:
    """Refuses bodies over `max_bytes` with 413, by Content-Length and by counting streamed bytes."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry point."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None:
            if not declared.isdigit():
                await error_response(400, "bad_request", "invalid Content-Length header")(
                    scope, receive, send
                )
                return
            if int(declared) > self.max_bytes:
                message = f"request body is larger than {self.max_bytes} bytes"
                await error_response(413, "payload_too_large", message)(scope, receive, send)
                return
        seen = 0

        async def counting_receive() -> Message:
            # A chunked body has no Content-Length; count what actually arrives.
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        await self.app(scope, counting_receive, send)


_READ_METHODS = frozenset({"GET", "HEAD"})


class TokenAuthMiddleware:
    """With a token configured, every request but the public paths needs `Authorization: Bearer <token>`.

    The read-only token, when there is one, is good for GET and HEAD (event stream and metrics
    included) and gets 403 on anything else.
    """

    def __init__(self, app: ASGIApp, token: str | None, read_token: str | None = None) -> None:
        self.app = app
        self.token = token.encode() if token else None
        self.read_token = read_token.encode() if read_token else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry point."""
        guarded = self.token is not None or self.read_token is not None
        if not guarded or scope["type"] != "http" or _is_public(scope["path"]):
            await self.app(scope, receive, send)
            return
        scheme, _, given = Headers(scope=scope).get("authorization", "").partition(" ")
        presented = given.strip().encode() if scheme.lower() == "bearer" else b""
        # Both compared in constant time, every time: the timing tells nothing about either token.
        full = hmac.compare_digest(presented, self.token) if self.token else False
        read = hmac.compare_digest(presented, self.read_token) if self.read_token else False
        if full or (read and scope["method"] in _READ_METHODS):
            await self.app(scope, receive, send)
            return
        if read:
            message = f"this token is read-only: it cannot {scope['method']} {scope['path']}"
            await error_response(403, "forbidden", message)(scope, receive, send)
            return
        response = error_response(
            401,
            "unauthorized",
            "missing or wrong API token (send Authorization: Bearer <token>)",
            headers={"WWW-Authenticate": "Bearer"},
        )
        await response(scope, receive, send)


class CrossSiteWriteMiddleware:
    """Refuses a browser's cross-site request that would change something (403), token or not.

    Without a token on loopback, any web page the user opens could otherwise POST to the API
    (a "simple" request needs no CORS preflight). Browsers say where a request comes from in
    `Sec-Fetch-Site`, which proxies leave alone; clients that are not browsers do not send it.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry point."""
        if scope["type"] == "http" and scope["method"] not in _READ_METHODS:
            site = Headers(scope=scope).get("sec-fetch-site", "same-origin").lower()
            if site not in ("same-origin", "none"):
                message = f"a {site} browser request may not {scope['method']} {scope['path']}"
                await error_response(403, "forbidden", message)(scope, receive, send)
                return
        await self.app(scope, receive, send)


class SecurityHeadersMiddleware:
    """Adds nosniff to every answer and a strict Content-Security-Policy to all but the API docs."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry point."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        csp = not scope["path"].startswith(_NO_CSP_PREFIXES)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["X-Content-Type-Options"] = "nosniff"
                headers["Referrer-Policy"] = "no-referrer"
                if csp:
                    headers["Content-Security-Policy"] = PAGE_CSP
                    headers["X-Frame-Options"] = "DENY"
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _is_public(path: str) -> bool:
    return path in _PUBLIC_PATHS or path.startswith(_PUBLIC_PREFIXES)


def create_app(
    services: Services,
    *,
    api_token: str | None = None,
    api_read_token: str | None = None,
    registry: CollectorRegistry | None = None,
) -> FastAPI:
    """Build the API app over these services; `api_token` and `api_read_token` override the configured ones.

    Its metrics go on `registry` (`up` shares one with its scheduler and worker), else on a new one.
    """
    # Per app unless given: two apps in one process never share series.
    registry = registry if registry is not None else CollectorRegistry()
    registry.register(StoreCollector(services))
    registry.register(StoreCounters(services.store))
    token = api_token if api_token is not None else services.settings.api_token
    read_token = api_read_token if api_read_token is not None else services.settings.api_read_token
    max_body = max(MAX_BODY_BYTES, services.settings.max_yaml_bytes)
    app = FastAPI(
        title="FlowForge",
        version=__version__,
        description="DAG workflow scheduler API",
        # Outermost first: every answer, even a 500 or a 401, gets the headers.
        middleware=[
            Middleware(RequestMetricsMiddleware, metrics=ApiMetrics(registry)),
            Middleware(SecurityHeadersMiddleware),
            Middleware(CatchAllMiddleware),
            Middleware(CrossSiteWriteMiddleware),
            Middleware(TokenAuthMiddleware, token=token, read_token=read_token),
            Middleware(BodyLimitMiddleware, max_bytes=max_body),
        ],
    )
    app.state.services = services
    app.state.metrics_registry = registry
    install_error_handlers(app)
    app.include_router(build_system_router(services, registry))
    app.include_router(build_dag_router(services))
    app.include_router(build_run_router(services))
    app.include_router(build_events_router(services))
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = describe_auth_and_errors(FastAPI.openapi(app), public_paths=_PUBLIC_PATHS)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
