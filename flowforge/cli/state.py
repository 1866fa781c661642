"""What every command shares: the global options (`CliState`), the exit codes, errors, the common arguments.

Kept apart from the app in `flowforge.cli.application` so that the command modules can use it
without importing the module that registers them. Cheap to import: Rich and the HTTP client are
loaded only when a command first needs them.

Exit codes (also in `flowforge --help`): 0 success; 1 the run failed (or the API failed);
2 bad input (a usage error, an invalid DAG file, an unknown id, a refused request); 3 the API
could not be reached at the start; 4 gave up waiting (`--timeout`), the run carries on;
130 interrupted. With `--json`, an error is one JSON object on stderr:
`{"error": {"code", "message", "exit_code", "exit_meaning"}}` (plus `details` when the API gave any).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

# The codes and their meanings live in `exits` (read by the fast `--help` too); named here for commands.
from flowforge.cli.completion import dag_ids, run_ids
from flowforge.cli.exits import (
    EXIT_BAD_INPUT,
    EXIT_GAVE_UP,
    EXIT_INTERRUPTED,
    EXIT_MEANINGS,
    EXIT_OK,
    EXIT_RUN_FAILED,
    EXIT_UNREACHABLE,
)

if TYPE_CHECKING:
    from flowforge.cli.times import Clock
    from flowforge.client import ApiClient

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_GAVE_UP",
    "EXIT_INTERRUPTED",
    "EXIT_MEANINGS",
    "EXIT_OK",
    "EXIT_RUN_FAILED",
    "EXIT_UNREACHABLE",
    "CliState",
    "DagArg",
    "RunArg",
    "TimeoutOpt",
    "errors_as_json",
    "fail",
    "get_state",
]
# The `code` of a JSON error raised by the CLI itself (the API's errors carry their own).
DEFAULT_ERROR_CODES = {
    EXIT_RUN_FAILED: "failed",
    EXIT_BAD_INPUT: "bad_input",
    EXIT_UNREACHABLE: "unreachable",
    EXIT_GAVE_UP: "gave_up_waiting",
    EXIT_INTERRUPTED: "interrupted",
}

DagArg = Annotated[
    str, typer.Argument(metavar="DAG", help="Id of the DAG.", show_default=False, autocompletion=dag_ids)
]
RunArg = Annotated[
    str, typer.Argument(metavar="RUN_ID", help="Id of the run.", show_default=False, autocompletion=run_ids)
]
TimeoutOpt = Annotated[
    float | None,
    typer.Option(
        "--timeout",
        metavar="SECS",
        min=0,
        show_default=False,
        help="Give up waiting after SECS seconds (exit 4; the run carries on). Default: wait until it "
        "ends, riding out API restarts.",
    ),
]


class _ErrorFormat:
    """Whether errors are printed as JSON: set from the command line before anything else runs."""

    json = False


def errors_as_json(on: bool) -> None:
    """Print the errors of this invocation as JSON on stderr (`--json`), or as `error: ...` lines."""
    _ErrorFormat.json = on


def error_text(message: str, code: int, *, kind: str | None = None, details: list[str] | None = None) -> str:
    """An error as stderr shows it: `error: message` and indented details, or one JSON object."""
    if _ErrorFormat.json:
        body: dict[str, Any] = {
            "code": kind or DEFAULT_ERROR_CODES.get(code, "error"),
            "message": message,
            "exit_code": code,
            "exit_meaning": EXIT_MEANINGS.get(code, ""),
        }
        if details:
            body["details"] = details
        return json.dumps({"error": body})
    return "\n".join([f"error: {message}", *(f"  {line}" for line in details or [])])


def fail(message: str, code: int, *, kind: str | None = None, details: list[str] | None = None) -> NoReturn:
    """Print the error to stderr (see `error_text`) and exit with `code`."""
    # Plain writes, not Rich: a URL or a path must not be re-wrapped or read as markup.
    sys.stderr.write(error_text(message, code, kind=kind, details=details) + "\n")
    sys.stderr.flush()
    raise typer.Exit(code)


def as_json(value: Any) -> Any:
    """Plain JSON data, with each API model (in lists and dicts too) as the JSON the API sent."""
    if isinstance(value, dict):
        return {k: as_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [as_json(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    dump = getattr(value, "model_dump", None)  # an API model; pydantic is not imported for this
    if dump is not None:
        return dump(mode="json")
    raise TypeError(f"not JSON data: {type(value).__name__}")


@dataclass
class CliState:
    """The global options, shared by every command through the Typer context."""

    api_url: str
    token: str | None
    json_output: bool
    utc: bool = False

    def override(
        self,
        api_url: str | None = None,
        token: str | None = None,
        json_output: bool = False,
        utc: bool = False,
    ) -> None:
        """Apply the global options given after the command: they win over those given before it."""
        self.api_url = api_url or self.api_url
        self.token = token or self.token
        self.json_output = self.json_output or bool(json_output)
        self.utc = self.utc or bool(utc)
        if self.json_output:
            errors_as_json(True)

    def client(self) -> ApiClient:
        """A client of the API these options point at."""
        from flowforge.client import ApiClient  # here: httpx and the models load only when used

        return ApiClient(self.api_url, token=self.token)

    @property
    def clock(self) -> Clock:
        """How times are shown: local time with its zone, or UTC (`--utc`)."""
        from flowforge.cli.times import Clock

        return Clock(utc=self.utc)

    def print_json(self, data: Any) -> None:
        """JSON as the API sent it (models included), on stdout, for scripts to parse."""
        sys.stdout.write(json.dumps(as_json(data), indent=2) + "\n")
        sys.stdout.flush()

    def echo(self, text: str) -> None:
        """A line of plain text on stdout."""
        sys.stdout.write(text + "\n")
        sys.stdout.flush()


def get_state(ctx: typer.Context) -> CliState:
    """The global options, set on the root context by the app (and overridden by a command's own)."""
    state = ctx.find_root().obj
    assert isinstance(state, CliState)
    return state
