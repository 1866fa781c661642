"""`SqlStore`: the whole Store protocol written once in SQL, for every SQL engine.

Each part of the protocol lives in its own module, as a class on `db.SqlBase` named after what
it owns: dags, runs, tasks (task instances and attempts), control (stopping and clearing runs),
events, leases, logs, workers, counts and retention. `SqlStore` composes them and migrates the schema; a
driver (sqlite.py, postgres.py) subclasses it and supplies the connection (`_transaction`,
`close`). Queries are written with `?` placeholders and rendered once per dialect.
"""

from __future__ import annotations

import time

from flowforge.store import schema
from flowforge.store.control import RunControl
from flowforge.store.counts import Counts
from flowforge.store.dags import Dags
from flowforge.store.leases import Leases
from flowforge.store.logs import TaskLogs
from flowforge.store.reads import RunReads
from flowforge.store.retention import Retention
from flowforge.store.runs import Runs
from flowforge.store.schedules import Schedules
from flowforge.store.tasks import TaskInstances
from flowforge.store.workers import Workers

MAX_VERSION = "SELECT MAX(version) FROM schema_version"


class SqlStore(
    Dags, Runs, TaskInstances, RunControl, TaskLogs, Workers, Leases, Counts, Retention, Schedules, RunReads
):
    """The Store protocol over any DB-API connection; a driver supplies `_transaction` and `close`."""

    def migrate(self) -> int:
        """Apply pending schema migrations (idempotent); raises schema.SchemaTooNew."""
        with self._transaction() as cur:
            if self.dialect.migrate_lock:
                self._exec(cur, self.dialect.migrate_lock)

            def version() -> int | None:
                row = self._exec(cur, MAX_VERSION).fetchone()
                return None if row is None else row[0]

            return schema.apply_migrations(
                lambda sql, params: self._exec(cur, sql, params), version, time.time(), self.dialect.name
            )
