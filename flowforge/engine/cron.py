"""The scheduler's cron pass: a run for each tick of each scheduled DAG that calls for one.

Unique (dag_id, logical_date) in the store makes this safe with two schedulers: the second one's
insert of the same tick is refused (Conflict), logged and skipped.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable

from flowforge.core.errors import Conflict
from flowforge.core.model import DagSpec
from flowforge.core.records import Run
from flowforge.core.schedule import due_ticks
from flowforge.store.base import Store

log = logging.getLogger("flowforge.scheduler")

# With `catchup: false`, how many ticks since the leader's previous pass it looks at, at most.
MAX_TICKS_PER_PASS = 1000
# A pass later than this after the previous one follows downtime (a frozen process, a store
# outage), not a long tick: with `catchup: false` the ticks missed meanwhile collapse into one.
LATE_PASS_SECS = 30.0


def make_scheduled_runs(
    store: Store, now: float, runs: list[Run], since: float | None, check_lead: Callable[[], None]
) -> int:
    """Create the runs that cron ticks up to `now` call for; returns how many were created.

    `runs` are the active runs (counted against each DAG's `max_active_runs`); `since` is the
    `now` of this leader's previous pass, None when it was not leading then; `check_lead` raises
    when this scheduler no longer holds the lease, before each run is created.
    """
    dags = [d for d in store.list_dags() if d.spec.schedule and not d.paused]
    if not dags:
        return 0
    latest = store.latest_logical_dates()
    active: defaultdict[str, int] = defaultdict(int)
    for run in runs:
        active[run.dag_id] += 1
    created = 0
    for dag in dags:
        after = max(latest.get(dag.dag_id, dag.schedule_after), dag.schedule_after)
        for tick in due(dag.spec, after, since, now, dag.spec.max_active_runs - active[dag.dag_id]):
            check_lead()
            try:
                run = store.create_run(
                    dag.dag_id,
                    triggered_by="schedule",
                    params=dict(dag.spec.params),
                    now=now,
                    logical_date=tick,
                )
            except Conflict:
                log.info("run for %s already made by another scheduler", tick, extra={"dag_id": dag.dag_id})
                continue
            created += 1
            log.info("scheduled run for %s", tick, extra={"run_id": run.run_id, "dag_id": dag.dag_id})
    return created


def due(spec: DagSpec, after: float, since: float | None, now: float, room: int) -> list[float]:
    """The ticks in (after, now] to make runs for, oldest first, at most `room`.

    With `catchup: false` the ticks missed while no scheduler led (or the DAG was paused) collapse
    into the latest one; but every tick since this leader's previous pass (`since`) is made: a pass
    that came late, after a long tick, is no downtime (up to LATE_PASS_SECS late).
    """
    assert spec.schedule is not None
    if spec.catchup or since is None or since <= after or now - since > LATE_PASS_SECS:
        return due_ticks(spec.schedule, spec.timezone, after, now, catchup=spec.catchup, limit=room)
    if room <= 0:
        return []
    ticks = due_ticks(spec.schedule, spec.timezone, since, now, catchup=True, limit=MAX_TICKS_PER_PASS)
    return ticks[-room:]
