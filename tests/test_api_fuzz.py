"""Property-based test of the whole API from its own /openapi.json (schemathesis, in-process).

Every operation gets generated requests, valid and invalid: the answer must never be a 5xx, its
status must be one the operation documents, and its body must match the documented schema.
Each request is sent twice: as generated (ids are random, so mostly 404s) and with the path ids
of a seeded DAG, run and task, so that generated queries and bodies reach real objects.
Seeded and bounded (about a thousand requests), so that it sends the same ones every time.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from flowforge.api import create_app
from flowforge.core.dagfile import load_dag
from flowforge.core.model import TaskState
from flowforge.services import Services, build_services
from flowforge.settings import Settings

MAX_EXAMPLES = 20  # per operation in the fuzzing phase; the coverage phase adds its own bounded set
SEED = 20260101
DEMO = """\
id: demo
schedule: "@daily"
params: {region: eu}
env: {API_TOKEN: hunter2}
tasks:
  - {id: extract, command: echo extract}
  - {id: load, command: echo load, depends_on: [extract], retries: 1}
"""
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
# /ready answers 503 (in its documented shape) while no scheduler leads, as here: that is no failure.
NOT_READY_IS_AN_ANSWER = {"/ready"}
# Streaming answers never end by themselves; tests/test_events.py covers them over a real server.
STREAMING_PATHS = {"/api/v1/events"}
TRUE_WORDS = {"1", "true", "yes", "on", "t", "y"}


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    home = tmp_path_factory.mktemp("fuzz")
    s = build_services(Settings(home=home, db_url="sqlite://:memory:", queue_url="memory://"))
    try:
        yield s
    finally:
        s.close()


@pytest.fixture(scope="module")
def seeded_ids(services: Services) -> dict[str, str]:
    """A DAG with a run whose `extract` task ran once (with a log) and failed."""
    store, now = services.store, time.time()
    store.put_dag(load_dag(DEMO, source="<fuzz>"), DEMO, now)
    run = store.create_run("demo", triggered_by="fuzz", params={"region": "eu"}, now=now)
    assert store.queue_tasks(run.run_id, [("extract", 0)], now) == ["extract"]
    assert store.claim_task(run.run_id, "extract", 1, "w1", now)
    store.append_log(run.run_id, "extract", 1, "extract\n")
    store.finish_task(
        run.run_id, "extract", 1, "w1", state=TaskState.FAILED, now=now + 1, exit_code=1, error="x"
    )
    return {"dag_id": "demo", "run_id": run.run_id, "task_id": "extract"}


@pytest.fixture(scope="module")
def api_schema(services: Services) -> Any:
    loaded = schemathesis.openapi.from_asgi("/openapi.json", create_app(services, api_token=""))
    loaded.config.seed = SEED  # the same requests on every run
    return loaded


schema = schemathesis.pytest.from_fixture("api_schema").exclude(path=list(STREAMING_PATHS))


def without_follow(case: Any) -> None:
    """A followed log streams until its attempt ends: read it as a page instead."""
    if case.query and str(case.query.get("follow", "")).lower() in TRUE_WORDS:
        del case.query["follow"]


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_api_answers_match_their_schema_and_never_fail(case: Any, seeded_ids: dict[str, str]) -> None:
    without_follow(case)
    checks = [c for c in CHECKS if not (case.path in NOT_READY_IS_AN_ANSWER and c is not_a_server_error)]
    case.call_and_validate(checks=checks)
    if case.path_parameters:
        case.path_parameters = {k: seeded_ids.get(k, v) for k, v in case.path_parameters.items()}
        case.call_and_validate(checks=checks)
