"""`schedule`: the next ticks of a stored DAG (through the API) or of a DAG file (offline).

Each tick is shown in the DAG's timezone and in UTC, with a note where a daylight-saving change
moves it, skips a time before it, or makes its time happen twice (`core.preview` says which).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from flowforge.cli.group import client_command
from flowforge.cli.state import EXIT_BAD_INPUT, CliState, fail, get_state

if TYPE_CHECKING:
    from flowforge.api.models import SchedulePreview

TargetArg = Annotated[
    str,
    typer.Argument(
        metavar="DAG|FILE",
        help="Id of a stored DAG, or a DAG file (read here: no API needed).",
        show_default=False,
    ),
]


def register(app: typer.Typer) -> None:
    """Add the command to the app."""
    app.command()(client_command(schedule))


def _is_file(target: str) -> bool:
    return target.endswith((".yaml", ".yml")) or Path(target).is_file()


def _from_file(path: Path, count: int, after: str | None) -> SchedulePreview:
    """The preview of a DAG file, computed here exactly as the API computes a stored DAG's."""
    import time

    from flowforge.api.models import SchedulePreview
    from flowforge.cli.dagfiles import load_local
    from flowforge.core.errors import DagValidationError
    from flowforge.core.preview import preview_of
    from flowforge.core.schedule import parse_instant

    try:
        spec, _ = load_local(path)
    except DagValidationError as exc:
        details = [p.format(str(path)) for p in exc.problems]
        fail(f"{path} is not a valid DAG file", EXIT_BAD_INPUT, kind="invalid_dag", details=details)
    try:
        start = time.time() if after is None else parse_instant(after, spec.timezone)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--from") from None
    found = preview_of(spec.schedule, spec.timezone, start, count)
    return SchedulePreview(dag_id=spec.id, active=True, paused=False, **found)


def _print(state: CliState, preview: SchedulePreview) -> None:
    from flowforge.cli.render import Cell, Column, Sheet, show

    for warning in preview.warnings:
        sys.stderr.write(f"warning: DAG {preview.dag_id}: {warning}\n")
    if not preview.schedule:
        state.echo(f"DAG {preview.dag_id} has no schedule: it runs only when triggered")
        return
    state.echo(f"DAG {preview.dag_id}: '{preview.schedule}' in {preview.timezone}")
    if not preview.active:
        state.echo("note: the DAG is deactivated: no run starts at these ticks until it is submitted again")
    elif preview.paused:
        state.echo("note: the DAG is paused: no run starts at these ticks until it is unpaused")
    columns = [
        Column(f"Local ({preview.timezone})", 9),
        Column("UTC", 9),
        Column("Daylight saving", 5, wrap=True),
    ]
    rows: list[list[Cell]] = [
        [f"{t.local[:19].replace('T', ' ')} {t.zone}", t.at.replace("T", " "), t.note or ""]
        for t in preview.ticks
    ]
    show(Sheet("Next ticks", columns, rows))


def schedule(
    ctx: typer.Context,
    target: TargetArg,
    count: Annotated[int, typer.Option("--count", "-n", min=1, max=100, help="How many ticks.")] = 10,
    after: Annotated[
        str | None,
        typer.Option(
            "--from",
            metavar="TIME",
            show_default=False,
            help="Start after this ISO-8601 date or date-time (in the DAG's timezone without an offset). "
            "Default: now.",
        ),
    ] = None,
) -> None:
    """Show the next schedule ticks of a DAG or DAG file, in its timezone and UTC, with DST notes.

    A tick that a daylight-saving change moves, a time it skips, and a time that happens twice are
    each noted. A DAG file is read here (no API needed); a DAG id asks the API.
    """
    state = get_state(ctx)
    if _is_file(target):
        preview = _from_file(Path(target), count, after)
    else:
        with state.client() as client:
            preview = client.dag_schedule(target, count, after)
    if state.json_output:
        for warning in preview.warnings:
            sys.stderr.write(f"warning: DAG {preview.dag_id}: {warning}\n")
        state.print_json(preview)
    else:
        _print(state, preview)
