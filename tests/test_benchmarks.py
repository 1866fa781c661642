"""The benchmark suite's own machinery, on a tiny workload: well-formed results, no speed asserted.

Speed goals live in the suite's figures (`python -m benchmarks`), never in timed assertions.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from benchmarks.__main__ import main
from benchmarks.compare import run_comparison
from benchmarks.loadtime import measure
from benchmarks.make import MakeRunner
from benchmarks.report import markdown, print_report, write_json
from benchmarks.runners import handoffs
from benchmarks.scale import build_history, query_plans
from benchmarks.workloads import (
    ALL_WORKLOADS,
    Workload,
    load_workload,
    makefile,
    parse_names,
)
from flowforge.core.dagfile import load_dag

DIAMOND = """id: tiny
description: a diamond
tasks:
  - {id: a, command: "true"}
  - {id: b, command: "true", depends_on: [a]}
  - {id: c, command: "true", depends_on: [a]}
  - {id: d, command: "true", depends_on: [b, c]}
"""


@pytest.fixture
def tiny(tmp_path: Path) -> Workload:
    path = tmp_path / "tiny.yaml"
    path.write_text(DIAMOND)
    return Workload(name="tiny", path=path, spec=load_dag(DIAMOND))


def test_the_shipped_workloads_load_and_have_their_shapes():
    shapes = {name: (w.tasks, w.edges) for name in ALL_WORKLOADS for w in [load_workload(name)]}
    assert shapes["W1"] == (200, 0)
    assert shapes["W2"] == (50, 49)
    assert shapes["W3"] == (200, 3600)
    assert shapes["W4"][0] == 5000


def test_workload_names_are_checked():
    assert parse_names("w1, W3") == ["W1", "W3"]
    with pytest.raises(ValueError, match="W9"):
        parse_names("W1,W9")


def test_the_makefile_has_a_phony_target_per_task_with_its_dependencies(tiny, tmp_path):
    text = makefile(tiny.spec)
    assert ".PHONY: all a b c d" in text and "all: a b c d" in text
    assert "d: b c\n\t@sh -c true" in text
    if shutil.which("make") is None:
        pytest.skip("GNU make is not installed")
    assert MakeRunner(tiny.spec, tmp_path / "make").run() > 0


def test_handoffs_count_from_the_end_that_made_tasks_ready_to_the_first_start(tiny):
    tasks = [
        {"task_id": "a", "started_at": 0.0, "ended_at": 1.0},
        {"task_id": "b", "started_at": 1.010, "ended_at": 2.0},
        {"task_id": "c", "started_at": 1.500, "ended_at": 3.0},  # waited for a slot: not a hand-off
        {"task_id": "d", "started_at": 3.004, "ended_at": 4.0},  # ready when c (the later) ended
    ]
    assert sorted(round(h, 3) for h in handoffs(tiny.spec, tasks)) == [0.004, 0.01]


def test_the_load_measure_reports_times_and_memory(tiny):
    result = measure("flowforge", tiny.path, repeat=2)
    assert result["tasks"] == 4 and result["seconds"]["n"] == 2
    assert result["tracemalloc_peak_mib"] > 0 and result["peak_rss_mib"] > 0


def test_a_small_history_is_finished_and_its_hot_queries_are_indexed(tmp_path):
    history = build_history(tmp_path / "home", 3)
    assert history["runs"] == 3 and history["task_instances"] == 600
    plans = query_plans(tmp_path / "home" / "flowforge.db")
    hot = ["list_runs active states (each tick)", "task_instances", "latest_logical_dates (each tick)"]
    assert all(not plans[name]["full_scan"] for name in hot), {n: plans[n] for n in hot}


@pytest.mark.e2e
def test_the_comparison_produces_a_well_formed_result(tiny, tmp_path, capsys):
    if shutil.which("make") is None:
        pytest.skip("GNU make is not installed")
    section = run_comparison([tiny], 2, tmp_path / "compare", distributed=False, progress=lambda *a: None)
    assert section["deployments"] == ["up"] and section["distributed_skipped"] == "--no-distributed"
    w = section["workloads"]["tiny"]
    assert w["tasks"] == 4 and w["edges"] == 4 and w["make"]["n"] == 2
    up = w["up"]
    assert up["runs_not_successful"] == 0 and up["wall"]["n"] == 2
    assert up["wall"]["median"] > 0 and up["ratio"] > 0
    assert up["handoff"]["n"] == 2 * 2  # two hand-offs a run: a → b/c, then the later of b, c → d
    memory = section["memory"]["up"]["up"]
    assert memory["idle_rss_mib"] > 0 and memory["peak_rss_mib"] >= memory["idle_rss_mib"]
    results = {"compare": section}
    table = markdown(results)
    assert "| tiny (4 tasks) |" in table and "up / up: idle RSS" in table
    out = tmp_path / "results.json"
    write_json(results, out)
    write_json({"scale": {"runs": 0}}, out)  # a later section is merged in, the first one kept
    assert set(json.loads(out.read_text())) == {"compare", "scale"}
    print_report(results)
    assert "tiny" in capsys.readouterr().out


def test_the_command_line_refuses_unknown_workloads_and_doing_nothing(tmp_path):
    assert main(["--workloads", "W7", "--out", str(tmp_path / "r.json")]) == 2
    assert main(["--no-compare", "--out", str(tmp_path / "r.json")]) == 2
    assert not (tmp_path / "r.json").exists()
