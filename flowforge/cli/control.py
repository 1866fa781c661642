"""Commands that act on runs and schedules: cancel, retry, backfill.

Like `flowforge.cli.commands`, they import Rich, the tables and the client only when they run.
"""

from __future__ import annotations

from typing import Annotated

import typer

from flowforge.cli.group import client_command
from flowforge.cli.state import (
    EXIT_GAVE_UP,
    EXIT_INTERRUPTED,
    EXIT_RUN_FAILED,
    DagArg,
    RunArg,
    TimeoutOpt,
    fail,
    get_state,
)


def register(app: typer.Typer) -> None:
    """Add these commands to the app, in the order `--help` lists them."""
    for command in (cancel, retry, backfill):
        app.command()(client_command(command))


def cancel(ctx: typer.Context, run_id: RunArg) -> None:
    """Cancel a run: its running tasks are killed, the rest become cancelled."""
    state = get_state(ctx)
    with state.client() as client:
        run = client.cancel_run(run_id)
    if state.json_output:
        state.print_json(run)
        return
    killed = sum(1 for t in run.tasks if t.state == "cancelled" and t.started_at)
    state.echo(f"run {run_id} cancelled ({killed} running task(s) stopped)")


def retry(
    ctx: typer.Context,
    run_id: RunArg,
    task_id: Annotated[
        str | None,
        typer.Argument(
            metavar="TASK_ID", help="Run this task again (default: every failed task).", show_default=False
        ),
    ] = None,
    downstream: Annotated[
        bool, typer.Option("--downstream", "-d", help="Also run every task downstream of TASK_ID again.")
    ] = False,
) -> None:
    """Run failed tasks (or TASK_ID) again in the same run; earlier attempts stay in the history."""
    from flowforge.cli.render import show
    from flowforge.cli.tables import tasks_sheet

    if downstream and task_id is None:
        raise typer.BadParameter("--downstream needs a TASK_ID", param_hint="--downstream")
    state = get_state(ctx)
    with state.client() as client:
        run = client.retry_run(run_id) if task_id is None else client.retry_task(run_id, task_id, downstream)
    if state.json_output:
        state.print_json(run)
        return
    state.echo(f"run {run_id}: {len(run.cleared)} task(s) will run again: {', '.join(run.cleared)}")
    cleared = set(run.cleared)
    show(tasks_sheet([t for t in run.tasks if t.task_id in cleared], title=""))


def backfill(
    ctx: typer.Context,
    dag_id: DagArg,
    start: Annotated[
        str, typer.Option(metavar="DATE", help="First logical date, e.g. 2026-01-01 (in the DAG's timezone).")
    ],
    end: Annotated[str, typer.Option(metavar="DATE", help="Last logical date, inclusive, e.g. 2026-01-07.")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List the ticks that would get a run; create nothing.")
    ] = False,
    wait: Annotated[
        bool, typer.Option("--wait/--no-wait", help="Wait until every run ends, riding out API restarts.")
    ] = True,
    timeout: TimeoutOpt = None,
) -> None:
    """Create a run for every schedule tick from --start to --end that has none yet, paced by max_active_runs.

    The ticks and their runs go to stdout; progress to stderr. Exit 1 when a run did not
    succeed, 4 when --timeout passed first (the runs carry on).
    """
    from flowforge.cli.render import show
    from flowforge.cli.tables import backfill_sheet
    from flowforge.cli.waiting import GaveUp, Patience, progress_for, wait_for_runs

    state = get_state(ctx)
    with state.client() as client:
        result = client.backfill(dag_id, start, end, dry_run=dry_run)
        created = [t.run_id for t in result.ticks if t.run_id]
        if state.json_output and (dry_run or not wait):
            state.print_json(result)
            return
        if not state.json_output:
            show(backfill_sheet(result, state.clock))
        if dry_run or not wait or not created:
            return
        progress = progress_for(state.json_output, state.clock)
        try:
            runs = wait_for_runs(client, dag_id, created, progress, Patience(timeout, progress.say))
        except KeyboardInterrupt:
            fail(
                f"stopped waiting; the {len(created)} runs carry on (see: flowforge runs --dag {dag_id})",
                EXIT_INTERRUPTED,
            )
        except GaveUp:
            fail(
                f"gave up waiting after --timeout {timeout:g}s; the runs carry on (see: flowforge runs --dag {dag_id})",
                EXIT_GAVE_UP,
            )
    if state.json_output:
        state.print_json({**result.model_dump(mode="json"), "runs": runs})
    else:
        for r in runs:
            state.echo(f"{r.run_id}  {r.state}")
    if any(r.state != "success" for r in runs):
        raise typer.Exit(EXIT_RUN_FAILED)
