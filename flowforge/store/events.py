"""The event log (table `events`): every state change gets a row, numbered in commit order.

`EventLog` is the base of every part of the store that changes state: it calls `_emit_*`
inside its own transaction, so an event exists exactly when its change was committed. Each
event copies the changed row's current state, so the same statement serves every kind of change.
"""

from __future__ import annotations

from collections.abc import Sequence

from flowforge.core.records import Event
from flowforge.store.db import Columns, Cursor, SqlBase

EVENT_COLUMNS = Columns(Event, "events", "id, ts, kind, dag_id, run_id, task_id, state, attempt")
BUMP_SEQ = "UPDATE event_seq SET value = value + ? WHERE id = 1"
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
EVENTS_AFTER = EVENT_COLUMNS.select + " WHERE id > ? ORDER BY id LIMIT ?"
PRUNE_EVENTS = "DELETE FROM events WHERE id <= ?"


class EventLog(SqlBase):
    """Writes events inside the changing transaction, and reads and prunes the log."""

    def _next_ids(self, cur: Cursor, n: int) -> range:
        """Reserve `n` event ids; the row lock on event_seq holds until this transaction commits."""
        self._exec(cur, BUMP_SEQ, (n,))
        last = int(self._exec(cur, READ_SEQ).fetchone()[0])
        return range(last - n + 1, last + 1)

    def _emit_runs(self, cur: Cursor, run_ids: Sequence[str], now: float) -> None:
        for event_id, run_id in zip(self._next_ids(cur, len(run_ids)), run_ids, strict=True):
            self._exec(cur, EMIT_RUN, (event_id, now, run_id))

    def _emit_tasks(self, cur: Cursor, run_id: str, task_ids: Sequence[str], now: float) -> None:
        if task_ids:
            ids = zip(self._next_ids(cur, len(task_ids)), task_ids, strict=True)
            self._exec_many(cur, EMIT_TASK, [(event_id, now, run_id, tid) for event_id, tid in ids])

    def _emit_dag(self, cur: Cursor, dag_id: str, now: float) -> None:
        (event_id,) = self._next_ids(cur, 1)
        self._exec(cur, EMIT_DAG, (event_id, now, dag_id))

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
