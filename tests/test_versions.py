"""Stored DAG versions: the store (SQLite and PostgreSQL), the API, and `versions` / `diff` / `run`
through the real CLI against a real server, secrets masked in every source shown.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from flowforge.api import create_app
from flowforge.core.errors import NotFound
from flowforge.services import Services
from flowforge.store import Store
from tests.cli_support import serving
from tests.harness import cli
from tests.test_store import T0, make_spec

SECRET = "hunter2-very-secret"


def dag_yaml(command: str) -> str:
    return (
        "id: etl\n"
        "env:\n"
        f"  DB_PASSWORD: {SECRET}\n"
        "tasks:\n"
        f"  - id: extract\n    command: {command}\n"
        "  - id: load\n    command: echo load\n    depends_on: [extract]\n"
    )


def test_store_lists_versions_newest_first_and_reads_one(store: Store) -> None:
    assert store.list_dag_versions("etl", 10) == []
    store.put_dag(make_spec(), "v1", T0)
    store.put_dag(make_spec(), "v1 again: same spec", T0 + 1)
    store.put_dag(make_spec(tasks=("extract", "load")), "v2", T0 + 2)
    store.put_dag(make_spec(description="third"), "v3", T0 + 3)
    listed = store.list_dag_versions("etl", 10)
    assert [(v.version, v.created_at, v.source) for v in listed] == [
        (3, T0 + 3, None),
        (2, T0 + 2, None),
        (1, T0, None),
    ]
    assert len({v.spec_hash for v in listed}) == 3 and all(len(v.spec_hash) == 64 for v in listed)
    assert [v.version for v in store.list_dag_versions("etl", 1, offset=1)] == [2]
    one = store.get_dag_version("etl", 2)
    assert (one.source, one.spec_hash) == ("v2", listed[1].spec_hash)
    with pytest.raises(NotFound):
        store.get_dag_version("etl", 4)
    with pytest.raises(NotFound):
        store.get_dag_version("nope", 1)


@pytest.fixture
def client(services: Services) -> Iterator[TestClient]:
    with TestClient(create_app(services, api_token="")) as c:
        yield c


def test_api_versions_and_masked_sources(client: TestClient) -> None:
    for command in ("echo one", "echo two"):
        assert client.post("/api/v1/dags", json={"yaml": dag_yaml(command)}).status_code == 201
    body = client.get("/api/v1/dags/etl/versions").json()
    assert body["latest_version"] == 2 and body["has_more"] is False
    assert [(v["version"], v["latest"]) for v in body["versions"]] == [(2, True), (1, False)]
    paged = client.get("/api/v1/dags/etl/versions", params={"limit": 1}).json()
    assert [v["version"] for v in paged["versions"]] == [2] and paged["has_more"] is True
    old = client.get("/api/v1/dags/etl/versions/1").json()
    assert "echo one" in old["source"] and SECRET not in old["source"] and "***" in old["source"]
    assert old["source"] == client.get("/api/v1/dags/etl").json()["source"].replace("echo two", "echo one")
    assert client.get("/api/v1/dags/etl/versions/3").status_code == 404
    assert client.get("/api/v1/dags/nope/versions").status_code == 404
    assert client.get("/api/v1/dags/etl/versions/0").status_code == 422


def test_cli_versions_diff_and_run_against_a_real_server(tmp_path: Path, services: Services) -> None:
    path = tmp_path / "etl.yaml"
    with serving(create_app(services, api_token="")) as url:
        path.write_text(dag_yaml("echo one"))
        assert cli("submit", str(path), url=url).returncode == 0
        run_id = json.loads(cli("--json", "trigger", "etl", url=url).stdout)["run_id"]
        path.write_text(dag_yaml("echo two"))
        assert cli("submit", str(path), url=url).returncode == 0

        listed = cli("versions", "etl", url=url)
        assert listed.returncode == 0, listed.stderr
        header, *rows = [line.split() for line in listed.stdout.splitlines()]
        assert header[:3] == ["Ver", "Spec", "hash"]
        assert [r[0] for r in rows] == ["2", "1"]
        assert rows[0][-1] == "latest" and rows[1][-1] != "latest"

        diff = cli("diff", "etl", url=url)
        assert diff.returncode == 0, diff.stderr
        assert "--- etl version 1" in diff.stdout and "+++ etl version 2" in diff.stdout
        assert "-    command: echo one" in diff.stdout and "+    command: echo two" in diff.stdout
        assert SECRET not in diff.stdout + diff.stderr

        same = cli("--json", "diff", "etl", "2", "2", url=url)
        assert json.loads(same.stdout) == {"dag_id": "etl", "from": 2, "to": 2, "diff": ""}
        unknown = cli("diff", "etl", "1", "7", url=url)
        assert unknown.returncode == 2 and "no version 7" in unknown.stderr

        shown = cli("run", run_id, url=url)
        assert shown.returncode == 0, shown.stderr
        assert "etl (version 1; latest is 2)" in shown.stdout
