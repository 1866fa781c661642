"""Commands that act on runs and schedules: cancel, retry, backfill.

Like `flowforge.cli.commands`, they import Rich, the tables and the client only when they run.
"""

from __future__ import annotations

from typing import Annotated

import typer

from flowforge.cli.state import EXIT_RUN_FAILED, DagArg, RunArg, get_state


def register(app: typer.Typer) -> None:
    """Add these commands to the app, in the order `--help` lists them."""
    for command in (cancel, retry, backfill):
        app.command()(command)


def cancel(ctx: typer.Context, run_id: RunArg) -> None:
    """Cancel a run: its running tasks are killed, the rest become cancelled."""
    state = get_state(ctx)
    with state.client() as client:
        run = client.cancel_run(run_id)
    if state.json_output:
        state.print_json(run)
        return
    killed = sum(1 for t in run.tasks if t.state == "cancelled" and t.started_at)
    typer.echo(f"run {run_id} cancelled ({killed} running task(s) stopped)")


def retry(
    ctx: typer.Context,
    run_id: RunArg,
    task_id: Annotated[
        str | None,
        typer.Argument(
            metavar="[TASK_ID]", help="Run this task again (default: every failed task).", show_default=False
        ),
    ] = None,
    downstream: Annotated[
        bool, typer.Option("--downstream", "-d", help="Also run every task downstream of TASK_ID again.")
    ] = False,
) -> None:
    """Run failed tasks (or TASK_ID) again in the same run; earlier attempts stay in the history."""
    from flowforge.cli.tables import tasks_table

    if downstream and task_id is None:
        raise typer.BadParameter("--downstream needs a TASK_ID", param_hint="--downstream")
    state = get_state(ctx)
    with state.client() as client:
        run = client.retry_run(run_id) if task_id is None else client.retry_task(run_id, task_id, downstream)
    if state.json_output:
        state.print_json(run)
        return
    typer.echo(f"run {run_id}: {len(run.cleared)} task(s) will run again: {', '.join(run.cleared)}")
    cleared = set(run.cleared)
    state.out.print(tasks_table([t for t in run.tasks if t.task_id in cleared], title=""))


def backfill(
    ctx: typer.Context,
    dag_id: DagArg,
    start: Annotated[str, typer.Option(help="First logical date, e.g. 2026-01-01 (in the DAG's timezone).")],
    end: Annotated[str, typer.Option(help="Last logical date, inclusive, e.g. 2026-01-07.")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List the ticks that would get a run; create nothing.")
    ] = False,
    wait: Annotated[
        bool, typer.Option("--wait/--no-wait", help="Show live progress until every run ends.")
    ] = True,
) -> None:
    """Create a run for every schedule tick from --start to --end that has none yet, paced by max_active_runs."""
    from rich.console import Console

    from flowforge.cli.follow import wait_for_runs
    from flowforge.cli.tables import backfill_table

    state = get_state(ctx)
    with state.client() as client:
        result = client.backfill(dag_id, start, end, dry_run=dry_run)
        created = [t.run_id for t in result.ticks if t.run_id]
        if state.json_output and (dry_run or not wait):
            state.print_json(result)
            return
        if not state.json_output:
            state.out.print(backfill_table(result))
        if dry_run or not wait or not created:
            return
        progress = None if state.json_output else Console(stderr=True, highlight=False)
        runs = wait_for_runs(client, created, progress)
    if state.json_output:
        state.print_json({**result.model_dump(mode="json"), "runs": runs})
    if any(r.state != "success" for r in runs):
        raise typer.Exit(EXIT_RUN_FAILED)
