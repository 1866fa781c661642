"""GET /api/v1/dags/{dag_id}/stats, and the slow note of a running task in a run's detail."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from flowforge.api import create_app, models
from flowforge.core.errors import InvalidRequest, NotFound
from flowforge.core.model import RunState
from flowforge.operations_stats import dag_stats
from flowforge.services import Services
from tests.cli_support import served
from tests.durations_support import ended_run, parallel_dag, running_run

T0 = 1_700_000_000.0


@pytest.fixture
def client(services: Services) -> Iterator[TestClient]:
    with TestClient(create_app(services, api_token="")) as c:
        yield c


def error_of(resp, status: int) -> dict:
    assert resp.status_code == status, resp.text
    assert "Traceback" not in resp.text
    return resp.json()["error"]


# -- DAG statistics -----------------------------------------------------------------------------
def test_stats_of_the_last_runs(client: TestClient, services: Services) -> None:
    store = services.store
    store.put_dag(parallel_dag("etl", ("a",)), "src", T0)
    took = [10.0, 20.0, 30.0, 40.0]
    ids = [ended_run(store, "etl", T0 + i * 1000, {"a": secs}) for i, secs in enumerate(took)]
    ids.append(ended_run(store, "etl", T0 + 9000, {"a": 1.0}, RunState.FAILED))  # fails fast
    running_run(store, "etl", {"a": T0 + 10_000})  # not ended: not counted
    body = client.get("/api/v1/dags/etl/stats").json()
    models.DagStats.model_validate(body)
    assert body["dag_id"] == "etl" and body["count"] == 5
    assert [r["run_id"] for r in body["runs"]] == ids[::-1]  # the last to end first
    assert body["runs"][0] == {
        "run_id": ids[-1],
        "state": "failed",
        "started_at": T0 + 9000,
        "ended_at": T0 + 9001,
        "duration_secs": 1.0,
    }
    # Percentiles of the successful runs only: the failed one would make the DAG look faster.
    assert (body["p50_secs"], body["p95_secs"], body["success_rate"]) == (20.0, 40.0, 0.8)
    two = client.get("/api/v1/dags/etl/stats", params={"runs": 2}).json()
    assert [r["run_id"] for r in two["runs"]] == [ids[-1], ids[-2]] and two["count"] == 2
    assert (two["p50_secs"], two["p95_secs"], two["success_rate"]) == (40.0, 40.0, 0.5)


def test_stats_of_a_dag_without_ended_runs_are_empty_not_zero(client: TestClient, services: Services) -> None:
    services.store.put_dag(parallel_dag("fresh", ("a",)), "src", T0)
    body = client.get("/api/v1/dags/fresh/stats").json()
    assert body == {
        "dag_id": "fresh",
        "runs": [],
        "p50_secs": None,
        "p95_secs": None,
        "success_rate": None,
        "count": 0,
    }


def test_stats_of_a_deactivated_dag_still_read_its_history(client: TestClient, services: Services) -> None:
    store = services.store
    store.put_dag(parallel_dag("old", ("a",)), "src", T0)
    ended_run(store, "old", T0, {"a": 3.0})
    store.set_dag_flags("old", active=False)
    assert client.get("/api/v1/dags/old/stats").json()["p50_secs"] == 3.0


@pytest.mark.parametrize("runs", ["1", "500"])
def test_stats_take_1_to_500_runs(client: TestClient, services: Services, runs: str) -> None:
    services.store.put_dag(parallel_dag("etl", ("a",)), "src", T0)
    assert client.get("/api/v1/dags/etl/stats", params={"runs": runs}).status_code == 200


@pytest.mark.parametrize("runs", ["0", "501", "-1", "abc", "1.5", "99999999999999999999999"])
def test_stats_with_a_bad_run_count_are_422_naming_it(
    client: TestClient, services: Services, runs: str
) -> None:
    # Like every invalid parameter of this API: 422 invalid_request, naming the parameter.
    services.store.put_dag(parallel_dag("etl", ("a",)), "src", T0)
    error = error_of(client.get("/api/v1/dags/etl/stats", params={"runs": runs}), 422)
    assert error["code"] == "invalid_request" and "query.runs" in error["message"]


def test_the_operation_checks_its_bounds_itself(services: Services) -> None:
    # Whatever calls it (not only the API route, whose query is bounded too).
    services.store.put_dag(parallel_dag("etl", ("a",)), "src", T0)
    for runs in (0, 501):
        with pytest.raises(InvalidRequest, match="runs must be from 1 to 500"):
            dag_stats(services.store, "etl", runs)
    with pytest.raises(NotFound):
        dag_stats(services.store, "nope")
    assert dag_stats(services.store, "etl", 500).count == 0


@pytest.mark.parametrize("dag_id", ["nope", "a%2F..%2Fb", "%00"])
def test_stats_of_an_unknown_dag_are_404(client: TestClient, dag_id: str) -> None:
    error = error_of(client.get(f"/api/v1/dags/{dag_id}/stats"), 404)
    assert error["code"] == "not_found"


def test_stats_are_in_the_openapi_document(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    operation = doc["paths"]["/api/v1/dags/{dag_id}/stats"]["get"]
    assert operation["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/DagStats"
    }
    runs = next(p for p in operation["parameters"] if p["name"] == "runs")
    assert (runs["schema"]["minimum"], runs["schema"]["maximum"], runs["schema"]["default"]) == (1, 500, 50)


# -- the slow note of a running task ------------------------------------------------------------
def history(services: Services, dag_id: str, tasks: dict[str, float], runs: int) -> None:
    """`runs` successful runs long ago, each task taking the seconds given."""
    for i in range(runs):
        ended_run(services.store, dag_id, T0 + i * 1000, tasks)


def test_a_task_running_well_past_its_usual_time_has_a_slow_note(
    client: TestClient, services: Services
) -> None:
    store, now = services.store, time.time()
    store.put_dag(parallel_dag("etl", ("slow", "quick", "fresh", "waiting")), "src", T0)
    history(services, "etl", {"slow": 10.0, "quick": 10.0}, 5)
    history(services, "etl", {"fresh": 10.0}, 4)  # one success too few to know its usual time
    run_id = running_run(store, "etl", {"slow": now - 600, "quick": now - 5, "fresh": now - 600})
    detail = client.get(f"/api/v1/runs/{run_id}").json()
    models.RunDetail.model_validate(detail)
    slow = {t["task_id"]: t["slow"] for t in detail["tasks"]}
    assert slow["slow"] == {
        "factor": 60.0,
        "usual_secs": 10.0,
        "message": "running 60× longer than usual (p95 10 s)",
    }
    assert slow["quick"] is None  # 5 s: within its usual time
    assert slow["fresh"] is None  # 4 successes: no usual time yet
    assert slow["waiting"] is None  # not running
    # Only the run's detail carries notes: a task list or a task's detail have none to give.
    assert all("slow" not in t for t in client.get(f"/api/v1/runs/{run_id}/tasks").json()["tasks"])
    assert "slow" not in client.get(f"/api/v1/runs/{run_id}/tasks/slow").json()


def test_a_finished_task_has_no_slow_note_however_long_it_took(
    client: TestClient, services: Services
) -> None:
    store = services.store
    store.put_dag(parallel_dag("etl", ("a", "b")), "src", T0)
    history(services, "etl", {"a": 10.0}, 5)
    run_id = ended_run(store, "etl", T0 + 50_000, {"a": 5000.0, "b": 1.0}, RunState.RUNNING)
    assert [t["slow"] for t in client.get(f"/api/v1/runs/{run_id}").json()["tasks"]] == [None, None]


def test_run_detail_reads_the_history_of_all_its_running_tasks_at_once(
    client: TestClient, services: Services
) -> None:
    store, now = services.store, time.time()
    statements: dict[int, int] = {}
    for width in (2, 9):
        ids = tuple(f"t{i}" for i in range(width))
        dag_id = f"wide{width}"
        store.put_dag(parallel_dag(dag_id, ids), "src", T0)
        history(services, dag_id, dict.fromkeys(ids, 10.0), 5)
        run_id = running_run(store, dag_id, dict.fromkeys(ids, now - 600))
        reads, queries = served(store, "success_durations"), served(store, "_exec")
        tasks = client.get(f"/api/v1/runs/{run_id}").json()["tasks"]
        assert all(t["slow"] is not None for t in tasks) and len(tasks) == width
        assert reads() == 1
        statements[width] = queries()
        del store.success_durations, store._exec  # served() wrapped them on the instance
    assert 0 < statements[2] == statements[9]  # as many SQL statements for 9 running tasks as for 2


def test_a_run_without_running_tasks_reads_no_history(client: TestClient, services: Services) -> None:
    store = services.store
    store.put_dag(parallel_dag("etl", ("a",)), "src", T0)
    run_id = store.create_run("etl", triggered_by="test", params={}, now=T0).run_id
    reads = served(store, "success_durations")
    assert client.get(f"/api/v1/runs/{run_id}").json()["tasks"][0]["slow"] is None
    assert reads() == 0
