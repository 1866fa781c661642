"""How records and operation results become the API's answer models, in one place.

Each answer is a record as it is (its `to_dict()`), with secret-looking values masked and a few
derived fields added (a DAG's `next_run` and `task_count`, ISO dates of a backfill's ticks).
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from functools import lru_cache
from typing import Any

from flowforge.api.models import (
    AttemptOut,
    BackfillResult,
    BackfillTick,
    DagDetail,
    DagStats,
    DagSubmitted,
    DagSummary,
    LogPage,
    RunDetail,
    RunDuration,
    RunOut,
    RunRetried,
    TaskDetail,
    TaskInstanceOut,
    TaskSpecOut,
    TriggeredRun,
)
from flowforge.core.durations import SlowNote
from flowforge.core.model import DagSpec, TaskSpec
from flowforge.core.records import Attempt, DagRecord, Run, TaskInstance, WorkerInfo
from flowforge.core.schedule import iso_utc, next_fire
from flowforge.core.secrets import SecretText, mask_mapping, secret_values
from flowforge.core.sourcemask import mask_source
from flowforge.operations import Backfill, LogExcerpt, Retry, RunSnapshot, Submission, TaskHistory, Trigger
from flowforge.operations_stats import DagRunStats

log = logging.getLogger(__name__)


# A stored version's source never changes, and masking a large one costs a parse: the latest
# few are kept, so polling a DAG's page does not parse its source again on every request.
@lru_cache(maxsize=16)
def masked_source(source: str) -> str:
    """The YAML source with its secret values masked (`core.sourcemask`)."""
    return mask_source(source)


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


# -- DAGs --------------------------------------------------------------------------------------------
def dag_secrets(spec: DagSpec) -> SecretText:
    """What masks a DAG's secret values (those of its secret-named env and params) in its text."""
    return SecretText(secret_values(spec.env, spec.params, *(t.env for t in spec.tasks)))


def task_spec_out(task: TaskSpec, secrets: SecretText | None = None) -> TaskSpecOut:
    """A task as its DAG declares it, with its env masked, and secret values in its text."""
    secrets = secrets or SecretText(secret_values(task.env))
    d = task.to_dict()
    d.update(name=secrets.text(d["name"]), command=secrets.text(d["command"]), env=secrets.mapping(d["env"]))
    return TaskSpecOut(**d)


def _dag_fields(record: DagRecord, now: float) -> dict[str, Any]:
    d = record.to_dict()
    secrets = dag_secrets(record.spec)
    for key in ("name", "description"):
        d[key] = secrets.text(d[key])
    d["tags"] = [secrets.text(t) for t in d["tags"]]
    d["env"], d["params"] = secrets.mapping(d["env"]), secrets.mapping(d["params"])
    d["tasks"] = [task_spec_out(t, secrets) for t in record.spec.tasks]
    d["next_run"] = next_run(record, now)
    d["task_count"] = len(record.spec.tasks)
    return d


def dag_summary(record: DagRecord, now: float) -> DagSummary:
    """A DAG in a list: its latest version's spec, flags, and next scheduled run."""
    return DagSummary(**_dag_fields(record, now))


def dag_detail(record: DagRecord, now: float) -> DagDetail:
    """One DAG, with its YAML source masked too."""
    return DagDetail(**_dag_fields(record, now), source=masked_source(record.source))


def dag_submitted(submission: Submission, now: float) -> DagSubmitted:
    """The stored DAG after a submit, and whether it was new or changed."""
    return DagSubmitted(
        **_dag_fields(submission.record, now),
        source=masked_source(submission.record.source),
        created=submission.created,
        changed=submission.changed,
    )


def backfill_result(outcome: Backfill) -> BackfillResult:
    """A backfill's ticks with their logical dates in ISO-8601 UTC."""
    ticks = [
        BackfillTick(logical_date=iso_utc(t.logical_date), run_id=t.run_id, existed=t.existed)
        for t in outcome.ticks
    ]
    return BackfillResult(
        dag_id=outcome.dag_id, dry_run=outcome.dry_run, ticks=ticks, created=outcome.created
    )


def dag_stats(stats: DagRunStats) -> DagStats:
    """A DAG's last ended runs with their durations, and what they say."""
    runs = [RunDuration(**asdict(r)) for r in stats.runs]
    return DagStats(
        dag_id=stats.dag_id,
        runs=runs,
        p50_secs=stats.p50_secs,
        p95_secs=stats.p95_secs,
        success_rate=stats.success_rate,
        count=stats.count,
    )


# -- runs and tasks ----------------------------------------------------------------------------------
def _run_fields(run: Run) -> dict[str, Any]:
    return {**run.to_dict(), "params": mask_mapping(run.params or {})}


def run_out(run: Run) -> RunOut:
    """A run with secret-looking params masked."""
    return RunOut(**_run_fields(run))


def triggered_run(trigger: Trigger) -> TriggeredRun:
    """The run a trigger started."""
    return TriggeredRun(**_run_fields(trigger.run), dag_paused=trigger.dag_paused)


def task_out(instance: TaskInstance) -> TaskInstanceOut:
    """One task instance (never its lease token)."""
    return TaskInstanceOut(**instance.to_dict())


def run_task_fields(instance: TaskInstance, slow: SlowNote | None) -> dict[str, Any]:
    """A task instance in a run's detail (model RunTaskOut), with its slow note when it runs well
    past its usual time."""
    return {**instance.to_dict(), "slow": None if slow is None else asdict(slow)}


def _detail_fields(snapshot: RunSnapshot) -> dict[str, Any]:
    # The tasks stay plain dicts: the detail's model validates them all in one call, a good part
    # faster than a model built per task (a run's detail has up to 10,000).
    tasks = [run_task_fields(ti, snapshot.slow.get(ti.task_id)) for ti in snapshot.tasks]
    outputs = {task_id: mask_mapping(values) for task_id, values in snapshot.outputs.items()}
    return {**_run_fields(snapshot.run), "tasks": tasks, "waiting": snapshot.waiting, "outputs": outputs}


def run_detail(snapshot: RunSnapshot) -> RunDetail:
    """A run with every task instance, and why it waits."""
    return RunDetail(**_detail_fields(snapshot))


def run_retried(retry: Retry) -> RunRetried:
    """A run after a retry, with the tasks made pending again."""
    return RunRetried(**_detail_fields(retry.snapshot), cleared=list(retry.cleared))


def attempt_out(attempt: Attempt) -> AttemptOut:
    """One attempt, the values of its secret-looking outputs masked."""
    d = attempt.to_dict()
    d["outputs"] = mask_mapping(d["outputs"])
    return AttemptOut(**d)


def task_detail(history: TaskHistory) -> TaskDetail:
    """A task instance with its attempts and its spec."""
    return TaskDetail(
        **history.instance.to_dict(),
        attempts=[attempt_out(a) for a in history.attempts],
        spec=task_spec_out(history.spec) if history.spec is not None else None,
    )


def log_page(excerpt: LogExcerpt) -> LogPage:
    """A piece of an attempt's log."""
    return LogPage(**asdict(excerpt))


# -- workers -----------------------------------------------------------------------------------------
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
