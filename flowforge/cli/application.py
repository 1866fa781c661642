"""The Typer app of the `flowforge` command: its global options, and every command registered in order.

Each command module defines `register(app)`: `server` (the processes of FlowForge), `control`
(cancel, retry, backfill), `dagfiles` (validate, submit) and `commands` (the other API client
commands, `logs` among them). The global options and the exit codes live in `flowforge.cli.state`;
`flowforge.cli.group` turns errors into exit codes and writes `--help`.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer
import typer.core

from flowforge import __version__
from flowforge.cli import commands, control, dagfiles, helptext, server
from flowforge.cli import explain as explain_command
from flowforge.cli import localrun as localrun_command
from flowforge.cli import schedule as schedule_command
from flowforge.cli import sync as dag_sync
from flowforge.cli import versions as versions_commands
from flowforge.cli.group import FlowForgeGroup, PlainCommand, with_global_options
from flowforge.cli.state import CliState

__all__ = ["CliState", "app"]

app = typer.Typer(
    cls=FlowForgeGroup,
    name="flowforge",
    help=helptext.APP_HELP,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


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


app.callback()(with_global_options(_main, root=True))

# The order of `flowforge --help`: starting FlowForge, acting on runs, then everything else.
for _module in (server, control, dagfiles, commands):
    _module.register(app)
dag_sync.register(app)
localrun_command.register(app)
explain_command.register(app)
schedule_command.register(app)
versions_commands.register(app)
# Every command's `--help` is FlowForge's own (see flowforge.cli.helptext), whichever module made it.
for _info in app.registered_commands:
    if _info.cls in (None, typer.core.TyperCommand):
        _info.cls = PlainCommand
