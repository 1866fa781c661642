"""POST /api/v1/prune through the app: counts and cutoff, dry runs, refused ages, and /status and
/metrics agreeing with the tables afterwards."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from flowforge import operations_prune
from flowforge.api import create_app
from flowforge.core.model import RunState
from flowforge.services import Services
from tests.prune_support import (
    DAY,
    bulk_history,
    by_state,
    ended_run,
    queued_run,
    running_run,
    submit,
    table_counts,
)
from tests.test_metrics import parse, series, value


@pytest.fixture
def client(services: Services) -> Iterator[TestClient]:
    with TestClient(create_app(services, api_token="", api_read_token="")) as c:
        yield c


def seed(services: Services) -> dict[str, str]:
    """Ended runs 40 days old (one per end state), one ended yesterday, and two old ones not ended."""
    store, now = services.store, time.time()
    submit(store, at=now - 400 * DAY)
    runs = {
        str(s): ended_run(store, now - 40 * DAY, s)
        for s in (RunState.SUCCESS, RunState.FAILED, RunState.CANCELLED)
    }
    runs["recent"] = ended_run(store, now - DAY)
    runs["running"] = running_run(store, now - 90 * DAY)
    runs["queued"] = queued_run(store, now - 90 * DAY)
    return runs


def test_prune_answers_what_it_deleted_and_the_cutoff(client: TestClient, services: Services) -> None:
    runs = seed(services)
    before = table_counts(services.store)
    asked = time.time()
    resp = client.post("/api/v1/prune", json={"older_than": "30d"})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    after = table_counts(services.store)
    assert body["runs"] == 3 and body["dry_run"] is False and body["older_than"] == "30d"
    deleted = {
        "runs": "runs",
        "task_instances": "task_instances",
        "attempts": "attempts",
        "log_chunks": "task_logs",
        "events": "events",
    }
    assert {k: body[k] for k in deleted} == {k: before[t] - after[t] for k, t in deleted.items()}
    assert asked - 30 * DAY - 1 <= body["cutoff"] <= time.time() - 30 * DAY
    left = {r["run_id"] for r in client.get("/api/v1/runs").json()["runs"]}
    assert left == {runs["recent"], runs["running"], runs["queued"]}
    assert client.get(f"/api/v1/runs/{runs['success']}").status_code == 404
    assert client.get("/api/v1/dags/etl").status_code == 200


def test_a_dry_run_deletes_nothing(client: TestClient, services: Services) -> None:
    seed(services)
    before = table_counts(services.store)
    dry = client.post("/api/v1/prune", json={"older_than": "4w", "dry_run": True}).json()
    assert table_counts(services.store) == before
    assert dry["dry_run"] is True and dry["runs"] == 3 and dry["task_instances"] == 6
    real = client.post("/api/v1/prune", json={"older_than": "4w"}).json()
    assert {k: v for k, v in real.items() if k not in ("dry_run", "cutoff")} == {
        k: v for k, v in dry.items() if k not in ("dry_run", "cutoff")
    }


@pytest.mark.parametrize("age", ["720h", "43200m", "2592000s", "30D", " 30d "])
def test_every_unit_reads(client: TestClient, services: Services, age: str) -> None:
    seed(services)
    assert client.post("/api/v1/prune", json={"older_than": age, "dry_run": True}).json()["runs"] == 3


@pytest.mark.parametrize(
    ("age", "says"),
    [
        ("0d", "more than 0"),
        ("0s", "more than 0"),
        ("-5d", "positive whole number"),
        ("36526d", "at most 100 years"),
        ("5300w", "at most 100 years"),
        ("30", "a unit"),
        ("30y", "a unit"),
        ("P30D", "a unit"),
        ("1.5d", "a unit"),
        ("30 d", "a unit"),
        ("9" * 20 + "d", "a unit"),
    ],
)
def test_a_bad_age_is_a_422_naming_the_field(
    client: TestClient, services: Services, age: str, says: str
) -> None:
    seed(services)
    before = table_counts(services.store)
    resp = client.post("/api/v1/prune", json={"older_than": age})
    assert resp.status_code == 422, resp.text
    error = resp.json()["error"]
    assert (
        error["code"] == "invalid_request" and "older_than" in error["message"] and says in error["message"]
    )
    assert error["details"][0]["loc"] == ["body", "older_than"]
    assert table_counts(services.store) == before


@pytest.mark.parametrize(
    "body",
    [{}, {"older_than": ""}, {"older_than": 30}, {"older_than": "x" * 33}, {"older_than": "30d", "extra": 1}],
)
def test_a_malformed_body_is_a_422(client: TestClient, body: dict[str, object]) -> None:
    resp = client.post("/api/v1/prune", json=body)
    assert resp.status_code == 422 and resp.json()["error"]["code"] == "invalid_request", resp.text


def test_status_and_metrics_agree_with_the_tables_after_a_prune(
    client: TestClient, services: Services
) -> None:
    seed(services)
    runs_total = series(parse(client.get("/metrics").text), "flowforge_runs_total")
    tasks_total = series(parse(client.get("/metrics").text), "flowforge_tasks_total")
    assert runs_total[frozenset({("dag_id", "etl"), ("state", "failed")})] == 1
    assert client.post("/api/v1/prune", json={"older_than": "30d"}).json()["runs"] == 3

    store = services.store
    status = client.get("/api/v1/status").json()
    assert {s: n for s, n in status["runs"].items() if n} == by_state(store, "runs")
    assert {s: n for s, n in status["tasks"].items() if n} == by_state(store, "task_instances")
    for app in (client.app, create_app(services, api_token="", api_read_token="")):  # a restarted API too
        with TestClient(app) as fresh:
            samples = parse(fresh.get("/metrics").text)
        for state, n in by_state(store, "task_instances").items():
            assert value(samples, "flowforge_task_instances", state=state) == n, state
        assert value(samples, "flowforge_task_instances", state="cancelled") == 0
        for state in ("queued", "running"):
            assert value(samples, "flowforge_runs_active", state=state) == by_state(store, "runs").get(
                state, 0
            )
        # The counters of ended runs and attempts keep what was deleted: they never go down.
        assert series(samples, "flowforge_runs_total") == runs_total
        assert series(samples, "flowforge_tasks_total") == tasks_total


def test_a_long_prune_goes_on_from_the_cursor_of_each_answer(
    client: TestClient, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each request stops after its time (here: after one batch) and says where to go on from."""
    monkeypatch.setattr(operations_prune, "REQUEST_BUDGET_SECS", 0.0)
    bulk_history(services.store, runs=1_200, tasks=1, ended=time.time() - 40 * DAY)
    for dry_run in (True, False):
        answers = [client.post("/api/v1/prune", json={"older_than": "30d", "dry_run": dry_run}).json()]
        while answers[-1]["next"]:
            body = {"older_than": "30d", "dry_run": dry_run, "cursor": answers[-1]["next"]}
            answers.append(client.post("/api/v1/prune", json=body).json())
        assert [a["runs"] for a in answers] == [500, 500, 200], dry_run  # PRUNE_BATCH_RUNS each
        assert len({a["cutoff"] for a in answers}) == 1  # one cutoff throughout
        assert table_counts(services.store)["runs"] == (1_200 if dry_run else 0)


@pytest.mark.parametrize(
    "cursor",
    ["nonsense", "1/2", "nan/1.0/abc", "1.0/2.0/a b", "1.0/2.0/" + "x" * 65, f"{time.time()!r}/1.0/abc"],
)
def test_a_cursor_it_did_not_make_is_a_422(client: TestClient, services: Services, cursor: str) -> None:
    seed(services)
    resp = client.post("/api/v1/prune", json={"older_than": "30d", "cursor": cursor})
    assert resp.status_code == 422, resp.text
    assert "body.cursor" in resp.json()["error"]["message"] and table_counts(services.store)["runs"] == 6
