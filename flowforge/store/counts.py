"""Counts over the whole store: the overview (/status), outcome counters (/metrics), active tasks per DAG."""

from __future__ import annotations

from flowforge.core.model import RUN_TERMINAL, RunState, TaskState
from flowforge.store.db import SqlBase

ACTIVE_COUNTS = (
    "SELECT r.dag_id, COUNT(*) FROM runs r JOIN task_instances t ON t.run_id = r.run_id"
    " WHERE r.state IN ('queued', 'running') AND t.state IN ('queued', 'running') GROUP BY r.dag_id"
)
COUNT_DAGS = "SELECT active, paused, COUNT(*) FROM dags GROUP BY active, paused"
COUNT_RUNS = "SELECT state, COUNT(*) FROM runs GROUP BY state"
COUNT_TASKS = "SELECT state, COUNT(*) FROM task_instances GROUP BY state"
# Each reads one covering index (runs_dag_state, attempts_dag_state), in (dag_id, state) order.
# No WHERE on the state: SQLite would then pick runs_state_created and sort; the few rows of
# active states are left out in Python.
COUNT_RUN_OUTCOMES = "SELECT dag_id, state, COUNT(*) FROM runs GROUP BY dag_id, state"
COUNT_ATTEMPTS = (
    "SELECT dag_id, state, COUNT(*), SUM(CASE WHEN attempt > 1 THEN 1 ELSE 0 END) FROM attempts"
    " WHERE dag_id IS NOT NULL GROUP BY dag_id, state"
)
# What prune_runs deleted, so that the outcome counts never go down.
PRUNED_OUTCOMES = "SELECT kind, dag_id, state, n, retries FROM pruned_outcomes"


class Counts(SqlBase):
    """Aggregate counts of DAGs, runs, task instances and attempts."""

    def active_task_counts(self) -> dict[str, int]:
        """Number of `queued` + `running` task instances per dag_id, over all active runs."""
        return {dag_id: n for dag_id, n in self._all(ACTIVE_COUNTS)}

    def counts(self) -> dict[str, dict[str, int]]:
        """DAGs as active (unpaused) / paused / inactive, and runs and tasks per state (zeros included)."""
        dags = {"active": 0, "paused": 0, "inactive": 0}
        runs = {str(s): 0 for s in RunState}
        tasks = {str(s): 0 for s in TaskState}
        with self._transaction(write=False) as cur:
            for active, paused, n in self._exec(cur, COUNT_DAGS).fetchall():
                dags["inactive" if not active else "paused" if paused else "active"] += n
            runs.update(self._exec(cur, COUNT_RUNS).fetchall())
            tasks.update(self._exec(cur, COUNT_TASKS).fetchall())
        return {"dags": dags, "runs": runs, "tasks": tasks}

    def outcome_counts(self) -> dict[str, dict[tuple[str, str], int]]:
        """Counts by (dag_id, state), never reset: ended runs, every attempt, and retries among the attempts.

        Runs and attempts deleted by a prune still count (table pruned_outcomes).
        """
        runs: dict[tuple[str, str], int] = {}
        attempts: dict[tuple[str, str], int] = {}
        retries: dict[tuple[str, str], int] = {}
        with self._transaction(write=False) as cur:
            for dag_id, state, n in self._exec(cur, COUNT_RUN_OUTCOMES).fetchall():
                if RunState(state) in RUN_TERMINAL:
                    runs[(dag_id, state)] = int(n)
            for dag_id, state, n, again in self._exec(cur, COUNT_ATTEMPTS).fetchall():
                attempts[(dag_id, state)] = int(n)
                retries[(dag_id, state)] = int(again or 0)
            for kind, dag_id, state, n, again in self._exec(cur, PRUNED_OUTCOMES).fetchall():
                key = (dag_id, state)
                if kind == "run":
                    runs[key] = runs.get(key, 0) + int(n)
                else:
                    attempts[key] = attempts.get(key, 0) + int(n)
                    retries[key] = retries.get(key, 0) + int(again)
        return {"runs": runs, "attempts": attempts, "retries": retries}
