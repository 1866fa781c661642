"""`sync`, `activate` and `deactivate`: a folder of DAG files brought into the store once, and DAGs on and off.

`sync DIR` is what `flowforge up --dags DIR` does while it runs, done once through the API (from
a CI job, say): unlike `submit` it is not all or nothing. Every file is reported on its own, the
valid ones are submitted, and the exit code is 2 when any was invalid. With `--prune` the active
DAGs that no file of the folder declares are deactivated, but only when every file was valid: a
broken file must not take its DAG away.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from flowforge.cli.dagfiles import check_files
from flowforge.cli.group import client_command
from flowforge.cli.state import EXIT_BAD_INPUT, CliState, DagArg, fail, get_state

if TYPE_CHECKING:
    from flowforge.client import ApiClient


def register(app: typer.Typer) -> None:
    """Add these commands to the app, in the order `--help` lists them."""
    for command in (sync, activate, deactivate):
        app.command()(client_command(command))


def sync(
    ctx: typer.Context,
    folder: Annotated[
        Path, typer.Argument(metavar="DIR", help="A folder of *.yaml / *.yml DAG files.", show_default=False)
    ],
    prune: Annotated[
        bool, typer.Option("--prune", help="Deactivate the active DAGs that no file in DIR declares.")
    ] = False,
) -> None:
    """Submit every valid DAG file of a folder, file by file; exit 2 if any is invalid.

    Each file is reported: what was stored (new DAG, new version, unchanged), or its problems as
    FILE:LINE:COLUMN: FIELD: MESSAGE. With --prune, active DAGs that no file declares are
    deactivated; nothing is pruned when a file is invalid.
    """
    if not folder.is_dir():
        raise typer.BadParameter(f"{folder} is not a folder", param_hint="DIR")
    state = get_state(ctx)
    results, texts = check_files([folder])
    with state.client() as client:
        _submit_valid(client, state, results, texts)
        invalid = sum(not r["valid"] for r in results)
        deactivated = _prune(client, state, results, invalid) if prune else []
    if state.json_output:
        state.print_json({"files": results, "deactivated": deactivated})
    if invalid:
        fail(f"{invalid} of {len(results)} file(s) invalid", EXIT_BAD_INPUT, kind="invalid_dag")


def _submit_valid(
    client: ApiClient, state: CliState, results: list[dict[str, Any]], texts: list[str]
) -> None:
    """Send each valid file's text (`texts` holds them in order); a refused one becomes invalid."""
    from flowforge.client import ApiError

    pending = iter(texts)
    for result in results:
        result["submitted"] = None
        if not result["valid"]:
            for p in result["problems"]:
                typer.echo(p["text"], err=True)
            continue
        try:
            record = client.submit_dag(next(pending))
        except ApiError as exc:
            if exc.status != 422:
                raise
            text = f"{result['file']}: {exc.message}"
            result.update(valid=False, problems=[{"message": exc.message, "text": text}])
            typer.echo(text, err=True)
            continue
        result["submitted"] = record.model_dump(mode="json")
        what = "new DAG" if record.created else "changed: new version" if record.changed else "unchanged"
        if not state.json_output:
            state.echo(f"submitted DAG {record.id} from {result['file']}: version {record.version} ({what})")


def _prune(client: ApiClient, state: CliState, results: list[dict[str, Any]], invalid: int) -> list[str]:
    """Deactivate the active DAGs no file declares; none when `invalid` files hide what they declare."""
    if invalid:
        typer.echo(f"not pruning: {invalid} file(s) invalid, their DAGs are left as they are", err=True)
        return []
    declared = {r["dag_id"] for r in results}
    gone = [d.id for d in client.list_dags() if d.id not in declared]
    for dag_id in gone:
        client.delete_dag(dag_id)
        if not state.json_output:
            state.echo(f"deactivated DAG {dag_id} (no file in the folder declares it)")
    return gone


def activate(ctx: typer.Context, dag_id: DagArg) -> None:
    """Activate a deactivated DAG again, at its latest version."""
    state = get_state(ctx)
    with state.client() as client:
        record = client.activate_dag(dag_id)
    if state.json_output:
        state.print_json(record)
    else:
        state.echo(f"DAG {record.id} activated (version {record.version})")


def deactivate(ctx: typer.Context, dag_id: DagArg) -> None:
    """Deactivate a DAG: no new runs; its history stays."""
    state = get_state(ctx)
    with state.client() as client:
        record = client.delete_dag(dag_id)
    if state.json_output:
        state.print_json(record)
    else:
        state.echo(f"DAG {record.id} deactivated")
