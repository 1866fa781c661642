"""DNS rebinding and cross-origin writes against a real `flowforge up`: the Host and Origin checks.

A page on attacker.example that rebinds its name to 127.0.0.1 makes the browser send
`Host: attacker.example:PORT` with requests it deems same-origin; the server must answer those
with 421 before any route runs. A write whose Origin is not the server's own origin is refused.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from flowforge.api.hosts import HostPolicy, origin_matches_host, split_host
from tests.harness import FlowForgeProcess, clean_env, free_port, start_up

pytestmark = pytest.mark.e2e

TOKEN = "tok-6f1c0a93d2b84e57"


def dag(dag_id: str, marker: Path) -> str:
    return f"id: {dag_id}\ntasks:\n  - {{id: a, command: 'touch {marker}'}}\n"


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FlowForgeProcess]:
    """`flowforge up` on 127.0.0.1, also answering flowforge.test and every name under corp.test."""
    home = tmp_path_factory.mktemp("hosts") / "home"
    proc = start_up(
        home, "--concurrency", "1", "--allowed-host", "flowforge.test", "--allowed-host", "*.corp.test"
    )
    yield proc
    proc.stop()


def test_a_rebound_name_gets_421_before_any_route_runs(up: FlowForgeProcess, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    rebound = {"Host": f"attacker.example:{up.port}"}
    attempts = [
        ("POST", "/api/v1/dags", {"yaml": dag("pwn", marker)}),
        ("POST", "/api/v1/runs", {"dag_id": "pwn"}),
        ("GET", "/api/v1/dags", None),
        ("GET", "/api/v1/events", None),
        ("GET", "/health", None),
        ("GET", "/", None),
    ]
    for method, path, body in attempts:
        resp = httpx.request(method, f"{up.url}{path}", json=body, headers=rebound, timeout=10)
        assert resp.status_code == 421, (method, path, resp.text)
        error = resp.json()["error"]
        assert error["code"] == "misdirected_request", (method, path)
        assert (
            "'attacker.example:" in error["message"] and "--allowed-host attacker.example" in error["message"]
        )
    assert httpx.get(f"{up.url}/api/v1/dags/pwn").status_code == 404  # nothing was stored
    assert httpx.get(f"{up.url}/api/v1/runs").json()["runs"] == []
    assert not marker.exists()


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "localhost",
        "LOCALHOST",
        "localhost.",
        "[::1]",
        "flowforge.test",
        "ci.corp.test",
        "a.b.corp.test",
    ],
)
def test_the_names_it_is_served_under_are_answered(up: FlowForgeProcess, host: str) -> None:
    for with_port in (True, False):
        header = f"{host}:{up.port}" if with_port else host
        resp = httpx.get(f"{up.url}/api/v1/status", headers={"Host": header})
        assert resp.status_code == 200, (header, resp.text)


@pytest.mark.parametrize(
    "host", ["corp.test", "evilcorp.test", "flowforge.test.evil", "10.0.0.7", "[::1", ":80", ""]
)
def test_other_and_malformed_hosts_are_refused(up: FlowForgeProcess, host: str) -> None:
    resp = httpx.get(f"{up.url}/api/v1/status", headers={"Host": host})
    assert resp.status_code in (400, 421), (host, resp.status_code)  # an empty Host is h11's own 400


def test_a_write_from_another_origin_is_refused(up: FlowForgeProcess, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    other_port = free_port()
    for origin in (
        "http://evil.example",
        "null",
        f"http://127.0.0.1:{other_port}",  # another server on this machine
        f"http://localhost:{up.port}",  # another origin, though the same server
        f"http://127.0.0.1:{up.port}.evil.example",
    ):
        resp = httpx.post(
            f"{up.url}/api/v1/dags", json={"yaml": dag("x", marker)}, headers={"Origin": origin}
        )
        assert resp.status_code == 403, (origin, resp.text)
        error = resp.json()["error"]
        assert error["code"] == "forbidden" and "origin" in error["message"], origin
    assert httpx.get(f"{up.url}/api/v1/dags/x").status_code == 404
    # Reads are answered (no CORS header lets another origin read them), and so is the page's own origin.
    assert httpx.get(f"{up.url}/api/v1/dags", headers={"Origin": "http://evil.example"}).status_code == 200
    own = {"Origin": f"http://127.0.0.1:{up.port}"}
    assert (
        httpx.post(f"{up.url}/api/v1/dags", json={"yaml": dag("x", marker)}, headers=own).status_code == 201
    )
    named = {"Origin": f"http://flowforge.test:{up.port}", "Host": f"flowforge.test:{up.port}"}
    assert httpx.post(f"{up.url}/api/v1/dags/x/pause", headers=named).status_code == 200


def test_allowed_hosts_from_the_environment(tmp_path: Path) -> None:
    proc = start_up(
        tmp_path / "home", "--concurrency", "1", env=clean_env(FLOWFORGE_ALLOWED_HOSTS=" a.test, B.test ,")
    )
    try:
        for host, status in (("a.test", 200), ("b.test", 200), ("c.test", 421)):
            resp = httpx.get(f"{proc.url}/api/v1/status", headers={"Host": f"{host}:{proc.port}"})
            assert resp.status_code == status, host
    finally:
        proc.stop()


def test_a_public_bind_with_a_token_answers_any_name(tmp_path: Path) -> None:
    """With a token every request needs it, and a page that rebinds a name does not have it."""
    proc = start_up(
        tmp_path / "home", "--host", "0.0.0.0", "--concurrency", "1", env=clean_env(FLOWFORGE_API_TOKEN=TOKEN)
    )
    try:
        name = {"Host": f"flowforge.internal.example:{proc.port}"}
        assert httpx.get(f"{proc.url}/api/v1/status", headers=name).status_code == 401
        authed = {**name, "Authorization": f"Bearer {TOKEN}"}
        assert httpx.get(f"{proc.url}/api/v1/status", headers=authed).status_code == 200
    finally:
        proc.stop()


def test_a_public_bind_without_a_token_answers_addresses_and_allowed_names_only(tmp_path: Path) -> None:
    proc = start_up(
        tmp_path / "home",
        "--host",
        "0.0.0.0",
        "--insecure",
        "--allowed-host",
        "ff.lan",
        "--concurrency",
        "1",
    )
    try:
        for host, status in (
            ("attacker.example", 421),
            ("127.0.0.1", 200),
            ("10.1.2.3", 200),
            ("ff.lan", 200),
        ):
            resp = httpx.get(f"{proc.url}/api/v1/status", headers={"Host": f"{host}:{proc.port}"})
            assert resp.status_code == status, host
    finally:
        proc.stop()


@pytest.mark.parametrize("value", ["http://ff.test", "ff.test:8080", "ff.test/x", "a b"])
def test_a_bad_allowed_host_exits_2_with_one_line(tmp_path: Path, value: str) -> None:
    proc = FlowForgeProcess(
        ["up", "--port", str(free_port()), "--home", str(tmp_path / "home"), "--allowed-host", value],
        log_path=tmp_path / "out.log",
    )
    try:
        code = proc.proc.wait(60)
    finally:
        proc.stop()
    [line] = proc.output().strip().splitlines()
    assert code == 2 and line.startswith("error: --allowed-host:") and repr(value.lower()) in line


# -- the rules themselves ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("header", "parsed"),
    [
        ("Example.COM:8080", ("example.com", 8080)),
        ("example.com", ("example.com", None)),
        ("[::1]:80", ("::1", 80)),
        ("[::1]", ("::1", None)),
        ("localhost.:1", ("localhost", 1)),
        ("::1", None),
        ("[::1", None),
        ("[::1]x", None),
        ("a:b", None),
        ("a:99999", None),
        (":80", None),
        ("", None),
    ],
)
def test_split_host(header: str, parsed: tuple[str, int | None] | None) -> None:
    assert split_host(header) == parsed


def test_policy_of_each_bind() -> None:
    loopback = HostPolicy.for_server("127.0.0.1", (), token_required=False)
    assert loopback.allows("localhost") and loopback.allows("::1") and loopback.allows("127.0.0.2")
    assert not loopback.allows("10.0.0.1") and not loopback.allows("attacker.example")
    named = HostPolicy.for_server("ff.lan", ("*.corp.test",), token_required=False)
    assert named.allows("ff.lan") and named.allows("x.corp.test") and not named.allows("corp.test")
    assert HostPolicy.for_server("0.0.0.0", (), token_required=True).allows("anything.example")
    assert not HostPolicy.for_server("0.0.0.0", ("ff.lan",), token_required=True).allows("anything.example")
    assert HostPolicy.for_server("::", (), token_required=False).allows("fe80::1")
    assert HostPolicy.for_server("127.0.0.1", ("*",), token_required=False).allows("anything.example")


@pytest.mark.parametrize(
    ("origin", "host", "same"),
    [
        ("http://127.0.0.1:8080", ("127.0.0.1", 8080), True),
        ("https://ff.example.com", ("ff.example.com", None), True),  # a proxy dropped the port
        ("https://ff.example.com", ("ff.example.com", 443), True),
        ("http://ff.example.com", ("ff.example.com", 443), False),
        ("http://[::1]:8080", ("::1", 8080), True),
        ("http://127.0.0.1:8081", ("127.0.0.1", 8080), False),
        ("http://evil.example:8080", ("127.0.0.1", 8080), False),
        ("null", ("127.0.0.1", 8080), False),
        ("file://", ("127.0.0.1", 8080), False),
        ("http://127.0.0.1:99999", ("127.0.0.1", 8080), False),
    ],
)
def test_origin_matches_host(origin: str, host: tuple[str, int | None], same: bool) -> None:
    assert origin_matches_host(origin, host) is same
