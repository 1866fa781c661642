"""HTTP/1.1 to one API server, on the standard library's `http.client`.

A CLI command is a short process: importing httpx and httpcore would take it longer (about 35 ms)
than everything else it does against a local server. This is all the client needs: one kept-alive
connection per client (reopened when the server closed it while idle), a timeout, answers read
whole or streamed, `HTTP(S)_PROXY` / `NO_PROXY` honoured, TLS verified against the system's
certificate store (or `SSL_CERT_FILE`). Every failure to get an answer is a `TransportError`.
"""

from __future__ import annotations

import codecs
import http.client
import json
import os
import select
import socket
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

STREAM_CHUNK = 16 * 1024


class TransportError(Exception):
    """No answer: refused, unresolvable, timed out, or the connection broke."""


@dataclass
class Response:
    """An answer: its status, reason phrase, headers and (unless streamed) its whole body."""

    status: int
    reason: str
    headers: Mapping[str, str]
    content: bytes = b""
    _raw: http.client.HTTPResponse | None = field(default=None, repr=False)

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return json.loads(self.content)

    def read(self) -> bytes:
        """The rest of a streamed body (all of it, for an error answer's message)."""
        if self._raw is not None:
            self.content, self._raw = self._raw.read(), None
        return self.content

    def iter_lines(self) -> Iterator[str]:
        """A streamed body line by line, as each line arrives (without its line end)."""
        assert self._raw is not None
        while line := self._raw.readline(STREAM_CHUNK):
            yield line.decode("utf-8", errors="replace").rstrip("\r\n")

    def iter_text(self) -> Iterator[str]:
        """A streamed body as text, each piece as soon as it arrives."""
        assert self._raw is not None
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        while chunk := self._raw.read1(STREAM_CHUNK):
            if text := decoder.decode(chunk):
                yield text
        if tail := decoder.decode(b"", final=True):
            yield tail


def reason_of(exc: BaseException) -> str:
    """Why there was no answer, in a few words (as `ApiUnreachable` shows it)."""
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timed out"
    text = str(exc).strip()
    return text or type(exc).__name__


class Http:
    """Requests to one base URL over one kept-alive connection; thread-safe (one request at a time)."""

    def __init__(self, base_url: str, headers: Mapping[str, str], timeout: float) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self.timeout = timeout
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._https else 80)
        self._prefix = parts.path.rstrip("/")
        self._headers = dict(headers)
        self._proxy = _proxy_for(parts.scheme, self._host)
        self._conn: http.client.HTTPConnection | None = None
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        """Send one request (`body` sent as JSON) and read the whole answer, reusing the connection."""
        with self._lock:
            reused = self._conn is not None and not _closed_by_peer(self._conn)
            if not reused:
                self._reconnect()
            assert self._conn is not None
            try:
                raw = self._send(self._conn, method, path, params, body, headers, self.timeout)
                answer = Response(raw.status, raw.reason, dict(raw.getheaders()), raw.read())
            except (OSError, http.client.HTTPException) as exc:
                self._conn.close()
                self._conn = None
                raise TransportError(reason_of(exc)) from exc
            if raw.will_close:
                self._conn.close()
                self._conn = None
            return answer

    @contextmanager
    def stream(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        read_timeout: float | None = None,
    ) -> Iterator[Response]:
        """A request whose answer is read as it comes, on a connection of its own."""
        conn = self._connection(read_timeout)
        try:
            try:
                raw = self._send(conn, method, path, params, None, headers, self.timeout)
                if conn.sock is not None:
                    conn.sock.settimeout(read_timeout)
            except (OSError, http.client.HTTPException) as exc:
                raise TransportError(reason_of(exc)) from exc
            try:
                yield Response(raw.status, raw.reason, dict(raw.getheaders()), _raw=raw)
            except (OSError, http.client.HTTPException) as exc:
                raise TransportError(reason_of(exc)) from exc
        finally:
            conn.close()

    # -- plumbing ---------------------------------------------------------------------
    def _reconnect(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn = self._connection(self.timeout)

    def _connection(self, timeout: float | None) -> http.client.HTTPConnection:
        host, port = self._proxy or (self._host, self._port)
        if self._https:
            import ssl  # only for https: loading the certificate store takes a while

            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                host, port, timeout=self.timeout, context=ssl.create_default_context()
            )
            if self._proxy:
                conn.set_tunnel(self._host, self._port)
        else:
            conn = http.client.HTTPConnection(host, port, timeout=self.timeout)
        return conn

    def _send(
        self,
        conn: http.client.HTTPConnection,
        method: str,
        path: str,
        params: Mapping[str, Any] | None,
        body: Any,
        headers: Mapping[str, str] | None,
        timeout: float,
    ) -> http.client.HTTPResponse:
        target = self._prefix + path
        if params:
            target += "?" + urlencode({k: _param(v) for k, v in params.items()})
        if self._proxy and not self._https:  # a plain-HTTP proxy takes the whole URL
            target = f"http://{self._host}:{self._port}{target}"
        sent = {**self._headers, **(headers or {})}
        data = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            sent["Content-Type"] = "application/json"
        conn.timeout = timeout
        conn.request(method, target, body=data, headers=sent)
        return conn.getresponse()


def _param(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _closed_by_peer(conn: http.client.HTTPConnection) -> bool:
    """True when the server closed an idle kept-alive connection (it reads as ready, at end of file)."""
    sock = conn.sock
    if sock is None:
        return True
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


def _proxy_for(scheme: str, host: str) -> tuple[str, int] | None:
    """The proxy `HTTP(S)_PROXY` names for this scheme, unless `NO_PROXY` exempts the host."""
    if not (os.environ.get(f"{scheme}_proxy") or os.environ.get(f"{scheme.upper()}_PROXY")):
        return None
    import urllib.request  # only then: it is slow to import, and has the standard reading of NO_PROXY

    proxy = urllib.request.getproxies().get(scheme)
    if not proxy or urllib.request.proxy_bypass(host):
        return None
    parts = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    if not parts.hostname:
        return None
    return parts.hostname, parts.port or 80
