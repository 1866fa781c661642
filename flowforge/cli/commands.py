"""The commands that use a running FlowForge: trigger and wait for runs, list and show, pause, the dashboard.

Each parses its arguments, calls the API through `flowforge.client` and prints a table (or the
API's JSON with `--json`). Rich, the tables and the client are imported inside the commands:
they are slow to import, and `flowforge --version` needs none of them.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from flowforge.cli.group import client_command
from flowforge.cli.jsonshapes import whole_list
from flowforge.cli.logs import logs
from flowforge.cli.state import (
    EXIT_GAVE_UP,
    EXIT_INTERRUPTED,
    EXIT_RUN_FAILED,
    CliState,
    DagArg,
    RunArg,
    TimeoutOpt,
    fail,
    get_state,
)

if TYPE_CHECKING:
    from flowforge.api.models import RunDetail
    from flowforge.client import ApiClient


def register(app: typer.Typer) -> None:
    """Add these commands to the app, in the order `--help` lists them."""
    for command in (trigger, wait, dags, runs, run, logs, status, workers, pause, unpause, tui):
        app.command()(client_command(command))


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
        bool,
        typer.Option(
            "--wait",
            "-w",
            help="Wait for the run to end (as `flowforge wait` does); exit 0 if it succeeds, 1 if not.",
        ),
    ] = False,
    timeout: TimeoutOpt = None,
) -> None:
    """Start a run of a DAG now and print its run id.

    With --wait, the run id comes first on stdout, progress goes to stderr, and the outcome (or,
    with --json, the final run with its tasks) follows on stdout.
    """
    state = get_state(ctx)
    params = _parse_params(param or [])
    with state.client() as client:
        started = client.trigger(dag_id, params)  # unreachable here: exit 3
        if started.dag_paused and not state.json_output:
            sys.stderr.write(
                f"note: DAG {dag_id} is paused; this manual run goes ahead, scheduled runs do not\n"
            )
        if not wait:
            if state.json_output:
                state.print_json(started)
            else:
                state.echo(started.run_id)
            return
        if not state.json_output:
            state.echo(started.run_id)
        _wait_and_report(client, state, client.get_run(started.run_id), timeout)


def wait(ctx: typer.Context, run_id: RunArg, timeout: TimeoutOpt = None) -> None:
    """Wait for a run to end, riding out API restarts; exit 0 if it succeeded, 1 if not.

    Progress goes to stderr; the outcome (or, with --json, the final run with its tasks) to
    stdout. Exit 3 when the API cannot be reached at the start, 4 when --timeout passes first.
    """
    state = get_state(ctx)
    with state.client() as client:
        _wait_and_report(client, state, client.get_run(run_id), timeout)


def _wait_and_report(client: ApiClient, state: CliState, first: RunDetail, timeout: float | None) -> None:
    """Follow the run to its end, print it (with --json) or its outcome; exit 1 unless it succeeded."""
    from flowforge.cli.logs import report_outcome
    from flowforge.cli.waiting import GaveUp, Patience, progress_for, wait_for_run

    progress = progress_for(state.json_output, state.clock)
    patience = Patience(timeout, progress.say)
    try:
        final = wait_for_run(client, first, progress, patience)
    except KeyboardInterrupt:
        fail(
            f"stopped waiting; run {first.run_id} carries on (see: flowforge run {first.run_id})",
            EXIT_INTERRUPTED,
        )
    except GaveUp:
        fail(
            f"gave up waiting for run {first.run_id} after --timeout {timeout:g}s; it carries on "
            f"(see: flowforge run {first.run_id})",
            EXIT_GAVE_UP,
        )
    if state.json_output:
        state.print_json(final)
    else:
        report_outcome(client, state, final)
    if final.state != "success":
        raise typer.Exit(EXIT_RUN_FAILED)


def dags(
    ctx: typer.Context,
    all_: Annotated[bool, typer.Option("--all", "-a", help="Include deactivated DAGs.")] = False,
    stats: Annotated[
        bool,
        typer.Option(
            "--stats",
            help="Also show how long each DAG's last runs took (p50, p95 of the successful ones) "
            "and how many succeeded.",
        ),
    ] = False,
    runs: Annotated[
        int,
        typer.Option("--runs", min=1, max=500, help="With --stats: how many of each DAG's last ended runs."),
    ] = 50,
) -> None:
    """List DAGs with their version, schedule and next run.

    With --stats, also the p50 and p95 durations of the successful runs among each DAG's last
    --runs ended runs, and the share of those runs that succeeded (one request per DAG listed).
    """
    from flowforge.cli.render import show
    from flowforge.cli.tables import dags_sheet

    state = get_state(ctx)
    with state.client() as client:
        items = client.list_dags(include_inactive=all_)
        # One request per listed DAG, no more.
        measured = {d.id: client.dag_stats(d.id, runs) for d in items} if stats else None
    if state.json_output:
        listed: list[Any] = list(items)
        if measured is not None:  # each DAG as the API lists it, plus its `stats`
            listed = [{**d.model_dump(mode="json"), "stats": measured[d.id]} for d in items]
        state.print_json(whole_list("dags", listed, total=len(items)))
    else:
        show(dags_sheet(items, state.clock, measured, runs))


def runs(
    ctx: typer.Context,
    dag: Annotated[
        str | None, typer.Option("--dag", "-d", metavar="DAG", help="Only runs of this DAG.")
    ] = None,
    state_filter: Annotated[
        str | None,
        typer.Option(
            "--state",
            "-s",
            metavar="STATE",
            help="Only runs in this state (queued, running, success, failed, cancelled; comma-separated for several).",
        ),
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=1, max=500, help="How many runs, newest first.")
    ] = 20,
    offset: Annotated[int, typer.Option(min=0, help="Skip this many runs (paging).")] = 0,
) -> None:
    """List runs, newest first.

    A scheduled run shows its logical date: the schedule tick it stands for.
    """
    from flowforge.cli.render import show
    from flowforge.cli.tables import runs_sheet

    state = get_state(ctx)
    with state.client() as client:
        page = client.list_runs(dag_id=dag, state=state_filter, limit=limit, offset=offset)
    if state.json_output:
        state.print_json(page)
    else:
        show(runs_sheet(page.runs, state.clock))


def run(ctx: typer.Context, run_id: RunArg) -> None:
    """Show a run and its tasks: state, attempt, duration, exit code, outputs."""
    from flowforge.cli.render import show
    from flowforge.cli.tables import outputs_sheets, run_pairs, slow_notes, tasks_sheet

    state = get_state(ctx)
    with state.client() as client:
        detail = client.get_run(run_id)
        latest = None if state.json_output else client.get_dag(detail.dag_id).version
    if state.json_output:
        state.print_json(detail)
    else:
        tasks = tasks_sheet(detail.tasks, notes=slow_notes(detail))
        show(run_pairs(detail, state.clock, latest), tasks, *outputs_sheets(detail))


def status(ctx: typer.Context) -> None:
    """Counts of DAGs, runs and tasks by state, workers and queue depth."""
    from flowforge.cli.render import show
    from flowforge.cli.tables import status_pairs

    state = get_state(ctx)
    with state.client() as client:
        data = client.status()
    if state.json_output:
        state.print_json(data)
    else:
        show(status_pairs(data))


def workers(ctx: typer.Context) -> None:
    """List workers with host, slots, running tasks and last heartbeat."""
    from flowforge.cli.render import show
    from flowforge.cli.tables import workers_sheet

    state = get_state(ctx)
    with state.client() as client:
        items = client.workers()
    if state.json_output:
        state.print_json(whole_list("workers", items, total=len(items)))
    else:
        show(workers_sheet(items, state.clock))


def pause(ctx: typer.Context, dag_id: DagArg) -> None:
    """Stop scheduling a DAG (runs in flight carry on)."""
    _set_paused(get_state(ctx), dag_id, True)


def unpause(ctx: typer.Context, dag_id: DagArg) -> None:
    """Resume scheduling a DAG."""
    _set_paused(get_state(ctx), dag_id, False)


def _set_paused(state: CliState, dag_id: str, paused: bool) -> None:
    with state.client() as client:
        record = client.pause_dag(dag_id) if paused else client.unpause_dag(dag_id)
    if state.json_output:
        state.print_json(record)
    else:
        state.echo(f"DAG {record.id} {'paused' if paused else 'unpaused'}")


def tui(ctx: typer.Context) -> None:
    """Open the terminal dashboard: DAGs, runs, a live graph, the runs × tasks grid and logs."""
    # Here, not at the top: Textual is slow to import for the other commands.
    from flowforge.tui import run_tui

    state = get_state(ctx)
    run_tui(state.api_url, state.token)
