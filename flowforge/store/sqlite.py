"""`SqliteStore`: the SQL store on one SQLite file (or in memory, for tests)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from flowforge.store.db import Cursor, Dialect
from flowforge.store.sql import SqlStore

SQLITE = Dialect(name="sqlite", placeholder="?", integrity_error=sqlite3.IntegrityError)

# Another process (a second `flowforge` role on the same file) may hold the write lock briefly.
BUSY_TIMEOUT_MS = 10_000


class SqliteStore(SqlStore):
    """One SQLite connection shared by every thread, serialised by a lock; WAL mode."""

    def __init__(self, path: str) -> None:
        super().__init__(SQLITE)
        self.path = path
        # isolation_level=None: the sqlite3 module must not open transactions behind our back;
        # _transaction issues BEGIN/COMMIT itself.
        self._conn = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000
        )
        self._lock = threading.RLock()
        try:
            if path != ":memory:":
                # WAL: readers in other processes never block the writer; NORMAL sync is safe in
                # WAL (a power cut may lose the last commits, never corrupt the file).
                self._conn.execute("PRAGMA journal_mode=WAL")
                self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            self._conn.execute("PRAGMA foreign_keys=ON")
            self.migrate()
        except BaseException:
            self._conn.close()
            raise

    @classmethod
    def from_url(cls, url: str) -> SqliteStore:
        """Open `sqlite:///path/to/file.db` (relative, or absolute with a fourth slash) or `sqlite://:memory:`."""
        if url in ("sqlite://:memory:", "sqlite:///:memory:", "sqlite://"):
            return cls(":memory:")
        if not url.startswith("sqlite:///") or url == "sqlite:///":
            raise ValueError(f"bad SQLite URL {url!r}: expected sqlite:///PATH or sqlite://:memory:")
        path = Path(url.removeprefix("sqlite:///")).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        return cls(str(path))

    @contextmanager
    def _begin(self, write: bool) -> Iterator[Cursor]:
        """A cursor in one transaction; BEGIN IMMEDIATE for writes, so the write lock is taken up front."""
        with self._lock:
            cur = self._conn.cursor()
            # IMMEDIATE: take the write lock at BEGIN (waiting up to busy_timeout) rather than
            # failing with SQLITE_BUSY half-way through when another process writes too.
            try:
                cur.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                yield cur
                cur.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.rollback()
                raise
            finally:
                cur.close()

    def close(self) -> None:
        """Close the connection (idempotent)."""
        with self._lock:
            self._conn.close()

    def __repr__(self) -> str:
        return f"SqliteStore({self.path!r})"
