"""Errors that carry enough context to tell a user what went wrong and where."""

from __future__ import annotations

from dataclasses import dataclass


class FlowForgeError(Exception):
    """Base of every error FlowForge raises on purpose."""


@dataclass(frozen=True)
class Problem:
    """One problem found in a DAG file: where it is and a plain sentence about it."""

    message: str
    field: str = ""  # dotted path, e.g. "tasks[2].depends_on"
    line: int | None = None  # 1-based
    column: int | None = None  # 1-based

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


class DagValidationError(FlowForgeError):
    """A DAG file was rejected; `problems` lists every located problem found."""

    def __init__(self, problems: list[Problem], source: str = "") -> None:
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
