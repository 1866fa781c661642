"""The REST API over a real SqliteStore and MemoryQueue, through FastAPI's TestClient."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime

import pytest
from fastapi.testclient import TestClient

from flowforge.api import create_app
from flowforge.core.model import TaskState
from flowforge.core.records import WorkerInfo
from flowforge.services import Services

DEMO = """\
id: demo
name: Demo DAG
params: {region: eu, size: 3}
env: {STAGE: prod, DB_PASSWORD: hunter2}
tasks:
  - id: extract
    command: echo extract
  - id: load
    command: echo load
    depends_on: [extract]
    retries: 2
    timeout_secs: 30
"""

# Two problems: a dependency on a task that does not exist, and a typo'd key.
BROKEN = """\
id: broken
tasks:
  - id: a
    command: echo a
    depends_on: [b]
  - id: c
    comand: echo c
"""

SCHEDULED = """\
id: nightly
schedule: "0 3 * * *"
tasks:
  - id: only
    command: "true"
"""


@pytest.fixture
def client(services: Services) -> Iterator[TestClient]:
    """A client of an app with auth off."""
    with TestClient(create_app(services, api_token="")) as c:
        yield c


def submit(client: TestClient, text: str = DEMO) -> dict:
    resp = client.post("/api/v1/dags", json={"yaml": text})
    assert resp.status_code == 201, resp.text
    return resp.json()


def trigger(client: TestClient, dag_id: str = "demo", **body: object) -> dict:
    resp = client.post("/api/v1/runs", json={"dag_id": dag_id, **body})
    assert resp.status_code == 201, resp.text
    return resp.json()


def assert_error(resp, status: int, code: str) -> dict:
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert err["code"] == code
    assert isinstance(err["message"], str) and err["message"]
    assert isinstance(err["details"], list)
    assert "Traceback" not in resp.text
    return err


# -- health, readiness, metrics -------------------------------------------------------------
def test_health(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok"}


def test_ready_needs_a_leading_scheduler_then_503_when_the_store_is_gone(
    client: TestClient, services: Services
) -> None:
    resp = client.get("/ready")
    assert resp.status_code == 503 and resp.json()["scheduler"].startswith("no leader")
    assert services.store.hold_lease("scheduler", "host-1-abc", time.time(), 60)
    assert client.get("/ready").json() == {
        "status": "ready",
        "store": "ok",
        "queue": "ok",
        "scheduler": "ok",
        "leader": "host-1-abc",
    }
    assert client.get("/api/v1/status").json()["ready"]["leader"] == "host-1-abc"
    services.store.close()
    resp = client.get("/ready")
    assert resp.status_code == 503
    body = resp.json()
    assert (
        body["status"] == "unavailable" and body["store"].startswith("unavailable") and body["queue"] == "ok"
    )
    assert body["scheduler"].startswith("unknown") and body["leader"] is None


def test_metrics_are_computed_at_scrape_time(client: TestClient) -> None:
    submit(client)
    trigger(client)
    resp = client.get("/metrics")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/plain")
    text = resp.text
    assert 'flowforge_runs_active{state="queued"} 1.0' in text
    assert 'flowforge_runs_active{state="running"} 0.0' in text
    assert 'flowforge_task_instances{state="pending"} 2.0' in text
    assert "flowforge_queue_depth 0.0" in text
    assert 'flowforge_dags{state="active"} 1.0' in text
    assert 'flowforge_workers{state="alive"} 0.0' in text and 'state="total"' not in text


def test_two_apps_in_one_process_have_separate_registries(services: Services) -> None:
    a, b = create_app(services), create_app(services)  # a global registry would refuse the second
    assert a.state.metrics_registry is not b.state.metrics_registry


# -- DAGs ----------------------------------------------------------------------------------
def test_submit_list_and_versions(client: TestClient) -> None:
    assert client.get("/api/v1/dags").json()["dags"] == []
    first = submit(client)
    assert (first["id"], first["version"], first["created"], first["changed"]) == ("demo", 1, True, True)
    again = submit(client)
    assert (again["version"], again["created"], again["changed"]) == (1, False, False)
    changed = submit(client, DEMO.replace("echo load", "echo loading"))
    assert (changed["version"], changed["created"], changed["changed"]) == (2, False, True)
    [dag] = client.get("/api/v1/dags").json()["dags"]
    assert dag["id"] == "demo" and dag["version"] == 2 and dag["task_count"] == 2
    assert dag["next_run"] is None and dag["active"] is True and dag["paused"] is False
    assert isinstance(dag["created_at"], float)


def test_raw_yaml_body_is_accepted(client: TestClient) -> None:
    for ctype in ("application/yaml", "application/x-yaml", "text/yaml; charset=utf-8"):
        resp = client.post("/api/v1/dags", content=DEMO.encode(), headers={"Content-Type": ctype})
        assert resp.status_code == 201, resp.text
        assert resp.json()["id"] == "demo"


def test_invalid_dag_is_422_with_line_numbers_and_nothing_is_stored(
    client: TestClient, services: Services
) -> None:
    resp = client.post("/api/v1/dags", content=BROKEN, headers={"Content-Type": "application/yaml"})
    err = assert_error(resp, 422, "invalid_dag")
    assert err["message"] == f"DAG is invalid: {len(err['details'])} problem(s)"
    lines = {d["line"] for d in err["details"]}
    assert {5, 7} <= lines, err["details"]
    assert all({"field", "line", "column", "message"} <= set(d) for d in err["details"])
    assert client.get("/api/v1/dags?include_inactive=1").json()["dags"] == []
    assert_error(client.get("/api/v1/dags/broken"), 404, "not_found")
    assert services.store.counts()["dags"].get("active", 0) == 0


@pytest.mark.parametrize(
    ("body", "ctype", "status", "code"),
    [
        (b'{"yml": "x"}', "application/json", 422, "invalid_request"),
        (b'{"yaml": 5}', "application/json", 422, "invalid_request"),
        (b"{not json", "application/json", 422, "invalid_request"),
        (b"id: x", "text/plain", 415, "unsupported_media_type"),
        (b"\xff\xfe id: x", "application/yaml", 422, "invalid_request"),
    ],
)
def test_bad_submit_bodies(client: TestClient, body: bytes, ctype: str, status: int, code: str) -> None:
    assert_error(client.post("/api/v1/dags", content=body, headers={"Content-Type": ctype}), status, code)


def test_body_over_1_mib_is_413_by_length_and_by_stream(client: TestClient) -> None:
    big = b"# " + b"x" * (1024 * 1024) + b"\n" + DEMO.encode()
    assert_error(
        client.post("/api/v1/dags", content=big, headers={"Content-Type": "application/yaml"}),
        413,
        "payload_too_large",
    )

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit must count what arrives
        yield b"# "
        for _ in range(20):
            yield b"x" * 65536

    resp = client.post("/api/v1/dags", content=chunks(), headers={"Content-Type": "application/yaml"})
    assert_error(resp, 413, "payload_too_large")
    assert client.get("/api/v1/dags").json()["dags"] == []


def test_dag_detail_masks_secrets(client: TestClient) -> None:
    submit(client)
    d = client.get("/api/v1/dags/demo").json()
    assert [t["id"] for t in d["tasks"]] == ["extract", "load"]
    assert d["version"] == 1 and d["params"] == {"region": "eu", "size": "3"}  # as written: params are text
    assert d["env"] == {"STAGE": "prod", "DB_PASSWORD": "***"}
    assert "id: demo" in d["source"] and "hunter2" not in d["source"]
    assert "hunter2" not in client.get("/api/v1/dags").text


def test_next_run_follows_schedule_and_pause(client: TestClient) -> None:
    submit(client, SCHEDULED)
    d = client.get("/api/v1/dags/nightly").json()
    when = datetime.fromisoformat(d["next_run"].replace("Z", "+00:00"))
    assert (
        when.timestamp() > time.time() and (when.hour, when.minute) == (3, 0) and d["next_run"].endswith("Z")
    )
    paused = client.post("/api/v1/dags/nightly/pause").json()
    assert paused["paused"] is True and paused["next_run"] is None
    unpaused = client.post("/api/v1/dags/nightly/unpause").json()
    assert unpaused["paused"] is False and unpaused["next_run"] == d["next_run"]


def test_delete_deactivates(client: TestClient) -> None:
    submit(client)
    resp = client.delete("/api/v1/dags/demo")
    assert resp.status_code == 200 and resp.json()["active"] is False
    assert client.get("/api/v1/dags").json()["dags"] == []
    assert [d["id"] for d in client.get("/api/v1/dags?include_inactive=1").json()["dags"]] == ["demo"]
    assert_error(client.post("/api/v1/runs", json={"dag_id": "demo"}), 404, "not_found")
    assert submit(client)["active"] is True  # submitting again reactivates


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/v1/dags/nope"),
        ("delete", "/api/v1/dags/nope"),
        ("post", "/api/v1/dags/nope/pause"),
        ("post", "/api/v1/dags/nope/unpause"),
        ("get", "/api/v1/runs/nope"),
        ("get", "/api/v1/runs/nope/tasks"),
        ("get", "/api/v1/runs/nope/tasks/x"),
        ("get", "/api/v1/runs/nope/tasks/x/logs"),
    ],
)
def test_unknown_ids_are_404(client: TestClient, method: str, path: str) -> None:
    assert_error(client.request(method.upper(), path), 404, "not_found")


# -- runs ----------------------------------------------------------------------------------
def test_trigger_merges_params_and_wakes_the_scheduler(client: TestClient, services: Services) -> None:
    submit(client)
    services.queue.wait_for_wake(0)  # consume any earlier ring
    run = trigger(client, params={"size": 10})
    assert run["state"] == "queued" and run["triggered_by"] == "api" and run["dag_version"] == 1
    assert run["params"] == {"region": "eu", "size": 10}
    assert services.queue.wait_for_wake(0) is True
    assert services.store.get_run(run["run_id"]).params == {"region": "eu", "size": 10}


def test_trigger_rejects_undeclared_and_non_scalar_params(client: TestClient, services: Services) -> None:
    submit(client)
    err = assert_error(
        client.post("/api/v1/runs", json={"dag_id": "demo", "params": {"colour": "red"}}),
        422,
        "invalid_params",
    )
    assert "colour" in err["message"]
    err = assert_error(
        client.post("/api/v1/runs", json={"dag_id": "demo", "params": {"size": [1, 2]}}),
        422,
        "invalid_params",
    )
    assert "size" in err["message"]
    assert services.store.list_runs() == []


def test_trigger_validation_and_unknown_dag(client: TestClient) -> None:
    err = assert_error(client.post("/api/v1/runs", json={"triggered_by": "me"}), 422, "invalid_request")
    assert err["details"][0]["loc"] == ["body", "dag_id"]
    assert_error(client.post("/api/v1/runs", json={"dag_id": "ghost"}), 404, "not_found")


def test_list_runs_filters_and_pages(client: TestClient, services: Services) -> None:
    submit(client)
    submit(client, SCHEDULED)
    a, b = trigger(client), trigger(client, triggered_by="cli")
    c = trigger(client, "nightly")
    services.store.set_run_state(a["run_id"], ["queued"], "running", time.time())
    page = client.get("/api/v1/runs").json()
    assert (page["limit"], page["offset"]) == (50, 0)
    assert [r["run_id"] for r in page["runs"]] == [c["run_id"], b["run_id"], a["run_id"]]
    assert [r["run_id"] for r in client.get("/api/v1/runs?dag_id=demo").json()["runs"]] == [
        b["run_id"],
        a["run_id"],
    ]
    assert [r["run_id"] for r in client.get("/api/v1/runs?state=running").json()["runs"]] == [a["run_id"]]
    assert len(client.get("/api/v1/runs?state=queued,running").json()["runs"]) == 3
    assert [r["run_id"] for r in client.get("/api/v1/runs?limit=1&offset=1").json()["runs"]] == [b["run_id"]]
    for bad in ("limit=0", "limit=501", "offset=-1", "state=sleeping"):
        assert_error(client.get(f"/api/v1/runs?{bad}"), 422, "invalid_request")


def test_run_detail_and_task_list(client: TestClient) -> None:
    submit(client)
    run = trigger(client)
    detail = client.get(f"/api/v1/runs/{run['run_id']}").json()
    assert detail["run_id"] == run["run_id"] and detail["state"] == "queued"
    assert [(t["task_id"], t["state"], t["attempt"]) for t in detail["tasks"]] == [
        ("extract", "pending", 0),
        ("load", "pending", 0),
    ]
    listed = [{k: v for k, v in t.items() if k != "slow"} for t in detail["tasks"]]  # the detail's only
    assert client.get(f"/api/v1/runs/{run['run_id']}/tasks").json() == {"tasks": listed}


def _two_attempts(services: Services, run_id: str) -> None:
    """`load`: attempt 1 failed (up for retry), attempt 2 running, each with some log."""
    store, now = services.store, time.time()
    assert store.queue_tasks(run_id, [("load", 0)], now) == ["load"]
    assert store.claim_task(run_id, "load", 1, "w1", now)
    store.append_log(run_id, "load", 1, "first try\n")
    store.append_log(run_id, "load", 1, "boom\n")
    assert store.finish_task(
        run_id,
        "load",
        1,
        "w1",
        state=TaskState.UP_FOR_RETRY,
        now=now + 1,
        exit_code=3,
        error="exit code 3",
        retry_at=now + 2,
    )
    assert store.queue_tasks(run_id, [("load", 1)], now + 2) == ["load"]
    assert store.claim_task(run_id, "load", 2, "w2", now + 3)
    store.append_log(run_id, "load", 2, "second try\n")


def test_task_detail_has_attempts_and_spec(client: TestClient, services: Services) -> None:
    submit(client)
    run_id = trigger(client)["run_id"]
    _two_attempts(services, run_id)
    submit(client, DEMO.replace("echo load", "echo changed"))  # a new version must not change the run's spec
    t = client.get(f"/api/v1/runs/{run_id}/tasks/load").json()
    assert (t["state"], t["attempt"], t["worker_id"]) == ("running", 2, "w2")
    assert [(a["attempt"], a["state"], a["worker_id"], a["exit_code"]) for a in t["attempts"]] == [
        (1, "failed", "w1", 3),
        (2, "running", "w2", None),
    ]
    spec = t["spec"]
    assert (spec["command"], spec["depends_on"], spec["retries"], spec["timeout_secs"]) == (
        "echo load",
        ["extract"],
        2,
        30,
    )
    assert_error(client.get(f"/api/v1/runs/{run_id}/tasks/ghost"), 404, "not_found")


def test_logs_with_cursor_attempts_and_done(client: TestClient, services: Services) -> None:
    submit(client)
    run_id = trigger(client)["run_id"]
    _two_attempts(services, run_id)
    base = f"/api/v1/runs/{run_id}/tasks/load/logs"
    first = client.get(f"{base}?attempt=1").json()
    assert first == {
        "run_id": run_id,
        "task_id": "load",
        "attempt": 1,
        "text": "first try\nboom\n",
        "cursor": first["cursor"],
        "done": True,
        "more": False,
    }
    assert client.get(f"{base}?attempt=1&after={first['cursor']}").json()["text"] == ""
    latest = client.get(base).json()
    assert (latest["attempt"], latest["text"], latest["done"]) == (2, "second try\n", False)
    services.store.append_log(run_id, "load", 2, "more\n")
    more = client.get(f"{base}?after={latest['cursor']}").json()
    assert (more["text"], more["done"]) == ("more\n", False)
    services.store.finish_task(run_id, "load", 2, "w2", state=TaskState.SUCCESS, now=time.time(), exit_code=0)
    assert client.get(f"{base}?after={more['cursor']}").json()["done"] is True
    assert_error(client.get(f"{base}?attempt=3"), 404, "not_found")
    assert_error(client.get(f"{base}?attempt=0"), 422, "invalid_request")
    never = client.get(f"/api/v1/runs/{run_id}/tasks/extract/logs").json()
    assert (never["attempt"], never["text"], never["done"]) == (0, "", False)


# -- status, workers -----------------------------------------------------------------------
def test_status_and_workers(client: TestClient, services: Services) -> None:
    submit(client)
    trigger(client)
    now = time.time()
    services.store.upsert_worker(WorkerInfo("w1", "host-a", 123, 4, now, now, ("r/t",)))
    services.store.upsert_worker(WorkerInfo("w2", "host-b", 456, 2, now - 600, now - 600))
    s = client.get("/api/v1/status").json()
    assert s["dags"]["active"] == 1 and s["runs"]["queued"] == 1 and s["tasks"]["pending"] == 2
    assert (s["workers"]["alive"], s["workers"]["stale"], s["workers"]["total"], s["workers"]["slots"]) == (
        1,
        1,
        2,
        4,
    )
    assert s["queue_depth"] == 0
    workers = client.get("/api/v1/workers").json()["workers"]
    assert {w["worker_id"] for w in workers} == {"w1", "w2"}
    assert next(w for w in workers if w["worker_id"] == "w1")["running"] == ["r/t"]


# -- errors, page, auth --------------------------------------------------------------------
def test_unknown_route_and_wrong_method_are_json(client: TestClient) -> None:
    err = assert_error(client.get("/api/v1/nothing-here"), 404, "not_found")
    assert "/api/v1/nothing-here" in err["message"]
    assert_error(client.put("/api/v1/dags"), 405, "method_not_allowed")
    assert_error(client.get("/static/missing.js"), 404, "not_found")


def test_unexpected_error_is_a_json_500_without_traceback(services: Services) -> None:
    with TestClient(create_app(services, api_token=""), raise_server_exceptions=False) as c:
        services.store.close()  # every store call now raises sqlite3.ProgrammingError
        resp = c.get("/api/v1/dags")
    err = assert_error(resp, 500, "internal_error")
    assert "ProgrammingError" not in json.dumps(err) and "sqlite" not in resp.text.lower()


def test_page_and_script_with_security_headers(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "<title>FlowForge</title>" in page.text and '<script src="/static/app.js"' in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    script = client.get("/static/app.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert "textContent" in script.text and ".innerHTML" not in script.text
    assert client.get("/api/v1/dags").headers["x-content-type-options"] == "nosniff"


def test_token_auth_guards_every_route_but_health_and_the_page(services: Services) -> None:
    app = create_app(services, api_token="s3cret")
    with TestClient(app) as c:
        assert c.get("/health").status_code == 200
        assert c.get("/").status_code == 200 and c.get("/static/app.js").status_code == 200
        swept = 0
        # The OpenAPI document lists every route, however routers are nested.
        for path, ops in app.openapi()["paths"].items():
            path = path.replace("{dag_id}", "demo").replace("{run_id}", "r").replace("{task_id}", "t")
            for method in ops:
                if path == "/health" or path.startswith("/api/v1/worker/"):
                    continue  # the execution API has a scope of its own: tests/test_api_auth.py
                resp = c.request(method.upper(), path)
                assert resp.status_code == 401, (method, path)
                assert resp.headers["www-authenticate"] == "Bearer"
                swept += 1
        for path in ("/docs", "/openapi.json"):
            assert c.get(path).status_code == 401
        assert swept >= 15
        assert_error(c.get("/api/v1/dags", headers={"Authorization": "Bearer wrong"}), 401, "unauthorized")
        assert c.get("/api/v1/dags", headers={"Authorization": "Bearer s3cret"}).status_code == 200
