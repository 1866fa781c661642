"""Task logs for people and CI: the `logs` command, and a run's outcome with its failed tasks' log tails.

`flowforge logs RUN_ID TASK_ID` prints one task's log; without TASK_ID, every task's that ran,
each after a `==> TASK (attempt N, STATE) <==` line; with `--failed`, only the failed tasks'.
How a log reaches stdout (as written to a pipe, made safe for a terminal) is `follow.LogOutput`'s.
A task's stdout and stderr are stored as one stream, in the order they were written.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Annotated

import typer

from flowforge.cli.state import EXIT_BAD_INPUT, CliState, RunArg, fail, get_state

if TYPE_CHECKING:
    from flowforge.api.models import RunDetail, TaskInstanceOut
    from flowforge.cli.follow import LogOutput
    from flowforge.client import ApiClient

TASK_HELP = "Id of the task (default: every task that ran, each under a heading)."
TIMESTAMPS_HELP = (
    "Start each line with the time it reached this command (ISO 8601; local zone, or --utc). "
    "FlowForge keeps no write time per line: text already written shows when it was read; with "
    "--follow, new lines show when they arrived (within about 0.2 s of being written)."
)


def logs(
    ctx: typer.Context,
    run_id: RunArg,
    task_id: Annotated[
        str | None, typer.Argument(metavar="TASK_ID", help=TASK_HELP, show_default=False)
    ] = None,
    attempt: Annotated[
        int | None, typer.Option(min=1, help="Attempt number (default: the latest). Needs TASK_ID.")
    ] = None,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow", "-f", help="Keep printing new output until the task is done. Needs TASK_ID."
        ),
    ] = False,
    failed: Annotated[
        bool, typer.Option("--failed", help="Only the failed tasks' logs, each under a heading.")
    ] = False,
    timestamps: Annotated[bool, typer.Option("--timestamps", "-t", help=TIMESTAMPS_HELP)] = False,
) -> None:
    """Print task logs: one task's, every failed task's (--failed), or every task's.

    To a terminal, control characters in the log (but colours) are shown as escapes such as
    \\x1b; to a pipe or a file the log is written exactly as the task wrote it. With --json, one
    JSON object per piece of log. A task's stdout and stderr are one stream, in the order written.
    """
    if task_id is not None and failed:
        raise typer.BadParameter("give a TASK_ID or --failed, not both", param_hint="--failed")
    if task_id is None and (follow or attempt is not None):
        raise typer.BadParameter("--follow and --attempt need a TASK_ID", param_hint="TASK_ID")
    from flowforge.cli.follow import LogOutput

    state = get_state(ctx)
    output = LogOutput(state.clock if timestamps else None)
    with state.client() as client:
        run = client.get_run(run_id)  # an unknown run: "no run RUN_ID", exit 2
        if task_id is not None:
            _known_task(run, task_id)
            _print_log(client, state, output, run_id, task_id, attempt, follow)
            output.end()
            return
        chosen = [t for t in run.tasks if (t.state == "failed" if failed else t.attempt > 0)]
        if not chosen:
            what = "no failed task" if failed else "no task has run yet"
            sys.stderr.write(f"{what} in run {run_id} ({run.state})\n")
        for t in chosen:
            if not state.json_output:
                output.heading(heading(t))
            _print_log(client, state, output, run_id, t.task_id, None, False)
        output.end()


def heading(task: TaskInstanceOut) -> str:
    """`==> extract (attempt 2, failed, exit code 7) <==`, as `tail` heads each of several files."""
    exit_code = "" if task.exit_code is None else f", exit code {task.exit_code}"
    return f"==> {task.task_id} (attempt {task.attempt}, {task.state}{exit_code}) <=="


def _known_task(run: RunDetail, task_id: str) -> None:
    if all(t.task_id != task_id for t in run.tasks):
        names = ", ".join(t.task_id for t in run.tasks[:20]) + (", ..." if len(run.tasks) > 20 else "")
        fail(
            f"no task {task_id!r} in run {run.run_id!r} (its tasks: {names})",
            EXIT_BAD_INPUT,
            kind="not_found",
        )


def _print_log(
    client: ApiClient,
    state: CliState,
    output: LogOutput,
    run_id: str,
    task_id: str,
    attempt: int | None,
    follow: bool,
) -> None:
    from flowforge.cli.follow import log_chunks

    def announce(n: int) -> None:
        if not state.json_output:
            output.end()
            sys.stderr.write(f"--- attempt {n} ---\n")

    for chunk in log_chunks(client, run_id, task_id, attempt, follow=follow, on_new_attempt=announce):
        if state.json_output:
            sys.stdout.write(json.dumps(chunk.to_json()) + "\n")
            sys.stdout.flush()
        else:
            output.write(chunk.text, chunk.received)


def report_outcome(client: ApiClient, state: CliState, run: RunDetail, tail_lines: int = 20) -> None:
    """The run's result in one line; for a failed run, its failed tasks and the end of their logs."""
    from flowforge.cli.follow import LogOutput, log_tail
    from flowforge.cli.render import show
    from flowforge.cli.tables import tasks_sheet
    from flowforge.cli.times import fmt_duration

    took = fmt_duration(run.started_at, run.ended_at)
    state.echo(f"run {run.run_id} {run.state} in {took}")
    failed = [t for t in run.tasks if t.state == "failed"]
    if not failed:
        return
    sheet = tasks_sheet(failed, title="Failed tasks")
    sheet.plain_title = True
    show(sheet)
    from flowforge.client import ApiError, ApiUnreachable

    output = LogOutput()
    for t in failed:
        output.heading(f"--- last lines of {t.task_id} (attempt {t.attempt}) ---")
        try:
            lines = log_tail(client, run.run_id, t.task_id, tail_lines)
        except (ApiError, ApiUnreachable) as exc:  # the outcome stands; only its log is missing
            lines = [f"(could not read the log: {exc})"]
        for line in lines:
            output.write(line + "\n")
        output.end()
