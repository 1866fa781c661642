"""The commands that use FlowForge: validate and submit DAG files, trigger and inspect runs, read logs.

Each parses its arguments, calls the API through `flowforge.client` and prints a table (or the
API's JSON with `--json`). Rich, the tables and the client are imported inside the commands:
they are slow to import, and `flowforge --version` needs none of them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from flowforge.cli.state import (
    EXIT_BAD_INPUT,
    EXIT_INTERRUPTED,
    EXIT_RUN_FAILED,
    CliState,
    DagArg,
    RunArg,
    get_state,
)
from flowforge.core.errors import DagValidationError, Problem

if TYPE_CHECKING:
    from flowforge.client import ApiClient, RunDetail
    from flowforge.core.model import DagSpec

MAX_YAML_BYTES = 1024 * 1024  # the same limit the API applies


def register(app: typer.Typer) -> None:
    """Add these commands to the app, in the order `--help` lists them."""
    for command in (validate, submit, trigger, dags, runs, run, logs, status, workers, pause, unpause, tui):
        app.command()(command)


# -- offline ---------------------------------------------------------------------------
def load_local(path: Path) -> tuple[DagSpec, str]:
    """Read and validate a DAG file: (spec, text); raises DagValidationError with located problems."""
    from flowforge.core.dagfile import (
        load_dag,  # here, not at the top: it pulls in networkx, slow for `--help`
    )

    source = str(path)
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_YAML_BYTES + 1)  # one byte over is enough to know it is too large
    except OSError as exc:
        raise DagValidationError([Problem(f"cannot read the file: {exc.strerror or exc}")], source) from None
    spec = load_dag(raw, source, max_bytes=MAX_YAML_BYTES)
    return spec, raw.decode("utf-8-sig")


def _check_file(path: Path) -> dict[str, Any]:
    """What `validate --json` says of one file."""
    try:
        spec, _ = load_local(path)
    except DagValidationError as exc:
        problems = [{**p.to_dict(), "text": p.format(str(path))} for p in exc.problems]
        return {"file": str(path), "valid": False, "dag_id": None, "tasks": 0, "problems": problems}
    return {"file": str(path), "valid": True, "dag_id": spec.id, "tasks": len(spec.tasks), "problems": []}


def validate(
    ctx: typer.Context,
    files: Annotated[list[Path], typer.Argument(help="DAG YAML files to check.", show_default=False)],
) -> None:
    """Check DAG files offline (no API needed), as CI would; exit 2 if any is invalid."""
    state = get_state(ctx)
    results = [_check_file(path) for path in files]
    if state.json_output:
        state.print_json(results)
    else:
        for r in results:
            if r["valid"]:
                typer.echo(f"ok: {r['file']} (DAG {r['dag_id']}, {r['tasks']} tasks)")
            for p in r["problems"]:
                typer.echo(p["text"])
    if not all(r["valid"] for r in results):
        raise typer.Exit(EXIT_BAD_INPUT)


# -- API clients -----------------------------------------------------------------------
def submit(
    ctx: typer.Context,
    file: Annotated[Path, typer.Option("--file", "-f", help="The DAG YAML file.", show_default=False)],
) -> None:
    """Validate a DAG file locally, then store it through the API (a changed DAG gets a new version)."""
    state = get_state(ctx)
    _, text = load_local(file)
    with state.client() as client:
        record = client.submit_dag(text)
    if state.json_output:
        state.print_json(record)
        return
    what = "new DAG" if record.created else "changed: new version" if record.changed else "unchanged"
    typer.echo(f"submitted DAG {record.id}: version {record.version} ({what})")


def _parse_params(pairs: list[str]) -> dict[str, str]:
    params: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint="--param")
        params[key.strip()] = value
    return params


def trigger(
    ctx: typer.Context,
    dag_id: DagArg,
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", metavar="KEY=VALUE", help="A param declared by the DAG (repeatable)."),
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait", "-w", help="Show live progress; exit 0 if the run succeeds, 1 if not.")
    ] = False,
) -> None:
    """Start a run of a DAG now and print its run id."""
    state = get_state(ctx)
    params = _parse_params(param or [])
    with state.client() as client:
        run = client.trigger(dag_id, params)
        if run.dag_paused and not state.json_output:
            typer.echo(
                f"note: DAG {dag_id} is paused; this manual run goes ahead, scheduled runs do not", err=True
            )
        if not wait:
            if state.json_output:
                state.print_json(run)
            else:
                typer.echo(run.run_id)
            return
        if not state.json_output:
            typer.echo(run.run_id)
        final = _wait_and_report(client, state, run.run_id)
    if final.state != "success":
        raise typer.Exit(EXIT_RUN_FAILED)


def _wait_and_report(client: ApiClient, state: CliState, run_id: str) -> RunDetail:
    """Follow the run to its end, then print it (with --json) or its outcome."""
    from rich.console import Console

    from flowforge.cli.follow import report_outcome, wait_for_run

    # Progress goes to stderr so that `RUN=$(flowforge trigger --wait ...)` still captures the id.
    progress = None if state.json_output else Console(stderr=True, highlight=False)
    try:
        final = wait_for_run(client, run_id, progress)
    except KeyboardInterrupt:
        typer.echo(f"stopped waiting; run {run_id} carries on (see: flowforge run {run_id})", err=True)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    if state.json_output:
        state.print_json(final)
    else:
        report_outcome(client, state.out, final)
    return final


def dags(
    ctx: typer.Context,
    all_: Annotated[bool, typer.Option("--all", "-a", help="Include deactivated DAGs.")] = False,
) -> None:
    """List DAGs with their version, schedule and next run."""
    from flowforge.cli.tables import dags_table

    state = get_state(ctx)
    with state.client() as client:
        items = client.list_dags(include_inactive=all_)
    state.emit({"dags": items}, dags_table(items))


def runs(
    ctx: typer.Context,
    dag: Annotated[str | None, typer.Option("--dag", "-d", help="Only runs of this DAG.")] = None,
    state_filter: Annotated[
        str | None,
        typer.Option(
            "--state",
            "-s",
            help="Only runs in this state (queued, running, success, failed, cancelled; comma-separated for several).",
        ),
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=1, max=500, help="How many runs, newest first.")
    ] = 20,
    offset: Annotated[int, typer.Option(min=0, help="Skip this many runs (paging).")] = 0,
) -> None:
    """List runs, newest first."""
    from flowforge.cli.tables import runs_table

    state = get_state(ctx)
    with state.client() as client:
        page = client.list_runs(dag_id=dag, state=state_filter, limit=limit, offset=offset)
    state.emit(page, runs_table(page.runs))


def run(ctx: typer.Context, run_id: RunArg) -> None:
    """Show a run and its tasks: state, attempt, duration, exit code."""
    from flowforge.cli.tables import run_summary, tasks_table

    state = get_state(ctx)
    with state.client() as client:
        detail = client.get_run(run_id)
    if state.json_output:
        state.print_json(detail)
    else:
        state.out.print(run_summary(detail))
        state.out.print(tasks_table(detail.tasks))


def logs(
    ctx: typer.Context,
    run_id: RunArg,
    task_id: Annotated[str, typer.Argument(metavar="TASK_ID", help="Id of the task.", show_default=False)],
    attempt: Annotated[int | None, typer.Option(min=1, help="Attempt number (default: the latest).")] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new output until done.")
    ] = False,
) -> None:
    """Print a task's log as raw text (--json: one JSON object per chunk)."""
    from flowforge.cli.follow import log_chunks, write_raw

    state = get_state(ctx)

    def announce(n: int) -> None:
        if not state.json_output:
            typer.echo(f"--- attempt {n} ---", err=True)

    with state.client() as client:
        for chunk in log_chunks(client, run_id, task_id, attempt, follow=follow, on_new_attempt=announce):
            if state.json_output:
                typer.echo(json.dumps(chunk.to_json()))
            else:
                write_raw(chunk.text)


def status(ctx: typer.Context) -> None:
    """Counts of DAGs, runs and tasks by state, workers and queue depth."""
    from flowforge.cli.tables import status_table

    state = get_state(ctx)
    with state.client() as client:
        data = client.status()
    state.emit(data, status_table(data))


def workers(ctx: typer.Context) -> None:
    """List workers with host, slots, running tasks and last heartbeat."""
    from flowforge.cli.tables import workers_table

    state = get_state(ctx)
    with state.client() as client:
        items = client.workers()
    state.emit({"workers": items}, workers_table(items))


def pause(ctx: typer.Context, dag_id: DagArg) -> None:
    """Stop scheduling a DAG (runs in flight carry on)."""
    _set_paused(ctx, dag_id, True)


def unpause(ctx: typer.Context, dag_id: DagArg) -> None:
    """Resume scheduling a DAG."""
    _set_paused(ctx, dag_id, False)


def _set_paused(ctx: typer.Context, dag_id: str, paused: bool) -> None:
    state = get_state(ctx)
    with state.client() as client:
        record = client.pause_dag(dag_id) if paused else client.unpause_dag(dag_id)
    if state.json_output:
        state.print_json(record)
    else:
        typer.echo(f"DAG {record.id} {'paused' if paused else 'unpaused'}")


def tui(ctx: typer.Context) -> None:
    """Open the terminal dashboard: DAGs, runs, a live graph, the runs × tasks grid and logs."""
    from flowforge.tui import (
        run_tui,  # here, not at the top: Textual is slow to import for the other commands
    )

    state = get_state(ctx)
    run_tui(state.api_url, state.token)
