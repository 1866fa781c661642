"""The API under a small open-loop load (the `--api-load` benchmark, shrunk): no 5xx, no error.

Ten clients send four requests a second each for five seconds, on their own clocks whether or
not their last answer came, against a real `flowforge up` on SQLite while the runs they trigger
go on, and against two `flowforge api` processes sharing PostgreSQL with a scheduler and workers.
Latency is not asserted (the machine is shared); errors are.
"""

from __future__ import annotations

import os
from contextlib import ExitStack
from pathlib import Path

import pytest

from benchmarks.apiload import Shape, measure, start_distributed, start_up
from tests.backends import PG_ENV, REDIS_ENV, require_env

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

SMALL = Shape(clients=10, rate=40.0, secs=5.0)


def assert_clean(result: dict[str, object]) -> None:
    """No 5xx, no connection error, no locked database, every run a success."""
    assert result["http_5xx"] == 0, result["statuses"]
    assert result["connection_errors"] == 0, result["errors"]
    assert result["database_locked_in_logs"] == 0
    assert result["run_states"] == {"success": result["runs"]}, result["run_states"]
    assert result["requests"] >= SMALL.rate * SMALL.secs * 0.9  # open loop: all of them were sent


def test_up_answers_a_small_open_loop_load_without_errors(tmp_path: Path) -> None:
    cluster, urls, _ = start_up(tmp_path)
    try:
        result = measure("up", cluster, urls, SMALL, progress=lambda _: None)
    finally:
        cluster.close()
    assert_clean(result)
    assert result["runs"] > 0 and result["statuses"].get("200", 0) > 0


def test_two_apis_on_postgres_answer_a_small_open_loop_load_without_errors(tmp_path: Path) -> None:
    require_env(PG_ENV)
    require_env(REDIS_ENV)
    assert os.environ[PG_ENV]
    with ExitStack() as services:
        cluster, urls, _, _ = start_distributed(tmp_path, services)
        try:
            result = measure("distributed", cluster, urls, SMALL, progress=lambda _: None)
        finally:
            cluster.close()
    assert_clean(result)
    assert result["runs"] > 0
