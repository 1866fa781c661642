"""Reads that answer one request from one read transaction: a run's detail.

A run's detail (GET /api/v1/runs/{id}) needs the run, its task instances and their outputs; the
request takes the store's connection (SQLite) or a pooled one (PostgreSQL) once instead of three
times. On SQLite the three reads see one snapshot; on PostgreSQL (READ COMMITTED, reads in
autocommit) each statement sees its own, so a change committed between them can show in the later
reads only, as it could when they were three calls.
"""

from __future__ import annotations

from flowforge.core.errors import NotFound
from flowforge.core.records import Run, TaskInstance
from flowforge.store.db import SqlBase
from flowforge.store.runs import GET_RUN, RUN_COLUMNS
from flowforge.store.tasks import LIST_TI, RUN_OUTPUTS, TASK_COLUMNS, _outputs


class RunReads(SqlBase):
    """A run with everything its detail shows, on one connection."""

    def run_view(self, run_id: str) -> tuple[Run, list[TaskInstance], dict[str, dict[str, str]]]:
        """The run, its task instances in the DAG's order, and its tasks' outputs (`task_outputs`); NotFound."""
        with self._transaction(write=False) as cur:
            row = self._exec(cur, GET_RUN, (run_id,)).fetchone()
            if row is None:
                raise NotFound(f"no run {run_id!r}")
            tasks = self._exec(cur, LIST_TI, (run_id,)).fetchall()
            outputs = self._exec(cur, RUN_OUTPUTS, (run_id,)).fetchall()
        return (
            RUN_COLUMNS.build(row),
            [TASK_COLUMNS.build(r) for r in tasks],
            {task_id: _outputs(stored) for task_id, stored in outputs},
        )
