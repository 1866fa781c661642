"""The JSON forms the API answers with: records as they are, secrets masked, plus `next_run`."""

from __future__ import annotations

import logging
import re
from typing import Any

from flowforge.core.records import DagRecord, Run, WorkerInfo
from flowforge.core.schedule import iso_utc, next_fire
from flowforge.core.secrets import MASK, SECRET_KEY_WORDS, mask_mapping

log = logging.getLogger(__name__)

# `SOME_TOKEN: value` in the YAML source, block or flow style; best effort, keys only as written.
_SECRET_LINE = re.compile(
    rf"(?P<key>\b[A-Za-z0-9_]*(?:{SECRET_KEY_WORDS})[A-Za-z0-9_]*[\"']?)"
    r"(?P<sep>[ \t]*:[ \t]+)(?P<value>[^\s,}#][^,}\n#]*)",
    re.IGNORECASE,
)


def mask_source(source: str) -> str:
    """The YAML source with the values of secret-looking keys replaced by `***`."""
    return _SECRET_LINE.sub(lambda m: f"{m['key']}{m['sep']}'{MASK}'", source)


def next_run(record: DagRecord, now: float) -> str | None:
    """When the scheduler will next start this DAG, or None (no schedule, paused or inactive)."""
    spec = record.spec
    if not spec.schedule or record.paused or not record.active:
        return None
    try:
        return iso_utc(next_fire(spec.schedule, spec.timezone, now))
    except Exception:  # a stored schedule the helper rejects must not break listing DAGs
        log.warning("cannot compute the next run of DAG %s", record.dag_id, exc_info=True)
        return None


def task_spec_view(task: dict[str, Any]) -> dict[str, Any]:
    """A TaskSpec's JSON form with its env masked."""
    return {**task, "env": mask_mapping(task.get("env", {}))}


def dag_view(record: DagRecord, now: float, *, detail: bool = False) -> dict[str, Any]:
    """A DAG record's JSON form, plus `next_run` and `task_count` (and `source` in detail)."""
    d = record.to_dict()
    d["env"] = mask_mapping(d.get("env", {}))
    d["tasks"] = [task_spec_view(t) for t in d.get("tasks", [])]
    d["next_run"] = next_run(record, now)
    d["task_count"] = len(record.spec.tasks)
    if detail:
        d["source"] = mask_source(record.source)
    return d


def run_view(run: Run) -> dict[str, Any]:
    """A run's JSON form with secret-looking params masked."""
    d = run.to_dict()
    d["params"] = mask_mapping(d.get("params") or {})
    return d


def worker_summary(workers: list[WorkerInfo], now: float, heartbeat_secs: float) -> dict[str, int]:
    """Counts of workers by liveness; an `alive` worker silent for 3 heartbeats counts as `stale`."""
    out = {"alive": 0, "stale": 0, "stopped": 0, "dead": 0, "total": len(workers), "slots": 0}
    for w in workers:
        state = w.state
        if state == "alive" and now - w.last_heartbeat > 3 * heartbeat_secs:
            state = "stale"
        out[state] = out.get(state, 0) + 1
        if state == "alive":
            out["slots"] += w.slots
    return out
