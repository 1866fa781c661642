"""Limits of the API: log pages, list paging, and, with real processes, the bind refusal and the body limit."""

from __future__ import annotations

import socket
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from flowforge.api import create_app
from flowforge.api.routes_events import LOG_PAGE_BYTES
from flowforge.core.dagfile import load_dag
from flowforge.core.model import TaskState
from flowforge.core.records import WorkerInfo
from flowforge.services import Services
from flowforge.store import Store, open_store
from tests.harness import FlowForgeProcess, clean_env, free_port

DEMO = "id: demo\ntasks:\n  - {id: a, command: 'true'}\n"


def ran_once(store: Store, text: str = "", *, finish: bool = True) -> str:
    """A run of `demo` whose task `a` has attempt 1 (ended unless `finish` is false) with `text` as its log."""
    now = time.time()
    store.put_dag(load_dag(DEMO), DEMO, now)
    run_id = store.create_run("demo", triggered_by="test", params={}, now=now).run_id
    assert store.queue_tasks(run_id, [("a", 0)], now) == ["a"]
    assert store.claim_task(run_id, "a", 1, "w1", now)
    if text:
        store.append_log(run_id, "a", 1, text)
    if finish:
        assert store.finish_task(run_id, "a", 1, "w1", state=TaskState.SUCCESS, now=now, exit_code=0)
    return run_id


# -- the store: logs kept in bounded pieces, read a page at a time --------------------------
def test_read_log_pages_at_piece_boundaries(store: Store) -> None:
    text = "".join(f"line {i:06d} ü\n" for i in range(40_000))  # ~600 KB, several pieces
    run_id = ran_once(store, text)
    whole, end = store.read_log(run_id, "a", 1)
    assert whole == text
    pages, cursor = [], 0
    while True:
        page, cursor = store.read_log(run_id, "a", 1, cursor, max_bytes=200_000)
        if not page:
            break
        assert len(page.encode()) <= 200_000
        pages.append(page)
    assert "".join(pages) == text and len(pages) >= 3 and cursor == end
    one, _ = store.read_log(run_id, "a", 1, 0, max_bytes=0)  # at least one piece, even past the limit
    assert 0 < len(one) <= 65536 and text.startswith(one)
    assert store.read_log(run_id, "a", 1, end, max_bytes=10) == ("", end)


# -- the API ----------------------------------------------------------------------------


@pytest.fixture
def client(services: Services) -> Iterator[TestClient]:
    with TestClient(create_app(services, api_token="")) as c:
        yield c


def test_a_big_log_comes_in_pages_of_at_most_1_mib(client: TestClient, services: Services) -> None:
    text = "x" * 1000 + "\n"
    text = text * 3000  # ~3 MB
    run_id = ran_once(services.store, text)
    base = f"/api/v1/runs/{run_id}/tasks/a/logs"
    got, cursor, answers = [], 0, []
    while True:
        page = client.get(base, params={"after": cursor}).json()
        answers.append(page)
        got.append(page["text"])
        cursor = page["cursor"]
        assert len(page["text"].encode()) <= LOG_PAGE_BYTES
        if page["done"]:
            break
    assert "".join(got) == text and len(answers) >= 3
    assert all(a["more"] and not a["done"] for a in answers[:-1])  # the attempt ended, yet more was there
    assert answers[-1]["more"] is False
    with client.stream("GET", base, params={"follow": 1}) as resp:  # a followed log reads in pages too
        assert "".join(resp.iter_text()) == text


def test_a_running_attempt_is_not_done_and_more_says_nothing_waits(
    client: TestClient, services: Services
) -> None:
    run_id = ran_once(services.store, "hello\n", finish=False)
    page = client.get(f"/api/v1/runs/{run_id}/tasks/a/logs").json()
    assert (page["text"], page["done"], page["more"]) == ("hello\n", False, False)


def test_dags_and_workers_are_paged_like_runs(client: TestClient, services: Services) -> None:
    for i in range(5):
        assert client.post("/api/v1/dags", json={"yaml": DEMO.replace("demo", f"d{i}")}).status_code == 201
    now = time.time()
    for i in range(3):
        services.store.upsert_worker(WorkerInfo(f"w{i}", "host", 100 + i, 2, now, now - i))
    page = client.get("/api/v1/dags", params={"limit": 2, "offset": 1}).json()
    assert [d["id"] for d in page["dags"]] == ["d1", "d2"]
    assert (page["limit"], page["offset"], page["has_more"], page["total"]) == (2, 1, True, 5)
    last = client.get("/api/v1/dags", params={"limit": 2, "offset": 4}).json()
    assert [d["id"] for d in last["dags"]] == ["d4"] and last["has_more"] is False
    full = client.get("/api/v1/dags").json()
    assert (full["limit"], full["offset"], full["total"], len(full["dags"])) == (500, 0, 5, 5)
    workers = client.get("/api/v1/workers", params={"limit": 2}).json()
    assert [w["worker_id"] for w in workers["workers"]] == ["w0", "w1"]
    assert (workers["has_more"], workers["total"]) == (True, 3)
    for _ in range(3):
        client.post("/api/v1/runs", json={"dag_id": "d0"})
    runs = client.get("/api/v1/runs", params={"limit": 2}).json()
    assert len(runs["runs"]) == 2 and runs["has_more"] is True
    assert client.get("/api/v1/runs", params={"limit": 2, "offset": 2}).json()["has_more"] is False
    for path in ("/api/v1/dags", "/api/v1/workers", "/api/v1/runs"):
        for bad in ({"limit": 0}, {"limit": 501}, {"offset": -1}, {"offset": 2**53}):
            resp = client.get(path, params=bad)
            assert resp.status_code == 422 and resp.json()["error"]["code"] == "invalid_request", (path, bad)


def test_the_client_reads_every_page(services: Services) -> None:
    from flowforge.client import ApiClient
    from tests.cli_support import serving

    for i in range(7):
        services.store.put_dag(load_dag(DEMO.replace("demo", f"d{i}")), DEMO, time.time())
    app = create_app(services, api_token="")

    async def pages_of_three(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/api/v1/dags":
            scope = {**scope, "query_string": scope["query_string"] + b"&limit=3"}
        await app(scope, receive, send)

    with serving(pages_of_three) as url, ApiClient(url) as api:
        assert [d.id for d in api.list_dags()] == [f"d{i}" for i in range(7)]


def test_unparsable_body_is_422_json(client: TestClient) -> None:
    resp = client.post("/api/v1/runs", content=b"\xff\xfe{", headers={"Content-Type": "application/json"})
    assert resp.status_code == 422 and resp.json()["error"]["code"] == "invalid_request"


# -- real processes -------------------------------------------------------------------------
e2e = pytest.mark.e2e  # the tests below start real flowforge processes


def finished(proc: FlowForgeProcess, timeout: float = 60.0) -> tuple[int, str]:
    """Wait for a process that should exit; its code and what it printed."""
    try:
        code = proc.proc.wait(timeout)
    finally:
        proc.stop()
    return code, proc.output()


@e2e
@pytest.mark.parametrize("command", ["up", "api"])
def test_public_bind_without_a_token_exits_2_with_one_line(command: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    proc = FlowForgeProcess(
        [command, "--host", "0.0.0.0", "--port", str(free_port()), "--home", str(home)],
        log_path=tmp_path / "out.log",
    )
    code, out = finished(proc)
    assert code == 2, out
    [line] = out.strip().splitlines()
    assert line.startswith("error: refusing to serve on 0.0.0.0 without FLOWFORGE_API_TOKEN")
    assert "--insecure" in line and "--token-file" in line
    assert not (home / "flowforge.db").exists()


@e2e
@pytest.mark.parametrize(("content", "reason"), [("", "is empty"), (None, "cannot read it")])
def test_bad_token_file_exits_2_with_one_line(tmp_path: Path, content: str | None, reason: str) -> None:
    token_file = tmp_path / "token"
    if content is not None:
        token_file.write_text(content)
    proc = FlowForgeProcess(
        [
            "api",
            "--port",
            str(free_port()),
            "--home",
            str(tmp_path / "home"),
            "--token-file",
            str(token_file),
        ],
        log_path=tmp_path / "out.log",
    )
    code, out = finished(proc)
    assert code == 2, out
    [line] = out.strip().splitlines()
    assert line.startswith(f"error: --token-file {token_file}") and reason in line


@e2e
def test_public_bind_with_a_token_file_guards_the_api(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("tok-from-file-5d1e7a90\n")
    port = free_port()
    proc = FlowForgeProcess(
        [
            "up",
            "--host",
            "0.0.0.0",
            "--port",
            str(port),
            "--home",
            str(tmp_path / "home"),
            "--token-file",
            str(token_file),
            "--concurrency",
            "1",
        ],
        port=port,
        env=clean_env(FLOWFORGE_API_READ_TOKEN="tok-read-8c2f4b61a7"),
        log_path=tmp_path / "up.log",
    )
    try:
        proc.wait_healthy()
        assert httpx.get(f"{proc.url}/api/v1/status").status_code == 401
        assert (
            httpx.get(
                f"{proc.url}/api/v1/status", headers={"Authorization": "Bearer tok-from-file-5d1e7a90"}
            ).status_code
            == 200
        )
        read = {"Authorization": "Bearer tok-read-8c2f4b61a7"}
        assert httpx.get(f"{proc.url}/api/v1/dags", headers=read).status_code == 200
        resp = httpx.post(f"{proc.url}/api/v1/dags", json={"yaml": DEMO}, headers=read)
        assert resp.status_code == 403 and resp.json()["error"]["code"] == "forbidden"
    finally:
        assert proc.stop() == 0


@pytest.fixture(scope="module")
def open_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FlowForgeProcess]:
    """`flowforge up --host 0.0.0.0 --insecure`, reached through 127.0.0.1 only."""
    home = tmp_path_factory.mktemp("insecure")
    port = free_port()
    proc = FlowForgeProcess(
        [
            "up",
            "--host",
            "0.0.0.0",
            "--port",
            str(port),
            "--home",
            str(home / "home"),
            "--insecure",
            "--concurrency",
            "1",
        ],
        port=port,
        log_path=home / "up.log",
    )
    try:
        yield proc.wait_healthy()
    finally:
        proc.stop()


@e2e
def test_insecure_starts_on_a_public_address(open_server: FlowForgeProcess) -> None:
    assert httpx.get(f"{open_server.url}/api/v1/status").status_code == 200
    assert httpx.post(f"{open_server.url}/api/v1/dags", json={"yaml": DEMO}).status_code == 201


@e2e
def test_a_body_over_1_mib_gets_413_from_a_real_server(open_server: FlowForgeProcess) -> None:
    big = "# " + "x" * (1024 * 1024) + "\n" + DEMO
    resp = httpx.post(f"{open_server.url}/api/v1/dags", json={"yaml": big}, timeout=30)
    assert resp.status_code == 413 and resp.json()["error"]["code"] == "payload_too_large"

    def chunks() -> Iterator[bytes]:  # no Content-Length: the server counts what arrives
        for _ in range(20):
            yield b"#" * 65536 + b"\n"

    headers = {"Content-Type": "application/yaml"}
    resp = httpx.post(f"{open_server.url}/api/v1/dags", content=chunks(), headers=headers, timeout=30)
    assert resp.status_code == 413 and resp.json()["error"]["code"] == "payload_too_large"
    assert httpx.get(f"{open_server.url}/health").status_code == 200  # and it carries on


@e2e
@pytest.mark.parametrize("command", ["up", "api"])
def test_a_port_in_use_is_one_line_and_nothing_starts(tmp_path: Path, command: str) -> None:
    home = tmp_path / "home"
    store = open_store(f"sqlite:///{home / 'flowforge.db'}")  # an existing database, as after earlier use
    store.close()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = FlowForgeProcess(
            [command, "--port", str(port), "--home", str(home)], log_path=tmp_path / "out.log"
        )
        code, out = finished(proc)
    assert code == 2, out
    [line] = out.strip().splitlines()
    assert line == f"error: --port {port}: cannot listen on 127.0.0.1:{port} (Address already in use)"
    with sqlite3.connect(home / "flowforge.db") as db:  # rows, not the API: a released lease still shows
        assert db.execute("SELECT count(*) FROM leases").fetchone()[0] == 0, "a scheduler took the lease"
        assert db.execute("SELECT count(*) FROM workers").fetchone()[0] == 0, "a worker registered"
