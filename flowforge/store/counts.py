"""Counts over the whole store: the overview (/status), outcome counters (/metrics), active tasks per DAG.

Runs, task instances and attempts are counted by triggers (store/count_triggers.py), which add
a delta row to `count_deltas` in the transaction of every change. A count is `count_totals` plus
the deltas not folded yet, read in one statement (one snapshot, on PostgreSQL too), so reading
costs the same however long the history. `fold_counts` moves the deltas into the totals: the
scheduler's housekeeping calls it, and so does a reader that found more than FOLD_AFTER deltas,
so that readers stay quick even without a scheduler.
"""

from __future__ import annotations

from flowforge.core.model import RunState, TaskState
from flowforge.store.db import Cursor, SqlBase

ACTIVE_COUNTS = (
    "SELECT r.dag_id, COUNT(*) FROM runs r JOIN task_instances t ON t.run_id = r.run_id"
    " WHERE r.state IN ('queued', 'running') AND t.state IN ('queued', 'running') GROUP BY r.dag_id"
)
COUNT_DAGS = "SELECT active, paused, COUNT(*) FROM dags GROUP BY active, paused"
# The counts of two kinds: totals plus deltas, and how many deltas there were (the last column).
READ_COUNTS = (
    "SELECT kind, dag_id, state, SUM(n), SUM(retries), SUM(deltas) FROM ("
    "SELECT kind, dag_id, state, n, retries, 0 AS deltas FROM count_totals WHERE kind IN (?, ?)"
    " UNION ALL SELECT kind, dag_id, state, n, retries, 1 AS deltas FROM count_deltas WHERE kind IN (?, ?)"
    ") AS c GROUP BY kind, dag_id, state"
)
COUNT_STATES = ("run", "task")  # runs and task instances per state now
COUNT_OUTCOMES = ("run_end", "attempt")  # runs that ended, attempts made: never decreased
# A reader that sees more deltas than this folds them (a few milliseconds to add up on SQLite).
FOLD_AFTER = 5_000
LAST_DELTA = "SELECT MAX(id) FROM count_deltas"
SUM_UP = (
    "INSERT INTO count_totals (kind, dag_id, state, n, retries)"
    " SELECT kind, dag_id, state, SUM(n), SUM(retries) FROM {source} GROUP BY kind, dag_id, state"
    " ON CONFLICT (kind, dag_id, state) DO UPDATE"
    " SET n = count_totals.n + excluded.n, retries = count_totals.retries + excluded.retries"
)
# SQLite: the write transaction keeps every other writer out, so add up, then delete.
FOLD_SQLITE = SUM_UP.format(source="count_deltas WHERE id <= ?")
DROP_FOLDED = "DELETE FROM count_deltas WHERE id <= ?"
# PostgreSQL: the rows deleted are exactly the rows added (a delta committed meanwhile, even with a
# smaller id, is not seen by the DELETE and waits for the next fold).
FOLD_POSTGRES = (
    "WITH gone AS (DELETE FROM count_deltas WHERE id <= ? RETURNING kind, dag_id, state, n, retries),"
    f" added AS ({SUM_UP.format(source='gone')}) SELECT COUNT(*) FROM gone"
)
# One folder at a time; another skips (pg_try_advisory_xact_lock, released at commit).
FOLD_LOCK_KEY = 0x466C6F77436E7473  # "FlowCnts"
FOLD_LOCK = f"SELECT pg_try_advisory_xact_lock({FOLD_LOCK_KEY})"

Counted = dict[tuple[str, str, str], tuple[int, int]]  # (kind, dag_id, state) -> (n, retries)


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
            counted, deltas = self._read_counts(cur, COUNT_STATES)
        self._fold_if_many(deltas)
        for (kind, _dag_id, state), (n, _) in counted.items():
            target = runs if kind == "run" else tasks
            target[state] = target.get(state, 0) + n
        return {"dags": dags, "runs": runs, "tasks": tasks}

    def outcome_counts(self) -> dict[str, dict[tuple[str, str], int]]:
        """Counts by (dag_id, state), never reset: runs that ended, every attempt, and retries among them.

        Runs and attempts deleted by a prune still count.
        """
        runs: dict[tuple[str, str], int] = {}
        attempts: dict[tuple[str, str], int] = {}
        retries: dict[tuple[str, str], int] = {}
        with self._transaction(write=False) as cur:
            counted, deltas = self._read_counts(cur, COUNT_OUTCOMES)
        self._fold_if_many(deltas)
        for (kind, dag_id, state), (n, again) in counted.items():
            if kind == "run_end":
                runs[(dag_id, state)] = n
            else:
                attempts[(dag_id, state)] = n
                retries[(dag_id, state)] = again
        return {"runs": runs, "attempts": attempts, "retries": retries}

    def _read_counts(self, cur: Cursor, kinds: tuple[str, str]) -> tuple[Counted, int]:
        """Totals plus deltas of two kinds, in one statement (a count at zero left out), and how
        many deltas there were."""
        counted: Counted = {}
        deltas = 0
        for kind, dag_id, state, n, again, seen in self._exec(cur, READ_COUNTS, (*kinds, *kinds)).fetchall():
            deltas += int(seen)
            if int(n) or int(again):
                counted[(str(kind), str(dag_id), str(state))] = (int(n), int(again))
        return counted, deltas

    def _fold_if_many(self, deltas: int) -> None:
        """Fold after a read that added up more than FOLD_AFTER deltas, so that the next one is quick."""
        if deltas > FOLD_AFTER:
            self.fold_counts()

    def fold_counts(self) -> int:
        """Add the deltas recorded so far to the totals and delete them, in one transaction; how many.

        The counts read the same before and after. On PostgreSQL one folder at a time: another
        returns 0 at once.
        """
        with self._transaction() as cur:
            if self.dialect.name == "postgresql":
                if not self._exec(cur, FOLD_LOCK).fetchone()[0]:
                    return 0
                last = self._exec(cur, LAST_DELTA).fetchone()[0]
                if last is None:
                    return 0
                return int(self._exec(cur, FOLD_POSTGRES, (last,)).fetchone()[0])
            last = self._exec(cur, LAST_DELTA).fetchone()[0]
            if last is None:
                return 0
            self._exec(cur, FOLD_SQLITE, (last,))
            return self._exec(cur, DROP_FOLDED, (last,)).rowcount
