"""`PostgresStore`: the SQL store on PostgreSQL through a psycopg 3 connection pool."""

from __future__ import annotations

import logging
import select
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, cast

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool, PoolTimeout

from flowforge.core.errors import Unavailable
from flowforge.store.db import Cursor, Dialect
from flowforge.store.sql import SqlStore

log = logging.getLogger(__name__)

# A fixed 64-bit key for pg_advisory_xact_lock: two processes starting at once against an empty
# database would otherwise both try CREATE TABLE and one would fail. The lock is released with
# the migration's transaction, so it can never be left behind by a crash.
MIGRATE_LOCK_KEY = 0x466C6F77466F7267  # "FlowForg"

POSTGRES = Dialect(
    name="postgresql",
    placeholder="%s",
    integrity_error=psycopg.IntegrityError,
    migrate_lock=f"SELECT pg_advisory_xact_lock({MIGRATE_LOCK_KEY})",
)

CONNECT_TIMEOUT_SECS = 5
# How long a caller waits for a pooled connection; while PostgreSQL is down each call fails
# after this long, and the loops above (scheduler tick, worker heartbeat) log and retry, and the
# API answers 503. Short, so that nothing hangs during an outage; a pool of healthy connections
# hands one out within milliseconds even under load.
POOL_TIMEOUT_SECS = 3.0
# The pool retries a failed connection with doubling delays until this much time has passed,
# then gives up and starts afresh on the next call. Kept short so that once PostgreSQL is back,
# a process reconnects within seconds, not after a backoff grown during a long outage.
RECONNECT_TIMEOUT_SECS = 5.0
DEFAULT_POOL_SIZE = 10
# A pool opens connections as its callers need them, up to its size, and closes those left idle
# this long, down to MIN_CONNECTIONS: a busy minute does not hold the server's connections for good.
MIN_CONNECTIONS = 1
MAX_IDLE_SECS = 60.0
APPLICATION_NAME = "flowforge"  # pg_stat_activity.application_name, unless the process names its role


def describe_error(exc: BaseException) -> str:
    """psycopg's message on one line, without libpq's hint lines ("Is the server running…")."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    return " ".join(first.removeprefix("connection failed:").split())


def is_connection_error(exc: psycopg.Error) -> bool:
    """True when `exc` means the server went away (not, say, a lock timeout or a cancelled query)."""
    state = exc.sqlstate
    # 08: connection exception; 57P01-57P03: the server is shutting down or starting up.
    return state is None or state.startswith("08") or state in ("57P01", "57P02", "57P03")


def check_connection(url: str, application_name: str = APPLICATION_NAME) -> None:
    """Connect once and disconnect; raises Unavailable (refused, unknown host, no such database, ...).

    Done before the pool opens because a pool only reports "timed out" whatever the cause.
    """
    try:
        with psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT_SECS, application_name=application_name):
            pass
    except psycopg.ProgrammingError as exc:  # a malformed connection string: a configuration error
        raise ValueError(f"bad PostgreSQL URL: {describe_error(exc)}") from None
    except psycopg.OperationalError as exc:
        reason = describe_error(exc)
        if "does not exist" in reason:
            reason += " (create it first, e.g. with createdb, or fix the URL)"
        raise Unavailable(f"cannot connect to PostgreSQL: {reason}") from None


def check_idle_connection(conn: psycopg.Connection[Any]) -> None:
    """The pool's check on each checkout: raises when the connection no longer works.

    A round trip only when the server sent something while the connection sat idle: it does so
    when it goes away (a restart, a terminated backend: an error message, then end of file), and
    the round trip then fails, so the pool hands out a fresh connection instead of a dead one.
    A connection with nothing to read costs one poll(2), not a round trip per transaction.
    """
    poller = select.poll()
    poller.register(conn.fileno(), select.POLLIN | select.POLLPRI)
    if poller.poll(0):
        ConnectionPool.check_connection(conn)


class Outage:
    """Whether calls are failing for want of the server: one warning when they start, one when they stop.

    Every caller logs its own failed call too; these two lines say when the server went away
    and when this process could use it again, whichever thread noticed first.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._failures = 0
        self._since = 0.0

    def failed(self, reason: str) -> Unavailable:
        """Count a call that failed for want of the server; the Unavailable error to raise."""
        with self._lock:
            self._failures += 1
            first = self._failures == 1
            if first:
                self._since = time.monotonic()
        if first:
            log.warning("%s; every call fails until it is back", reason)
        return Unavailable(reason)

    def succeeded(self) -> None:
        """A call went through: end the outage, if one was going on."""
        if not self._failures:  # read without the lock: the common case costs nothing
            return
        with self._lock:
            failures, self._failures = self._failures, 0
            lasted = time.monotonic() - self._since
        if failures:
            log.warning("PostgreSQL is reachable again after %d failed call(s) in %.1fs", failures, lasted)


class PostgresStore(SqlStore):
    """The Store on PostgreSQL: every thread borrows a connection from one pool per process.

    Transactions run at PostgreSQL's default READ COMMITTED. That is enough for the fencing
    compare-and-sets in SqlStore: a conditional UPDATE that waited on a row lock re-checks its
    WHERE clause against the committed row, so exactly one of two racing claims sees rowcount 1.
    """

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = DEFAULT_POOL_SIZE,
        timeout: float = POOL_TIMEOUT_SECS,
        application_name: str = APPLICATION_NAME,
    ) -> None:
        super().__init__(POSTGRES)
        self.url = url
        self._outage = Outage()
        try:  # an application_name in the URL wins over the role's
            app_name = str(conninfo_to_dict(url).get("application_name") or application_name)
        except psycopg.ProgrammingError:  # a malformed URL: check_connection says what is wrong
            app_name = application_name
        check_connection(url, app_name)
        size = max(pool_size, 1)
        self._pool = ConnectionPool(
            url,
            min_size=min(MIN_CONNECTIONS, size),
            max_size=size,
            max_idle=MAX_IDLE_SECS,
            open=False,
            # After a PostgreSQL restart the pool hands out a fresh connection instead of a dead
            # one, so no caller sees a stale-socket error.
            check=check_idle_connection,
            timeout=timeout,
            reconnect_timeout=RECONNECT_TIMEOUT_SECS,
            kwargs={"connect_timeout": CONNECT_TIMEOUT_SECS, "application_name": app_name},
            name="flowforge",
        )
        try:
            self._pool.open(wait=True, timeout=max(timeout, CONNECT_TIMEOUT_SECS))
            self.migrate()
        except PoolTimeout as exc:
            self._pool.close()
            raise Unavailable(f"cannot connect to PostgreSQL: {describe_error(exc)}") from None
        except BaseException:
            self._pool.close()
            raise

    @classmethod
    def from_url(
        cls, url: str, *, pool_size: int = DEFAULT_POOL_SIZE, application_name: str = APPLICATION_NAME
    ) -> PostgresStore:
        """Open `postgresql://user:password@host:port/dbname?option=value` (or `postgres://`)."""
        if not url.startswith(("postgresql://", "postgres://")):
            raise ValueError(f"bad PostgreSQL URL {url.split('@')[-1]!r}: expected postgresql://HOST/DBNAME")
        return cls(url, pool_size=pool_size, application_name=application_name)

    @property
    def pool_bounds(self) -> tuple[int, int]:
        """(the connections kept open when idle, the most held at once)."""
        return self._pool.min_size, self._pool.max_size

    @contextmanager
    def _begin(self, write: bool) -> Iterator[Cursor]:
        """A cursor on a pooled connection: one transaction for a write, committed on exit, rolled back on error.

        A read runs each statement on its own (autocommit): at READ COMMITTED every statement
        takes its own snapshot even inside a transaction, so BEGIN and COMMIT would only add two
        round trips.
        """
        # The pool's context commits when the block ends normally and rolls back on an exception;
        # a connection left broken (server gone) is discarded rather than returned to the pool.
        try:
            with self._pool.connection() as conn:
                if conn.autocommit == write:
                    conn.autocommit = not write
                with conn.cursor() as cur:
                    yield cur
        except PoolTimeout as exc:
            raise self._outage.failed(f"PostgreSQL unavailable: {describe_error(exc)}") from exc
        except psycopg.OperationalError as exc:
            if is_connection_error(exc):
                raise self._outage.failed(f"PostgreSQL unavailable: {describe_error(exc)}") from exc
            raise
        self._outage.succeeded()

    def _commit_after(self, cur: Cursor, last: Callable[[Cursor], None]) -> None:
        """Send the last statement(s) and the COMMIT without waiting for an answer in between (pipeline mode).

        The event log's last statement takes the lock that numbers events in commit order; with
        the COMMIT right behind it, the lock is held for about one round trip, not for as long as
        a busy process takes to read the answer and send the COMMIT.
        """
        conn = cast(psycopg.Cursor[Any], cur).connection
        with conn.pipeline():
            last(cur)
            conn.commit()

    def close(self) -> None:
        """Close every pooled connection (idempotent)."""
        self._pool.close()

    def __repr__(self) -> str:
        return f"PostgresStore({self.url.split('@')[-1]!r})"
