"""The benchmark suite's own machinery, on a tiny workload: well-formed results, no speed asserted.

Speed goals live in the suite's figures (`python -m benchmarks`), never in timed assertions.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from benchmarks.__main__ import main
from benchmarks.compare import run_comparison
from benchmarks.loadtime import measure
from benchmarks.make import MakeRunner
from benchmarks.meta import finish, meta, tree_state
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


def test_the_throughput_section_runs_w5_shaped_work_on_32_slots(tmp_path, capsys):
    from benchmarks.throughput import run_throughput, w5_yaml

    if shutil.which("make") is None:
        pytest.skip("GNU make is not installed")
    spec = load_dag(w5_yaml(40))
    assert len(spec.tasks) == 40 and spec.max_active_tasks == 40 and not any(t.depends_on for t in spec.tasks)
    section = run_throughput(tmp_path / "w5", 1, tasks=40, progress=lambda *a: None)
    assert {"make", "up"} <= set(section["systems"])
    for name, figures in section["systems"].items():
        assert figures["tasks_per_sec"] > 0, name
    assert section["systems"]["up"]["ratio"] > 0
    print_report({"throughput": section})
    out = capsys.readouterr().out
    assert "W5 throughput, 40 independent tasks on 32 slots" in out and "tasks/s" in out


def test_the_command_line_refuses_unknown_workloads_and_doing_nothing(tmp_path):
    assert main(["--workloads", "W7", "--out", str(tmp_path / "r.json")]) == 2
    assert main(["--no-compare", "--out", str(tmp_path / "r.json")]) == 2
    assert not (tmp_path / "r.json").exists()


def test_a_section_records_its_commit_and_the_machine_at_its_start_and_end():
    section = finish(meta(runs=1))
    assert re.fullmatch(r"[0-9a-f]{40}", section["commit"]), section["commit"]
    assert section["cpus_start"] == section["cpus_end"] == os.cpu_count()
    assert isinstance(section["load1_start"], float) and isinstance(section["load1_end"], float)
    assert section["busy"] == (section["load1_start"] > 1.0)


def git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
        cwd=repo,
        check=True,
        capture_output=True,
    )


def test_the_tree_state_sees_every_change_but_the_results_files(tmp_path):
    git(tmp_path, "init", "-q")
    (tmp_path / "code.py").write_text("x = 1\n")
    git(tmp_path, "add", "code.py")
    git(tmp_path, "commit", "-q", "-m", "first")
    sha, why = tree_state(tmp_path)
    assert re.fullmatch(r"[0-9a-f]{40}", sha) and why is None
    (tmp_path / "latest.json").write_text("{}")
    assert tree_state(tmp_path, ignore=("latest.json",)) == (sha, None)
    assert "?? latest.json" in tree_state(tmp_path)[1]
    (tmp_path / "code.py").write_text("x = 2\n")
    why = tree_state(tmp_path, ignore=("latest.json",))[1]
    assert why and "M code.py" in why and sha[:12] in why


def compare_section(load1: float) -> dict[str, Any]:
    """A made-up `compare` section: W2 on `up`, every goal met."""
    up = {
        "wall": {"median": 0.2, "spread": 0.1},
        "ratio": 2.0,
        "overhead_ms_per_task": 2.0,
        "handoff": {"p50_ms": 2.0, "p95_ms": 6.0},
    }
    return {
        "meta": {"runs": 3, "commit": "a" * 40, "cpus_start": 2, "load1_start": load1, "load1_end": load1},
        "deployments": ["up"],
        "workloads": {"W2": {"tasks": 50, "edges": 49, "make": {"median": 0.1, "spread": 0.1}, "up": up}},
        "memory": {"up": {"up": {"idle_rss_mib": 70.0, "peak_rss_mib": 80.0}}},
    }


def test_a_busy_machine_marks_its_figures_instead_of_judging_them():
    quiet = markdown({"compare": compare_section(load1=0.3)})
    assert "✓" in quiet and "machine busy" not in quiet and "commit aaaaaaaaaaaa" in quiet
    busy = markdown({"compare": compare_section(load1=1.7)})
    assert "machine busy" in busy and "✓" not in busy and "✗" not in busy
    assert "1.7 at the start" in busy


def test_figures_from_a_changed_tree_are_printed_and_not_saved(tmp_path, monkeypatch, capsys):
    import benchmarks.__main__ as cli

    monkeypatch.setattr(cli, "run_comparison", lambda *args, **kwargs: compare_section(load1=0.3))
    monkeypatch.setattr(cli, "tree_state", lambda repo, ignore=(): ("b" * 40, "the working tree differs"))
    out = tmp_path / "r.json"
    assert main(["--workloads", "W2", "--no-distributed", "--out", str(out)]) == 1
    assert not out.exists() and not out.with_suffix(".md").exists()
    printed = capsys.readouterr().out
    assert "W2 (50 tasks)" in printed and "not saved as results: the working tree differs" in printed
    monkeypatch.setattr(cli, "tree_state", lambda repo, ignore=(): ("b" * 40, None))
    assert main(["--workloads", "W2", "--no-distributed", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["compare"]["meta"]["commit"] == "a" * 40
