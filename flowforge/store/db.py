"""The SQL plumbing every part of the SQL store builds on.

`Cursor` (the DB-API subset used), `Dialect` (what differs between SQL engines), `SqlBase`
(transactions and `?`-style statements rendered once per dialect; a driver supplies the
connection), and `Columns`, which maps the rows of one SELECT to records by column name.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from flowforge.core.errors import NotFound

if TYPE_CHECKING:
    from _typeshed import DataclassInstance


class Cursor(Protocol):
    """The DB-API cursor subset the store uses (sqlite3 and psycopg both fit)."""

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


def marks(n: int) -> str:
    """`(?, ?, …)` with `n` placeholders, for `IN` lists."""
    return "(" + ", ".join("?" * n) + ")"


# Writes what a transaction deferred, given its cursor and the items (see SqlBase._defer).
Writer = Callable[[Cursor, list[Any]], None]


class SqlBase(ABC):
    """Connection plumbing shared by every part of the SQL store.

    A driver (SQLite, PostgreSQL) implements `_begin` and `close` (and may refine `_commit_after`);
    everything else is written once with `?` placeholders, rendered per dialect.

    A write transaction may defer work to its end (`_defer`): what was deferred is written in
    the transaction's last statement(s), right before COMMIT. The event log uses this so that the
    lock that numbers events in commit order is held for that last statement and the commit only,
    not across the transaction's other round trips.
    """

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self._rendered: dict[str, str] = {}
        # What each open write transaction deferred, by id of its cursor: a cursor is one
        # transaction's, on one thread, for as long as the transaction lasts.
        self._deferred: dict[int, dict[Writer, list[Any]]] = {}

    @abstractmethod
    def _begin(self, write: bool) -> AbstractContextManager[Cursor]:
        """A cursor inside one transaction: committed on exit, rolled back on an exception."""

    def _commit_after(self, cur: Cursor, last: Callable[[Cursor], None]) -> None:
        """Run `last(cur)`, the transaction's last statement(s); the driver may send its COMMIT with them."""
        last(cur)

    @abstractmethod
    def close(self) -> None:
        """Release connections."""

    @contextmanager
    def _transaction(self, write: bool = True) -> Iterator[Cursor]:
        """A cursor in one transaction: what it deferred is written last, then it commits; rolled back on an exception."""
        with self._begin(write) as cur:
            if not write:
                yield cur
                return
            key = id(cur)
            deferred: dict[Writer, list[Any]] = {}
            self._deferred[key] = deferred
            try:
                yield cur
                if deferred:
                    self._commit_after(cur, lambda c: self._write_deferred(c, deferred))
            finally:
                del self._deferred[key]

    def _defer(self, cur: Cursor, write: Writer, items: Iterable[Any]) -> None:
        """Have `write(cur, items)` called as the last statement(s) of the write transaction of `cur`.

        Items deferred with one `write` are passed to it together, in the order they were deferred.
        """
        try:
            deferred = self._deferred[id(cur)]
        except KeyError:
            raise RuntimeError("only a write transaction can defer work to its end") from None
        items = list(items)
        if items:
            deferred.setdefault(write, []).extend(items)

    @staticmethod
    def _write_deferred(cur: Cursor, deferred: dict[Writer, list[Any]]) -> None:
        for write, items in deferred.items():
            write(cur, items)

    def _render(self, sql: str) -> str:
        rendered = self._rendered.get(sql)
        if rendered is None:
            rendered = self._rendered[sql] = self.dialect.render(sql)
        return rendered

    def _exec(self, cur: Cursor, sql: str, params: Sequence[Any] = ()) -> Cursor:
        """Run one `?`-style statement on `cur` in this dialect; returns the cursor."""
        cur.execute(self._render(sql), params)
        return cur

    def _exec_many(self, cur: Cursor, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """Run one `?`-style statement on `cur` once per parameter row."""
        cur.executemany(self._render(sql), rows)

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


R = TypeVar("R", bound="DataclassInstance")


def column_names(columns: str) -> tuple[str, ...]:
    """The name each column of a SELECT list comes back under: its alias, else its column name."""
    return tuple(column.split()[-1].rsplit(".", 1)[-1] for column in columns.split(","))


class Columns(Generic[R]):
    """The columns one SELECT reads to build a record, each named after a field of the record.

    `columns` is a SELECT list of plain columns, one per dataclass field in the fields' order,
    each named after its field (`params_json AS params` where the column is named otherwise).
    The names are checked against the dataclass when the module is imported, so a renamed,
    missing or reordered column fails at once; rows then map to records by position, with
    no name lookups per row. `convert` maps a field to the function that turns its column's
    value into the field's value (e.g. `state=TaskState`).
    """

    def __init__(self, record: type[R], source: str, columns: str, **convert: Callable[[Any], Any]) -> None:
        fields = tuple(f.name for f in dataclasses.fields(record))
        names = column_names(columns)
        if names != fields:
            raise TypeError(f"{record.__name__} is read as columns {names}, not its fields {fields}")
        unknown = sorted(set(convert) - set(names))
        if unknown:
            raise TypeError(f"{record.__name__} has no fields {unknown} to convert")
        self.record = record
        self.names = names
        self.columns = columns
        self.select = f"SELECT {columns} FROM {source}"
        self._make: Callable[..., R] = record
        self._convert = tuple((names.index(name), fn) for name, fn in convert.items())

    def index(self, name: str) -> int:
        """The position of field `name` in a row."""
        return self.names.index(name)

    def values(self, row: Sequence[Any]) -> list[Any]:
        """The record's field values, in field order, from one row."""
        values = list(row)
        for i, convert in self._convert:
            values[i] = convert(values[i])
        return values

    def build(self, row: Sequence[Any]) -> R:
        """The record that one row holds."""
        return self._make(*self.values(row))
