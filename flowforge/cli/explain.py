"""`flowforge explain RUN_ID TASK_ID`: why a task is in its state right now, in plain words.

Prints the API's one-line summary, then each reason as its code and its sentence (with `--json`,
the API's answer). The reasons are the server's (`flowforge.operations_explain`); times in them
are UTC. Text from tasks (an error) is shown with control characters as visible escapes.
"""

from __future__ import annotations

from typing import Annotated

import typer

from flowforge.cli.group import client_command
from flowforge.cli.safetext import visible
from flowforge.cli.state import RunArg, get_state

TaskArg = Annotated[str, typer.Argument(metavar="TASK_ID", help="Id of the task.", show_default=False)]


def register(app: typer.Typer) -> None:
    """Add the command to the app."""
    app.command()(client_command(explain))


def explain(ctx: typer.Context, run_id: RunArg, task_id: TaskArg) -> None:
    """Say why a task is in its state now: what it waits for, where it runs, or how it ended.

    Each reason has a code for scripts (upstream, trigger_rule, max_active_tasks, run_queued,
    no_worker, workers_busy, queued, retry_backoff, running, lease, worker_stale, dag_paused,
    dag_inactive, no_scheduler, ended, not_run ...) and a sentence.
    """
    state = get_state(ctx)
    with state.client() as client:
        answer = client.explain_task(run_id, task_id)
    if state.json_output:
        state.print_json(answer)
        return
    state.echo(visible(answer.summary))
    width = max((len(r.code) for r in answer.reasons), default=0)
    for reason in answer.reasons:
        state.echo(f"  {visible(reason.code).ljust(width)}  {visible(reason.message)}")
