"""Retention: forget ended runs older than a cutoff, with every row that hangs off them.

`prune_runs` deletes one batch of runs per transaction, oldest first, so that however long the
history, no transaction holds the write lock (SQLite) or row locks (PostgreSQL) for long, and
the scheduler, the workers and the API go on between batches. A batch is bounded twice: in runs,
and in the task instances of those runs (the rows that multiply: attempts, log pieces, events).
The outcome counters of /metrics still count what it deletes: the triggers that keep them
(store/count_triggers.py) take nothing away for a deleted run or attempt.
"""

from __future__ import annotations

from collections.abc import Sequence

from flowforge.core.model import RUN_TERMINAL
from flowforge.store.base import PRUNE_BATCH_RUNS, PRUNE_BATCH_TASKS, PruneBatch
from flowforge.store.db import Cursor, SqlBase, marks

_ENDED = "(" + ", ".join(f"'{s}'" for s in sorted(RUN_TERMINAL)) + ")"
# Oldest first through runs_ended: reads just the rows it returns. Only ended runs have an
# ended_at; their state is checked again when they are taken.
OLDEST_ENDED = "SELECT ended_at, run_id FROM runs WHERE ended_at < ?"
AFTER = " AND (ended_at, run_id) > (?, ?)"
OLDEST_ORDER = " ORDER BY ended_at, run_id LIMIT ?"
TASKS_PER_RUN = "SELECT run_id, COUNT(*) FROM task_instances WHERE run_id IN {} GROUP BY run_id"
# Taking the runs re-checks them under a row lock (PostgreSQL): a run re-opened by a retry
# meanwhile is left alone, and one being taken cannot be re-opened until the batch commits. (A
# retry of one of these very runs at that instant may deadlock with the batch; PostgreSQL then
# fails one of the two whole, and the scheduler takes the batch again on its next tick.)
TAKE_RUNS = (
    "UPDATE runs SET ended_at = ended_at WHERE run_id IN {} AND ended_at < ? AND state IN " + _ENDED
    + " RETURNING run_id, dag_id, state"
)  # fmt: skip
SEE_RUNS = "SELECT run_id, dag_id, state FROM runs WHERE run_id IN {} AND ended_at < ? AND state IN " + _ENDED
# Children first, each by the leading run_id of its key (events: events_run).
PRUNED_TABLES = ("events", "task_logs", "attempts", "task_instances", "runs")


class Retention(SqlBase):
    """Deleting ended runs older than a cutoff, one short transaction per batch."""

    def prune_runs(
        self,
        before: float,
        *,
        after: tuple[float, str] | None = None,
        dry_run: bool = False,
        max_runs: int = PRUNE_BATCH_RUNS,
        max_tasks: int = PRUNE_BATCH_TASKS,
    ) -> PruneBatch:
        """Delete (or with `dry_run` count) one batch of ended runs that ended before `before`."""
        with self._transaction(write=not dry_run) as cur:
            sql = OLDEST_ENDED + ("" if after is None else AFTER) + OLDEST_ORDER
            params: tuple[float | str, ...] = (before,) if after is None else (before, *after)
            candidates = self._exec(cur, sql, (*params, max_runs)).fetchall()
            chosen = self._within_budget(cur, [(float(e), str(r)) for e, r in candidates], max_tasks)
            if not chosen:
                return PruneBatch()
            ids = [run_id for _, run_id in chosen]
            taken_sql = SEE_RUNS if dry_run else TAKE_RUNS
            taken = self._exec(cur, taken_sql.format(marks(len(ids))), (*ids, before)).fetchall()
            taken_ids = [str(run_id) for run_id, _, _ in taken]
            counts = self._rows(cur, taken_ids, dry_run)
        done = len(candidates) < max_runs and len(chosen) == len(candidates)
        return PruneBatch(
            runs=counts.get("runs", 0),
            task_instances=counts.get("task_instances", 0),
            attempts=counts.get("attempts", 0),
            log_chunks=counts.get("task_logs", 0),
            events=counts.get("events", 0),
            last=None if done else chosen[-1],
        )

    def _within_budget(
        self, cur: Cursor, candidates: list[tuple[float, str]], max_tasks: int
    ) -> list[tuple[float, str]]:
        """The first candidates whose task instances add up to at most `max_tasks` (at least one run).

        Counted a chunk at a time, each chunk sized by the runs counted so far, so that a batch of
        large runs does not count the task instances of runs it will not take.
        """
        chosen: list[tuple[float, str]] = []
        used = 0
        while len(chosen) < len(candidates):
            rest = candidates[len(chosen) :]
            average = used / len(chosen) if chosen else 0.0
            size = 1 if not chosen else max(1, min(len(rest), int((max_tasks - used) / max(average, 1.0))))
            chunk = rest[:size]
            sql = TASKS_PER_RUN.format(marks(len(chunk)))
            sizes = dict(self._exec(cur, sql, [run_id for _, run_id in chunk]).fetchall())
            for candidate in chunk:
                n = int(sizes.get(candidate[1], 0))
                if chosen and used + n > max_tasks:
                    return chosen
                chosen.append(candidate)
                used += n
        return chosen

    def _rows(self, cur: Cursor, run_ids: Sequence[str], dry_run: bool) -> dict[str, int]:
        """The rows of each pruned table that belong to these runs, by table: deleted unless `dry_run`."""
        counts: dict[str, int] = {}
        if not run_ids:
            return counts
        ids = marks(len(run_ids))
        for table in PRUNED_TABLES:
            if dry_run:
                sql = f"SELECT COUNT(*) FROM {table} WHERE run_id IN {ids}"
                counts[table] = int(self._exec(cur, sql, run_ids).fetchone()[0])
            else:
                counts[table] = self._exec(
                    cur, f"DELETE FROM {table} WHERE run_id IN {ids}", run_ids
                ).rowcount
        return counts
