"""Too many sockets against a real `flowforge up`: the stream cap, the connection cap, the header timeout.

A client can open connections and send nothing, or a header now and then; or open event streams
until the process runs out of something. The server must keep answering /health, close
connections that send no request in time, and refuse streams past --max-streams with a JSON 503.
"""

from __future__ import annotations

import os
import resource
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from flowforge.roles import HEADER_TIMEOUT_SECS
from tests.harness import FlowForgeProcess, start_up, wait_until

pytestmark = pytest.mark.e2e

IDLE_SOCKETS = 1100
STREAMS = 200


@pytest.fixture(autouse=True, scope="module")
def enough_open_files() -> Iterator[None]:
    """This process holds over a thousand sockets: lift its open-file limit to the hard limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = IDLE_SOCKETS + STREAMS + 500
    if hard != resource.RLIM_INFINITY and hard < wanted:
        pytest.fail(f"the hard open-file limit ({hard}) is below the {wanted} these tests need")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, wanted), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@contextmanager
def sockets(count: int, port: int, request: bytes = b"") -> Iterator[list[socket.socket]]:
    """`count` connections to the server, each having sent `request` (nothing: idle); closed afterwards."""
    opened: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", port), timeout=30)
            if request:
                sock.sendall(request)
            opened.append(sock)
        yield opened
    finally:
        for sock in opened:
            sock.close()


def get(path: str, port: int) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()


def answer_head(sock: socket.socket) -> bytes:
    """The status line and headers of the answer on `sock` (and whatever came with them)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def closed_by_server(sock: socket.socket) -> bool:
    """True once the server has closed `sock` (end of file), without waiting."""
    sock.setblocking(False)
    try:
        return sock.recv(65536) == b""
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True
    finally:
        sock.setblocking(True)


def test_streams_past_max_streams_get_a_json_503(tmp_path: Path) -> None:
    go_on = tmp_path / "go-on"
    proc = start_up(tmp_path / "home", "--concurrency", "1", "--max-streams", "3")
    try:
        dag = f"id: slow\ntasks:\n  - {{id: t, command: 'echo hi; while [ ! -e {go_on} ]; do sleep 0.05; done'}}\n"
        assert httpx.post(f"{proc.url}/api/v1/dags", json={"yaml": dag}).status_code == 201
        run_id = httpx.post(f"{proc.url}/api/v1/runs", json={"dag_id": "slow"}).json()["run_id"]
        task = f"{proc.url}/api/v1/runs/{run_id}/tasks/t"
        wait_until("the task to run", lambda: httpx.get(task).json()["state"] == "running", 30)
        follow = get(f"/api/v1/runs/{run_id}/tasks/t/logs?follow=1&attempt=1", proc.port)
        with (
            sockets(2, proc.port, get("/api/v1/events", proc.port)) as events,
            sockets(1, proc.port, follow) as logs,
        ):
            for sock in [*events, *logs]:
                assert answer_head(sock).startswith(b"HTTP/1.1 200"), "the first three streams are served"
            for path in ("/api/v1/events", f"/api/v1/runs/{run_id}/tasks/t/logs?follow=1"):
                resp = httpx.get(f"{proc.url}{path}", timeout=10)
                assert resp.status_code == 503 and resp.headers["retry-after"] == "5", path
                error = resp.json()["error"]
                assert error["code"] == "unavailable" and "--max-streams" in error["message"]
            assert httpx.get(f"{proc.url}/health").status_code == 200
            events[0].close()  # a stream that ends gives its slot back

            def served() -> bool:
                with httpx.stream("GET", f"{proc.url}/api/v1/events", timeout=10) as resp:
                    return resp.status_code == 200

            wait_until("a freed stream slot", served, 10)
    finally:
        go_on.touch()
        proc.stop()


def test_past_max_connections_requests_get_503_until_idle_ones_are_closed(tmp_path: Path) -> None:
    proc = start_up(tmp_path / "home", "--concurrency", "1", "--max-connections", "20")
    try:
        with sockets(25, proc.port) as idle:
            resp = httpx.get(f"{proc.url}/health", timeout=10)
            assert resp.status_code == 503
            # Connections that send no request are closed after the header timeout; then it answers again.
            wait_until(
                "the idle connections to be closed",
                lambda: all(map(closed_by_server, idle)),
                HEADER_TIMEOUT_SECS + 20,
            )
            assert httpx.get(f"{proc.url}/health", timeout=10).status_code == 200
    finally:
        proc.stop()


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def test_health_answers_with_1100_idle_sockets_and_200_streams_and_idle_ones_are_closed(
    tmp_path: Path,
) -> None:
    proc = start_up(tmp_path / "home", "--concurrency", "2", "--max-streams", str(STREAMS + 10))
    try:
        with (
            sockets(IDLE_SOCKETS, proc.port) as idle,
            sockets(STREAMS, proc.port, get("/api/v1/events", proc.port)) as streams,
            sockets(1, proc.port, b"GET /health HTTP/1.1\r\nHost: 127") as trickle,
        ):
            for sock in streams:
                assert b"retry: 2000" in answer_head(sock) or b"retry: 2000" in sock.recv(65536)
            durations = health_durations(proc, count=300)
            report(durations, proc)
            wait_until(
                "the server to close connections that sent no (whole) request",
                lambda: all(map(closed_by_server, [*idle, *trickle])),
                HEADER_TIMEOUT_SECS + 30,
            )
            assert not any(map(closed_by_server, streams)), "a request in progress is never cut"
            assert httpx.get(f"{proc.url}/health", timeout=10).status_code == 200
    finally:
        proc.stop()


def health_durations(proc: FlowForgeProcess, count: int) -> list[float]:
    """Seconds each of `count` GET /health took, on one kept-alive connection; every one a 200."""
    durations = []
    with httpx.Client(base_url=proc.url, timeout=10) as client:
        for _ in range(count):
            started = time.perf_counter()
            assert client.get("/health").status_code == 200
            durations.append(time.perf_counter() - started)
    return durations


def report(durations: list[float], proc: FlowForgeProcess) -> None:
    """The figure for the notes: /health p50 and p99 under this load, with the machine's load average."""
    print(
        f"\n/health with {IDLE_SOCKETS} idle sockets and {STREAMS} event streams open: "
        f"p50 {percentile(durations, 0.5) * 1000:.1f} ms, p99 {percentile(durations, 0.99) * 1000:.1f} ms "
        f"over {len(durations)} requests; server CPU {proc.cpu():.1f} s; "
        f"1-minute load average {os.getloadavg()[0]:.2f}"
    )
