"""Errors that carry enough context to tell a user what went wrong and where."""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass

# One answer lists at most this many problems (the first in reading order) and counts the rest:
# a file whose every line is wrong must not make an answer larger than the file itself.
MAX_PROBLEMS = 50
# A value quoted in a message is cut to this many characters: a 100 KB key (or an alias of one,
# repeated on every task) would otherwise be copied into every problem that names it.
QUOTE_CHARS = 60
_MAX_MESSAGE, _MAX_FIELD = 600, 200


def shown(value: object, limit: int = QUOTE_CHARS) -> str:
    """A user's value as a message quotes it: its text, cut to `limit` characters with '…'."""
    text = value if isinstance(value, str) else str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


class FlowForgeError(Exception):
    """Base of every error FlowForge raises on purpose."""


@dataclass(frozen=True)
class Problem:
    """One problem found in a DAG file: where it is and a plain sentence about it."""

    message: str
    field: str = ""  # dotted path, e.g. "tasks[2].depends_on"
    line: int | None = None  # 1-based
    column: int | None = None  # 1-based

    def __post_init__(self) -> None:
        # A safety net under `shown`: whatever a message quotes, one problem stays small.
        if len(self.message) > _MAX_MESSAGE:
            object.__setattr__(self, "message", shown(self.message, _MAX_MESSAGE))
        if len(self.field) > _MAX_FIELD:
            object.__setattr__(self, "field", shown(self.field, _MAX_FIELD))

    def format(self, source: str = "") -> str:
        """`file:line:column: field: message`, leaving out what is unknown."""
        where = source or "<dag>"
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return {"field": self.field, "line": self.line, "column": self.column, "message": self.message}


class Problems:
    """The problems found in one DAG file: the first `limit` in reading order kept, the others counted.

    Collecting stays bounded in memory however many problems a file has, and `listing` ends with
    a line saying how many more there are.
    """

    def __init__(self, limit: int = MAX_PROBLEMS) -> None:
        self.limit = limit
        self.total = 0
        # A max-heap (by negated place) of the problems that come first in the file.
        self._kept: list[tuple[tuple[int, int, int, int], Problem]] = []

    def append(self, problem: Problem) -> None:
        """Count a problem, and keep it while it is among the first `limit` by line and column."""
        self.total += 1
        line, column = problem.line, problem.column
        key = (-(line is None), -(line or 0), -(column or 0), -self.total)
        if len(self._kept) < self.limit:
            heapq.heappush(self._kept, (key, problem))
        elif key > self._kept[0][0]:
            heapq.heapreplace(self._kept, (key, problem))

    def extend(self, problems: Iterable[Problem]) -> None:
        """`append` each of them."""
        for p in problems:
            self.append(p)

    def __len__(self) -> int:
        return self.total

    def listing(self) -> list[Problem]:
        """The kept problems in reading order, then how many more there are, if any."""
        kept = [p for _, p in sorted(self._kept, key=lambda kp: kp[0], reverse=True)]
        more = self.total - len(kept)
        if more:
            kept.append(Problem(f"… and {more:,} more problem{'s' if more != 1 else ''} (not listed)"))
        return kept


class DagValidationError(FlowForgeError):
    """A DAG file was rejected; `problems` lists the located problems found (at most MAX_PROBLEMS).

    `total` counts every problem found, also those not listed.
    """

    def __init__(self, problems: list[Problem] | Problems, source: str = "") -> None:
        if isinstance(problems, Problems):
            self.total = problems.total
            problems = problems.listing()
        else:
            self.total = len(problems)
        self.problems = problems
        self.source = source
        super().__init__("\n".join(p.format(source) for p in problems))


class NotFound(FlowForgeError):
    """A DAG, run or task that was asked for does not exist."""


class Conflict(FlowForgeError):
    """The request cannot be done in the current state (e.g. retrying a running task)."""


class Unavailable(FlowForgeError):
    """A service FlowForge needs (the database, the queue) cannot be reached or refused to serve."""


class InvalidRequest(FlowForgeError):
    """A request that cannot be carried out as asked (bad params, a bad date range …)."""

    def __init__(self, code: str, message: str, details: list[dict[str, object]] | None = None) -> None:
        self.code = code
        self.message = message
        self.details = details or []
        super().__init__(message)
