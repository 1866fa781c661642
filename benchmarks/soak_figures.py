"""The soak's figures from its samples: RSS growth per process life, claim latency, errors in the logs.

Pure functions over what `benchmarks.soak` collected, so that the rules (what counts as warm-up,
which processes are judged) are written once and read in one place.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.stats import median, percentile

WARMUP_FRACTION, WARMUP_MAX_SECS = 0.2, 300.0  # warm-up: the first 20 % of the soak or 5 minutes
MIN_SAMPLES = 4  # samples after warm-up needed to speak of growth
ERROR_LEVELS = ("error", "critical")


def warmup_secs(duration: float) -> float:
    """Seconds of warm-up at the start of a soak (or of a process life) of `duration` seconds."""
    return min(WARMUP_FRACTION * duration, WARMUP_MAX_SECS)


def growth_percent(samples: Sequence[Sequence[float]], since: float) -> float | None:
    """RSS growth of one process life: the median of the last quarter of its samples taken at or after
    `since` against the first of them, in percent; None with fewer than MIN_SAMPLES such samples."""
    after = [rss for at, rss in samples if at >= since]
    if len(after) < MIN_SAMPLES or not after[0]:
        return None
    last = median(after[-max(1, len(after) // 4) :])
    assert last is not None
    return round(100 * (last / after[0] - 1), 2)


def rss_figures(lives: list[dict[str, Any]], duration: float) -> dict[str, Any]:
    """Growth of every process life; judged over the lives that lived through the soak.

    A life lived through when it began before the warm-up ended and was not killed. A restarted
    worker begins a new life: its growth is counted from its own warm-up, shown and not judged.
    """
    warmup = warmup_secs(duration)
    for life in lives:
        life["lived_through"] = life["start_s"] <= warmup and not life["killed"]
        own = warmup if life["lived_through"] else life["start_s"] + warmup_secs(duration - life["start_s"])
        life["growth_percent"] = growth_percent(life["samples"], own)
    judged = [life for life in lives if life["lived_through"] and life["growth_percent"] is not None]
    others = [life["growth_percent"] for life in lives if not life["lived_through"]]
    shown = [g for g in others if g is not None]
    return {
        "warmup_s": round(warmup, 1),
        "max_growth_percent": max((life["growth_percent"] for life in judged), default=None),
        "judged": {life["name"]: life["growth_percent"] for life in judged},
        "other_lives": len(others),
        "other_max_growth_percent": max(shown, default=None),
        "other_with_growth": len(shown),
        "lives": lives,
    }


def latency_ms(values: Sequence[float]) -> dict[str, Any]:
    """p50, p95, p99 and the largest of `values` (seconds), in milliseconds."""

    def ms(p: float) -> float | None:
        v = percentile(values, p)
        return None if v is None else round(1000 * v, 1)

    return {
        "n": len(values),
        "p50": ms(50),
        "p95": ms(95),
        "p99": ms(99),
        "max": round(1000 * max(values), 1) if values else None,
    }


def log_errors(folder: Path) -> list[str]:
    """Lines of every process's log (FOLDER/*.log) at level error or worse, and tracebacks."""
    found = []
    for log in sorted(folder.glob("*.log")):
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith("Traceback"):
                found.append(f"{log.stem}: {line}")
                continue
            if not line.startswith("{"):
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("level") in ERROR_LEVELS:
                found.append(f"{log.stem}: {entry.get('logger')}: {str(entry.get('msg'))[:300]}")
    return found
