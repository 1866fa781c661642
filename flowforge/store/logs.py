"""Task logs (table `task_logs`): each attempt's output, stored in numbered pieces of bounded size."""

from __future__ import annotations

from flowforge.core.errors import NotFound
from flowforge.store.db import SqlBase

APPEND_LOG = (
    "INSERT INTO task_logs (run_id, task_id, attempt, seq, data)"
    " SELECT ?, ?, ?, COALESCE(MAX(seq), 0) + 1, ? FROM task_logs WHERE run_id = ? AND task_id = ? AND attempt = ?"
)
LOG_PIECE_CHARS = 65536  # the largest piece of log one row holds
READ_LOG = "SELECT seq, data FROM task_logs WHERE run_id = ? AND task_id = ? AND attempt = ? AND seq > ? ORDER BY seq"


class TaskLogs(SqlBase):
    """Appending to an attempt's log, and paging through it with a cursor."""

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
