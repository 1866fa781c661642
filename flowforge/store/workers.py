"""Workers (table `workers`): registration and heartbeats, and the list of known workers.

A dead worker runs nothing: the attempts it held were given up as lost (and may have run
elsewhere since), so its last heartbeat's list of running tasks is not shown.
"""

from __future__ import annotations

import json

from flowforge.core.records import WorkerInfo
from flowforge.store.db import Columns, SqlBase


def _running(running_json: str) -> tuple[str, ...]:
    return tuple(json.loads(running_json))


WORKER_COLUMNS = Columns(
    WorkerInfo,
    "workers",
    "worker_id, host, pid, slots, started_at, last_heartbeat,"
    " CASE WHEN state = 'dead' THEN '[]' ELSE running_json END AS running, state",
    running=_running,
)
UPSERT_WORKER = (
    "INSERT INTO workers (worker_id, host, pid, slots, started_at, last_heartbeat, running_json, state)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (worker_id) DO UPDATE SET host = excluded.host,"
    " pid = excluded.pid, slots = excluded.slots, started_at = excluded.started_at,"
    " last_heartbeat = excluded.last_heartbeat, running_json = excluded.running_json, state = excluded.state"
)
LIST_WORKERS = WORKER_COLUMNS.select + " ORDER BY last_heartbeat DESC, worker_id"


class Workers(SqlBase):
    """Recording workers' heartbeats and listing them."""

    def upsert_worker(self, worker: WorkerInfo) -> None:
        """Register a worker or record its heartbeat (host, pid, slots, running, state)."""
        w = worker
        params = (w.worker_id, w.host, w.pid, w.slots, w.started_at, w.last_heartbeat,
                  json.dumps(w.running), w.state)  # fmt: skip
        with self._transaction() as cur:
            self._exec(cur, UPSERT_WORKER, params)

    def list_workers(self) -> list[WorkerInfo]:
        """Every known worker, most recent heartbeat first."""
        return [WORKER_COLUMNS.build(r) for r in self._all(LIST_WORKERS)]
