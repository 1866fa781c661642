"""Task instances and their attempts (tables `task_instances`, `attempts`).

Queue, claim, finish and move them, and renew the leases of running attempts. Every change is
a compare-and-set on (state, attempt) checked by rowcount, so a stale worker or a duplicate
queue message can never overwrite a newer attempt.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from flowforge.core.errors import NotFound
from flowforge.core.model import TaskState
from flowforge.core.records import Attempt, TaskInstance
from flowforge.store.db import Columns, Cursor, marks
from flowforge.store.events import EventLog
from flowforge.store.runs import RUN_STATE

TASK_COLUMNS = Columns(
    TaskInstance,
    "task_instances",
    "run_id, task_id, state, attempt, retry_at, queued_at, started_at, ended_at,"
    " exit_code, error, worker_id, lease_token, lease_expires_at, lost_attempts",
    state=TaskState,
)


def _outputs(stored: str | None) -> dict[str, str]:
    """An attempt's outputs from their column: a JSON object of strings, NULL for none."""
    return {} if stored is None else dict(json.loads(stored))


ATTEMPT_COLUMNS = Columns(
    Attempt,
    "attempts",
    "run_id, task_id, attempt, state, worker_id, queued_at, started_at, ended_at, exit_code, error,"
    " outputs_json AS outputs",
    state=TaskState,
    outputs=_outputs,
)
LIST_TI = TASK_COLUMNS.select + " WHERE run_id = ? ORDER BY position"
GET_TI = TASK_COLUMNS.select + " WHERE run_id = ? AND task_id = ?"
LIST_ATTEMPTS = ATTEMPT_COLUMNS.select + " WHERE run_id = ? AND task_id = ? ORDER BY attempt"
QUEUE_TI = (
    "UPDATE task_instances SET state = 'queued', attempt = attempt + 1, queued_at = ?, retry_at = NULL,"
    " started_at = NULL, ended_at = NULL, exit_code = NULL, error = NULL, worker_id = NULL,"
    " lease_token = NULL, lease_expires_at = NULL"
    " WHERE run_id = ? AND task_id = ? AND attempt = ? AND state IN ('pending', 'up_for_retry')"
)
# The attempt carries its run's DAG, so that outcome counts by DAG need no join (outcome_counts).
INSERT_ATTEMPT = (
    "INSERT INTO attempts (run_id, task_id, attempt, state, queued_at, dag_id)"
    " SELECT ?, ?, ?, 'queued', ?, dag_id FROM runs WHERE run_id = ?"
)
# RETURNING the claimed row saves a round trip per task (SQLite 3.35+, PostgreSQL).
CLAIM_TI = (
    "UPDATE task_instances SET state = 'running', started_at = ?, worker_id = ?, lease_token = ?,"
    " lease_expires_at = ? WHERE run_id = ? AND task_id = ? AND attempt = ? AND state = 'queued'"
    " RETURNING " + TASK_COLUMNS.columns
)
CLAIM_ATTEMPT = (
    "UPDATE attempts SET state = 'running', started_at = ?, worker_id = ?, lease_token = ?"
    " WHERE run_id = ? AND task_id = ? AND attempt = ?"
)
# An attempt lost for free (see finish_task) is counted: it used none of the task's retries.
FINISH_TI = (
    "UPDATE task_instances SET state = ?, ended_at = ?, exit_code = ?, error = ?, retry_at = ?,"
    " lost_attempts = lost_attempts + ?"
    " WHERE run_id = ? AND task_id = ? AND attempt = ? AND state = 'running' AND worker_id = ?"
    " AND (CAST(? AS TEXT) IS NULL OR lease_token = ?)"
)
FINISH_ATTEMPT = (
    "UPDATE attempts SET state = ?, ended_at = ?, exit_code = ?, error = ?, outputs_json = ?"
    " WHERE run_id = ? AND task_id = ? AND attempt = ?"
)
# The outputs a run's tasks pass downstream: those of each one's successful attempt (at most one
# that is not cleared, by the index attempts_one_success).
RUN_OUTPUTS = (
    "SELECT task_id, outputs_json FROM attempts"
    " WHERE run_id = ? AND state = 'success' AND NOT cleared AND outputs_json IS NOT NULL"
)
# One task's last successful attempts over every run of its DAG, read from the partial index
# attempts_task_success; `success_durations` joins one such part per task into one statement.
TASK_SUCCESSES = (
    "SELECT task_id, started_at, ended_at FROM attempts"
    " WHERE dag_id = ? AND task_id = ? AND state = 'success' AND started_at IS NOT NULL"
    " ORDER BY ended_at DESC LIMIT ?"
)
# Parts per statement: SQLite allows 500 terms in a compound SELECT.
SUCCESS_BATCH = 100
# An attempt abandoned by set_task_states (cancel, dead worker, ...) is closed as well.
CLOSE_ATTEMPT = (
    "UPDATE attempts SET state = ?, ended_at = ?"
    " WHERE run_id = ? AND task_id = ? AND attempt = ? AND state IN ('queued', 'running')"
)
RENEW_LEASE = (
    "UPDATE task_instances SET lease_expires_at = ?"
    " WHERE run_id = ? AND task_id = ? AND attempt = ? AND state = 'running' AND worker_id = ? AND lease_token = ?"
)
DEFAULT_LEASE_SECS = 15.0
FINISH_STATES = frozenset({TaskState.SUCCESS, TaskState.FAILED, TaskState.UP_FOR_RETRY})
# Cleared for another try: forget the last attempt's result (it stays in `attempts`).
RESET_RESULT = (
    "retry_at = NULL, queued_at = NULL, started_at = NULL, ended_at = NULL,"
    " exit_code = NULL, error = NULL, worker_id = NULL"
)


class Finish(NamedTuple):
    """An attempt's result as `finish_task` takes it (see there)."""

    state: TaskState
    exit_code: int | None = None
    error: str | None = None
    retry_at: float | None = None
    lease_token: str | None = None
    attempt_state: TaskState | None = None
    free: bool | None = None
    outputs: Mapping[str, str] | None = None


class TaskInstances(EventLog):
    """Reading task instances and attempts, and every move of a task instance between states."""

    def task_instances(self, run_id: str) -> list[TaskInstance]:
        """Every task instance of a run, in the order of the DAG's tasks; NotFound for no run."""
        with self._transaction(write=False) as cur:
            rows = self._exec(cur, LIST_TI, (run_id,)).fetchall()
            if not rows and self._exec(cur, RUN_STATE, (run_id,)).fetchone() is None:
                raise NotFound(f"no run {run_id!r}")
        return [TASK_COLUMNS.build(r) for r in rows]

    def get_task_instance(self, run_id: str, task_id: str) -> TaskInstance:
        """One task instance; raises NotFound."""
        row = self._one(GET_TI, (run_id, task_id), f"no task {task_id!r} in run {run_id!r}")
        return TASK_COLUMNS.build(row)

    def attempts(self, run_id: str, task_id: str) -> list[Attempt]:
        """Every attempt of a task instance, oldest first."""
        return [ATTEMPT_COLUMNS.build(r) for r in self._all(LIST_ATTEMPTS, (run_id, task_id))]

    def task_outputs(self, run_id: str, task_ids: Sequence[str] | None = None) -> dict[str, dict[str, str]]:
        """The outputs of the run's tasks that succeeded with some (of `task_ids`, by default all), in one query."""
        if task_ids is not None and not task_ids:
            return {}
        sql, params = RUN_OUTPUTS, [run_id]
        if task_ids is not None:
            sql += f" AND task_id IN {marks(len(task_ids))}"
            params += task_ids
        return {task_id: _outputs(stored) for task_id, stored in self._all(sql, params)}

    def success_durations(
        self, dag_id: str, task_ids: Sequence[str], limit: int = 20
    ) -> dict[str, list[float]]:
        """By task id, the durations of each task's last `limit` successful attempts, the last to end first.

        One statement for up to SUCCESS_BATCH tasks (a UNION ALL of one indexed part per task), all
        in one read transaction.
        """
        wanted = list(dict.fromkeys(task_ids))
        found: dict[str, list[float]] = {}
        if not wanted or limit < 1:
            return found
        rows: list[Any] = []
        with self._transaction(write=False) as cur:
            for start in range(0, len(wanted), SUCCESS_BATCH):
                batch = wanted[start : start + SUCCESS_BATCH]
                sql = " UNION ALL ".join(
                    f"SELECT * FROM ({TASK_SUCCESSES}) AS s{i}" for i in range(len(batch))
                )
                params = [value for task_id in batch for value in (dag_id, task_id, limit)]
                rows += self._exec(cur, sql, params).fetchall()
        # A UNION ALL promises no order: each task's part is put back in order here.
        for task_id, started, ended in sorted(rows, key=lambda row: row[2], reverse=True):
            found.setdefault(task_id, []).append(max(0.0, ended - started))
        return found

    def queue_tasks(self, run_id: str, tasks: Sequence[tuple[str, int]], now: float) -> list[str]:
        """Queue each (task_id, attempt) still `pending`/`up_for_retry` at that attempt; returns ids queued."""
        queued: list[str] = []
        if not tasks:
            return queued
        with self._transaction() as cur:
            for task_id, attempt in tasks:
                if self._exec(cur, QUEUE_TI, (now, run_id, task_id, attempt)).rowcount == 1:
                    self._exec(cur, INSERT_ATTEMPT, (run_id, task_id, attempt + 1, now, run_id))
                    queued.append(task_id)
            self._emit_tasks(cur, run_id, queued, now)
        return queued

    def set_task_states(
        self,
        run_id: str,
        tasks: Sequence[tuple[str, int]],
        expected: Sequence[TaskState],
        new: TaskState,
        now: float,
    ) -> list[str]:
        """Move each (task_id, attempt) in one of `expected` at that attempt to `new`; returns ids moved.

        Not for `queued`/`running` (use queue_tasks/claim_task, which keep attempt rows). An
        attempt still queued/running is closed too: `failed` for up_for_retry, `cancelled` when
        the task is reset to `pending`, else `new`.
        """
        if new in (TaskState.QUEUED, TaskState.RUNNING):
            raise ValueError(f"set_task_states cannot move tasks to {new}; use queue_tasks or claim_task")
        moved: list[str] = []
        if not tasks or not expected:
            return moved
        params: list[Any] = [str(new)]
        if new == TaskState.PENDING:
            sets = RESET_RESULT
        else:
            sets = "ended_at = ?"
            params.append(now)
        sql = (
            f"UPDATE task_instances SET state = ?, {sets}"
            f" WHERE run_id = ? AND task_id = ? AND attempt = ? AND state IN {marks(len(expected))}"
        )
        closed = {TaskState.UP_FOR_RETRY: TaskState.FAILED, TaskState.PENDING: TaskState.CANCELLED}.get(
            new, new
        )
        exp = [str(s) for s in expected]
        with self._transaction() as cur:
            for task_id, attempt in tasks:
                if self._exec(cur, sql, (*params, run_id, task_id, attempt, *exp)).rowcount == 1:
                    if attempt > 0:
                        self._exec(cur, CLOSE_ATTEMPT, (str(closed), now, run_id, task_id, attempt))
                    moved.append(task_id)
            self._emit_tasks(cur, run_id, moved, now)
        return moved

    def claim_task(
        self,
        run_id: str,
        task_id: str,
        attempt: int,
        worker_id: str,
        now: float,
        lease_secs: float = DEFAULT_LEASE_SECS,
    ) -> TaskInstance | None:
        """`queued` → `running` for exactly this attempt with a new lease; None when it was not queued at that attempt."""
        with self._transaction() as cur:
            return self._claim(cur, (run_id, task_id, attempt), worker_id, now, lease_secs)

    def _claim(
        self, cur: Cursor, key: tuple[str, str, int], worker_id: str, now: float, lease_secs: float
    ) -> TaskInstance | None:
        run_id, task_id, attempt = key
        token = uuid.uuid4().hex
        params = (now, worker_id, token, now + lease_secs, run_id, task_id, attempt)
        rows = self._exec(cur, CLAIM_TI, params).fetchall()
        if len(rows) != 1:
            return None
        self._exec(cur, CLAIM_ATTEMPT, (now, worker_id, token, run_id, task_id, attempt))
        self._emit_tasks(cur, run_id, [task_id], now)
        return TASK_COLUMNS.build(rows[0])

    def finish_task(
        self,
        run_id: str,
        task_id: str,
        attempt: int,
        worker_id: str,
        *,
        state: TaskState,
        now: float,
        exit_code: int | None = None,
        error: str | None = None,
        retry_at: float | None = None,
        lease_token: str | None = None,
        attempt_state: TaskState | None = None,
        free: bool | None = None,
        outputs: Mapping[str, str] | None = None,
    ) -> bool:
        """`running` → `state` if this worker still runs this attempt (with this lease); False when fenced off.

        A `free` attempt (by default, one recorded as `lost`) adds one to the instance's `lost_attempts`.
        `outputs` are kept with the attempt (none when empty).
        """
        result = Finish(state, exit_code, error, retry_at, lease_token, attempt_state, free, outputs)
        with self._transaction() as cur:
            return self._finish(cur, (run_id, task_id, attempt), worker_id, result, now)

    def finish_and_claim(
        self,
        finished: tuple[str, str, int],
        result: Finish,
        worker_id: str,
        now: float,
        *,
        claim: tuple[str, str, int],
        lease_secs: float = DEFAULT_LEASE_SECS,
    ) -> tuple[bool, TaskInstance | None]:
        """`finish_task` of `finished` (run_id, task_id, attempt) and `claim_task` of `claim`, in one transaction.

        (False, None), changing nothing, when the finish is fenced off; else (True, the claimed
        instance, or None when `claim` was not queued at that attempt).
        """
        with self._transaction() as cur:
            if not self._finish(cur, finished, worker_id, result, now):
                return False, None
            return True, self._claim(cur, claim, worker_id, now, lease_secs)

    def _finish(
        self, cur: Cursor, key: tuple[str, str, int], worker_id: str, result: Finish, now: float
    ) -> bool:
        if result.state not in FINISH_STATES:
            raise ValueError(f"finish_task state must be success, failed or up_for_retry, not {result.state}")
        attempt_state = result.attempt_state
        if attempt_state is None:
            attempt_state = TaskState.FAILED if result.state == TaskState.UP_FOR_RETRY else result.state
        run_id, task_id, attempt = key
        lost = int(attempt_state == TaskState.LOST if result.free is None else result.free)
        params = (str(result.state), now, result.exit_code, result.error, result.retry_at, lost, run_id, task_id,
                  attempt, worker_id, result.lease_token, result.lease_token)  # fmt: skip
        if self._exec(cur, FINISH_TI, params).rowcount != 1:
            return False
        outputs = result.outputs
        stored = json.dumps(dict(outputs), ensure_ascii=False) if outputs else None
        row = (str(attempt_state), now, result.exit_code, result.error, stored, run_id, task_id, attempt)
        self._exec(cur, FINISH_ATTEMPT, row)
        self._emit_tasks(cur, run_id, [task_id], now)
        return True

    def renew_leases(
        self, worker_id: str, leases: Sequence[tuple[str, str, int, str]], now: float, lease_secs: float
    ) -> list[tuple[str, str, int, str]]:
        """Extend the leases (run_id, task_id, attempt, token) this worker holds; returns those it lost.

        A lease is lost when its attempt is no longer running under that token: the run was
        cancelled or timed out, or the lease expired and the attempt was given up as lost.
        """
        lost: list[tuple[str, str, int, str]] = []
        if not leases:
            return lost
        with self._transaction() as cur:
            for run_id, task_id, attempt, token in leases:
                params = (now + lease_secs, run_id, task_id, attempt, worker_id, token)
                if self._exec(cur, RENEW_LEASE, params).rowcount != 1:
                    lost.append((run_id, task_id, attempt, token))
        return lost
