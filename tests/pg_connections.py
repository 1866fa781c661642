"""PostgreSQL connections of a database, sampled by `application_name` while a deployment runs.

Each FlowForge process names its connections after its role (`flowforge-api`, `flowforge-scheduler`,
`flowforge-worker`, `flowforge-up`); the sampler counts them in `pg_stat_activity` every
`every` seconds from a thread of its own, on a connection of its own (not counted), and keeps
the most seen at once, per name and in all.
"""

from __future__ import annotations

import threading
from collections import Counter
from urllib.parse import urlsplit

COUNT_BY_NAME = (
    "SELECT application_name, count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()"
    " GROUP BY application_name"
)


def database_of(url: str) -> str:
    """The database a PostgreSQL URL names."""
    return urlsplit(url).path.lstrip("/")


class ConnectionSampler:
    """The connections to one database, counted every `every` seconds until `stop()`."""

    def __init__(self, db_url: str, every: float = 0.05) -> None:
        import psycopg

        self.database = database_of(db_url)
        self.every = every
        self.peak: Counter[str] = Counter()  # application_name → the most connections seen at once
        self.peak_total = 0
        self.samples = 0
        self._conn = psycopg.connect(db_url, autocommit=True, application_name="flowforge-test-sampler")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pg-sampler", daemon=True)

    def start(self) -> ConnectionSampler:
        self.sample()
        self._thread.start()
        return self

    def sample(self) -> dict[str, int]:
        """Count now; application_name → connections."""
        rows = self._conn.execute(COUNT_BY_NAME, (self.database,)).fetchall()
        counts = {str(name): int(n) for name, n in rows}
        for name, n in counts.items():
            self.peak[name] = max(self.peak[name], n)
        self.peak_total = max(self.peak_total, sum(counts.values()))
        self.samples += 1
        return counts

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.sample()

    def stop(self) -> ConnectionSampler:
        """Stop sampling (after one last sample) and close the connection; again, nothing more."""
        if self._conn.closed:
            return self
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)
        self.sample()
        self._conn.close()
        return self
