"""The event log (table `events`): every state change gets a row, numbered in commit order.

`EventLog` is the base of every part of the store that changes state: it calls `_emit_*`
inside its own transaction, so an event exists exactly when its change was committed.

Numbering in commit order: ids come from the one-row `event_seq`, bumped in the transaction
that writes the events, so the bump's row lock is held until that transaction commits and the
next writer's ids are higher and commit later. A reader resuming after id N therefore never
misses an event committed later with a smaller id. The lock serialises every writer for as long
as it is held, so `_emit_*` only record what to emit: the bump and the event rows are written
as the transaction's last statement (one statement on PostgreSQL, sent together with the
COMMIT), and the lock is held for that statement and the commit alone.

Each event copies the changed row's state as the transaction ends, so the same statement
serves every kind of change. A transaction that emits for one row twice gets one event, with
the row's final state: nothing outside it could have seen the state in between.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from flowforge.core.records import Event
from flowforge.store.db import Columns, Cursor, SqlBase

EVENT_COLUMNS = Columns(Event, "events", "id, ts, kind, dag_id, run_id, task_id, state, attempt")
BUMP_SEQ = "UPDATE event_seq SET value = value + ? WHERE id = 1 RETURNING value"
READ_SEQ = "SELECT value FROM event_seq WHERE id = 1"
EMIT_RUN = (
    "INSERT INTO events (id, ts, kind, dag_id, run_id, state)"
    " SELECT ?, ?, 'run', dag_id, run_id, state FROM runs WHERE run_id = ?"
)
EMIT_TASK = (
    "INSERT INTO events (id, ts, kind, dag_id, run_id, task_id, state, attempt)"
    " SELECT ?, ?, 'task', r.dag_id, t.run_id, t.task_id, t.state, t.attempt"
    " FROM task_instances t JOIN runs r ON r.run_id = t.run_id WHERE t.run_id = ? AND t.task_id = ?"
)
EMIT_DAG = "INSERT INTO events (id, ts, kind, dag_id) VALUES (?, ?, 'dag', ?)"
# PostgreSQL: the bump and every event row in one statement. The events come as parallel
# arrays, numbered by their position (WITH ORDINALITY); a run or task event whose row is gone
# is skipped (its id stays unused), as the INSERT ... SELECTs above skip it.
EMIT_ALL = (
    "WITH seq AS (UPDATE event_seq SET value = value + ? WHERE id = 1 RETURNING value),"
    " e AS (SELECT * FROM unnest(CAST(? AS DOUBLE PRECISION[]), CAST(? AS TEXT[]), CAST(? AS TEXT[]),"
    " CAST(? AS TEXT[]), CAST(? AS TEXT[])) WITH ORDINALITY AS e (ts, kind, dag_id, run_id, task_id, n))"
    " INSERT INTO events (id, ts, kind, dag_id, run_id, task_id, state, attempt)"
    " SELECT seq.value - ? + e.n, e.ts, e.kind, COALESCE(r.dag_id, e.dag_id), e.run_id, e.task_id,"
    " COALESCE(t.state, r.state), t.attempt"
    " FROM seq CROSS JOIN e LEFT JOIN runs r ON r.run_id = e.run_id"
    " LEFT JOIN task_instances t ON e.kind = 'task' AND t.run_id = e.run_id AND t.task_id = e.task_id"
    " WHERE e.kind = 'dag' OR (r.run_id IS NOT NULL AND (e.kind = 'run' OR t.task_id IS NOT NULL))"
)
EVENTS_AFTER = EVENT_COLUMNS.select + " WHERE id > ? ORDER BY id LIMIT ?"
PRUNE_EVENTS = "DELETE FROM events WHERE id <= ?"


class Emitted(NamedTuple):
    """One event a transaction emitted, written when it ends: what changed, and when."""

    kind: str  # 'run', 'task' or 'dag'
    dag_id: str | None  # for a 'dag' event; the others read it from their run
    run_id: str | None
    task_id: str | None
    ts: float


class EventLog(SqlBase):
    """Writes events at the end of the changing transaction, and reads and prunes the log."""

    def _emit_runs(self, cur: Cursor, run_ids: Sequence[str], now: float) -> None:
        self._defer(cur, self._write_events, (Emitted("run", None, run_id, None, now) for run_id in run_ids))

    def _emit_tasks(self, cur: Cursor, run_id: str, task_ids: Sequence[str], now: float) -> None:
        self._defer(
            cur, self._write_events, (Emitted("task", None, run_id, task_id, now) for task_id in task_ids)
        )

    def _emit_dag(self, cur: Cursor, dag_id: str, now: float) -> None:
        self._defer(cur, self._write_events, [Emitted("dag", dag_id, None, None, now)])

    def _write_events(self, cur: Cursor, items: list[Emitted]) -> None:
        """Number the transaction's events and write them: its last statement(s) before COMMIT."""
        first: dict[tuple[str | None, ...], Emitted] = {}
        for e in items:  # one event per row, where the transaction first emitted it
            first.setdefault(e[:4], e)
        events = list(first.values())
        n = len(events)
        if self.dialect.name == "postgresql":
            kinds, dag_ids, run_ids, task_ids, stamps = (list(column) for column in zip(*events, strict=True))
            self._exec(cur, EMIT_ALL, (n, stamps, kinds, dag_ids, run_ids, task_ids, n))
            return
        last = int(self._exec(cur, BUMP_SEQ, (n,)).fetchone()[0])
        by_kind: dict[str, list[tuple[object, ...]]] = {"run": [], "task": [], "dag": []}
        for event_id, e in enumerate(events, start=last - n + 1):
            key = {"run": (e.run_id,), "task": (e.run_id, e.task_id), "dag": (e.dag_id,)}[e.kind]
            by_kind[e.kind].append((event_id, e.ts, *key))
        for kind, sql in (("run", EMIT_RUN), ("task", EMIT_TASK), ("dag", EMIT_DAG)):
            if by_kind[kind]:
                self._exec_many(cur, sql, by_kind[kind])

    def events_after(self, after: int, limit: int = 500) -> list[Event]:
        """Events with an id above `after`, oldest first, at most `limit`."""
        return [EVENT_COLUMNS.build(row) for row in self._all(EVENTS_AFTER, (after, limit))]

    def last_event_id(self) -> int:
        """The id of the newest event (0 when there is none yet)."""
        return int(self._all(READ_SEQ)[0][0])

    def prune_events(self, keep: int) -> None:
        """Forget all but the newest `keep` events."""
        with self._transaction() as cur:
            last = int(self._exec(cur, READ_SEQ).fetchone()[0])
            self._exec(cur, PRUNE_EVENTS, (last - keep,))
