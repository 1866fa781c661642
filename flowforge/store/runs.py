"""Runs (table `runs`): create one with its task instances, read, list, and move its state."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

from flowforge.core.errors import Conflict, NotFound
from flowforge.core.model import RUN_TERMINAL, RunState
from flowforge.core.records import Run
from flowforge.store.dags import DAG_LATEST
from flowforge.store.db import Columns, marks
from flowforge.store.events import EventLog

RUN_COLUMNS = Columns(
    Run,
    "runs",
    "run_id, dag_id, dag_version, state, triggered_by, params_json AS params, logical_date,"
    " created_at, started_at, ended_at",
    state=RunState,
    params=json.loads,
)
SELECT_RUNS = RUN_COLUMNS.select
GET_RUN = SELECT_RUNS + " WHERE run_id = ?"
GET_RUN_BY_KEY = SELECT_RUNS + " WHERE dag_id = ? AND idempotency_key = ?"
RUN_STATE = "SELECT state FROM runs WHERE run_id = ?"
# A DAG's last ended runs, read from the index runs_dag_ended (ended_at is set only on ended runs;
# the state is checked too, as the promise is about ended runs).
ENDED_RUNS = (
    SELECT_RUNS + " WHERE dag_id = ? AND ended_at IS NOT NULL AND state IN ('success', 'failed', 'cancelled')"
    " ORDER BY ended_at DESC, run_id DESC LIMIT ?"
)
INSERT_RUN = (
    "INSERT INTO runs (run_id, dag_id, dag_version, state, triggered_by, params_json, logical_date,"
    " idempotency_key, created_at) VALUES (?, ?, ?, 'queued', ?, ?, ?, ?, ?)"
)
INSERT_TI = (
    "INSERT INTO task_instances (run_id, task_id, position, state, attempt) VALUES (?, ?, ?, 'pending', 0)"
)


def new_run_id() -> str:
    """A fresh run id: 64 random bits, short enough to type, collisions negligible over billions of runs."""
    return uuid.uuid4().hex[:16]


class Runs(EventLog):
    """Creating runs (every task `pending`), reading them, and compare-and-set on their state."""

    def create_run(
        self,
        dag_id: str,
        *,
        triggered_by: str,
        params: dict[str, Any],
        now: float,
        logical_date: float | None = None,
        idempotency_key: str | None = None,
    ) -> Run:
        """Create a `queued` run of the latest version, every task `pending`; NotFound, Conflict.

        With an `idempotency_key` the DAG already has a run for, that run is returned instead.
        """
        if idempotency_key is not None:
            existing = self._all(GET_RUN_BY_KEY, (dag_id, idempotency_key))
            if existing:
                return RUN_COLUMNS.build(existing[0])
        try:
            return self._insert_run(dag_id, triggered_by, params, now, logical_date, idempotency_key)
        except Conflict:
            # Two requests with one key raced: the other one's run is the answer.
            existing = self._all(GET_RUN_BY_KEY, (dag_id, idempotency_key)) if idempotency_key else []
            if existing:
                return RUN_COLUMNS.build(existing[0])
            raise

    def _insert_run(
        self,
        dag_id: str,
        triggered_by: str,
        params: dict[str, Any],
        now: float,
        logical_date: float | None,
        idempotency_key: str | None,
    ) -> Run:
        with self._transaction() as cur:
            row = self._exec(cur, DAG_LATEST, (dag_id,)).fetchone()
            if row is None or not row[1]:
                raise NotFound(f"no active DAG {dag_id!r}")
            version, task_ids = row[0], [t["id"] for t in json.loads(row[2])["tasks"]]
            run = Run(
                new_run_id(), dag_id, version, RunState.QUEUED, triggered_by, dict(params), logical_date, now
            )
            try:
                values = (run.run_id, dag_id, version, triggered_by, json.dumps(params), logical_date,
                          idempotency_key, now)  # fmt: skip
                self._exec(cur, INSERT_RUN, values)
            except self.dialect.integrity_error as e:
                raise Conflict(f"DAG {dag_id!r} already has a run for logical date {logical_date}") from e
            self._exec_many(cur, INSERT_TI, [(run.run_id, tid, i) for i, tid in enumerate(task_ids)])
            self._emit_runs(cur, [run.run_id], now)
        return run

    def get_run(self, run_id: str) -> Run:
        """One run; raises NotFound."""
        return RUN_COLUMNS.build(self._one(GET_RUN, (run_id,), f"no run {run_id!r}"))

    def list_runs(
        self,
        *,
        dag_id: str | None = None,
        states: Sequence[RunState] | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[Run]:
        """Runs, newest first, filtered by DAG and state (None or empty `states`: any state)."""
        where: list[str] = []
        params: list[Any] = []
        if dag_id is not None:
            where.append("dag_id = ?")
            params.append(dag_id)
        if states:
            where.append(f"state IN {marks(len(states))}")
            params.extend(str(s) for s in states)
        sql = SELECT_RUNS + (" WHERE " + " AND ".join(where) if where else "")
        sql += " ORDER BY created_at DESC, run_id DESC LIMIT ? OFFSET ?"
        return [RUN_COLUMNS.build(r) for r in self._all(sql, (*params, limit, offset))]

    def ended_runs(self, dag_id: str, limit: int) -> list[Run]:
        """The DAG's last `limit` ended runs, the last to end first, in one query (index runs_dag_ended)."""
        return [RUN_COLUMNS.build(r) for r in self._all(ENDED_RUNS, (dag_id, limit))]

    def set_run_state(self, run_id: str, expected: Sequence[RunState], new: RunState, now: float) -> bool:
        """Move a run to `new` if it is in one of `expected`; sets started_at/ended_at."""
        if not expected:
            return False
        sets: list[str] = ["state = ?"]
        params: list[Any] = [str(new)]
        if new == RunState.RUNNING:
            sets.append("started_at = COALESCE(started_at, ?)")
            params.append(now)
        if new in RUN_TERMINAL:
            sets.append("ended_at = ?")
            params.append(now)
        else:
            sets.append("ended_at = NULL")  # a re-opened run (retry) is no longer over
        sql = f"UPDATE runs SET {', '.join(sets)} WHERE run_id = ? AND state IN {marks(len(expected))}"
        with self._transaction() as cur:
            if self._exec(cur, sql, (*params, run_id, *(str(s) for s in expected))).rowcount != 1:
                return False
            self._emit_runs(cur, [run_id], now)
            return True
