"""The `flowforge` command: the Typer app, its global options, how errors become exit codes, `main()`.

Each command module defines `register(app)`: `commands` (the API client commands and
`validate`), `control` (cancel, retry, backfill) and `server` (the processes of FlowForge).
The global options and the exit codes live in `flowforge.cli.state`, which every module uses.
"""

from __future__ import annotations

import os
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from flowforge import __version__
from flowforge.cli import commands, control, server
from flowforge.cli.state import (
    EXIT_BAD_INPUT,
    EXIT_INTERRUPTED,
    EXIT_RUN_FAILED,
    EXIT_UNREACHABLE,
    CliState,
    fail,
)
from flowforge.core.errors import DagValidationError, Problem
from flowforge.settings import DEFAULT_API_URL

__all__ = ["CliState", "app", "main"]


def api_error_lines(details: list[Any]) -> list[str]:
    """The details of an API error answer, one readable line each (DAG problems as file:line:col)."""
    lines = []
    for d in details:
        if isinstance(d, dict) and "message" in d and "line" in d:
            p = Problem(str(d["message"]), str(d.get("field") or ""), d.get("line"), d.get("column"))
            lines.append(p.format("<request>"))
        elif isinstance(d, dict) and "message" in d:
            where = ".".join(str(x) for x in d.get("loc", [])) or str(d.get("param") or d.get("field") or "")
            lines.append(f"{where}: {d['message']}" if where else str(d["message"]))
        else:
            lines.append(str(d))
    return lines


def exit_if_expected(exc: Exception) -> None:
    """For one of FlowForge's expected errors, a short message on stderr and its exit code; else return."""
    # The client is imported here, not at the top: httpx is slow to import for `--version`.
    # An ApiError can only exist once the client was imported, so this import costs nothing then.
    from flowforge.client import ApiError, ApiUnreachable

    if isinstance(exc, ApiUnreachable):
        fail(
            f"cannot reach the FlowForge API at {exc.url} ({exc.reason}). Is 'flowforge up' running?",
            EXIT_UNREACHABLE,
        )
    if isinstance(exc, ApiError):
        typer.echo(f"error: {exc.message}", err=True)
        for line in api_error_lines(exc.details):
            typer.echo(f"  {line}", err=True)
        raise typer.Exit(EXIT_BAD_INPUT if 400 <= exc.status < 500 else EXIT_RUN_FAILED) from None
    if isinstance(exc, DagValidationError):
        for problem in exc.problems:
            typer.echo(problem.format(exc.source), err=True)
        raise typer.Exit(EXIT_BAD_INPUT) from None


class _FlowForgeGroup(TyperGroup):
    """Turns FlowForge's expected errors into short messages and exit codes: no tracebacks."""

    def invoke(self, ctx: Any) -> Any:  # Any: click's Context, or the copy newer Typer vendors
        """Run the command, mapping errors to exit codes 1, 2 and 3."""
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except Exception as exc:
            # Exit, Abort and usage errors belong to Typer/Click (vendored in newer Typer): let them through.
            if type(exc).__module__.split(".")[0] in ("typer", "click"):
                raise
            exit_if_expected(exc)
            if os.environ.get("FLOWFORGE_DEBUG"):
                raise
            fail(f"{type(exc).__name__}: {exc} (set FLOWFORGE_DEBUG=1 for a traceback)", EXIT_RUN_FAILED)


app = typer.Typer(
    cls=_FlowForgeGroup,
    name="flowforge",
    help="FlowForge: a DAG workflow scheduler for shell-command tasks.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"flowforge {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    ctx: typer.Context,
    api_url: Annotated[
        str, typer.Option("--api-url", envvar="FLOWFORGE_API_URL", help="Base URL of the FlowForge API.")
    ] = DEFAULT_API_URL,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            envvar="FLOWFORGE_API_TOKEN",
            show_default=False,
            help="API token, sent as 'Authorization: Bearer <token>'.",
        ),
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the API's JSON instead of tables.")
    ] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """FlowForge: `flowforge up` starts everything; the other commands talk to its API."""
    ctx.obj = CliState(api_url=api_url, token=token or None, json_output=json_output)


# The order of `flowforge --help`: starting FlowForge, acting on runs, then everything else.
for _module in (server, control, commands):
    _module.register(app)


def main() -> None:
    """Console-script entry point."""
    app()
