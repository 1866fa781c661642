"""`RedisQueue`: task dispatch and the scheduler's doorbell over Redis lists, for many processes."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from flowforge.core.errors import Unavailable
from flowforge.queues.base import TaskMessage

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "flowforge"
# Blocking calls wait at most this long per round trip, so a closed queue or a dead server is
# noticed within about a second even when a caller asked to wait longer.
BLOCK_SECS = 1.0
# Below this a blocking call is not worth it: a non-blocking one is used instead.
MIN_BLOCK_SECS = 0.01
BACKOFF_MIN_SECS = 0.1
# The longest wait between tries while Redis is away, and so how long after it is back a process
# may take to notice: every thread of the process shares one backoff, which grows with each of
# their failures. A try costs one refused connection, so a short cap is cheap.
BACKOFF_MAX_SECS = 2.0
# Log the first failure of an outage, then every this many, so a long outage stays visible
# without flooding the log.
LOG_EVERY_FAILURES = 50
MIN_REDIS_VERSION = (6, 2)  # BLMOVE


def split_prefix(url: str) -> tuple[str, str]:
    """(`url` without its `prefix` query parameter, the prefix or the default); ValueError if empty."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    prefix = DEFAULT_PREFIX
    rest = []
    for key, value in query:
        if key == "prefix":
            prefix = value
        else:
            rest.append((key, value))
    if not prefix or any(c.isspace() for c in prefix):
        raise ValueError(f"bad Redis key prefix {prefix!r}: use letters, digits, '-', '_', ':' or '.'")
    return urlunsplit(parts._replace(query=urlencode(rest))), prefix


def default_consumer() -> str:
    """`host-pid-random`: this process's consumer name when none is given."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class RedisQueue:
    """Task messages in one shared Redis list, handed to consumers reliably; a doorbell list for the scheduler.

    Keys, under a configurable prefix (`redis://host:6379/0?prefix=flowforge`):
    `PREFIX:tasks` (waiting messages, oldest at the head), `PREFIX:processing:CONSUMER` (messages a
    consumer took but has not acked yet) and `PREFIX:wake` (the doorbell, at most one entry).

    Why BLMOVE into a per-consumer processing list: it is the simplest Redis primitive that keeps
    a popped message visible until it is acked. If the consumer dies between taking a message and
    claiming the task, the message is still in its processing list, and `release_consumer` puts it
    back once the scheduler declares that worker dead. Streams with consumer groups and XAUTOCLAIM
    would do the same with more machinery (pending-entry lists, idle times, trimming); we do not
    need their history or fan-out, and the store, not the queue, is the source of truth anyway.
    """

    def __init__(self, url: str, *, consumer: str | None = None) -> None:
        base_url, self.prefix = split_prefix(url)
        self.consumer = consumer or default_consumer()
        self._tasks = f"{self.prefix}:tasks"
        self._processing = self.processing_key(self.consumer)
        self._wake = f"{self.prefix}:wake"
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._failures = 0
        self._retry_at = 0.0  # monotonic time before which calls back off after a failure
        self._since = 0.0  # monotonic time of the first failure of the outage going on
        try:
            self._redis = redis.Redis.from_url(
                base_url,
                decode_responses=True,
                socket_connect_timeout=5,
                # Longer than any blocking call, so only a silent, dead server trips it.
                socket_timeout=BLOCK_SECS + 5,
                # No hidden retries inside redis-py: the retry policy (back off, log, try again)
                # is ours, and a retried blocking call would defeat `close()` unblocking it.
                retry=Retry(NoBackoff(), 0),
            )
        except ValueError as exc:
            raise ValueError(f"bad Redis URL: {exc}") from None
        self._check_server()

    def _check_server(self) -> None:
        try:
            info = self._redis.info("server")
        except RedisError as exc:
            self._redis.close()
            raise Unavailable(f"cannot connect to Redis: {exc}") from None
        version = str(info.get("redis_version", "0"))
        numbers = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
        if numbers < MIN_REDIS_VERSION:
            self._redis.close()
            raise Unavailable(f"Redis {version} is too old: FlowForge needs 6.2 or newer (for BLMOVE)")

    def processing_key(self, consumer: str) -> str:
        """The list holding what `consumer` took and has not acked yet."""
        return f"{self.prefix}:processing:{consumer}"

    # -- dispatch ---------------------------------------------------------------------------
    def put(self, messages: list[TaskMessage]) -> None:
        """Append messages to the shared list, in order; raises Unavailable when Redis is unreachable.

        Raising (rather than dropping) lets the scheduler push the tasks again on its next tick.
        """
        if not messages:
            return
        try:
            self._redis.rpush(self._tasks, *(m.encode() for m in messages))
        except RedisError as exc:
            self._failed("push task messages", exc)
            raise Unavailable(f"Redis unavailable: {exc}") from exc
        self._succeeded()

    def get(self, timeout: float) -> TaskMessage | None:
        """Move the oldest message into this consumer's processing list and return it; None on timeout.

        A Redis error is logged and retried with backoff until `timeout` is spent; never raised.
        """
        deadline = time.monotonic() + timeout
        while not self._closed.is_set():
            if not self._sleep_out_backoff(deadline):
                return None
            remaining = deadline - time.monotonic()
            blocking = remaining >= MIN_BLOCK_SECS
            try:
                if blocking:
                    raw = self._redis.blmove(self._tasks, self._processing, min(remaining, BLOCK_SECS))  # type: ignore[arg-type]
                else:
                    raw = self._redis.lmove(self._tasks, self._processing)
            except Exception as exc:
                # close() cuts the sockets under a blocked call, which then fails in whatever way
                # redis-py notices first: closed means done, whatever the error.
                if self._closed.is_set():
                    return None
                if not isinstance(exc, (RedisError, OSError)):
                    raise
                self._failed("take a task message", exc)
                continue
            self._succeeded()
            if raw is not None:
                message = self._decode(str(raw))
                if message is not None:
                    return message
            elif not blocking:
                return None
        return None

    def _decode(self, raw: str) -> TaskMessage | None:
        try:
            return TaskMessage.decode(raw)
        except ValueError:
            log.error("dropping a malformed queue message %r", raw)
            self._lrem(raw)
            return None

    def ack(self, message: TaskMessage) -> None:
        """Remove the message from this consumer's processing list; an error is logged, not raised.

        A message whose ack was lost stays in the processing list; it is only given back if this
        consumer dies, and the store's conditional claim then refuses the duplicate.
        """
        self._lrem(message.encode())

    def _lrem(self, raw: str) -> None:
        try:
            self._redis.lrem(self._processing, 1, raw)
        except RedisError as exc:
            log.warning("could not ack queue message %r: %s", raw, exc)

    def size(self) -> int:
        """Messages waiting in the shared list (not those being processed); raises Unavailable when unreachable."""
        try:
            n: Any = self._redis.llen(self._tasks)  # typed as maybe-awaitable by some redis-py versions
        except RedisError as exc:
            self._failed("count task messages", exc)
            raise Unavailable(f"Redis unavailable: {exc}") from exc
        self._succeeded()
        return int(n)

    def release_consumer(self, consumer: str) -> int:
        """Give back every message `consumer` took but never acked (it died); returns how many.

        They go to the head of the shared list, oldest first, so they are served next. Each move
        is atomic, so a crash half-way loses nothing.
        """
        source = self.processing_key(consumer)
        moved = 0
        # From the processing list's tail (newest) to the shared list's head: the oldest ends first.
        while self._redis.lmove(source, self._tasks, "RIGHT", "LEFT") is not None:
            moved += 1
        if moved:
            log.warning(
                "gave back %d unacknowledged message(s) of consumer %s",
                moved,
                consumer,
                extra={"worker_id": consumer},
            )
        return moved

    # -- the scheduler's doorbell ------------------------------------------------------------
    def wake_scheduler(self) -> None:
        """Ring the doorbell (best effort: the scheduler's tick is the safety net)."""
        try:
            # LPUSH then LTRIM to one entry, atomically: rings between two waits are never lost,
            # and a thousand rings while the scheduler is busy cost it one extra pass, not a thousand.
            pipe = self._redis.pipeline(transaction=True)
            pipe.lpush(self._wake, "1")
            pipe.ltrim(self._wake, 0, 0)
            pipe.execute()
        except RedisError as exc:
            self._failed("wake the scheduler", exc)
            return
        self._succeeded()

    def wait_for_wake(self, timeout: float) -> bool:
        """Block until the doorbell rings or `timeout` passes; True when it rang. Errors: logged, retried."""
        deadline = time.monotonic() + timeout
        while not self._closed.is_set():
            if not self._sleep_out_backoff(deadline):
                return False
            remaining = deadline - time.monotonic()
            try:
                if remaining < MIN_BLOCK_SECS:
                    return self._redis.lpop(self._wake) is not None
                rang = self._redis.blpop([self._wake], timeout=min(remaining, BLOCK_SECS))
            except Exception as exc:
                if self._closed.is_set():
                    return False
                if not isinstance(exc, (RedisError, OSError)):
                    raise
                self._failed("wait for the doorbell", exc)
                continue
            self._succeeded()
            if rang is not None:
                return True
        return False

    # -- outages -----------------------------------------------------------------------------
    def _failed(self, what: str, exc: BaseException) -> None:
        """Count a call that failed; the blocking calls wait out a backoff that grows with the count.

        One warning when an outage starts and one every `LOG_EVERY_FAILURES` failures, whatever
        call failed (each caller that gives up says so too); one when a call succeeds again.
        """
        with self._lock:
            self._failures += 1
            failures = self._failures
            if failures == 1:
                self._since = time.monotonic()
            delay = min(BACKOFF_MIN_SECS * 2 ** min(failures - 1, 16), BACKOFF_MAX_SECS)
            self._retry_at = time.monotonic() + delay
        if failures == 1:
            log.warning("Redis unavailable (could not %s: %s); every call fails until it is back", what, exc)
        elif failures % LOG_EVERY_FAILURES == 0:
            log.warning(
                "Redis still unavailable after %d failed call(s) (could not %s: %s)", failures, what, exc
            )

    def _succeeded(self) -> None:
        if self._failures:  # read without the lock: the common case costs nothing
            with self._lock:
                failures, self._failures, self._retry_at = self._failures, 0, 0.0
                lasted = time.monotonic() - self._since
            if failures:
                log.warning("Redis is reachable again after %d failed call(s) in %.1fs", failures, lasted)

    def _sleep_out_backoff(self, deadline: float) -> bool:
        """Wait out a backoff in progress; False when `deadline` or `close()` came first."""
        now = time.monotonic()
        if self._retry_at <= now:
            return True
        if self._retry_at > deadline:
            self._closed.wait(max(0.0, deadline - now))
            return False
        self._closed.wait(self._retry_at - now)
        return not self._closed.is_set()

    def close(self) -> None:
        """Give back unacked messages, unblock every waiting call (they return None/False), disconnect."""
        if self._closed.is_set():
            return
        self._closed.set()
        try:
            self.release_consumer(self.consumer)
        except RedisError as exc:  # unreachable now: the scheduler gives them back when it sees us gone
            log.warning("could not give back unacknowledged messages on close: %s", exc)
        # Closing the sockets, in-use ones included, wakes the threads blocked in BLMOVE/BLPOP.
        self._redis.connection_pool.disconnect(inuse_connections=True)
        self._redis.close()

    def __repr__(self) -> str:
        return f"RedisQueue(prefix={self.prefix!r}, consumer={self.consumer!r})"
