"""Hostile requests and settings against real server processes: deep JSON, bodies cut short, an open
metrics port, a token short enough to guess."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from flowforge.api.bodies import json_nesting_over
from flowforge.api.middleware import MAX_JSON_DEPTH
from tests.harness import FlowForgeProcess, clean_env, free_port, start_up, wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FlowForgeProcess]:
    proc = start_up(tmp_path_factory.mktemp("input") / "home", "--concurrency", "1", "--log-level", "debug")
    yield proc
    proc.stop()


def nested(depth: int, closed: bool = True) -> str:
    return "[" * depth + ("]" * depth if closed else "")


@pytest.mark.parametrize("depth", [10_000, 40_000, 160_000])  # 1x, 4x, 16x
def test_deeply_nested_json_is_a_422_naming_the_limit(up: FlowForgeProcess, depth: int) -> None:
    bodies = {
        "/api/v1/dags": [nested(depth), '{"yaml": ' + nested(depth) + "}", nested(depth, closed=False)],
        "/api/v1/runs": ['{"dag_id": "d", "params": {"p": ' + nested(depth) + "}}", '{"a":' * depth],
    }
    for path, texts in bodies.items():
        for text in texts:
            resp = httpx.post(
                f"{up.url}{path}", content=text, headers={"Content-Type": "application/json"}, timeout=30
            )
            assert resp.status_code == 422, (path, text[:40], resp.text)
            error = resp.json()["error"]
            assert error["code"] == "invalid_request" and f"over {MAX_JSON_DEPTH} deep" in error["message"]
    assert httpx.get(f"{up.url}/health").status_code == 200
    assert "unhandled error" not in up.output() and "RecursionError" not in up.output()


def test_json_at_the_depth_limit_is_read(up: FlowForgeProcess) -> None:
    limit = f"over {MAX_JSON_DEPTH} deep"
    value = json.loads(nested(MAX_JSON_DEPTH - 2))  # inside {"params": {"p": …}}: 64 levels in all
    resp = httpx.post(f"{up.url}/api/v1/runs", json={"dag_id": "nowhere", "params": {"p": value}})
    assert resp.status_code == 404, resp.text  # read, and the route ran: there is no such DAG
    deeper = json.loads(nested(MAX_JSON_DEPTH - 1))
    resp = httpx.post(f"{up.url}/api/v1/runs", json={"dag_id": "nowhere", "params": {"p": deeper}})
    assert resp.status_code == 422 and limit in resp.json()["error"]["message"]


@pytest.mark.parametrize(
    ("body", "over"),
    [
        (b'{"a": [1, {"b": [2]}]}', False),
        (b'{"yaml": "' + b"[" * 500 + b'"}', False),  # brackets inside a string do not nest
        (b'["\\"[[[[", ' + b"[" * 3 + b"]" * 3 + b"]", False),
        (b"[" * 4 + b"]" * 4, False),
        (b"[" * 5 + b"]" * 5, True),
        (b"[" * 5, True),  # never closed: the parser would still recurse
        (b'{"a":{"a":{"a":{"a":{"a":1}}}}}', True),
        (b'"' + b'\\"' * 50_000, False),  # an unterminated string, in linear time
        (b"]]]][[", False),
    ],
)
def test_json_nesting_is_measured_outside_strings(body: bytes, over: bool) -> None:
    assert json_nesting_over(body, 4) is over


@pytest.mark.parametrize("media", ["application/yaml", "application/json"])
def test_a_client_leaving_mid_body_is_a_debug_line_not_an_error(up: FlowForgeProcess, media: str) -> None:
    before = up.output().count("client went away during POST /api/v1/dags")
    with socket.create_connection(("127.0.0.1", up.port)) as sock:
        head = (
            f"POST /api/v1/dags HTTP/1.1\r\nHost: 127.0.0.1:{up.port}\r\nContent-Type: {media}\r\n"
            "Content-Length: 100000\r\n\r\n"
        )
        sock.sendall(head.encode() + b"id: cut")  # then close, 99,993 bytes short

    def logged() -> bool:
        return up.output().count("client went away during POST /api/v1/dags") > before

    wait_until("the debug line about the client that left", logged, 10, alive=up.check_alive)
    lines = [json.loads(line) for line in up.output().splitlines() if line.startswith("{")]
    assert not [e for e in lines if e["level"] in ("error", "critical") or "exc" in e]
    assert httpx.get(f"{up.url}/health").status_code == 200


def exit_line(tmp_path: Path, args: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Run a command that should refuse to start; its exit code and its one line of output."""
    proc = FlowForgeProcess(args, env=env, log_path=tmp_path / "out.log")
    try:
        code = proc.proc.wait(60)
    finally:
        proc.stop()
    [line] = proc.output().strip().splitlines()
    return code, line


@pytest.mark.parametrize("variable", ["FLOWFORGE_API_TOKEN", "FLOWFORGE_API_READ_TOKEN"])
def test_a_short_token_on_a_public_address_exits_2(tmp_path: Path, variable: str) -> None:
    env = clean_env(FLOWFORGE_API_TOKEN="t" * 32)
    env[variable] = "x" * 15
    args = ["up", "--host", "0.0.0.0", "--port", str(free_port()), "--home", str(tmp_path / "home")]
    code, line = exit_line(tmp_path, args, env)
    assert code == 2 and line.startswith("error: refusing to serve on 0.0.0.0 with a 15-character")
    assert "at least 16 characters" in line and "x" * 15 not in line
    assert not (tmp_path / "home" / "flowforge.db").exists()


def test_a_short_token_on_loopback_is_fine(tmp_path: Path) -> None:
    proc = start_up(tmp_path / "home", "--concurrency", "1", env=clean_env(FLOWFORGE_API_TOKEN="short"))
    try:
        assert (
            httpx.get(f"{proc.url}/api/v1/status", headers={"Authorization": "Bearer short"}).status_code
            == 200
        )
    finally:
        proc.stop()


@pytest.mark.parametrize("role", ["scheduler", "worker"])
def test_metrics_on_a_public_address_are_warned_about(tmp_path: Path, redis_url: str, role: str) -> None:
    port = free_port()
    env = clean_env(FLOWFORGE_HOME=str(tmp_path / "home"), FLOWFORGE_QUEUE=redis_url)
    proc = FlowForgeProcess(
        [role, "--metrics-port", str(port), "--metrics-host", "0.0.0.0"],
        env=env,
        log_path=tmp_path / "out.log",
    )
    try:
        wait_until(
            "the metrics endpoint",
            lambda: "metrics on http://0.0.0.0" in proc.output(),
            30,
            alive=proc.check_alive,
        )
        warnings = [
            json.loads(line)
            for line in proc.output().splitlines()
            if line.startswith("{") and '"warning"' in line and "--metrics-host 0.0.0.0" in line
        ]
        assert len(warnings) == 1 and "no token" in warnings[0]["msg"] and "127.0.0.1" in warnings[0]["msg"]
        assert httpx.get(f"http://127.0.0.1:{port}/metrics").status_code == 200  # still served
    finally:
        assert proc.stop() == 0
