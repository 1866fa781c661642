"""The `--cron` benchmark section's machinery on a few DAGs for a few seconds: well-formed figures, no speed asserted."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.cron import dag_yaml, expected_ticks, run_cron
from benchmarks.report import markdown, print_report
from flowforge.core.dagfile import load_dag


def test_dag_i_fires_once_a_minute_at_second_i_mod_60() -> None:
    spec = load_dag(dag_yaml(61))
    assert (spec.id, spec.schedule, len(spec.tasks)) == ("cron0061", "1 * * * * *", 1)
    # 120 DAGs over one whole minute: each fires once.
    assert expected_ticks(120, 600.0, 659.0) == 120
    assert expected_ticks(120, 600.5, 601.0) == 2  # second 1 only


@pytest.mark.e2e
def test_the_cron_section_counts_every_tick_and_run_on_up(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    section = run_cron(
        tmp_path / "cron",
        dags=60,
        watch_secs=4.0,
        settle_secs=1.0,
        distributed=False,
        progress=lambda *a: None,
    )
    up = section["systems"]["up"]
    assert up["ticks"]["all"]["n"] > 0 and up["ticks"]["housekeeping"]["n"] > 0
    runs = up["runs"]
    assert runs["expected"] > 0 and runs["made"] == runs["expected"] and runs["duplicates"] == 0
    assert section["distributed_skipped"] == "not asked for"
    print_report({"cron": section})
    out = capsys.readouterr().out
    assert "60 scheduled DAGs" in out and "up, every tick" in out and "created − tick" in out
    assert "up, cron runs" in markdown({"cron": section})
