"""The API's models describe exactly what the routes send: every record field has its place.

Answer models leave unknown keys out instead of failing a request, so a field added to a record
would silently vanish from the API; these tests make that a failure here instead.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel

from flowforge.api import create_app, models
from flowforge.api.views import worker_summary
from flowforge.core.dagfile import load_dag
from flowforge.core.model import RunState, TaskState
from flowforge.core.records import Attempt, Run, TaskInstance, WorkerInfo
from flowforge.services import build_services
from flowforge.settings import Settings

DEMO = """\
id: demo
schedule: "@daily"
run_timeout_secs: 7200
tasks:
  - {id: a, command: 'true', timeout_secs: 30}
"""


def fields(model: type[BaseModel]) -> set[str]:
    return set(model.model_fields)


@pytest.mark.parametrize(
    ("record", "model"),
    [
        (Run("r", "d", 1, RunState.QUEUED, "api", {}, None, 0.0), models.RunOut),
        (TaskInstance("r", "t", TaskState.PENDING, 0), models.TaskInstanceOut),
        (Attempt("r", "t", 1, TaskState.RUNNING), models.AttemptOut),
        (WorkerInfo("w", "host", 1, 2, 0.0, 0.0), models.WorkerOut),
    ],
    ids=lambda x: type(x).__name__,
)
def test_record_forms_match_their_models(record: Any, model: type[BaseModel]) -> None:
    assert set(record.to_dict()) == fields(model)  # what a route sends, field for field


def test_the_lease_token_never_leaves_the_store() -> None:
    ti = TaskInstance("r", "t", TaskState.RUNNING, 1, lease_token="secret-lease")
    assert "lease_token" not in ti.to_dict() and "lease_token" not in fields(models.TaskInstanceOut)


def test_dag_and_task_spec_forms_match_their_models() -> None:
    spec = load_dag(DEMO)
    assert set(spec.tasks[0].to_dict()) == fields(models.TaskSpecOut)
    record_keys = set(spec.to_dict()) | {"version", "active", "paused", "created_at", "updated_at"}
    assert record_keys | {"next_run", "task_count"} == fields(models.DagSummary)
    assert fields(models.DagDetail) - fields(models.DagSummary) == {"source"}


def test_worker_counts_match_their_model() -> None:
    assert set(worker_summary([], time.time(), 5.0)) == fields(models.WorkerCounts)


def test_answers_keep_their_json_numbers_and_fields(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, db_url=f"sqlite:///{tmp_path / 'ff.db'}", queue_url="memory://")
    services = build_services(settings)
    try:
        with TestClient(create_app(services, api_token="")) as c:
            dag = c.post("/api/v1/dags", json={"yaml": DEMO}).json()
            assert set(dag) == fields(models.DagSubmitted)
            assert dag["tasks"][0]["timeout_secs"] == 30 and dag["run_timeout_secs"] == 7200
            assert isinstance(dag["created_at"], float) and dag["next_run"].endswith("Z")
            run = c.post("/api/v1/runs", json={"dag_id": "demo"}).json()
            assert set(run) == fields(models.TriggeredRun) and run["state"] == "queued"
            detail = c.get(f"/api/v1/runs/{run['run_id']}").json()
            assert set(detail) == fields(models.RunDetail) and set(detail["tasks"][0]) == fields(
                models.RunTaskOut
            )
            task = c.get(f"/api/v1/runs/{run['run_id']}/tasks/a").json()
            assert set(task) == fields(models.TaskDetail) and task["attempts"] == []
            status = c.get("/api/v1/status").json()
            assert set(status) == fields(models.Status) and set(status["workers"]) == fields(
                models.WorkerCounts
            )
    finally:
        services.close()


def test_every_documented_operation_has_a_typed_answer(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, db_url="sqlite://:memory:", queue_url="memory://")
    services = build_services(settings)
    try:
        doc = create_app(services, api_token="").openapi()
    finally:
        services.close()
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            ok = next(s for s in op["responses"] if s.startswith("2"))
            content = op["responses"][ok]["content"]
            schema = next(iter(content.values())).get("schema", {})
            assert schema, (method, path)  # an answer with no schema documents nothing
            for status, answer in op["responses"].items():
                if status.startswith(("4", "5")) and not (path == "/ready" and status == "503"):
                    ref = answer["content"]["application/json"]["schema"]["$ref"]
                    assert ref == "#/components/schemas/ErrorResponse", (method, path, status)
    assert "HTTPValidationError" not in str(doc)
