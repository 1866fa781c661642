"""The Click classes under the Typer app: global options in both places, plain help, errors as exit codes.

- `FlowForgeGroup` (the app): usage errors and FlowForge's expected errors turned into a short
  message (or JSON with `--json`) and an exit code, never a traceback; `helptext`'s `--help`.
- `PlainCommand`: every command; its `--help` and usage line are `helptext`'s.
- `client_command`: a command that also takes the global options after its name
  (`flowforge runs --json`), which then win over those given before it.

Typer has vendored Click in newer versions: the Click module is the one Typer's classes use.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import os
import sys
from collections.abc import Callable, Sequence
from typing import Annotated, Any

import typer
import typer.core

from flowforge.cli import helptext
from flowforge.cli.state import (
    EXIT_BAD_INPUT,
    EXIT_INTERRUPTED,
    EXIT_RUN_FAILED,
    EXIT_UNREACHABLE,
    CliState,
    errors_as_json,
    fail,
    get_state,
)
from flowforge.core.errors import DagValidationError, Problem

click: Any = getattr(typer.core, "_click", None) or importlib.import_module("click")


def client_command(command: Callable[..., Any]) -> Callable[..., Any]:
    """`command` taking the global options after its name too (`flowforge runs --json`).

    Given there, they win over those given before the command. The command itself never sees
    them: it reads `get_state(ctx)`.
    """
    return with_global_options(command, root=False)


def with_global_options(command: Callable[..., Any], *, root: bool) -> Callable[..., Any]:
    """`command` with the global options added to its signature (Typer reads it); its first
    parameter must be the `ctx`. On the root they make the `CliState`; on a command they override it.
    """
    signature = inspect.signature(command, eval_str=True)  # Typer reads the annotations' objects
    annotations = global_annotations(root)
    extra = [
        inspect.Parameter(
            o.dest,
            inspect.Parameter.KEYWORD_ONLY,
            default=False if o.metavar is None else (o.default if root else None),
            annotation=annotations[o.dest],
        )
        for o in helptext.GLOBAL_OPTIONS
    ]
    params = [*signature.parameters.values(), *extra]

    @functools.wraps(command)
    def run(**kwargs: Any) -> Any:
        given = {dest: kwargs.pop(dest, None) for dest in helptext.GLOBAL_DESTS}
        ctx = kwargs["ctx"]
        if root:
            ctx.obj = CliState(api_url=helptext.DEFAULT_API_URL, token=None, json_output=False)
        get_state(ctx).override(**given)
        return command(**kwargs)

    run.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
    run.__annotations__ = {p.name: p.annotation for p in params if p.annotation is not p.empty}
    return run


def global_annotations(root: bool) -> dict[str, Any]:
    """The Typer annotation of each global option: with env vars and help on the root only."""
    annotations: dict[str, Any] = {}
    for o in helptext.GLOBAL_OPTIONS:
        envvar = o.envvar if root else None
        if o.metavar is None:
            annotations[o.dest] = Annotated[bool, typer.Option(o.flag, help=o.help, show_default=False)]
        else:
            option = typer.Option(o.flag, metavar=o.metavar, envvar=envvar, help=o.help, show_default=False)
            annotations[o.dest] = Annotated[str | None, option]
    return annotations


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
    if "flowforge.client" in sys.modules:
        from flowforge.client import ApiError, ApiUnreachable

        if isinstance(exc, ApiUnreachable):
            fail(
                f"cannot reach the FlowForge API at {exc.url} ({exc.reason}). Is 'flowforge up' running?",
                EXIT_UNREACHABLE,
            )
        if isinstance(exc, ApiError):
            code = EXIT_BAD_INPUT if 400 <= exc.status < 500 else EXIT_RUN_FAILED
            fail(exc.message, code, kind=exc.code, details=api_error_lines(exc.details))
    if isinstance(exc, DagValidationError):
        fail(
            f"{exc.source}: {len(exc.problems)} problem(s)",
            EXIT_BAD_INPUT,
            kind="invalid_dag",
            details=[p.format(exc.source) for p in exc.problems],
        )


def _json_requested(args: list[str]) -> bool:
    """`--json` anywhere before a `--`: errors from parsing on are JSON too."""
    return "--json" in (args[: args.index("--")] if "--" in args else args)


def show_usage_error(exc: Any) -> None:
    """A usage error as Click shows it (usage, hint, message), or as a JSON error with `--json`."""
    from flowforge.cli.state import _ErrorFormat, error_text

    if _ErrorFormat.json:
        sys.stderr.write(error_text(exc.format_message(), EXIT_BAD_INPUT, kind="usage") + "\n")
        return
    ctx = exc.ctx
    if ctx is not None:
        sys.stderr.write(f"{ctx.get_usage()}\nTry '{ctx.command_path} --help' for help.\n\n")
    sys.stderr.write(f"Error: {exc.format_message()}\n")


class PlainCommand(typer.core.TyperCommand):
    """A command whose `--help` and usage line are FlowForge's own (`helptext`)."""

    def format_usage(self, ctx: Any, formatter: Any) -> None:
        """`Usage: flowforge NAME [OPTIONS] ARGS`."""
        formatter.write(helptext.usage_line(ctx.command_path, self.get_params(ctx)) + "\n")

    def format_help(self, ctx: Any, formatter: Any) -> None:
        """The whole help, in plain text."""
        formatter.write(helptext.command_help(ctx.command_path, self.help, self.get_params(ctx)))


class FlowForgeGroup(typer.core.TyperGroup):
    """The app: global options, plain help, and FlowForge's errors as exit codes (no tracebacks)."""

    def format_usage(self, ctx: Any, formatter: Any) -> None:
        """`Usage: flowforge [OPTIONS] COMMAND [ARGS]...`."""
        formatter.write(helptext.usage_line(ctx.command_path, [], group=True) + "\n")

    def format_help(self, ctx: Any, formatter: Any) -> None:
        """`flowforge --help`: the same text the fast path in `flowforge.cli.main` prints."""
        # In registration order (Click's own listing is alphabetical).
        commands = [(name, first_line(c.help)) for name, c in self.commands.items() if not c.hidden]
        formatter.write(helptext.root_help(commands))

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        """Run the app; usage errors in FlowForge's format (JSON with `--json`), the exit code returned."""
        argv = list(sys.argv[1:] if args is None else args)
        errors_as_json(_json_requested(argv))
        try:
            code = super().main(
                argv, prog_name or "flowforge", complete_var, False, windows_expand_args, **extra
            )
        except click.exceptions.ClickException as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":
                sys.stdout.write(exc.ctx.get_help() + "\n")
            elif isinstance(exc, click.exceptions.UsageError):
                show_usage_error(exc)
            else:
                sys.stderr.write(f"error: {exc.format_message()}\n")
            code = exc.exit_code
        except typer.Abort:  # Click's, wherever this Typer keeps it
            sys.stderr.write("Aborted!\n")
            code = 1
        code = code if isinstance(code, int) else 0
        if standalone_mode:
            sys.exit(code)
        return code

    def invoke(self, ctx: Any) -> Any:
        """Run the command, mapping errors to exit codes 1, 2, 3 (and 130 on Ctrl-C)."""
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            fail("interrupted", EXIT_INTERRUPTED)
        except Exception as exc:
            # Exit, Abort and usage errors belong to Typer/Click (vendored in newer Typer): let them through.
            if type(exc).__module__.split(".")[0] in ("typer", "click"):
                raise
            exit_if_expected(exc)
            if os.environ.get("FLOWFORGE_DEBUG"):
                raise
            fail(f"{type(exc).__name__}: {exc} (set FLOWFORGE_DEBUG=1 for a traceback)", EXIT_RUN_FAILED)


def first_line(text: str | None) -> str:
    """The first line of a docstring: the command's summary in `flowforge --help`."""
    return (text or "").strip().split("\n\n")[0].replace("\n", " ").strip()
