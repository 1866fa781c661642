"""`python -m benchmarks --many-workers`, small: 4 API-mode workers, 50 short tasks. No speed asserted.

Keeps the benchmark's code working and checks what it finds that is no matter of speed: every
task succeeds, only the API and the scheduler hold database connections (API-mode workers hold
none), within their pools, and no log says a connection failed.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console

from benchmarks.many_workers import run_many_workers
from benchmarks.report import markdown, print_report
from flowforge.settings import API_THREADS, SCHEDULER_CONNECTIONS
from tests.backends import PG_ENV, REDIS_ENV, require_env

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


def test_the_many_workers_benchmark_runs_small(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    require_env(PG_ENV), require_env(REDIS_ENV)  # it makes its own database and key prefix
    section = run_many_workers(tmp_path, workers=4, slots=2, tasks=50, sleep=0.1, idle_secs=1.0)
    assert "skipped" not in section and "error" not in section, section
    run = section["run"]
    assert (run["state"], run["tasks"], run["succeeded"]) == ("success", 50, 50)
    assert run["ideal_s"] == pytest.approx(50 / 8 * 0.1)
    assert section["idle_cpu_percent"] >= 0 and section["idle_secs"] == 1.0
    conns = section["connections"]
    assert conns["samples"] > 1
    assert set(conns["by_process"]) <= {"flowforge-api", "flowforge-scheduler"}, conns
    assert conns["by_process"].get("flowforge-api", 0) <= API_THREADS
    assert conns["by_process"].get("flowforge-scheduler", 0) <= SCHEDULER_CONNECTIONS
    assert conns["peak_total"] <= API_THREADS + SCHEDULER_CONNECTIONS
    assert section["connection_errors"] == 0, section["connection_error_lines"]
    assert section["meta"]["load1_start"] is not None and "load1_end" in section["meta"]
    # Printed and written like the other sections.
    print_report({"many_workers": section}, Console(width=200))
    out = capsys.readouterr().out
    assert "4 API-mode workers × 2 slots" in out and "50 × sleep 0.1: trigger → done" in out
    assert "PostgreSQL connections, most at once" in out and "connection errors in the logs: 0" in out
    assert "1-minute load average" in out
    assert "- idle workers:" in markdown({"many_workers": section})
