"""`python -m benchmarks soak`, tiny: 150 tasks over 30 s on api + scheduler + 4 workers under SIGKILLs.

The R13 soak at a size a test can afford, through the command line a user types: every figure a
reader of the soak looks at is there and says what it must (the invariants hold, the kills
happened, the queue is back to 0, every process has its RSS series). No speed asserted.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import benchmarks.__main__ as cli
from benchmarks.soak_figures import rss_figures, warmup_secs
from tests.backends import PG_ENV, REDIS_ENV, require_env


def life(name: str, start: float, rss: list[float], *, killed: bool = False) -> dict[str, object]:
    """A process life sampled every 10 s from `start`."""
    samples = [[start + 10 * i, r] for i, r in enumerate(rss)]
    return {"name": name, "start_s": start, "killed": killed, "end_s": None, "samples": samples}


def test_rss_growth_counts_after_warm_up_and_judges_only_the_processes_that_lived_through() -> None:
    assert warmup_secs(100) == 20 and warmup_secs(3600) == 300  # 20 % or 5 minutes, the lesser
    lives = [
        # Doubles during warm-up (imports, caches), then +5 %: the last quarter's median against t = 20 s.
        life("api", 0, [50, 80, 100, 100, 101, 102, 103, 104, 105, 105, 105]),
        life("worker1", 0, [60, 60, 60, 60, 60, 60, 90], killed=True),  # killed at 60 s: a life cut short
        life("worker1", 61, [60, 61, 62, 70]),  # its restart: too few samples after its own warm-up
    ]
    figures = rss_figures(lives, duration=100)
    assert figures["judged"] == {"api": 5.0} and figures["max_growth_percent"] == 5.0
    assert figures["other_lives"] == 2 and figures["other_with_growth"] == 1  # the killed one had enough
    assert [x["lived_through"] for x in figures["lives"]] == [True, False, False]


@pytest.mark.e2e
@pytest.mark.chaos
@pytest.mark.timeout(180)
def test_a_short_soak_holds_its_invariants_and_drains_its_queue(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    require_env(PG_ENV), require_env(REDIS_ENV)  # it makes its own database and key prefix
    # Save the figures whatever the state of the working tree, into the test's own folder.
    monkeypatch.setattr(cli, "why_not_saved", lambda args: None)
    out = tmp_path / "soak.json"
    argv = ["soak", "--minutes", "0.5", "--tasks", "150", "--seed", "7", "--out", str(out)]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    section = json.loads(out.read_text())["soak"]
    assert "error" not in section and "skipped" not in section, section
    m = section["meta"]
    assert (m["minutes"], m["tasks"], m["workers"], m["seed"]) == (0.5, 150, 4, 7)
    assert m["load1_start"] is not None and m["cpus_end"] and "load1_end" in m
    # Every planned task ran to success, and I1-I7 hold although workers died under them.
    assert section["tasks"] >= 150 and section["tasks_done"] == section["tasks"]
    inv = section["invariants"]
    assert inv["ok"] and inv["violations"] == [] and inv["losses"] == 0 and inv["double_successes"] == 0
    assert inv["runs_completed"] == inv["runs"] == section["runs"]
    kills = section["kills"]
    assert kills["count"] >= 1 and kills["tasks_hit"] >= 1, kills
    assert inv["lost_attempts"] >= kills["tasks_hit"]
    # The queue and the queued rows are back to 0.
    end = section["queue"]["end"]
    assert (end["waiting"], end["queued_rows"], end["queued_attempts"]) == (0, 0, 0)
    assert section["queue"]["back_to_zero_s"] is not None
    # An RSS series per process life: api, scheduler, the four first workers and every restart.
    lives = section["rss"]["lives"]
    names = [life["name"] for life in lives]
    assert {"api", "scheduler", "worker1", "worker2", "worker3", "worker4"} <= set(names)
    assert len(lives) == 6 + kills["count"]
    assert all(life["samples"] for life in lives if life["end_s"] is None)
    judged = section["rss"]["judged"]
    assert {"api", "scheduler"} <= set(judged) and all(g is not None for g in judged.values())
    claim = section["claim_latency_ms"]
    assert claim["n"] >= section["tasks"] and 0 <= claim["p50"] <= claim["p99"] <= claim["max"]
    db = section["database"]
    assert db["end_mib"] >= db["start_mib"] > 0 and db["attempts"] >= claim["n"]
    assert section["connections"]["peak_total"] > 0 and section["log_errors"] == 0, section["log_error_lines"]
    # What the reader sees: on the terminal and in the Markdown table.
    for text in (printed, out.with_suffix(".md").read_text()):
        flat = " ".join(text.split())
        assert "R13 soak, 0.5 min on 4 direct workers × 4 slots" in flat and "seed 7" in flat
        assert "I1-I7: hold" in flat and "worker SIGKILLs: " in flat
        assert "at the end 0 waiting" in flat and "claim latency, queued → claimed: p50" in flat
        assert "RSS growth after a 6s warm-up" in flat and "MiB per 10,000 attempts" in flat
