"""Controlling whole runs: stop (cancel, run timeout), clear tasks to retry, and cron's logical dates."""

from __future__ import annotations

from collections.abc import Sequence

from flowforge.core.errors import Conflict, NotFound
from flowforge.core.model import TASK_TERMINAL, RunState, TaskState
from flowforge.store.events import EventLog
from flowforge.store.runs import RUN_STATE
from flowforge.store.tasks import RESET_RESULT

STOP_RUN = "UPDATE runs SET state = ?, ended_at = ? WHERE run_id = ? AND state IN ('queued', 'running')"
# Tasks that were (about to be) running get the stopping state and the reason; tasks that never
# started are cancelled. Both close their open attempt rows the same way.
STOP_ACTIVE_TASKS = (
    "UPDATE task_instances SET state = ?, error = ?, ended_at = ?"
    " WHERE run_id = ? AND state IN ('queued', 'running', 'up_for_retry')"
)
STOP_PENDING_TASKS = (
    "UPDATE task_instances SET state = 'cancelled', ended_at = ? WHERE run_id = ? AND state = 'pending'"
)
STOP_ATTEMPTS = "UPDATE attempts SET state = ?, error = ?, ended_at = ? WHERE run_id = ? AND state IN ('queued', 'running')"
TASK_STATES = "SELECT task_id, state FROM task_instances WHERE run_id = ?"
CLEAR_TASK = f"UPDATE task_instances SET state = 'pending', {RESET_RESULT} WHERE run_id = ? AND task_id = ?"
CLEAR_ATTEMPTS = "UPDATE attempts SET cleared = TRUE WHERE run_id = ? AND task_id = ?"
REOPEN_RUN = "UPDATE runs SET state = 'running', ended_at = NULL WHERE run_id = ?"
# One index lookup per DAG (runs_logical_date): a GROUP BY over runs read every scheduled run
# ever made, on every scheduler tick.
LATEST_LOGICAL_DATES = (
    "SELECT d.dag_id, (SELECT MAX(r.logical_date) FROM runs r"
    " WHERE r.dag_id = d.dag_id AND r.logical_date IS NOT NULL) FROM dags d"
)
LOGICAL_DATES_BETWEEN = (
    "SELECT logical_date FROM runs WHERE dag_id = ? AND logical_date >= ? AND logical_date <= ?"
)


class RunControl(EventLog):
    """Stopping and re-opening runs, and the logical dates of scheduled runs."""

    def stop_run(self, run_id: str, state: RunState, reason: str, now: float) -> bool:
        """End a queued/running run now as `state` (cancelled, or failed on a run timeout), atomically.

        Queued, running and up-for-retry tasks become `cancelled` (or `failed` with `reason`
        when the run fails); pending tasks become `cancelled`; open attempts are closed the same
        way. Workers see their attempt is no longer running and kill it; its late result is
        fenced off. Returns False, changing nothing, when the run had already ended.
        """
        task_state = TaskState.CANCELLED if state == RunState.CANCELLED else TaskState.FAILED
        with self._transaction() as cur:
            if self._exec(cur, STOP_RUN, (str(state), now, run_id)).rowcount != 1:
                if self._exec(cur, RUN_STATE, (run_id,)).fetchone() is None:
                    raise NotFound(f"no run {run_id!r}")
                return False
            self._exec(cur, STOP_ACTIVE_TASKS, (str(task_state), reason, now, run_id))
            self._exec(cur, STOP_PENDING_TASKS, (now, run_id))
            self._exec(cur, STOP_ATTEMPTS, (str(task_state), reason, now, run_id))
            self._emit_runs(cur, [run_id], now)
        return True

    def clear_tasks(self, run_id: str, task_ids: Sequence[str], now: float) -> list[str]:
        """Make finished tasks `pending` again so that they run once more, in one transaction.

        Their attempts are kept (marked cleared) and the next attempt number follows on.
        The run is re-opened (`running`) when it had ended. Raises NotFound for an unknown run
        or task, and Conflict, changing nothing, when a named task has not finished.
        """
        with self._transaction() as cur:
            row = self._exec(cur, RUN_STATE, (run_id,)).fetchone()
            if row is None:
                raise NotFound(f"no run {run_id!r}")
            states = {tid: TaskState(s) for tid, s in self._exec(cur, TASK_STATES, (run_id,)).fetchall()}
            for tid in task_ids:
                if tid not in states:
                    raise NotFound(f"no task {tid!r} in run {run_id!r}")
                if states[tid] not in TASK_TERMINAL and states[tid] != TaskState.PENDING:
                    raise Conflict(f"task {tid!r} is {states[tid]}: only a finished task can be retried")
            cleared = [tid for tid in task_ids if states[tid] in TASK_TERMINAL]
            for tid in cleared:
                self._exec(cur, CLEAR_TASK, (run_id, tid))
                self._exec(cur, CLEAR_ATTEMPTS, (run_id, tid))
            if cleared and RunState(row[0]) != RunState.RUNNING:
                self._exec(cur, REOPEN_RUN, (run_id,))
            if cleared:
                self._emit_runs(cur, [run_id], now)
        return cleared

    def latest_logical_dates(self) -> dict[str, float]:
        """The newest logical date of each DAG's scheduled (or backfilled) runs."""
        return {dag_id: latest for dag_id, latest in self._all(LATEST_LOGICAL_DATES) if latest is not None}

    def logical_dates(self, dag_id: str, start: float, end: float) -> set[float]:
        """Logical dates of the DAG's runs within [start, end]."""
        return {row[0] for row in self._all(LOGICAL_DATES_BETWEEN, (dag_id, start, end))}
