"""Versioned schema migrations, kept in one place for SQLite and PostgreSQL.

The DDL uses only types both engines read the same way: TEXT, INTEGER, BIGINT, BOOLEAN and
DOUBLE PRECISION (SQLite maps them by its type-affinity rules to TEXT, INTEGER, INTEGER,
NUMERIC and REAL). Keys are natural (ids chosen by FlowForge), so no AUTOINCREMENT/SERIAL
is needed. Times are Unix epoch seconds as DOUBLE PRECISION.

Never edit a released migration: append a new (version, statements) pair instead.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from flowforge.core.errors import FlowForgeError
from flowforge.store import count_triggers

log = logging.getLogger(__name__)

SCHEMA_VERSION_DDL = "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL)"

# A migration's statements, or for one whose DDL differs between engines (triggers), the function
# that gives them for a dialect name ("sqlite", "postgresql").
Statements = list[str] | Callable[[str], list[str]]

MIGRATIONS: list[tuple[int, Statements]] = [
    (
        1,
        [
            """CREATE TABLE dags (
                dag_id TEXT PRIMARY KEY,
                latest_version INTEGER NOT NULL,
                active BOOLEAN NOT NULL DEFAULT TRUE,
                paused BOOLEAN NOT NULL DEFAULT FALSE,
                -- cron ticks count from here: set on first submit, reactivation, and an
                -- unpause that should not replay the ticks missed while paused
                schedule_after DOUBLE PRECISION NOT NULL,
                created_at DOUBLE PRECISION NOT NULL,
                updated_at DOUBLE PRECISION NOT NULL)""",
            """CREATE TABLE dag_versions (
                dag_id TEXT NOT NULL REFERENCES dags (dag_id),
                version INTEGER NOT NULL,
                spec_json TEXT NOT NULL,
                source TEXT NOT NULL,
                created_at DOUBLE PRECISION NOT NULL,
                PRIMARY KEY (dag_id, version))""",
            """CREATE TABLE runs (
                run_id TEXT PRIMARY KEY,
                dag_id TEXT NOT NULL,
                dag_version INTEGER NOT NULL,
                state TEXT NOT NULL,
                triggered_by TEXT NOT NULL,
                params_json TEXT NOT NULL,
                logical_date DOUBLE PRECISION,
                -- set by a client that may send the same trigger twice (a retry after a
                -- timeout): the second request gets the first one's run
                idempotency_key TEXT,
                created_at DOUBLE PRECISION NOT NULL,
                started_at DOUBLE PRECISION,
                ended_at DOUBLE PRECISION,
                FOREIGN KEY (dag_id, dag_version) REFERENCES dag_versions (dag_id, version))""",
            "CREATE INDEX runs_dag_created ON runs (dag_id, created_at)",
            "CREATE INDEX runs_created ON runs (created_at)",
            "CREATE INDEX runs_state ON runs (state)",
            # One run per logical date (cron tick) per DAG: a second scheduler or a retried
            # tick cannot start the same scheduled run twice.
            "CREATE UNIQUE INDEX runs_logical_date ON runs (dag_id, logical_date) WHERE logical_date IS NOT NULL",
            "CREATE UNIQUE INDEX runs_idempotency_key ON runs (dag_id, idempotency_key)"
            " WHERE idempotency_key IS NOT NULL",
            """CREATE TABLE task_instances (
                run_id TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
                task_id TEXT NOT NULL,
                position INTEGER NOT NULL,
                state TEXT NOT NULL,
                attempt INTEGER NOT NULL DEFAULT 0,
                retry_at DOUBLE PRECISION,
                queued_at DOUBLE PRECISION,
                started_at DOUBLE PRECISION,
                ended_at DOUBLE PRECISION,
                exit_code INTEGER,
                error TEXT,
                worker_id TEXT,
                -- the running attempt's fencing token: new on every claim; renewals and the
                -- result are accepted only with it, and only before lease_expires_at passes
                lease_token TEXT,
                lease_expires_at DOUBLE PRECISION,
                PRIMARY KEY (run_id, task_id))""",
            """CREATE TABLE attempts (
                run_id TEXT NOT NULL,
                task_id TEXT NOT NULL,
                attempt INTEGER NOT NULL,
                state TEXT NOT NULL,
                worker_id TEXT,
                queued_at DOUBLE PRECISION,
                started_at DOUBLE PRECISION,
                ended_at DOUBLE PRECISION,
                exit_code INTEGER,
                error TEXT,
                -- set when a user clears the task to run it again: its history stays, but it no
                -- longer counts as the task's result
                cleared BOOLEAN NOT NULL DEFAULT FALSE,
                lease_token TEXT,
                PRIMARY KEY (run_id, task_id, attempt),
                FOREIGN KEY (run_id, task_id) REFERENCES task_instances (run_id, task_id) ON DELETE CASCADE)""",
            # The last line of defence for "no successful task is run again": even if every
            # check above it failed, the database refuses a second success.
            "CREATE UNIQUE INDEX attempts_one_success ON attempts (run_id, task_id)"
            " WHERE state = 'success' AND NOT cleared",
            # ... and at most one attempt of a task is ever queued or running at a time.
            "CREATE UNIQUE INDEX attempts_one_live ON attempts (run_id, task_id) WHERE state IN ('queued', 'running')",
            # One row per role that must have a single active holder (the scheduler): whoever
            # holds an unexpired lease acts; the others wait and take over when it lapses.
            """CREATE TABLE leases (
                name TEXT PRIMARY KEY,
                holder TEXT NOT NULL,
                expires_at DOUBLE PRECISION NOT NULL)""",
            """CREATE TABLE task_logs (
                run_id TEXT NOT NULL,
                task_id TEXT NOT NULL,
                attempt INTEGER NOT NULL,
                seq INTEGER NOT NULL,
                data TEXT NOT NULL,
                PRIMARY KEY (run_id, task_id, attempt, seq),
                FOREIGN KEY (run_id, task_id, attempt) REFERENCES attempts (run_id, task_id, attempt)
                    ON DELETE CASCADE)""",
            # Every state change, in commit order, for live views (GET /api/v1/events). Ids come
            # from the one-row event_seq, bumped inside the writing transaction: the row lock
            # makes ids follow commit order on PostgreSQL too, so a reader resuming after id N
            # never misses an event committed later with a smaller id.
            """CREATE TABLE events (
                id BIGINT PRIMARY KEY,
                ts DOUBLE PRECISION NOT NULL,
                kind TEXT NOT NULL,
                dag_id TEXT,
                run_id TEXT,
                task_id TEXT,
                state TEXT,
                attempt INTEGER)""",
            "CREATE TABLE event_seq (id INTEGER PRIMARY KEY, value BIGINT NOT NULL)",
            "INSERT INTO event_seq (id, value) VALUES (1, 0)",
            """CREATE TABLE workers (
                worker_id TEXT PRIMARY KEY,
                host TEXT NOT NULL,
                pid BIGINT NOT NULL,
                slots INTEGER NOT NULL,
                started_at DOUBLE PRECISION NOT NULL,
                last_heartbeat DOUBLE PRECISION NOT NULL,
                running_json TEXT NOT NULL,
                state TEXT NOT NULL)""",
        ],
    ),
    (
        2,
        [
            # Runs of one state, newest first (the scheduler's active runs, `runs --state …`) read
            # just what they return, however long the history; it serves what runs_state did.
            "CREATE INDEX runs_state_created ON runs (state, created_at)",
            "DROP INDEX runs_state",
            # Counting task instances by state (/status, /metrics) reads this small index
            # instead of every row of the table.
            "CREATE INDEX task_instances_state ON task_instances (state)",
        ],
    ),
    (
        3,
        [
            # The outcome counters of /metrics (tasks and runs by DAG and state) are counted at
            # every scrape. With the DAG on the attempt row, each count reads one small index
            # instead of joining every attempt ever made with its run.
            "ALTER TABLE attempts ADD COLUMN dag_id TEXT",
            "UPDATE attempts SET dag_id = (SELECT r.dag_id FROM runs r WHERE r.run_id = attempts.run_id)",
            "CREATE INDEX attempts_dag_state ON attempts (dag_id, state, attempt)",
            "CREATE INDEX runs_dag_state ON runs (dag_id, state)",
        ],
    ),
    (
        4,
        [
            # Attempts lost to the platform (their worker died, lost contact or stopped) use none
            # of the task's retries: the task instance counts them, so that the worker and the
            # scheduler can tell the retries used from the attempts made.
            "ALTER TABLE task_instances ADD COLUMN lost_attempts INTEGER NOT NULL DEFAULT 0",
            "UPDATE task_instances SET lost_attempts = (SELECT COUNT(*) FROM attempts a"
            " WHERE a.run_id = task_instances.run_id AND a.task_id = task_instances.task_id"
            " AND a.state = 'lost')",
        ],
    ),
    (
        5,
        [
            # What an attempt wrote to $FLOWFORGE_OUTPUT, as a JSON object of strings (NULL: none);
            # a successful attempt's outputs reach its downstream tasks as environment variables.
            "ALTER TABLE attempts ADD COLUMN outputs_json TEXT",
        ],
    ),
    (
        6,
        [
            # Pruning (Store.prune_runs) reads the ended runs oldest first by end time, and
            # deletes each one's events: both read just the rows they touch, however long the
            # history (ended_at is set only on ended runs).
            "CREATE INDEX runs_ended ON runs (ended_at, run_id)",
            "CREATE INDEX events_run ON events (run_id)",
            # The outcome counters of /metrics never go down: what a prune deleted is added up
            # here (kind 'run' or 'attempt'), in the deleting transaction.
            """CREATE TABLE pruned_outcomes (
                kind TEXT NOT NULL,
                dag_id TEXT NOT NULL,
                state TEXT NOT NULL,
                n BIGINT NOT NULL,
                retries BIGINT NOT NULL DEFAULT 0,
                PRIMARY KEY (kind, dag_id, state))""",
        ],
    ),
    (
        7,
        [
            # A DAG's statistics (Store.ended_runs) read its last ended runs, the last to end first,
            # and the slow note of a running task (Store.success_durations) each task's last
            # successful attempts: both read just the rows they return, however long the history.
            "CREATE INDEX runs_dag_ended ON runs (dag_id, ended_at, run_id)",
            "CREATE INDEX attempts_task_success ON attempts (dag_id, task_id, ended_at) WHERE state = 'success'",
        ],
    ),
    # /status and the outcome counters of /metrics read counts kept by triggers, in the
    # transaction of each change, instead of counting every row of the history at each request;
    # pruned_outcomes is folded into them and retired (see store/count_triggers.py).
    (8, count_triggers.migration),
]

LATEST_VERSION = MIGRATIONS[-1][0]

Execute = Callable[[str, Sequence[Any]], Any]  # runs one statement in the open transaction


class SchemaTooNew(FlowForgeError):
    """The database was migrated by a newer FlowForge than this one."""


def apply_migrations(
    execute: Execute, fetch_version: Callable[[], int | None], now: float, dialect: str = "sqlite"
) -> int:
    """Bring the schema to LATEST_VERSION inside the caller's write transaction; returns the version.

    `dialect` ("sqlite" or "postgresql") picks the statements of a migration that differ by engine.

    Idempotent: migrations already recorded in `schema_version` are skipped. Raises
    SchemaTooNew, changing nothing, when the database is ahead of this code.
    """
    execute(SCHEMA_VERSION_DDL, ())
    current = fetch_version() or 0
    if current > LATEST_VERSION:
        raise SchemaTooNew(
            f"the database schema is at version {current}, but this FlowForge knows versions up to "
            f"{LATEST_VERSION}: it was created by a newer FlowForge. Upgrade FlowForge, or point "
            "FLOWFORGE_DB at another database."
        )
    for version, statements in MIGRATIONS:
        if version <= current:
            continue
        for statement in statements(dialect) if callable(statements) else statements:
            execute(statement, ())
        execute("INSERT INTO schema_version (version, applied_at) VALUES (?, ?)", (version, now))
        log.info("applied schema migration", extra={"schema_version": version})
    return LATEST_VERSION
