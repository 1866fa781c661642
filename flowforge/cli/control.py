"""Commands that act on runs and schedules: cancel, retry, backfill."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from flowforge.cli.follow import EXIT_RUN_FAILED, WAIT_POLL_SECS
from flowforge.cli.tables import STATE_STYLES, print_json, state_text, tasks_table
from flowforge.client import ApiClient
from flowforge.core.model import RUN_TERMINAL


def _state(ctx: typer.Context) -> Any:
    """The global options (cli.CliState), set by the app's callback."""
    return ctx.find_root().obj


def cancel(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(metavar="RUN_ID", help="Id of the run.", show_default=False)],
) -> None:
    """Cancel a run: its running tasks are killed, the rest become cancelled."""
    state = _state(ctx)
    with state.client() as client:
        run = client.cancel_run(run_id)
    if state.json_output:
        print_json(state.out, run)
        return
    killed = sum(1 for t in run["tasks"] if t["state"] == "cancelled" and t.get("started_at"))
    typer.echo(f"run {run_id} cancelled ({killed} running task(s) stopped)")


def retry(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(metavar="RUN_ID", help="Id of the run.", show_default=False)],
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
    if downstream and task_id is None:
        raise typer.BadParameter("--downstream needs a TASK_ID", param_hint="--downstream")
    state = _state(ctx)
    with state.client() as client:
        run = client.retry_run(run_id) if task_id is None else client.retry_task(run_id, task_id, downstream)
    if state.json_output:
        print_json(state.out, run)
        return
    typer.echo(f"run {run_id}: {len(run['cleared'])} task(s) will run again: {', '.join(run['cleared'])}")
    state.out.print(tasks_table([t for t in run["tasks"] if t["task_id"] in set(run["cleared"])], title=""))


def backfill(
    ctx: typer.Context,
    dag_id: Annotated[str, typer.Argument(metavar="DAG", help="Id of the DAG.", show_default=False)],
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
    state = _state(ctx)
    with state.client() as client:
        result = client.backfill(dag_id, start, end, dry_run=dry_run)
        created = [t["run_id"] for t in result["ticks"] if t["run_id"]]
        if state.json_output and (dry_run or not wait):
            print_json(state.out, result)
            return
        if not state.json_output:
            state.out.print(_ticks_table(result, dry_run))
        if dry_run or not wait or not created:
            return
        runs = _wait_all(
            client, created, None if state.json_output else Console(stderr=True, highlight=False)
        )
    if state.json_output:
        print_json(state.out, {**result, "runs": runs})
    if any(r["state"] != "success" for r in runs):
        raise typer.Exit(EXIT_RUN_FAILED)


def _ticks_table(result: dict[str, Any], dry_run: bool) -> Table:
    table = Table(title=f"Backfill of {result['dag_id']}" + (" (dry run)" if dry_run else ""))
    table.add_column("Logical date")
    table.add_column("Run")
    for tick in result["ticks"]:
        what = "exists already" if tick["existed"] else (tick["run_id"] or "would be created")
        table.add_row(tick["logical_date"], what)
    if not result["ticks"]:
        table.caption = "no schedule tick in that range"
    return table


def _wait_all(client: ApiClient, run_ids: list[str], console: Console | None) -> list[dict[str, Any]]:
    """Poll the runs until every one has ended, drawing a one-line summary live."""

    def fetch() -> list[dict[str, Any]]:
        return [client.get_run(r) for r in run_ids]

    def line(runs: list[dict[str, Any]]) -> Text:
        done = sum(r["state"] in RUN_TERMINAL for r in runs)
        text = Text(f"backfill: {done}/{len(runs)} runs done  ")
        for name in ("queued", "running", "success", "failed", "cancelled"):
            n = sum(r["state"] == name for r in runs)
            if n:
                text.append(f"{name} {n}  ", style=STATE_STYLES.get(name, ""))
        return text

    runs = fetch()
    if console is None:
        while not all(r["state"] in RUN_TERMINAL for r in runs):
            time.sleep(WAIT_POLL_SECS * 5)
            runs = fetch()
        return runs
    with Live(line(runs), console=console, refresh_per_second=4) as live:
        while not all(r["state"] in RUN_TERMINAL for r in runs):
            time.sleep(WAIT_POLL_SECS * 5)
            runs = fetch()
            live.update(line(runs))
    for r in runs:
        console.print(Text.assemble(f"{r['run_id']}  ", state_text(r["state"])))
    return runs
