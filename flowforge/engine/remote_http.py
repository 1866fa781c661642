"""The HTTP side of an API-mode worker: calls to the execution API, and its log output shipped in batches.

`engine.remote.ExecutionClient` is built on these.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections import deque
from collections.abc import Mapping
from typing import Any

import httpx

from flowforge.core.errors import Unavailable

log = logging.getLogger("flowforge.worker")

PREFIX = "/api/v1/worker"
CALL_TIMEOUT_SECS = 10.0  # any call but a claim's long poll
BACKOFF_MIN_SECS, BACKOFF_MAX_SECS = 0.5, 5.0  # between tries while the API cannot be reached
PIECE_CHARS = 64 * 1024  # a log chunk is sent in pieces of at most this many characters ...
BATCH_BYTES = 768 * 1024  # ... in requests of at most about this many bytes (the API takes 1 MiB)
BATCH_CHUNKS = 1000  # and of at most this many pieces
MAX_PENDING_LOG_CHARS = 8 * 1024 * 1024  # held while the API is unreachable; past it the writer holds
FLUSH_SECS = 10.0  # a finish waits this long for its output to be shipped, then counts as unavailable


class Refused(Unavailable):
    """The API refused this worker's token (401, 403): a setting to fix. At start the worker exits;
    while it runs, it is waited out like an outage (the token may be being rotated)."""


class ExecutionApi:
    """HTTP calls to the execution API with the worker token; transport failures and 5xx as `Unavailable`."""

    def __init__(self, url: str, token: str, connections: int) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=CALL_TIMEOUT_SECS,
            # A request's headers and body go out at once, not after the server's delayed ACK (Nagle).
            transport=httpx.HTTPTransport(
                limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
                socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
            ),
        )

    def call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        timeout: float = CALL_TIMEOUT_SECS,
        keep: frozenset[int] = frozenset(),
        params: Mapping[str, Any] | None = None,
    ) -> httpx.Response:
        """One request; its answer, but for a refused token (`Refused`) and a server error or overload
        (`Unavailable`) unless its status is in `keep`."""
        try:
            resp = self._http.request(
                method, PREFIX + path, json=body, params=params or None, timeout=timeout
            )
        except httpx.HTTPError as exc:
            raise Unavailable(f"cannot reach the API at {self.url}: {exc}") from None
        if resp.status_code in (401, 403):
            raise Refused(f"the API at {self.url} refused this worker: {message_of(resp)}")
        if resp.status_code in keep:
            return resp
        if resp.status_code >= 500 or resp.status_code in (408, 429):
            raise Unavailable(f"the API at {self.url} answered {resp.status_code}: {message_of(resp)}")
        return resp

    def close(self) -> None:
        """Close the connections."""
        self._http.close()


def message_of(resp: httpx.Response) -> str:
    """The error sentence of an answer, or its start."""
    try:
        return str(resp.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return resp.text[:200]


class LogShipper:
    """Sends log chunks of every slot in batches from one thread, in order; held while the API is away."""

    def __init__(self, api: ExecutionApi) -> None:
        self.api = api
        self._pending: deque[tuple[dict[str, Any], int]] = deque()  # (chunk, its JSON size)
        self._chars = 0
        self._added = self._sent = 0  # pieces, for `flush`
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="log-shipper", daemon=True)
        self._thread.start()

    def add(self, run_id: str, task_id: str, attempt: int, text: str) -> None:
        """Queue a chunk; `Unavailable` when too much output already waits for the API (the caller holds it)."""
        with self._cond:
            if self._chars + len(text) > MAX_PENDING_LOG_CHARS:
                raise Unavailable("log output waits for the API: too much is held already")
            for start in range(0, len(text), PIECE_CHARS):
                piece = text[start : start + PIECE_CHARS]
                chunk = {"run_id": run_id, "task_id": task_id, "attempt": attempt, "text": piece}
                self._pending.append((chunk, len(json.dumps(piece, ensure_ascii=False).encode()) + 200))
                self._chars += len(piece)
                self._added += 1
            self._cond.notify_all()

    def flush(self, timeout: float = FLUSH_SECS) -> bool:
        """Wait until what was queued before this call is shipped; False after `timeout`."""
        deadline = time.monotonic() + timeout
        with self._cond:
            target = self._added
            while self._sent < target:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def close(self, timeout: float = FLUSH_SECS) -> None:
        """Ship what is left (within `timeout`) and stop."""
        self.flush(timeout)
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _batch(self) -> list[tuple[dict[str, Any], int]]:
        """The next chunks to send (called with the lock held)."""
        batch: list[tuple[dict[str, Any], int]] = []
        size = 0
        for chunk, cost in self._pending:
            if batch and (size + cost > BATCH_BYTES or len(batch) >= BATCH_CHUNKS):
                break
            batch.append((chunk, cost))
            size += cost
        return batch

    def _run(self) -> None:
        delay = BACKOFF_MIN_SECS
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                if not self._pending:
                    return
                batch = self._batch()
            try:
                shipped = self._send([chunk for chunk, _ in batch])
                delay = BACKOFF_MIN_SECS
            except Unavailable as exc:
                log.warning("could not ship log output (%s); retrying in %.1fs", exc, delay)
                time.sleep(delay)
                delay = min(delay * 2, BACKOFF_MAX_SECS)
                continue
            with self._cond:
                for _ in range(shipped):
                    chunk, _ = self._pending.popleft()
                    self._chars -= len(chunk["text"])
                self._sent += shipped
                self._cond.notify_all()

    def _send(self, chunks: list[dict[str, Any]]) -> int:
        """POST one batch; how many of its first chunks are done with (appended, or refused for good).

        `Unavailable` when none is: the batch is sent again later.
        """
        resp = self.api.call("POST", "/logs", body={"chunks": chunks}, keep=frozenset({503}))
        if resp.status_code == 503:  # the store failed part-way: the answer says how far it got
            try:
                appended = int(resp.json()["error"]["details"][0]["appended"])
            except (ValueError, KeyError, IndexError, TypeError):
                appended = 0
            if not appended:
                raise Unavailable(f"the API answered 503: {message_of(resp)}")
            return appended
        if resp.status_code == 200:
            for refused in resp.json().get("refused", []):
                log.warning("log output refused: %s", refused.get("message"), extra=_context(refused))
            return len(chunks)
        log.error("log output dropped: the API answered %d: %s", resp.status_code, message_of(resp))
        return len(chunks)


def _context(d: Mapping[str, Any]) -> dict[str, Any]:
    return {k: d.get(k) for k in ("run_id", "task_id", "attempt")}
