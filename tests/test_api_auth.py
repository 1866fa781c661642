"""The auth matrix over every route of the app: no token, wrong token, read-only token, right token.

The routes are read from the app's own route table, so a route added later is swept too; the
only routes open without a token are the ones listed in OPEN.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.routing import Mount, Route

from flowforge.api import create_app
from flowforge.api.hosts import HostPolicy
from flowforge.services import Services, build_services
from flowforge.settings import Settings, read_token_file

TOKEN = "full-7f3a9c"
READ_TOKEN = "read-41b2e0"
WORKER_TOKEN = "worker-93c5d7"
WORKER_ROUTES = "/api/v1/worker/"  # the execution API: a scope of its own
DEMO = "id: demo\ntasks:\n  - {id: a, command: 'true'}\n"

# Open without a token: liveness, and the page shell with its static files (they hold no data).
OPEN = {("GET", "/health"), ("GET", "/"), ("GET", "/static"), ("HEAD", "/static")}
READ_METHODS = {"GET", "HEAD"}
# Where a route streams, the matrix reads only the status line and the first line.
STREAMING = {"/api/v1/events"}


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    """Real SQLite store and in-process queue, with a DAG and a run to point routes at."""
    settings = Settings(home=tmp_path, db_url=f"sqlite:///{tmp_path / 'ff.db'}", queue_url="memory://")
    s = build_services(settings)
    s.store.hold_lease(
        "scheduler", "s1", time.time(), 3600
    )  # /ready answers 200 only while a scheduler leads
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def app(services: Services) -> FastAPI:
    return create_app(services, api_token=TOKEN, api_read_token=READ_TOKEN, worker_token=WORKER_TOKEN)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


def route_table(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path) of every route and mount in the app, docs and included routers' routes too."""
    out: list[tuple[str, str]] = []

    def walk(routes: list[Any], prefix: str) -> None:
        for route in routes:
            if isinstance(route, Route):
                out.extend((m, prefix + route.path) for m in sorted(route.methods or ()))
            elif isinstance(route, Mount):
                out.extend([("GET", prefix + route.path), ("HEAD", prefix + route.path)])
            elif hasattr(route, "original_router"):  # newer FastAPI keeps an included router whole
                walk(route.original_router.routes, prefix + route.include_context.prefix)
            else:  # a websocket or something new: it must be thought about here first
                raise AssertionError(f"unexpected route {route!r}")

    walk(list(app.routes), "")
    return out


def concrete(path: str, ids: dict[str, str]) -> str:
    """A path with its parameters filled in; a mount gets a file inside it."""
    for name, value in ids.items():
        path = path.replace("{" + name + "}", value)
    return path + "/app.js" if path == "/static" else path


def call(client: TestClient, method: str, path: str, token: str | None) -> int:
    """The status of one request (a stream is opened, its first line read, and closed)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if path in STREAMING:
        with client.stream(method, path, headers=headers) as resp:
            if resp.status_code == 200:
                assert next(resp.iter_lines()).startswith("retry:")
            return resp.status_code
    kwargs = {"json": {}} if method in ("POST", "PUT", "PATCH") else {}
    return client.request(method, path, headers=headers, **kwargs).status_code


def seeded(client: TestClient) -> dict[str, str]:
    assert client.post("/api/v1/dags", json={"yaml": DEMO}, headers=auth(TOKEN)).status_code == 201
    run = client.post("/api/v1/runs", json={"dag_id": "demo"}, headers=auth(TOKEN)).json()
    return {"dag_id": "demo", "run_id": run["run_id"], "task_id": "a", "version": "1"}


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_route_table_is_what_the_matrix_expects(app: FastAPI) -> None:
    table = route_table(app)
    assert len(table) >= 25, table  # the API, the docs and the page
    assert ("GET", "/api/v1/events") in table and ("POST", "/api/v1/dags") in table
    assert set(table) >= OPEN  # every open entry still exists


def test_every_route_needs_a_token_and_a_read_token_only_reads(app: FastAPI, client: TestClient) -> None:
    ids = seeded(client)
    swept = []
    for method, template in route_table(app):
        path = concrete(template, ids)
        if (method, template) in OPEN:
            assert call(client, method, path, None) < 400, (method, path)
            continue
        if template.startswith(WORKER_ROUTES):
            continue  # swept by test_only_the_worker_token_reaches_the_execution_api
        assert call(client, method, path, WORKER_TOKEN) == 403, (method, path)  # the worker token's scope
        assert call(client, method, path, None) == 401, (method, path)
        assert call(client, method, path, "wrong-token") == 401, (method, path)
        assert call(client, method, path, TOKEN + "x") == 401, (method, path)  # a longer token is still wrong
        read = call(client, method, path, READ_TOKEN)
        if method in READ_METHODS:
            assert read < 400, (method, path, read)
        else:
            assert read == 403, (method, path, read)
        full = call(client, method, path, TOKEN)
        assert full not in (401, 403) and full < 500, (method, path, full)
        swept.append((method, template))
    assert len(swept) >= 20


def test_error_bodies_of_401_and_403(client: TestClient) -> None:
    resp = client.post("/api/v1/runs", json={"dag_id": "demo"})
    assert resp.status_code == 401 and resp.headers["www-authenticate"] == "Bearer"
    assert resp.json()["error"]["code"] == "unauthorized" and resp.json()["error"]["details"] == []
    resp = client.post("/api/v1/runs", json={"dag_id": "demo"}, headers=auth(READ_TOKEN))
    assert resp.status_code == 403
    err = resp.json()["error"]
    assert err["code"] == "forbidden" and "read-only" in err["message"] and err["details"] == []
    for header in ("Basic " + TOKEN, TOKEN, "Bearer", "bearer " + TOKEN.upper()):
        assert client.get("/api/v1/status", headers={"Authorization": header}).status_code == 401, header
    assert client.get("/api/v1/status", headers={"Authorization": "bearer " + TOKEN}).status_code == 200


def test_read_token_reads_events_metrics_and_docs(client: TestClient) -> None:
    for path in ("/metrics", "/openapi.json", "/docs", "/ready", "/api/v1/dags", "/api/v1/workers"):
        assert client.get(path, headers=auth(READ_TOKEN)).status_code == 200, path
    with client.stream("GET", "/api/v1/events", headers=auth(READ_TOKEN)) as resp:
        assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
        assert next(resp.iter_lines()) == "retry: 2000"
    with client.stream("GET", "/api/v1/events") as resp:
        assert resp.status_code == 401


def test_no_token_configured_means_no_auth(services: Services) -> None:
    with TestClient(create_app(services, api_token="", api_read_token="")) as c:
        assert c.get("/api/v1/status").status_code == 200
        assert c.post("/api/v1/dags", json={"yaml": DEMO}).status_code == 201


def test_no_cors_headers_by_default(client: TestClient) -> None:
    origin = {"Origin": "https://elsewhere.example"}
    for resp in (
        client.get("/api/v1/dags", headers={**origin, **auth(TOKEN)}),
        client.get("/health", headers=origin),
        client.options(
            "/api/v1/dags", headers={**origin, "Access-Control-Request-Method": "POST", **auth(TOKEN)}
        ),
    ):
        assert not any(h.lower().startswith("access-control-") for h in resp.headers), dict(resp.headers)


def test_a_cross_site_browser_request_cannot_change_anything(services: Services) -> None:
    with TestClient(create_app(services, api_token="", api_read_token="")) as c:  # even with auth off
        for site in ("cross-site", "same-site"):
            resp = c.post("/api/v1/dags", json={"yaml": DEMO}, headers={"Sec-Fetch-Site": site})
            assert resp.status_code == 403 and resp.json()["error"]["code"] == "forbidden", site
            assert c.get("/api/v1/dags", headers={"Sec-Fetch-Site": site}).status_code == 200
        assert c.get("/api/v1/dags").json()["dags"] == []
        for site in ("same-origin", "none", None):  # the page itself, a typed URL, a non-browser client
            headers = {"Sec-Fetch-Site": site} if site else {}
            assert c.post("/api/v1/dags", json={"yaml": DEMO}, headers=headers).status_code == 201, site


def test_openapi_declares_bearer_auth_and_open_health(app: FastAPI) -> None:
    doc = app.openapi()
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert doc["paths"]["/health"]["get"]["security"] == []
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            if path != "/health":
                assert op["security"] == [{"bearer": []}], (method, path)
                assert "401" in op["responses"], (method, path)
            if method != "get":
                assert "403" in op["responses"], (method, path)


# -- settings: the token file and the read token ----------------------------------------
def test_token_file_is_read_and_stripped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWFORGE_API_TOKEN", "from-env")
    path = tmp_path / "token"
    path.write_text("  from-file\n")
    settings = Settings.from_env(home=tmp_path, token_file=path)
    assert settings.api_token == "from-file"
    assert Settings.from_env(home=tmp_path).api_token == "from-env"


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (None, "cannot read it"),
        ("", "is empty"),
        (" \n\t\n", "is empty"),
        ("one\ntwo\n", "more than one line"),
    ],
)
def test_bad_token_file_is_one_line_naming_it(tmp_path: Path, content: str | None, reason: str) -> None:
    path = tmp_path / "token"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ValueError, match=reason) as info:
        read_token_file(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_read_token_alone_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLOWFORGE_API_TOKEN", raising=False)
    monkeypatch.setenv("FLOWFORGE_API_READ_TOKEN", READ_TOKEN)
    with pytest.raises(ValueError, match="FLOWFORGE_API_TOKEN"):
        Settings.from_env(home=tmp_path)
    monkeypatch.setenv("FLOWFORGE_API_TOKEN", TOKEN)
    settings = Settings.from_env(home=tmp_path)
    assert (settings.api_token, settings.api_read_token) == (TOKEN, READ_TOKEN)


def test_a_write_from_another_origin_cannot_change_anything(services: Services) -> None:
    with TestClient(create_app(services, api_token="", api_read_token="")) as c:  # Host: testserver
        for origin in ("http://evil.example", "null", "http://testserver.evil.example", "ftp://testserver"):
            resp = c.post("/api/v1/dags", json={"yaml": DEMO}, headers={"Origin": origin})
            assert resp.status_code == 403 and "origin" in resp.json()["error"]["message"], origin
        assert c.get("/api/v1/dags", headers={"Origin": "http://evil.example"}).json()["dags"] == []
        assert (
            c.post("/api/v1/dags", json={"yaml": DEMO}, headers={"Origin": "http://testserver"}).status_code
            == 201
        )


def test_a_server_app_answers_only_its_host_names(services: Services) -> None:
    hosts = HostPolicy.for_server("127.0.0.1", ("flowforge.test",), token_required=False)
    app = create_app(services, api_token=TOKEN, hosts=hosts)
    with TestClient(app, base_url="http://attacker.example") as c:
        for method, path in (("GET", "/health"), ("POST", "/api/v1/dags"), ("GET", "/api/v1/status")):
            resp = c.request(method, path, headers=auth(TOKEN))
            assert resp.status_code == 421 and resp.json()["error"]["code"] == "misdirected_request", path
    for base in ("http://localhost:8080", "http://flowforge.test", "http://[::1]:8080"):
        with TestClient(app, base_url=base) as c:
            assert c.get("/api/v1/status", headers=auth(TOKEN)).status_code == 200, base


def test_prune_needs_the_full_token(client: TestClient, services: Services) -> None:
    from tests.prune_support import DAY, ended_run, submit

    submit(services.store, at=time.time() - 400 * DAY)
    old = ended_run(services.store, time.time() - 40 * DAY)
    body = {"older_than": "30d"}
    assert client.post("/api/v1/prune", json=body).status_code == 401
    refused = client.post("/api/v1/prune", json=body, headers=auth(READ_TOKEN))
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
    assert (
        client.post("/api/v1/prune", json={**body, "dry_run": True}, headers=auth(READ_TOKEN)).status_code
        == 403
    )
    assert services.store.get_run(old).run_id == old  # nothing was deleted
    done = client.post("/api/v1/prune", json=body, headers=auth(TOKEN))
    assert done.status_code == 200 and done.json()["runs"] == 1


# -- the execution API's scope: the worker token there, and nowhere else ---------------------------
def test_only_the_worker_token_reaches_the_execution_api(app: FastAPI, client: TestClient) -> None:
    ids = seeded(client)
    swept = []
    for method, template in route_table(app):
        if not template.startswith(WORKER_ROUTES):
            continue
        path = concrete(template, ids)
        assert call(client, method, path, None) == 401, (method, path)
        assert call(client, method, path, "wrong-token") == 401, (method, path)
        assert call(client, method, path, WORKER_TOKEN + "x") == 401, (method, path)
        assert call(client, method, path, TOKEN) == 403, (method, path)  # the user token may not
        assert call(client, method, path, READ_TOKEN) == 403, (method, path)
        worker = call(client, method, path, WORKER_TOKEN)
        assert worker not in (401, 403) and worker < 500, (method, path, worker)
        swept.append((method, template))
    assert {"/api/v1/worker/claim", "/api/v1/worker/finish", "/api/v1/worker/renew"} <= {t for _, t in swept}
    resp = client.post("/api/v1/worker/claim", json={}, headers=auth(TOKEN))
    assert "FLOWFORGE_WORKER_TOKEN" in resp.json()["error"]["message"]
    resp = client.get("/api/v1/dags", headers=auth(WORKER_TOKEN))
    assert resp.status_code == 403 and "execution API only" in resp.json()["error"]["message"]
    assert client.get("/health", headers=auth(WORKER_TOKEN)).status_code == 200  # open to all


@pytest.mark.parametrize("user_token", [TOKEN, ""], ids=["user-token", "no-auth"])
def test_without_a_worker_token_the_execution_api_is_refused(services: Services, user_token: str) -> None:
    with TestClient(create_app(services, api_token=user_token, worker_token="")) as c:
        for token in (None, "anything", TOKEN):
            resp = c.post(
                "/api/v1/worker/claim", json={"worker_id": "w", "lease_secs": 5}, headers=auth(token or "")
            )
            assert resp.status_code == 403, (token, resp.text)
            assert "FLOWFORGE_WORKER_TOKEN" in resp.json()["error"]["message"]


def test_worker_token_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWFORGE_API_TOKEN", TOKEN)
    monkeypatch.setenv("FLOWFORGE_WORKER_TOKEN", WORKER_TOKEN)
    assert Settings.from_env(home=tmp_path).worker_token == WORKER_TOKEN
    path = tmp_path / "worker-token"
    path.write_text(" from-file \n")
    assert Settings.from_env(home=tmp_path, worker_token_file=path).worker_token == "from-file"
    monkeypatch.delenv("FLOWFORGE_WORKER_TOKEN")
    monkeypatch.setenv("FLOWFORGE_WORKER_TOKEN_FILE", str(path))
    assert Settings.from_env(home=tmp_path).worker_token == "from-file"
    monkeypatch.setenv("FLOWFORGE_WORKER_TOKEN", TOKEN)  # one token for both scopes would be none
    with pytest.raises(ValueError, match="token of their own"):
        Settings.from_env(home=tmp_path)
