"""Migration 8: counts kept by the database itself, in the transaction of the change they count.

Triggers on `runs`, `task_instances` and `attempts` add *delta rows* to `count_deltas` (insert
only: concurrent writers never queue on a shared counter row). Readers add them up with
`count_totals`, into which `Counts.fold_counts` moves them now and then (see store/counts.py).
Being triggers, no write path can forget a count, however it changes a row.

The kinds of count, by (dag_id, state):

- `run`, `task`: the runs and task instances in each state now (/status); they follow every
  change of state and every delete. Task instances carry no DAG: their dag_id is ''.
- `run_end`: runs that ended in each state, counted when a run enters it from an active state;
  never decreased (a run retried and ended again counts again; a prune deletes no count).
- `attempt`: attempts in each state, with `retries` the attempts numbered 2 or more among them;
  they follow the changes of state, but a delete (a prune) leaves them counted.

Migration 8 starts the totals from the rows there are, adds what earlier prunes recorded in
`pruned_outcomes`, and retires that table.
"""

from __future__ import annotations

ENDED = "('success', 'failed', 'cancelled')"
DELTA = "INSERT INTO count_deltas (kind, dag_id, state, n, retries)"

# What each trigger adds: (table, kind, the DAG of a row as `{row}.…`, the retries of a row,
# the change of state also counts a run's end, a delete takes the row out of the count).
COUNTED = (
    ("runs", "run", "{row}.dag_id", "0", True, True),
    ("task_instances", "task", "''", "0", False, True),
    ("attempts", "attempt", "{row}.dag_id", "CASE WHEN {row}.attempt > 1 THEN 1 ELSE 0 END", False, False),
)


def _values(kind: str, dag: str, retries: str, row: str, sign: str) -> str:
    dag, retries = dag.format(row=row), retries.format(row=row)
    return f"('{kind}', {dag}, {row}.state, {sign}1, {sign}{retries})"


def _sqlite(table: str, kind: str, dag: str, retries: str, ends: bool, deletes: bool) -> list[str]:
    new, old = _values(kind, dag, retries, "NEW", ""), _values(kind, dag, retries, "OLD", "-")
    # attempts.dag_id is NULL only on rows from before migration 3 whose run was gone: never counted.
    known = " WHEN NEW.dag_id IS NOT NULL" if kind == "attempt" else ""
    end_new = end_update = ""
    if ends:
        end_new = f" {DELTA} SELECT 'run_end', NEW.dag_id, NEW.state, 1, 0 WHERE NEW.state IN {ENDED};"
        end_update = end_new.replace(" WHERE ", f" WHERE OLD.state NOT IN {ENDED} AND ")
    out = [
        f"CREATE TRIGGER {table}_counted_insert AFTER INSERT ON {table}{known}"
        f" BEGIN {DELTA} VALUES {new};{end_new} END",
        f"CREATE TRIGGER {table}_counted_update AFTER UPDATE OF state ON {table}"
        f" WHEN OLD.state <> NEW.state{known.replace(' WHEN', ' AND')}"
        f" BEGIN {DELTA} VALUES {old}, {new};{end_update} END",
    ]
    if deletes:
        out.append(
            f"CREATE TRIGGER {table}_counted_delete AFTER DELETE ON {table} BEGIN {DELTA} VALUES {old}; END"
        )
    return out


def _postgres(table: str, kind: str, dag: str, retries: str, ends: bool, deletes: bool) -> list[str]:
    new, old = _values(kind, dag, retries, "NEW", ""), _values(kind, dag, retries, "OLD", "-")
    end = ""
    if ends:
        end = (
            f" IF NEW.state IN {ENDED} AND (TG_OP = 'INSERT' OR OLD.state NOT IN {ENDED}) THEN"
            f" {DELTA} VALUES ('run_end', NEW.dag_id, NEW.state, 1, 0); END IF;"
        )
    # attempts.dag_id is NULL only on rows from before migration 3 whose run was gone: never counted.
    skip = "IF NEW.dag_id IS NULL THEN RETURN NULL; END IF; " if kind == "attempt" else ""
    function = f"flowforge_count_{table}"
    body = (
        f"BEGIN {skip}IF TG_OP <> 'INSERT' THEN {DELTA} VALUES {old}; END IF;"
        f" IF TG_OP <> 'DELETE' THEN {DELTA} VALUES {new};{end} END IF; RETURN NULL; END"
    )
    on = "INSERT OR DELETE" if deletes else "INSERT"
    return [
        f"CREATE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$ {body} $$",
        f"CREATE TRIGGER {table}_counted AFTER {on} ON {table} FOR EACH ROW EXECUTE FUNCTION {function}()",
        f"CREATE TRIGGER {table}_counted_update AFTER UPDATE OF state ON {table} FOR EACH ROW"
        f" WHEN (OLD.state <> NEW.state) EXECUTE FUNCTION {function}()",
    ]


TOTALS = """CREATE TABLE count_totals (
    kind TEXT NOT NULL,
    dag_id TEXT NOT NULL,
    state TEXT NOT NULL,
    n BIGINT NOT NULL,
    retries BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (kind, dag_id, state))"""
# The id orders nothing but the fold's "up to here": INTEGER PRIMARY KEY is SQLite's rowid.
DELTAS = """CREATE TABLE count_deltas (
    id {id},
    kind TEXT NOT NULL,
    dag_id TEXT NOT NULL,
    state TEXT NOT NULL,
    n BIGINT NOT NULL,
    retries BIGINT NOT NULL)"""
ADD_TOTALS = "INSERT INTO count_totals (kind, dag_id, state, n, retries) "
INITIAL_TOTALS = [
    ADD_TOTALS + "SELECT 'run', dag_id, state, COUNT(*), 0 FROM runs GROUP BY dag_id, state",
    ADD_TOTALS + "SELECT 'task', '', state, COUNT(*), 0 FROM task_instances GROUP BY state",
    ADD_TOTALS + "SELECT 'run_end', dag_id, state, SUM(n), 0 FROM ("
    f"SELECT dag_id, state, COUNT(*) AS n FROM runs WHERE state IN {ENDED} GROUP BY dag_id, state"
    " UNION ALL SELECT dag_id, state, n FROM pruned_outcomes WHERE kind = 'run') AS o GROUP BY dag_id, state",
    ADD_TOTALS + "SELECT 'attempt', dag_id, state, SUM(n), SUM(retries) FROM ("
    "SELECT dag_id, state, COUNT(*) AS n, SUM(CASE WHEN attempt > 1 THEN 1 ELSE 0 END) AS retries"
    " FROM attempts WHERE dag_id IS NOT NULL GROUP BY dag_id, state"
    " UNION ALL SELECT dag_id, state, n, retries FROM pruned_outcomes WHERE kind = 'attempt') AS o"
    " GROUP BY dag_id, state",
    "DROP TABLE pruned_outcomes",
]


def migration(dialect: str) -> list[str]:
    """The statements of migration 8 for `dialect` ("sqlite" or "postgresql")."""
    if dialect == "postgresql":
        deltas = DELTAS.format(id="BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY")
        triggers = [s for counted in COUNTED for s in _postgres(*counted)]
    else:
        deltas = DELTAS.format(id="INTEGER PRIMARY KEY")
        triggers = [s for counted in COUNTED for s in _sqlite(*counted)]
    return [TOTALS, deltas, *INITIAL_TOTALS, *triggers]
