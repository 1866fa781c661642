"""What every command shares: the global options (`CliState`), the exit codes, the common arguments.

Kept apart from the app in `flowforge.cli` so that the command modules can use it without
importing the package that registers them. Cheap to import: Rich and the HTTP client are
loaded only when a command first needs them, so `flowforge --version` stays fast.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

    from flowforge.client import ApiClient

EXIT_OK, EXIT_RUN_FAILED, EXIT_BAD_INPUT, EXIT_UNREACHABLE = 0, 1, 2, 3
EXIT_INTERRUPTED = 130  # the shell's convention for SIGINT

DagArg = Annotated[str, typer.Argument(metavar="DAG", help="Id of the DAG.", show_default=False)]
RunArg = Annotated[str, typer.Argument(metavar="RUN_ID", help="Id of the run.", show_default=False)]


def fail(message: str, code: int) -> NoReturn:
    """Print `error: message` to stderr and exit with `code`."""
    # typer.echo, not Rich: a URL or a path must not be re-wrapped or read as markup.
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def as_json(value: Any) -> Any:
    """Plain JSON data, with each API model (in lists and dicts too) as the JSON the API sent."""
    if isinstance(value, dict):
        return {k: as_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_json(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    from pydantic import BaseModel  # here: only answers from the API are models

    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    raise TypeError(f"not JSON data: {type(value).__name__}")


@dataclass
class CliState:
    """The global options, shared by every command through the Typer context."""

    api_url: str
    token: str | None
    json_output: bool

    def client(self) -> ApiClient:
        """A client of the API these options point at."""
        from flowforge.client import ApiClient  # here: httpx and the models load only when used

        return ApiClient(self.api_url, token=self.token)

    @property
    def out(self) -> Console:
        """Console for results on stdout (made per use, so it writes to the current sys.stdout)."""
        from rich.console import Console

        return Console(highlight=False)

    def print_json(self, data: Any) -> None:
        """JSON as the API sent it (no Rich highlighting, so scripts can parse it); models included."""
        text = json.dumps(as_json(data), indent=2, sort_keys=False)
        self.out.print(text, markup=False, highlight=False, soft_wrap=True)

    def emit(self, data: Any, table: RenderableType) -> None:
        """The API's JSON with --json, else the Rich renderable."""
        if self.json_output:
            self.print_json(data)
        else:
            self.out.print(table)


def get_state(ctx: typer.Context) -> CliState:
    """The global options, set by the app's callback on the root context."""
    state = ctx.find_root().obj
    assert isinstance(state, CliState)
    return state
