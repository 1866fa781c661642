"""Live streams: server-sent events of state changes, and a task log followed as it grows.

Both are read from the store, the single source of truth, so they work the same whether the
scheduler and workers run in this process or on other hosts. They are the API's only async
code: an async generator can notice a client that went away (and a server shutting down)
between two polls; the store is still called in the thread pool, like everywhere else.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.types import Receive, Scope, Send

from flowforge.api.errors import error_response
from flowforge.api.models import SAFE_INT_MAX, errors
from flowforge.core.errors import Unavailable
from flowforge.core.records import Event
from flowforge.operations import attempt_ended
from flowforge.store.base import Store

if TYPE_CHECKING:
    from flowforge.services import Services, StreamSlots

POLL_SECS = 0.2  # how soon a change reaches a connected client
KEEPALIVE_SECS = 15.0  # a comment line keeps proxies from closing an idle stream
MAX_STREAM_SECS = 3600.0  # then the client reconnects (EventSource does so by itself, resuming)
RECONNECT_MS = 2000
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
LOG_PAGE_BYTES = 1024 * 1024  # the most log text one answer (or one read of a followed log) carries


class LimitedStream(StreamingResponse):
    """A live stream that holds one of the API's stream slots while it runs, or answers 503 when none is free.

    The slot is taken and given back around the whole answer, so that a stream whose client
    left before it began still gives its slot back.
    """

    def __init__(self, slots: StreamSlots, content: AsyncIterator[str], media_type: str) -> None:
        super().__init__(content, media_type=media_type, headers=SSE_HEADERS)
        self.slots = slots

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry point."""
        if not self.slots.take():
            message = (
                f"too many open streams ({self.slots.limit}, the server's --max-streams): try again shortly"
            )
            refusal = error_response(503, "unavailable", message, headers={"Retry-After": "5"})
            await refusal(scope, receive, send)
            return
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.slots.give_back()


def _matches(event: Event, run_id: str | None, dag_id: str | None) -> bool:
    return (run_id is None or event.run_id == run_id) and (dag_id is None or event.dag_id == dag_id)


class StreamContext:
    """What a stream checks between polls: the client still there, the server not stopping."""

    def __init__(self, request: Request, stopping: threading.Event) -> None:
        self.request = request
        self.stopping = stopping
        self.started = time.monotonic()

    async def go_on(self) -> bool:
        """False once the client left, the server is shutting down, or the stream is old enough."""
        if self.stopping.is_set() or time.monotonic() - self.started > MAX_STREAM_SECS:
            return False
        return not await self.request.is_disconnected()


async def sse_stream(
    ctx: StreamContext, store: Store, after: int, run_id: str | None, dag_id: str | None
) -> AsyncIterator[str]:
    """`text/event-stream` lines: each event with its id (for Last-Event-ID), kind and JSON data."""
    yield f"retry: {RECONNECT_MS}\n\n"
    last_sent = time.monotonic()
    while await ctx.go_on():
        try:
            events = await run_in_threadpool(store.events_after, after)
        except Unavailable:  # the database is away: the stream stays open and goes on once it is back
            events = []
        for event in events:
            after = event.id
            if _matches(event, run_id, dag_id):
                yield f"id: {event.id}\nevent: {event.kind}\ndata: {json.dumps(event.to_dict())}\n\n"
                last_sent = time.monotonic()
        if events:
            continue  # there may be more right behind them
        if time.monotonic() - last_sent >= KEEPALIVE_SECS:
            yield f": keepalive {after}\n\n"
            last_sent = time.monotonic()
        await asyncio.sleep(POLL_SECS)


async def log_stream(
    ctx: StreamContext, store: Store, run_id: str, task_id: str, attempt: int, after: int
) -> AsyncIterator[str]:
    """An attempt's log as plain text, from cursor `after`, until the attempt has ended."""
    while await ctx.go_on():
        try:
            # The state first: once it says the attempt ended, the reads below get all it wrote.
            ti = await run_in_threadpool(store.get_task_instance, run_id, task_id)
            ended = attempt_ended(ti, attempt)
            while True:  # a page at a time, so that a huge log never sits in memory whole
                text, after = await run_in_threadpool(
                    store.read_log, run_id, task_id, attempt, after, LOG_PAGE_BYTES
                )
                if not text:
                    break
                yield text
        except Unavailable:  # the database is away: the stream stays open and goes on once it is back
            ended = False
        if ended:
            return
        await asyncio.sleep(POLL_SECS)


def build_events_router(services: Services) -> APIRouter:
    """GET /api/v1/events."""
    router = APIRouter(prefix="/api/v1", tags=["events"])
    store = services.store

    @router.get(
        "/events",
        response_class=StreamingResponse,
        responses={
            200: {
                "content": {"text/event-stream": {"schema": {"type": "string"}}},
                "description": "server-sent events",
            },
            **errors(422, 503),
        },
    )
    def events(
        request: Request,
        run_id: str | None = Query(None, description="only changes of this run"),
        dag_id: str | None = Query(None, description="only changes of this DAG and its runs"),
        after: int | None = Query(
            None, ge=0, le=SAFE_INT_MAX, description="resume after this event id (0: every event kept)"
        ),
        last_event_id: str | None = Header(None, description="set by EventSource when it reconnects"),
    ) -> StreamingResponse:
        """Server-sent events: one per change of a DAG, run or task instance, resumable by id.

        A Last-Event-ID header (what EventSource sends when it reconnects) wins over `after`;
        without either the stream starts with the next change. Each event's data is JSON: id, ts,
        kind (dag|run|task), dag_id, run_id, task_id, state, attempt.
        """
        start = after
        resume = (last_event_id or "").strip()
        if resume.isascii() and resume.isdigit() and int(resume) <= SAFE_INT_MAX:
            start = int(resume)
        if start is None:
            start = store.last_event_id()
        stream = sse_stream(StreamContext(request, services.stopping), store, start, run_id, dag_id)
        return LimitedStream(services.streams, stream, "text/event-stream")

    return router
