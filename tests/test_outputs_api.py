"""Task outputs through the API and the CLI: `attempts[].outputs`, a run's `outputs`, `flowforge run`.

The outputs are written by real tasks: a real scheduler and worker run on the server's own store
and queue while the CLI talks to a real uvicorn server.
"""

from __future__ import annotations

import json
import re
import textwrap
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from flowforge.api import create_app
from flowforge.core.model import RunState
from flowforge.engine.scheduler import Scheduler
from flowforge.engine.worker import Worker
from flowforge.services import Services
from tests.cli_support import CLEAN_ENV, LiveApi, in_terminal, serving

DAG = textwrap.dedent(
    """\
    id: shipped
    tasks:
      - id: extract
        command: |
          echo "rows=42" >> "$FLOWFORGE_OUTPUT"
          printf 'title=\\033[2Jgone\\n' >> "$FLOWFORGE_OUTPUT"
          echo "db_password=hunter22" >> "$FLOWFORGE_OUTPUT"
          printf 'long=%0300d\\n' 0 >> "$FLOWFORGE_OUTPUT"
      - id: load
        command: echo "loaded $FLOWFORGE_UPSTREAM_EXTRACT_ROWS"
        depends_on: [extract]
    """
)


@pytest.fixture
def engine(services: Services) -> Iterator[Services]:
    """A scheduler and a worker running on the services' store and queue, stopped afterwards."""
    stop = threading.Event()
    scheduler = Scheduler(services.store, services.queue, worker_dead_after=2.0)
    worker = Worker(services.store, services.queue, slots=2, kill_grace=0.5, heartbeat_secs=0.2)
    threads = [
        threading.Thread(target=scheduler.run, args=(stop, 0.1), daemon=True),
        threading.Thread(target=worker.run, args=(stop, 5.0), daemon=True),
    ]
    for t in threads:
        t.start()
    try:
        yield services
    finally:
        stop.set()
        services.queue.close()
        for t in threads:
            t.join(10)


def run_to_end(client: Any, yaml: str = DAG) -> str:
    """Submit the DAG `shipped`, trigger it and wait for the run to succeed; its id."""
    assert client.post("/api/v1/dags", json={"yaml": yaml}).status_code in (200, 201)
    run_id: str = client.post("/api/v1/runs", json={"dag_id": "shipped"}).json()["run_id"]
    deadline = time.monotonic() + 30
    while (state := client.get(f"/api/v1/runs/{run_id}").json()["state"]) not in ("success", "failed"):
        assert time.monotonic() < deadline, state
        time.sleep(0.05)
    assert state == RunState.SUCCESS
    return run_id


def test_attempts_and_runs_carry_outputs_with_secrets_masked(engine: Services) -> None:
    with TestClient(create_app(engine, api_token="")) as client:
        run_id = run_to_end(client)
        extract = client.get(f"/api/v1/runs/{run_id}/tasks/extract").json()
        (attempt,) = extract["attempts"]
        assert attempt["outputs"] == {
            "rows": "42",
            "title": "\x1b[2Jgone",
            "db_password": "***",
            "long": "0" * 300,
        }
        load = client.get(f"/api/v1/runs/{run_id}/tasks/load").json()
        assert load["attempts"][0]["outputs"] == {}  # wrote none
        assert client.get(f"/api/v1/runs/{run_id}").json()["outputs"] == {"extract": attempt["outputs"]}
        log = client.get(f"/api/v1/runs/{run_id}/tasks/load/logs").json()["text"]
        assert log == "loaded 42\n"
        schemas = client.get("/openapi.json").json()["components"]["schemas"]
    outputs = schemas["AttemptOut"]["properties"]["outputs"]
    assert outputs["type"] == "object" and outputs["additionalProperties"] == {"type": "string"}
    by_task = schemas["RunDetail"]["properties"]["outputs"]["additionalProperties"]
    assert by_task["additionalProperties"] == {"type": "string"}


def test_flowforge_run_shows_each_tasks_outputs(engine: Services) -> None:
    with serving(create_app(engine, api_token="")) as url:
        try:
            api = LiveApi(url, engine, CliRunner(env=CLEAN_ENV))
            with httpx.Client(base_url=url) as client:
                run_id = run_to_end(client)
            shown = api.cli("run", run_id)
            assert shown.exit_code == 0, shown.output
            lines = shown.stdout.splitlines()
            start = lines.index("Outputs:")
            assert lines[start + 1].split() == ["Task", "Key", "Value"]
            rows = [line.split(None, 2) for line in lines[start + 2 :]]
            assert rows[:3] == [
                ["extract", "rows", "42"],
                ["extract", "title", "\\x1b[2Jgone"],  # a control character shown, not sent
                ["extract", "db_password", "***"],
            ]
            assert rows[3][:2] == ["extract", "long"]
            assert rows[3][2] == "0" * 200 + "… (100 more characters; --json has all)"
            assert "\x1b" not in shown.stdout
            # On a terminal the long value folds within the width instead of running off its edge.
            boxed = re.sub(r"\x1b\[[0-9;]*m", "", in_terminal("run", run_id, url=url, columns=80))
            assert "--json has all)" in boxed and max(len(line) for line in boxed.splitlines()) <= 80
            detail = json.loads(api.cli("--json", "run", run_id).stdout)
            assert detail["outputs"]["extract"]["long"] == "0" * 300
            assert detail["outputs"]["extract"]["title"] == "\x1b[2Jgone"  # JSON escapes it itself
        finally:
            engine.stopping.set()


def test_a_run_without_outputs_shows_no_outputs_table(engine: Services) -> None:
    with serving(create_app(engine, api_token="")) as url:
        try:
            api = LiveApi(url, engine, CliRunner(env=CLEAN_ENV))
            with httpx.Client(base_url=url) as client:
                run_id = run_to_end(client, DAG.replace('"$FLOWFORGE_OUTPUT"', "/dev/null"))
            shown = api.cli("run", run_id)
            assert shown.exit_code == 0 and "Outputs" not in shown.stdout
            assert json.loads(api.cli("--json", "run", run_id).stdout)["outputs"] == {}
        finally:
            engine.stopping.set()
