"""The Typer app of the `flowforge` command: its global options, and every command registered in order.

Each command module defines `register(app)`: `server` (the processes of FlowForge), `control`
(cancel, retry, backfill), `dagfiles` (validate, submit), `commands` (the other API client
commands, `logs` among them) and one module per newer command. The global options and the exit
codes live in `flowforge.cli.state`; `flowforge.cli.group` turns errors into exit codes and
writes `--help`.

A command line that names a command builds an app with only that command's module (`run`): a
CI job calls the CLI hundreds of times, and importing the other modules would cost each call
more than the command itself. `app` (every command) is built on first use of the name.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from typing import Annotated, Any

import typer
import typer.core

from flowforge import __version__
from flowforge.cli import helptext
from flowforge.cli.group import FlowForgeGroup, PlainCommand, with_global_options
from flowforge.cli.state import CliState

__all__ = ["COMMAND_MODULES", "CliState", "build", "run"]

# The module of `flowforge.cli` that registers each command, in the order of `flowforge --help`:
# starting FlowForge, acting on runs, then everything else. A test checks it against `helptext.COMMANDS`.
COMMAND_MODULES: dict[str, str] = {
    **dict.fromkeys(("up", "api", "scheduler", "worker"), "server"),
    **dict.fromkeys(("cancel", "retry", "backfill"), "control"),
    **dict.fromkeys(("validate", "submit"), "dagfiles"),
    **dict.fromkeys(
        ("trigger", "wait", "dags", "runs", "run", "logs", "status", "workers", "pause", "unpause", "tui"),
        "commands",
    ),
    **dict.fromkeys(("sync", "activate", "deactivate"), "sync"),
    "test": "localrun",
    "explain": "explain",
    "schedule": "schedule",
    **dict.fromkeys(("versions", "diff"), "versions"),
    "completion": "completion",
    "prune": "prune",
}


def _version(value: bool) -> None:
    if value:
        sys.stdout.write(f"flowforge {__version__}\n")
        raise typer.Exit()


def _main(
    ctx: typer.Context,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help=helptext.VERSION_HELP)
    ] = False,
) -> None:
    """FlowForge: `flowforge up` starts everything; the other commands talk to its API."""


def build(command: str | None = None) -> typer.Typer:
    """The app with every command, or only the commands of `command`'s module when it names one."""
    new = typer.Typer(
        cls=FlowForgeGroup,
        name="flowforge",
        help=helptext.APP_HELP,
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
    )
    new.callback()(with_global_options(_main, root=True))
    modules = [COMMAND_MODULES[command]] if command in COMMAND_MODULES else COMMAND_MODULES.values()
    for module in dict.fromkeys(modules):
        importlib.import_module(f"flowforge.cli.{module}").register(new)
    # Every command's `--help` is FlowForge's own (see flowforge.cli.helptext), whichever module made it.
    for info in new.registered_commands:
        if info.cls in (None, typer.core.TyperCommand):
            info.cls = PlainCommand
    return new


def command_named(argv: Sequence[str]) -> str | None:
    """The command an argument list names, past the global options; None when it names none."""
    with_value = {o.flag for o in helptext.GLOBAL_OPTIONS if o.metavar is not None}
    flags = {o.flag for o in helptext.GLOBAL_OPTIONS if o.metavar is None}
    args = iter(argv)
    for arg in args:
        if arg in with_value:
            next(args, None)
        elif arg in flags or arg.split("=", 1)[0] in with_value:
            continue
        else:
            return None if arg.startswith("-") else arg
    return None


def run(argv: Sequence[str]) -> Any:
    """`flowforge ARGV`: the app of the command the arguments name (every command when none).

    Started by the shell to complete a command line (`flowforge completion`), every command.
    """
    from flowforge.cli import completion

    if completion.requested():
        completion.prepare()
        return build()(args=list(argv), prog_name="flowforge")
    return build(command_named(argv))(args=list(argv), prog_name="flowforge")


def __getattr__(name: str) -> Any:
    if name == "app":  # built once, on first use
        globals()["app"] = full = build()
        return full
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
