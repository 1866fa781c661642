"""What the scheduler's cron pass reads of the DAGs, and the runs it makes, a pass at a time.

The cron pass keeps each DAG's next tick in memory and re-reads a DAG's spec only when its
version changed, so it asks for the versions and flags alone: no spec JSON, no source, no join.
The runs of all the ticks due in one pass are made in one transaction: with a thousand DAGs a
dozen or more fall due each second, and a commit each cost a dozen round trips and fsyncs.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from flowforge.core.errors import Conflict, NotFound
from flowforge.core.model import RunState
from flowforge.core.records import Run
from flowforge.store.dags import DAG_LATEST
from flowforge.store.events import EventLog
from flowforge.store.runs import INSERT_RUN, INSERT_TI, new_run_id

SCHEDULE_HEADS = "SELECT dag_id, latest_version, paused, schedule_after FROM dags WHERE active"
# The unique index on (dag_id, logical_date) refuses a tick's second run without failing the
# transaction the other ticks' runs are in (SQLite and PostgreSQL both read it so).
INSERT_SCHEDULED_RUN = INSERT_RUN + " ON CONFLICT DO NOTHING"


class Schedules(EventLog):
    """The version, paused flag and `schedule_after` of every active DAG, and runs made for cron ticks."""

    def schedule_heads(self) -> list[tuple[str, int, bool, float]]:
        """(dag_id, latest version, paused, schedule_after) of every active DAG, in no order."""
        return [(d, int(v), bool(p), float(a)) for d, v, p, a in self._all(SCHEDULE_HEADS)]

    def create_scheduled_runs(
        self, ticks: Sequence[tuple[str, float, dict[str, Any]]], now: float
    ) -> list[Run | Conflict | NotFound]:
        """A `queued` run (every task `pending`) for each (dag_id, logical date, params), in one transaction."""
        made: list[Run | Conflict | NotFound] = []
        with self._transaction() as cur:
            for dag_id, logical_date, params in ticks:
                row = self._exec(cur, DAG_LATEST, (dag_id,)).fetchone()
                if row is None or not row[1]:
                    made.append(NotFound(f"no active DAG {dag_id!r}"))
                    continue
                version, task_ids = row[0], [t["id"] for t in json.loads(row[2])["tasks"]]
                run = Run(
                    new_run_id(),
                    dag_id,
                    version,
                    RunState.QUEUED,
                    "schedule",
                    dict(params),
                    logical_date,
                    now,
                )
                values = (
                    run.run_id,
                    dag_id,
                    version,
                    "schedule",
                    json.dumps(params),
                    logical_date,
                    None,
                    now,
                )
                if self._exec(cur, INSERT_SCHEDULED_RUN, values).rowcount != 1:
                    made.append(Conflict(f"DAG {dag_id!r} already has a run for logical date {logical_date}"))
                    continue
                self._exec_many(cur, INSERT_TI, [(run.run_id, tid, i) for i, tid in enumerate(task_ids)])
                made.append(run)
            self._emit_runs(cur, [r.run_id for r in made if isinstance(r, Run)], now)
        return made
