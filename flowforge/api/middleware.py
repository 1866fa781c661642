"""Every ASGI middleware of the API, and the order they wrap the app in.

Outermost first: request metrics (so that answers given by the others count too), security
headers (so that every answer, even a 500 or a 401, gets them), the catch-all that turns an
unhandled exception into a JSON 500, the Host check (a server answers only the names it is
served under), the refusal of cross-site writes, bearer-token auth, the request body limit,
and the nesting limit of JSON bodies.

There is no CORS middleware, so no other site's page can read an answer; CrossSiteWriteMiddleware
refuses their requests that would change something.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Iterable
from typing import Any

from starlette.datastructures import Headers, MutableHeaders
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect
from starlette.responses import JSONResponse
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from flowforge.api.bodies import is_json, json_nesting_over, read_body
from flowforge.api.errors import BodyTooLarge, error_response
from flowforge.api.hosts import HostPolicy, origin_matches_host, split_host
from flowforge.metrics import ApiMetrics

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024
# Reachable without a token: liveness, and the static page shell (it holds no data; its API calls
# carry the token). Everything else needs one when a token is configured.
PUBLIC_PATHS = frozenset({"/health", "/", "/favicon.ico"})
_PUBLIC_PREFIXES = ("/static/",)
# Swagger UI and ReDoc load their scripts from a CDN, which a strict CSP would block.
_NO_CSP_PREFIXES = ("/docs", "/redoc")
PAGE_CSP = "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
_READ_METHODS = frozenset({"GET", "HEAD"})
UNMATCHED_ROUTE = "unmatched"
MAX_JSON_DEPTH = 64  # arrays and objects inside each other in a request body
# The execution API, for workers: only the worker token reaches it, and the worker token nothing else.
WORKER_PATHS = "/api/v1/worker/"
NO_WORKER_TOKEN = (
    "the execution API is off: this server has no worker token. Set FLOWFORGE_WORKER_TOKEN (or "
    "FLOWFORGE_WORKER_TOKEN_FILE) on the API server, and give the workers the same token"
)


def middleware_stack(
    metrics: ApiMetrics,
    *,
    token: str | None,
    read_token: str | None,
    max_body: int,
    hosts: HostPolicy | None = None,
    worker_token: str | None = None,
) -> list[Middleware]:
    """The API's middleware, outermost first; without `hosts`, every Host is answered."""
    return [
        Middleware(RequestMetricsMiddleware, metrics=metrics),
        Middleware(SecurityHeadersMiddleware),
        Middleware(CatchAllMiddleware),
        Middleware(HostCheckMiddleware, policy=hosts),
        Middleware(CrossSiteWriteMiddleware),
        Middleware(TokenAuthMiddleware, token=token, read_token=read_token, worker_token=worker_token),
        Middleware(BodyLimitMiddleware, max_bytes=max_body),
        Middleware(JsonDepthMiddleware, max_depth=MAX_JSON_DEPTH),
    ]


def route_template(scope: Scope) -> str:
    """The template of the route that serves `scope` (`/api/v1/runs/{run_id}`), so label values stay few."""
    path = getattr(scope.get("route"), "path", None)
    if path is None:
        # Answered before routing (401, 403, 413): find the route the router would have chosen.
        path = _find_route(getattr(getattr(scope.get("app"), "router", None), "routes", ()), scope)[0]
    return str(path or UNMATCHED_ROUTE)


def _find_route(routes: Iterable[Any], scope: Scope) -> tuple[str | None, bool]:
    """(template, full match) of the first route matching `scope`; a path-only match (405) if none fully does."""
    partial = None
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:  # newer FastAPI keeps an included router whole
            prefix = getattr(getattr(route, "include_context", None), "prefix", "")
            if not scope["path"].startswith(prefix):
                continue
            found, full = _find_route(inner.routes, {**scope, "path": scope["path"][len(prefix) :]})
            found = None if found is None else prefix + found
        else:
            match, _ = route.matches(scope)
            if match is Match.NONE:
                continue
            found, full = getattr(route, "path", None), match is Match.FULL
        if full:
            return found, True
        partial = partial or found
    return partial, False


class RequestMetricsMiddleware:
    """Counts and times every HTTP request under its route template, never its raw path.

    Outermost, so that answers given by other middleware (401, 403, 413, 500) count too.
    """

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry point."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        answered = False

        async def observing_send(message: Message) -> None:
            nonlocal answered
            if message["type"] == "http.response.start" and not answered:
                answered = True
                self._observe(scope, message["status"], started)
            await send(message)

        try:
            await self.app(scope, receive, observing_send)
        except BaseException:
            if not answered:
                self._observe(scope, 500, started)
            raise

    def _observe(self, scope: Scope, status: int, started: float) -> None:
        route = route_template(scope)
        self.metrics.requests.labels(route, str(status)).inc()
        self.metrics.request_duration_seconds.labels(route).observe(time.perf_counter() - started)


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


class TokenAuthMiddleware:
    """With a token configured, every request but the public paths needs `Authorization: Bearer <token>`.

    The read-only token, when there is one, is good for GET and HEAD (event stream and metrics
    included) and gets 403 on anything else. The execution API (`/api/v1/worker/...`) has a scope
    of its own: only the worker token reaches it, and the worker token reaches nothing else (403
    both ways); without a worker token configured the execution API answers 403 to everyone.
    """

    def __init__(
        self, app: ASGIApp, token: str | None, read_token: str | None = None, worker_token: str | None = None
    ) -> None:
        self.app = app
        self.token = token.encode() if token else None
        self.read_token = read_token.encode() if read_token else None
        self.worker_token = worker_token.encode() if worker_token else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry point."""
        if scope["type"] != "http" or _is_public(scope["path"]):
            await self.app(scope, receive, send)
            return
        scheme, _, given = Headers(scope=scope).get("authorization", "").partition(" ")
        presented = given.strip().encode() if scheme.lower() == "bearer" else b""
        # Every token compared in constant time, every time: the timing tells nothing about any.
        full = hmac.compare_digest(presented, self.token) if self.token else False
        read = hmac.compare_digest(presented, self.read_token) if self.read_token else False
        worker = hmac.compare_digest(presented, self.worker_token) if self.worker_token else False
        if scope["path"].startswith(WORKER_PATHS):
            refusal = self._worker_scope(worker, full or read)
        else:
            refusal = self._user_scope(scope, worker, full, read)
        if refusal is None:
            await self.app(scope, receive, send)
        else:
            await refusal(scope, receive, send)

    def _worker_scope(self, worker: bool, user: bool) -> JSONResponse | None:
        """The refusal of a request to the execution API, or None to let it through."""
        if self.worker_token is None:
            return error_response(403, "forbidden", NO_WORKER_TOKEN)
        if worker:
            return None
        if user:
            message = "this token cannot call the execution API (/api/v1/worker/...): workers use FLOWFORGE_WORKER_TOKEN"
            return error_response(403, "forbidden", message)
        return _unauthorized(
            "missing or wrong worker token (send Authorization: Bearer <FLOWFORGE_WORKER_TOKEN>)"
        )

    def _user_scope(self, scope: Scope, worker: bool, full: bool, read: bool) -> JSONResponse | None:
        """The refusal of a request to any other route, or None to let it through."""
        if worker:
            message = (
                f"the worker token may call the execution API only, not {scope['method']} {scope['path']}"
            )
            return error_response(403, "forbidden", message)
        if (self.token is None and self.read_token is None) or full:
            return None
        if read and scope["method"] in _READ_METHODS:
            return None
        if read:
            return error_response(
                403, "forbidden", f"this token is read-only: it cannot {scope['method']} {scope['path']}"
            )
        return _unauthorized("missing or wrong API token (send Authorization: Bearer <token>)")


def _unauthorized(message: str) -> JSONResponse:
    return error_response(401, "unauthorized", message, headers={"WWW-Authenticate": "Bearer"})


class HostCheckMiddleware:
    """Answers 421 to a request addressed to a host name the server is not served under.

    Before any route runs: a page that rebinds its own name to this server's address gets
    nothing but this refusal. A request without a Host header (HTTP/1.0) comes from no browser.
    """

    def __init__(self, app: ASGIApp, policy: HostPolicy | None) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry point."""
        header = Headers(scope=scope).get("host") if scope["type"] == "http" else None
        if self.policy is None or header is None:
            await self.app(scope, receive, send)
            return
        host = split_host(header)
        if host is None or not self.policy.allows(host[0]):
            name = host[0] if host else header
            message = (
                f"this server does not answer for host {header!r}; if that is one of its names, "
                f"start it with --allowed-host {name} (or FLOWFORGE_ALLOWED_HOSTS)"
            )
            await error_response(421, "misdirected_request", message)(scope, receive, send)
            return
        await self.app(scope, receive, send)


class CrossSiteWriteMiddleware:
    """Refuses a browser's request from another site or origin that would change something (403).

    Token or not: without a token on loopback, any web page the user opens could otherwise POST
    to the API (a "simple" request needs no CORS preflight). Browsers say where a request comes
    from in `Sec-Fetch-Site`, and older ones at least in `Origin`: a write whose Origin is not
    the origin it was sent to (scheme://host:port of its Host header) is refused. Clients that
    are not browsers send neither.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry point."""
        if scope["type"] == "http" and scope["method"] not in _READ_METHODS:
            headers = Headers(scope=scope)
            site = headers.get("sec-fetch-site", "same-origin").lower()
            origin = headers.get("origin")
            if site not in ("same-origin", "none"):
                refused = f"a {site} browser request"
            elif origin is not None and not _same_origin(origin, headers.get("host", "")):
                refused = f"a request from origin {origin[:200]!r}"
            else:
                await self.app(scope, receive, send)
                return
            message = f"{refused} may not {scope['method']} {scope['path']}"
            await error_response(403, "forbidden", message)(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _same_origin(origin: str, host_header: str) -> bool:
    host = split_host(host_header)
    return host is not None and origin_matches_host(origin, host)


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
    return path in PUBLIC_PATHS or path.startswith(_PUBLIC_PREFIXES)


class CatchAllMiddleware:
    """Turns any unhandled exception into a JSON 500 and logs it; no traceback reaches a client."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry point."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except ClientDisconnect:
            # The client left before sending its whole request: nobody to answer, nothing wrong here.
            log.debug("client went away during %s %s", scope.get("method"), scope.get("path"))
        except Exception:
            log.exception("unhandled error in %s %s", scope.get("method"), scope.get("path"))
            if started:
                # Half a response is out; the server will close the connection. Nothing more to say.
                return
            response = error_response(500, "internal_error", "internal server error; see the server log")
            await response(scope, receive, send)


class JsonDepthMiddleware:
    """Refuses a JSON body nested deeper than `max_depth` with 422, before anything parses it.

    Python's JSON parser recurses once per level: a body of a million `[` would otherwise end in
    a RecursionError. The body (already bounded by BodyLimitMiddleware) is read whole, checked,
    and handed on; a client that leaves before sending it all gets no answer and a debug line.
    """

    def __init__(self, app: ASGIApp, max_depth: int) -> None:
        self.app = app
        self.max_depth = max_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry point."""
        if scope["type"] != "http" or scope["method"] in _READ_METHODS or not is_json(scope):
            await self.app(scope, receive, send)
            return
        try:
            body = await read_body(receive)
        except BodyTooLarge as exc:
            await error_response(413, "payload_too_large", str(exc.detail))(scope, receive, send)
            return
        if body is None:
            log.debug("client went away during %s %s", scope["method"], scope["path"])
            return
        if json_nesting_over(body, self.max_depth):
            message = f"invalid request: the JSON body nests arrays and objects over {self.max_depth} deep"
            await error_response(422, "invalid_request", message)(scope, receive, send)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()  # what comes after the body: a disconnect
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)
