"""`SqlStore`: the whole Store protocol written once in SQL, for every SQL engine.

Queries are written with `?` placeholders and rendered once per dialect. A subclass
provides only a connection: `_transaction()` (a cursor inside a transaction) and `close()`.
Every state change is a compare-and-set on (state, attempt) checked by rowcount.
"""

from __future__ import annotations

import json
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from flowforge.core.errors import Conflict, NotFound
from flowforge.core.model import RUN_TERMINAL, DagSpec, RunState, TaskState
from flowforge.core.records import Attempt, DagRecord, Run, TaskInstance, WorkerInfo
from flowforge.store import schema
from flowforge.store.control import RunControl
from flowforge.store.events import EventLog


class Cursor(Protocol):
    """The DB-API cursor subset SqlStore uses (sqlite3 and psycopg both fit)."""

    @property
    def rowcount(self) -> int: ...

    def execute(self, sql: str, params: Sequence[Any], /) -> Any: ...

    def executemany(self, sql: str, params: Iterable[Sequence[Any]], /) -> Any: ...

    def fetchone(self) -> Any: ...

    def fetchmany(self, size: int, /) -> list[Any]: ...

    def fetchall(self) -> list[Any]: ...


@dataclass(frozen=True)
class Dialect:
    """What differs between SQL engines: placeholder style, error class, migration lock."""

    name: str
    placeholder: str = "?"
    integrity_error: type[Exception] = Exception
    migrate_lock: str | None = None  # e.g. an advisory lock so two processes don't both migrate

    def render(self, sql: str) -> str:
        """`sql`, written with `?` placeholders, in this dialect's style."""
        if self.placeholder == "?":
            return sql
        return sql.replace("%", "%%").replace("?", self.placeholder)


def _marks(n: int) -> str:
    return "(" + ", ".join("?" * n) + ")"


def _canonical(spec: DagSpec) -> str:
    return json.dumps(spec.to_dict(), sort_keys=True, separators=(",", ":"))


def _new_run_id() -> str:
    # 64 random bits: short enough to type, collisions negligible over billions of runs.
    return uuid.uuid4().hex[:16]


# -- named queries ---------------------------------------------------------------------------
DAG_COLS = (
    "SELECT d.dag_id, d.latest_version, v.spec_json, v.source, d.active, d.paused, d.created_at, d.updated_at,"
    " d.schedule_after"
    " FROM dags d JOIN dag_versions v ON v.dag_id = d.dag_id AND v.version = d.latest_version"
)
GET_DAG = DAG_COLS + " WHERE d.dag_id = ?"
LIST_DAGS = DAG_COLS + " WHERE (? OR d.active) ORDER BY d.dag_id"
DAG_LATEST = (
    "SELECT d.latest_version, d.active, v.spec_json FROM dags d"
    " JOIN dag_versions v ON v.dag_id = d.dag_id AND v.version = d.latest_version WHERE d.dag_id = ?"
)
INSERT_DAG = (
    "INSERT INTO dags (dag_id, latest_version, active, paused, schedule_after, created_at, updated_at)"
    " VALUES (?, 1, TRUE, FALSE, ?, ?, ?)"
)
UPDATE_DAG_VERSION = "UPDATE dags SET latest_version = ?, active = TRUE, updated_at = ? WHERE dag_id = ?"
# Reactivating a deactivated DAG starts its schedule afresh: no replay of the ticks it was gone.
REACTIVATE_DAG = (
    "UPDATE dags SET active = TRUE, schedule_after = ?, updated_at = ? WHERE dag_id = ? AND NOT active"
)
INSERT_VERSION = (
    "INSERT INTO dag_versions (dag_id, version, spec_json, source, created_at) VALUES (?, ?, ?, ?, ?)"
)
GET_SPEC = "SELECT spec_json FROM dag_versions WHERE dag_id = ? AND version = ?"

RUN_COLS = (
    "SELECT run_id, dag_id, dag_version, state, triggered_by, params_json, logical_date,"
    " created_at, started_at, ended_at FROM runs"
)
GET_RUN = RUN_COLS + " WHERE run_id = ?"
INSERT_RUN = (
    "INSERT INTO runs (run_id, dag_id, dag_version, state, triggered_by, params_json, logical_date,"
    " idempotency_key, created_at) VALUES (?, ?, ?, 'queued', ?, ?, ?, ?, ?)"
)
GET_RUN_BY_KEY = RUN_COLS + " WHERE dag_id = ? AND idempotency_key = ?"
INSERT_TI = (
    "INSERT INTO task_instances (run_id, task_id, position, state, attempt) VALUES (?, ?, ?, 'pending', 0)"
)

# Column order matches the TaskInstance / Attempt dataclasses, so rows map positionally.
TI_COLS = (
    "SELECT run_id, task_id, state, attempt, retry_at, queued_at, started_at, ended_at,"
    " exit_code, error, worker_id, lease_token, lease_expires_at FROM task_instances"
)
LIST_TI = TI_COLS + " WHERE run_id = ? ORDER BY position"
GET_TI = TI_COLS + " WHERE run_id = ? AND task_id = ?"
LIST_ATTEMPTS = (
    "SELECT run_id, task_id, attempt, state, worker_id, queued_at, started_at, ended_at, exit_code, error"
    " FROM attempts WHERE run_id = ? AND task_id = ? ORDER BY attempt"
)
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
    " RETURNING " + TI_COLS.removeprefix("SELECT ").removesuffix(" FROM task_instances")
)
CLAIM_ATTEMPT = (
    "UPDATE attempts SET state = 'running', started_at = ?, worker_id = ?, lease_token = ?"
    " WHERE run_id = ? AND task_id = ? AND attempt = ?"
)
FINISH_TI = (
    "UPDATE task_instances SET state = ?, ended_at = ?, exit_code = ?, error = ?, retry_at = ?"
    " WHERE run_id = ? AND task_id = ? AND attempt = ? AND state = 'running' AND worker_id = ?"
    " AND (CAST(? AS TEXT) IS NULL OR lease_token = ?)"
)
FINISH_ATTEMPT = (
    "UPDATE attempts SET state = ?, ended_at = ?, exit_code = ?, error = ?"
    " WHERE run_id = ? AND task_id = ? AND attempt = ?"
)
# An attempt abandoned by set_task_states (cancel, dead worker, ...) is closed as well.
CLOSE_ATTEMPT = (
    "UPDATE attempts SET state = ?, ended_at = ?"
    " WHERE run_id = ? AND task_id = ? AND attempt = ? AND state IN ('queued', 'running')"
)
RENEW_LEASE = (
    "UPDATE task_instances SET lease_expires_at = ?"
    " WHERE run_id = ? AND task_id = ? AND attempt = ? AND state = 'running' AND worker_id = ? AND lease_token = ?"
)
TAKE_LEASE = "UPDATE leases SET holder = ?, expires_at = ? WHERE name = ? AND (holder = ? OR expires_at < ?)"
INSERT_LEASE = "INSERT INTO leases (name, holder, expires_at) VALUES (?, ?, ?)"
RELEASE_LEASE = "UPDATE leases SET expires_at = 0 WHERE name = ? AND holder = ?"
LEASE_HOLDER = "SELECT holder FROM leases WHERE name = ? AND expires_at >= ?"
DEFAULT_LEASE_SECS = 15.0
ACTIVE_COUNTS = (
    "SELECT r.dag_id, COUNT(*) FROM runs r JOIN task_instances t ON t.run_id = r.run_id"
    " WHERE r.state IN ('queued', 'running') AND t.state IN ('queued', 'running') GROUP BY r.dag_id"
)
APPEND_LOG = (
    "INSERT INTO task_logs (run_id, task_id, attempt, seq, data)"
    " SELECT ?, ?, ?, COALESCE(MAX(seq), 0) + 1, ? FROM task_logs WHERE run_id = ? AND task_id = ? AND attempt = ?"
)
LOG_PIECE_CHARS = 65536  # the largest piece of log one row holds
READ_LOG = "SELECT seq, data FROM task_logs WHERE run_id = ? AND task_id = ? AND attempt = ? AND seq > ? ORDER BY seq"
UPSERT_WORKER = (
    "INSERT INTO workers (worker_id, host, pid, slots, started_at, last_heartbeat, running_json, state)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (worker_id) DO UPDATE SET host = excluded.host,"
    " pid = excluded.pid, slots = excluded.slots, started_at = excluded.started_at,"
    " last_heartbeat = excluded.last_heartbeat, running_json = excluded.running_json, state = excluded.state"
)
LIST_WORKERS = (
    "SELECT worker_id, host, pid, slots, started_at, last_heartbeat, running_json, state"
    " FROM workers ORDER BY last_heartbeat DESC, worker_id"
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

FINISH_STATES = frozenset({TaskState.SUCCESS, TaskState.FAILED, TaskState.UP_FOR_RETRY})


# A stored version's spec never changes, so parsed specs are kept per (dag_id, version): the
# scheduler lists the DAGs on every tick, and parsing a big spec each time cost milliseconds.
SPEC_CACHE_SIZE = 128


def _spec(dag_id: str, version: int, spec_json: str, cache: dict[tuple[str, int], DagSpec] | None) -> DagSpec:
    spec = None if cache is None else cache.get((dag_id, version))
    if spec is None:
        spec = DagSpec.from_dict(json.loads(spec_json))
        if cache is not None:
            if len(cache) >= SPEC_CACHE_SIZE:
                cache.clear()
            cache[(dag_id, version)] = spec
    return spec


def _dag(row: Sequence[Any], cache: dict[tuple[str, int], DagSpec] | None = None) -> DagRecord:
    return DagRecord(
        dag_id=row[0], version=row[1], spec=_spec(row[0], row[1], row[2], cache), source=row[3],
        active=bool(row[4]), paused=bool(row[5]), created_at=row[6], updated_at=row[7], schedule_after=row[8],
    )  # fmt: skip


def _run(row: Sequence[Any]) -> Run:
    return Run(
        run_id=row[0], dag_id=row[1], dag_version=row[2], state=RunState(row[3]), triggered_by=row[4],
        params=json.loads(row[5]), logical_date=row[6], created_at=row[7], started_at=row[8], ended_at=row[9],
    )  # fmt: skip


def _ti(row: Sequence[Any]) -> TaskInstance:
    return TaskInstance(row[0], row[1], TaskState(row[2]), *row[3:])


def _attempt(row: Sequence[Any]) -> Attempt:
    return Attempt(row[0], row[1], row[2], TaskState(row[3]), *row[4:])


class SqlStore(RunControl, EventLog, ABC):
    """The Store protocol over any DB-API connection; subclasses supply `_transaction` and `close`."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self._rendered: dict[str, str] = {}
        self._specs: dict[tuple[str, int], DagSpec] = {}

    # -- primitives ------------------------------------------------------------------------
    @abstractmethod
    def _transaction(self, write: bool = True) -> AbstractContextManager[Cursor]:
        """A cursor inside one transaction: committed on exit, rolled back on an exception."""

    @abstractmethod
    def close(self) -> None:
        """Release connections."""

    def _exec(self, cur: Cursor, sql: str, params: Sequence[Any] = ()) -> Cursor:
        """Run one `?`-style statement on `cur` in this dialect; returns the cursor."""
        cur.execute(self._render(sql), params)
        return cur

    def _render(self, sql: str) -> str:
        rendered = self._rendered.get(sql)
        if rendered is None:
            rendered = self._rendered[sql] = self.dialect.render(sql)
        return rendered

    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """Every row of one read query."""
        with self._transaction(write=False) as cur:
            return self._exec(cur, sql, params).fetchall()

    def _one(self, sql: str, params: Sequence[Any], missing: str) -> Any:
        """The first row of one read query; NotFound(missing) when there is none."""
        rows = self._all(sql, params)
        if not rows:
            raise NotFound(missing)
        return rows[0]

    def migrate(self) -> int:
        """Apply pending schema migrations (idempotent); raises schema.SchemaTooNew."""
        with self._transaction() as cur:
            if self.dialect.migrate_lock:
                self._exec(cur, self.dialect.migrate_lock)

            def version() -> int | None:
                row = self._exec(cur, "SELECT MAX(version) FROM schema_version").fetchone()
                return None if row is None else row[0]

            return schema.apply_migrations(
                lambda sql, params: self._exec(cur, sql, params), version, time.time()
            )

    # -- DAGs ------------------------------------------------------------------------------
    def put_dag(self, spec: DagSpec, source: str, now: float) -> DagRecord:
        """Store a DAG; a new version only when the spec differs from the latest."""
        spec_json = _canonical(spec)
        with self._transaction() as cur:
            row = self._exec(cur, DAG_LATEST, (spec.id,)).fetchone()
            if row is None:
                self._exec(cur, INSERT_DAG, (spec.id, now, now, now))
                self._exec(cur, INSERT_VERSION, (spec.id, 1, spec_json, source, now))
            else:
                version, active, old_json = row
                self._exec(cur, REACTIVATE_DAG, (now, now, spec.id))
                # Compare through from_dict/to_dict so a spec stored by an older FlowForge (fewer
                # fields) does not count as changed.
                if _canonical(DagSpec.from_dict(json.loads(old_json))) != spec_json:
                    self._exec(cur, INSERT_VERSION, (spec.id, version + 1, spec_json, source, now))
                    self._exec(cur, UPDATE_DAG_VERSION, (version + 1, now, spec.id))
            self._emit_dag(cur, spec.id, now)
            return _dag(self._exec(cur, GET_DAG, (spec.id,)).fetchone())

    def get_dag(self, dag_id: str) -> DagRecord:
        """The DAG with its latest version (active or not); raises NotFound."""
        return _dag(self._one(GET_DAG, (dag_id,), f"no DAG {dag_id!r}"), self._specs)

    def list_dags(self, include_inactive: bool = False) -> list[DagRecord]:
        """All DAGs ordered by id, latest version each; inactive ones only when asked."""
        return [_dag(r, self._specs) for r in self._all(LIST_DAGS, (include_inactive,))]

    def get_dag_spec(self, dag_id: str, version: int) -> DagSpec:
        """The spec of one stored version; raises NotFound."""
        cached = self._specs.get((dag_id, version))
        if cached is not None:
            return cached
        row = self._one(GET_SPEC, (dag_id, version), f"no version {version} of DAG {dag_id!r}")
        return _spec(dag_id, version, row[0], self._specs)

    def set_dag_flags(
        self,
        dag_id: str,
        *,
        active: bool | None = None,
        paused: bool | None = None,
        schedule_after: float | None = None,
    ) -> DagRecord:
        """Change a DAG's active/paused flags and where its cron ticks count from; raises NotFound."""
        changes = (("active", active), ("paused", paused), ("schedule_after", schedule_after))
        sets = [f"{name} = ?" for name, value in changes if value is not None]
        params = [value for _, value in changes if value is not None]
        with self._transaction() as cur:
            if sets:
                if self._exec(
                    cur, f"UPDATE dags SET {', '.join(sets)} WHERE dag_id = ?", (*params, dag_id)
                ).rowcount:
                    self._emit_dag(cur, dag_id, time.time())
            row = self._exec(cur, GET_DAG, (dag_id,)).fetchone()
        if row is None:
            raise NotFound(f"no DAG {dag_id!r}")
        return _dag(row)

    # -- runs ------------------------------------------------------------------------------
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
                return _run(existing[0])
        try:
            return self._insert_run(dag_id, triggered_by, params, now, logical_date, idempotency_key)
        except Conflict:
            # Two requests with one key raced: the other one's run is the answer.
            existing = self._all(GET_RUN_BY_KEY, (dag_id, idempotency_key)) if idempotency_key else []
            if existing:
                return _run(existing[0])
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
                _new_run_id(), dag_id, version, RunState.QUEUED, triggered_by, dict(params), logical_date, now
            )
            try:
                values = (run.run_id, dag_id, version, triggered_by, json.dumps(params), logical_date,
                          idempotency_key, now)  # fmt: skip
                self._exec(cur, INSERT_RUN, values)
            except self.dialect.integrity_error as e:
                raise Conflict(f"DAG {dag_id!r} already has a run for logical date {logical_date}") from e
            cur.executemany(self._render(INSERT_TI), [(run.run_id, tid, i) for i, tid in enumerate(task_ids)])
            self._emit_runs(cur, [run.run_id], now)
        return run

    def get_run(self, run_id: str) -> Run:
        """One run; raises NotFound."""
        return _run(self._one(GET_RUN, (run_id,), f"no run {run_id!r}"))

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
            where.append(f"state IN {_marks(len(states))}")
            params.extend(str(s) for s in states)
        sql = RUN_COLS + (" WHERE " + " AND ".join(where) if where else "")
        sql += " ORDER BY created_at DESC, run_id DESC LIMIT ? OFFSET ?"
        return [_run(r) for r in self._all(sql, (*params, limit, offset))]

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
        sql = f"UPDATE runs SET {', '.join(sets)} WHERE run_id = ? AND state IN {_marks(len(expected))}"
        with self._transaction() as cur:
            if self._exec(cur, sql, (*params, run_id, *(str(s) for s in expected))).rowcount != 1:
                return False
            self._emit_runs(cur, [run_id], now)
            return True

    # -- task instances --------------------------------------------------------------------
    def task_instances(self, run_id: str) -> list[TaskInstance]:
        """Every task instance of a run, in the order of the DAG's tasks; NotFound for no run."""
        with self._transaction(write=False) as cur:
            rows = self._exec(cur, LIST_TI, (run_id,)).fetchall()
            if not rows and self._exec(cur, GET_RUN, (run_id,)).fetchone() is None:
                raise NotFound(f"no run {run_id!r}")
        return [_ti(r) for r in rows]

    def get_task_instance(self, run_id: str, task_id: str) -> TaskInstance:
        """One task instance; raises NotFound."""
        return _ti(self._one(GET_TI, (run_id, task_id), f"no task {task_id!r} in run {run_id!r}"))

    def attempts(self, run_id: str, task_id: str) -> list[Attempt]:
        """Every attempt of a task instance, oldest first."""
        return [_attempt(r) for r in self._all(LIST_ATTEMPTS, (run_id, task_id))]

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
        sets: list[str] = ["state = ?"]
        params: list[Any] = [str(new)]
        if new == TaskState.PENDING:
            # Cleared for another try: forget the last attempt's result (it stays in `attempts`).
            sets.append("retry_at = NULL, queued_at = NULL, started_at = NULL, ended_at = NULL,"
                        " exit_code = NULL, error = NULL, worker_id = NULL")  # fmt: skip
        else:
            sets.append("ended_at = ?")
            params.append(now)
        sql = (
            f"UPDATE task_instances SET {', '.join(sets)}"
            f" WHERE run_id = ? AND task_id = ? AND attempt = ? AND state IN {_marks(len(expected))}"
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
        token = uuid.uuid4().hex
        with self._transaction() as cur:
            params = (now, worker_id, token, now + lease_secs, run_id, task_id, attempt)
            rows = self._exec(cur, CLAIM_TI, params).fetchall()
            if len(rows) != 1:
                return None
            self._exec(cur, CLAIM_ATTEMPT, (now, worker_id, token, run_id, task_id, attempt))
            self._emit_tasks(cur, run_id, [task_id], now)
            return _ti(rows[0])

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
    ) -> bool:
        """`running` → `state` if this worker still runs this attempt (with this lease); False when fenced off."""
        if state not in FINISH_STATES:
            raise ValueError(f"finish_task state must be success, failed or up_for_retry, not {state}")
        if attempt_state is None:
            attempt_state = TaskState.FAILED if state == TaskState.UP_FOR_RETRY else state
        with self._transaction() as cur:
            params = (str(state), now, exit_code, error, retry_at, run_id, task_id, attempt, worker_id,
                      lease_token, lease_token)  # fmt: skip
            if self._exec(cur, FINISH_TI, params).rowcount != 1:
                return False
            self._exec(
                cur, FINISH_ATTEMPT, (str(attempt_state), now, exit_code, error, run_id, task_id, attempt)
            )
            self._emit_tasks(cur, run_id, [task_id], now)
        return True

    def renew_leases(
        self, worker_id: str, leases: Sequence[tuple[str, str, int, str]], now: float, lease_secs: float
    ) -> list[tuple[str, str, int, str]]:
        """Extend the leases (run_id, task_id, attempt, token) this worker holds; returns those it lost.

        A lease is lost when its attempt is no longer running under that token: the run was
        cancelled or timed out, or the lease expired and the attempt was given up as lost.
        """
        lost = []
        if not leases:
            return lost
        with self._transaction() as cur:
            for run_id, task_id, attempt, token in leases:
                params = (now + lease_secs, run_id, task_id, attempt, worker_id, token)
                if self._exec(cur, RENEW_LEASE, params).rowcount != 1:
                    lost.append((run_id, task_id, attempt, token))
        return lost

    def hold_lease(self, name: str, holder: str, now: float, ttl: float) -> bool:
        """Take or keep the lease `name` for `holder` until now+ttl; False while another holds it unexpired."""
        with self._transaction() as cur:
            if self._exec(cur, TAKE_LEASE, (holder, now + ttl, name, holder, now)).rowcount == 1:
                return True
            try:
                return self._exec(cur, INSERT_LEASE, (name, holder, now + ttl)).rowcount == 1
            except self.dialect.integrity_error:
                return False  # another process inserted it first

    def release_lease(self, name: str, holder: str) -> None:
        """Give up the lease `name` if `holder` has it, so a standby takes over at once."""
        with self._transaction() as cur:
            self._exec(cur, RELEASE_LEASE, (name, holder))

    def lease_holder(self, name: str, now: float) -> str | None:
        """Who holds the lease `name` unexpired at `now`; None when nobody does (lapsed, released, never taken)."""
        rows = self._all(LEASE_HOLDER, (name, now))
        return str(rows[0][0]) if rows else None

    def active_task_counts(self) -> dict[str, int]:
        """Number of `queued` + `running` task instances per dag_id, over all active runs."""
        return {dag_id: n for dag_id, n in self._all(ACTIVE_COUNTS)}

    # -- logs ------------------------------------------------------------------------------
    def append_log(self, run_id: str, task_id: str, attempt: int, text: str) -> None:
        """Append a chunk of output to an attempt's log; NotFound when the attempt does not exist."""
        if not text:
            return
        # Stored in pieces of bounded size, so that a reader can page through any log (read_log's max_bytes).
        pieces = [text[i : i + LOG_PIECE_CHARS] for i in range(0, len(text), LOG_PIECE_CHARS)]
        with self._transaction() as cur:
            try:
                for piece in pieces:
                    self._exec(cur, APPEND_LOG, (run_id, task_id, attempt, piece, run_id, task_id, attempt))
            except self.dialect.integrity_error as e:
                raise NotFound(f"no attempt {attempt} of task {task_id!r} in run {run_id!r}") from e

    def read_log(
        self, run_id: str, task_id: str, attempt: int, after: int = 0, max_bytes: int | None = None
    ) -> tuple[str, int]:
        """The log text written after cursor `after` (0 = from the start), and the new cursor.

        With `max_bytes`, stops before the piece that would take the text (UTF-8) past it, but
        always returns at least one piece when there is one: read on from the cursor for the rest.
        """
        parts: list[str] = []
        cursor, size = after, 0
        with self._transaction(write=False) as cur:
            self._exec(cur, READ_LOG, (run_id, task_id, attempt, after))
            while rows := cur.fetchmany(64):
                for seq, data in rows:
                    if max_bytes is not None:
                        size += len(data.encode("utf-8"))
                        if parts and size > max_bytes:
                            return "".join(parts), cursor
                    parts.append(data)
                    cursor = seq
        return "".join(parts), cursor

    # -- workers ---------------------------------------------------------------------------
    def upsert_worker(self, worker: WorkerInfo) -> None:
        """Register a worker or record its heartbeat (host, pid, slots, running, state)."""
        w = worker
        params = (
            w.worker_id,
            w.host,
            w.pid,
            w.slots,
            w.started_at,
            w.last_heartbeat,
            json.dumps(w.running),
            w.state,
        )
        with self._transaction() as cur:
            self._exec(cur, UPSERT_WORKER, params)

    def list_workers(self) -> list[WorkerInfo]:
        """Every known worker, most recent heartbeat first."""
        return [
            WorkerInfo(r[0], r[1], r[2], r[3], r[4], r[5], running=tuple(json.loads(r[6])), state=r[7])
            for r in self._all(LIST_WORKERS)
        ]

    # -- overview --------------------------------------------------------------------------
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
        """Counts by (dag_id, state), never reset: ended runs, every attempt, and retries among the attempts."""
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
        return {"runs": runs, "attempts": attempts, "retries": retries}
