"""Throw-away PostgreSQL databases and Redis key prefixes for tests, on the shared test services.

FLOWFORGE_TEST_PG names an admin URL (a role allowed to CREATE DATABASE) and FLOWFORGE_TEST_REDIS
a Redis URL; without them the tests that need these services are skipped with a reason.
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest

PG_ENV = "FLOWFORGE_TEST_PG"
REDIS_ENV = "FLOWFORGE_TEST_REDIS"


def require_env(name: str) -> str:
    """The URL in environment variable `name`; skips the calling test when it is unset."""
    url = os.environ.get(name, "").strip()
    if not url:
        pytest.skip(f"{name} is not set (a URL of a test service; .ci/run sets it)")
    return url


def with_path(url: str, path: str) -> str:
    """`url` with its path (the database name) replaced."""
    return urlunsplit(urlsplit(url)._replace(path=path))


def with_query(url: str, **params: str) -> str:
    """`url` with `params` added to (or replacing those in) its query string."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query.update(params)
    return urlunsplit(parts._replace(query=urlencode(query)))


@contextmanager
def pg_database(admin_url: str) -> Iterator[str]:
    """Create `flowforge_test_<random>` through `admin_url`, yield its URL, drop it afterwards."""
    import psycopg

    name = f"flowforge_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield with_path(admin_url, f"/{name}")
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            # FORCE: connections a killed process left behind must not keep the database alive.
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def redis_prefix(redis_url: str) -> Iterator[str]:
    """Yield `redis_url` with a fresh `?prefix=fftest-<random>`; delete that prefix's keys afterwards."""
    import redis

    prefix = f"fftest-{uuid.uuid4().hex[:12]}"
    try:
        yield with_query(redis_url, prefix=prefix)
    finally:
        client = redis.Redis.from_url(redis_url)
        try:
            keys = list(client.scan_iter(match=f"{prefix}:*", count=500))
            if keys:
                client.delete(*keys)
        finally:
            client.close()


class TcpProxy:
    """A TCP relay to `target` on a fixed local port that a test can cut and restore (a network outage)."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> TcpProxy:
        """Listen (again, on the same port once one was chosen) and relay every connection."""
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def stop(self) -> None:
        """Refuse new connections and cut the open ones."""
        if self._listener is not None:
            try:
                self._listener.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
            except OSError:
                pass
            self._listener.close()
            self._listener = None
        with self._lock:
            conns, self._conns = self._conns, []
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
