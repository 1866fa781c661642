"""`versions` and `diff`: a stored DAG's versions, and what changed between two of them.

The sources come from the API with their secret-looking values already masked (the DAG detail's
masking), so a diff never shows a secret.
"""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING, Annotated

import typer

from flowforge.cli.group import client_command
from flowforge.cli.jsonshapes import whole_list
from flowforge.cli.state import CliState, DagArg, get_state

if TYPE_CHECKING:
    from flowforge.client import ApiClient

VersionArg = Annotated[
    int | None,
    typer.Argument(min=1, metavar="V", help="A version number.", show_default=False),
]


def register(app: typer.Typer) -> None:
    """Add these commands to the app, in the order `--help` lists them."""
    for command in (versions, diff):
        app.command()(client_command(command))


def versions(ctx: typer.Context, dag_id: DagArg) -> None:
    """List a DAG's stored versions, newest first: number, spec hash, when stored."""
    from flowforge.cli.render import KEEP, Cell, Column, Sheet, show

    state = get_state(ctx)
    with state.client() as client:
        items = client.dag_versions(dag_id)
    if state.json_output:
        latest = max((v.version for v in items), default=0)
        state.print_json(whole_list("versions", items, dag_id=dag_id, latest_version=latest))
        return
    stored_title, stored = state.clock.column("Stored", (v.created_at for v in items), year=True)
    columns = [
        Column("Ver", KEEP, right=True),
        Column("Spec hash", 8),
        Column(stored_title, 6),
        Column("", 4),
    ]
    rows: list[list[Cell]] = [
        [str(v.version), v.spec_hash[:12], at, "latest" if v.latest else ""]
        for v, at in zip(items, stored, strict=True)
    ]
    show(Sheet(f"Versions of DAG {dag_id}", columns, rows))


def _pair(client: ApiClient, dag_id: str, old: int | None, new: int | None) -> tuple[int, int]:
    """The two versions to compare: by default the previous one against the latest."""
    if old is not None and new is not None:
        return old, new
    latest = client.get_dag(dag_id).version
    if old is None:
        return max(latest - 1, 1), latest
    return old, latest


def diff(ctx: typer.Context, dag_id: DagArg, old: VersionArg = None, new: VersionArg = None) -> None:
    """Show what changed in a DAG's YAML source between two versions, as a unified diff.

    With no version, the previous one against the latest; with one, that one against the latest.
    Secret-looking values are masked as the DAG's detail masks them. Exit 2 for an unknown version.
    """
    state = get_state(ctx)
    with state.client() as client:
        v1, v2 = _pair(client, dag_id, old, new)
        a, b = client.dag_version(dag_id, v1), client.dag_version(dag_id, v2)
    lines = difflib.unified_diff(
        a.source.splitlines(keepends=True),
        b.source.splitlines(keepends=True),
        fromfile=f"{dag_id} version {v1}",
        tofile=f"{dag_id} version {v2}",
    )
    text = "".join(line if line.endswith("\n") else line + "\n" for line in lines)
    if state.json_output:
        state.print_json({"dag_id": dag_id, "from": v1, "to": v2, "diff": text})
    elif text:
        _print_diff(state, text)
    else:
        state.echo(f"DAG {dag_id}: versions {v1} and {v2} have the same source")


def _print_diff(state: CliState, text: str) -> None:
    from flowforge.cli.safetext import visible

    for line in text.splitlines():
        state.echo(visible(line))
