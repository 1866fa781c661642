"""`flowforge dags --stats` and the slow note of `flowforge run`: the real CLI against a real server."""

from __future__ import annotations

import re
import time

import pytest

from flowforge.api import models
from flowforge.core.model import RunState
from tests.cli_support import LiveApi, served
from tests.durations_support import ended_run, parallel_dag, running_run

T0 = 1_700_000_000.0


@pytest.fixture
def histories(api: LiveApi) -> None:
    """`etl`: 4 successful runs of 10, 20, 30 and 100 s, and a failed one; `fresh`: no run yet."""
    store = api.services.store
    store.put_dag(parallel_dag("etl", ("a",)), "src", T0)
    store.put_dag(parallel_dag("fresh", ("a",)), "src", T0)
    for i, secs in enumerate([10.0, 20.0, 30.0, 100.0]):
        ended_run(store, "etl", T0 + i * 1000, {"a": secs})
    ended_run(store, "etl", T0 + 9000, {"a": 1.0}, RunState.FAILED)


def row(output: str, dag_id: str) -> list[str]:
    """The cells of a DAG's line in plain (piped) table output."""
    line = next(line for line in output.splitlines() if line.startswith(dag_id + " "))
    return re.split(r"\s{2,}", line.strip())


def test_dags_with_stats_show_p50_p95_and_success_rate(api: LiveApi, histories: None) -> None:
    result = api.cli("dags", "--stats")
    assert result.exit_code == 0, result.output
    header = re.split(r"\s{2,}", result.stdout.splitlines()[0].strip())
    assert header[:4] == ["DAG", "p50", "p95", "Success"]
    assert row(result.stdout, "etl")[:4] == ["etl", "20 s", "1 min 40 s", "80% of 5"]
    assert row(result.stdout, "fresh")[:4] == ["fresh", "-", "-", "-"]
    # --runs reads fewer runs: the failed run and the 100 s one are the last two.
    assert row(api.cli("dags", "--stats", "--runs", "2").stdout, "etl")[:4] == [
        "etl",
        "1 min 40 s",
        "1 min 40 s",
        "50% of 2",
    ]
    plain = api.cli("dags").stdout
    assert "p95" not in plain and "Success" not in plain


def test_dags_with_stats_ask_once_per_listed_dag(api: LiveApi, histories: None) -> None:
    asked = served(api.services.store, "ended_runs")
    assert api.cli("dags", "--stats").exit_code == 0
    assert asked() == 2
    assert api.cli("dags").exit_code == 0
    assert asked() == 2  # without --stats: no statistics read


def test_dags_json_with_stats_adds_each_dags_stats(api: LiveApi, histories: None) -> None:
    page = api.cli_json("dags", "--stats", "--runs", "3")
    stats = {d["id"]: d.pop("stats") for d in page["dags"]}
    models.DagList.model_validate(page)  # the rest is the DAG list as the API sends it
    for dag_id, found in stats.items():
        models.DagStats.model_validate(found)
        assert found["dag_id"] == dag_id
    assert (stats["etl"]["count"], stats["etl"]["p50_secs"], stats["etl"]["success_rate"]) == (3, 30.0, 2 / 3)
    assert stats["fresh"]["count"] == 0 and stats["fresh"]["p95_secs"] is None
    assert all("stats" not in d for d in api.cli_json("dags")["dags"])


@pytest.mark.parametrize("runs", ["0", "501", "x"])
def test_dags_stats_with_a_bad_run_count_is_exit_2_naming_the_option(api: LiveApi, runs: str) -> None:
    result = api.cli("dags", "--stats", "--runs", runs)
    assert result.exit_code == 2
    assert "--runs" in result.output and "Traceback" not in result.output


def test_run_shows_the_slow_note_next_to_a_running_task(api: LiveApi) -> None:
    store, now = api.services.store, time.time()
    store.put_dag(parallel_dag("etl", ("slow", "fresh")), "src", T0)
    for i in range(5):
        ended_run(store, "etl", T0 + i * 1000, {"slow": 100.0})
    for i in range(4):
        ended_run(store, "etl", T0 + 10_000 + i * 1000, {"fresh": 100.0})  # too few successes
    run_id = running_run(store, "etl", {"slow": now - 310, "fresh": now - 310})
    result = api.cli("run", run_id)
    assert result.exit_code == 0, result.output
    header = re.split(r"\s{2,}", next(line for line in result.stdout.splitlines() if line.startswith("Task")))
    assert header == ["Task", "State", "Attempt", "Duration", "Note", "Exit", "Error"]
    slow = row(result.stdout, "slow")
    assert slow[:3] == ["slow", "running", "1"] and slow[3].startswith("5m"), slow  # 310 s and on
    assert re.fullmatch(r"running 3\.\d× longer than usual \(p95 1 min 40 s\)", slow[4]), slow
    fresh = next(line for line in result.stdout.splitlines() if line.startswith("fresh "))
    assert "running" in fresh and "usual" not in fresh
    detail = api.cli_json("run", run_id)
    models.RunDetail.model_validate(detail)
    notes = {t["task_id"]: t["slow"] for t in detail["tasks"]}
    assert notes["fresh"] is None and notes["slow"]["usual_secs"] == 100.0


def test_run_without_a_slow_task_has_no_note_column(api: LiveApi) -> None:
    store, now = api.services.store, time.time()
    store.put_dag(parallel_dag("etl", ("a",)), "src", T0)
    for i in range(5):
        ended_run(store, "etl", T0 + i * 1000, {"a": 100.0})
    result = api.cli("run", running_run(store, "etl", {"a": now - 10}))
    assert result.exit_code == 0, result.output
    assert "Note" not in result.stdout and "usual" not in result.stdout
