"""The CLI start-up benchmark's machinery: well-formed figures and report lines, no speed asserted.

The goals are figures of `python -m benchmarks --cli` (benchmarks/cli_startup.py), never assertions.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.cli_startup import GOALS, run_cli_startup, ten_tasks
from benchmarks.report import cli_lines, markdown
from flowforge.core.dagfile import load_dag


def test_the_measured_file_has_ten_tasks() -> None:
    assert len(load_dag(ten_tasks()).tasks) == 10


@pytest.mark.e2e
def test_the_section_times_every_command_against_python(tmp_path: Path) -> None:
    section = run_cli_startup(tmp_path / "cli", runs=5, progress=lambda *_: None)
    commands = section["commands"]
    assert list(commands) == ["python", "version", "help", "dags", "validate"]
    for name, c in commands.items():
        assert c["seconds"]["n"] == 5 and c["seconds"]["median"] > 0, name
        assert c["goal"] == GOALS.get(name)
    assert commands["python"]["ratio"] == 1.0
    meta = section["meta"]
    assert meta["load1_start"] is not None and "load1_end" in meta and meta["runs"] == 5
    lines = cli_lines({"cli": section})
    assert lines[0].startswith("CLI start-up, output to a pipe, medians of 5 interleaved runs")
    assert "1-minute load average" in lines[0]
    assert any(line.startswith("flowforge --help: ") and "(goal 3×)" in line for line in lines)
    assert "- flowforge validate (10 tasks): " in markdown({"cli": section})
