"""`flowforge test FILE`: run a DAG file once, here and now, with no server and nothing left on disk.

The run itself is `flowforge.localrun.run_once`: the file's DAG (or the tasks chosen with
--task) in a store held in memory, run by the same scheduler and worker as `up`. This module
shows it: each task's output on stdout, every line prefixed with its task id; a line per state
change and a summary on stderr; with --json, one JSON object per line on stdout instead.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from flowforge.cli.commands import _parse_params
from flowforge.cli.dagfiles import load_local
from flowforge.cli.group import api_error_lines, client_command
from flowforge.cli.render import is_tty
from flowforge.cli.safetext import SGR_RESET, TerminalLog
from flowforge.cli.state import EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_OK, EXIT_RUN_FAILED, fail, get_state
from flowforge.core.errors import InvalidRequest

if TYPE_CHECKING:  # the engine loads when the command runs, not for `--help`
    from flowforge.localrun import OutputLine, RunResult, TaskChange


def register(app: typer.Typer) -> None:
    """Add this command to the app."""
    app.command(name="test")(client_command(test_dag))


def test_dag(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(metavar="FILE", help="The DAG file to run.", show_default=False)],
    task: Annotated[
        list[str] | None,
        typer.Option(
            "--task",
            "-t",
            metavar="TASK_ID",
            help="Run only this task (repeatable). Its dependencies outside the selection are treated "
            "as met, unless --upstream adds them.",
        ),
    ] = None,
    upstream: Annotated[
        bool,
        typer.Option("--upstream", help="With --task: also run every task they depend on, transitively."),
    ] = False,
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", metavar="KEY=VALUE", help="A param declared by the DAG (repeatable)."),
    ] = None,
) -> None:
    """Run a DAG file once, here, with no server: task output live, exit 0 if the run succeeded, 1 if not.

    The file is validated first (exit 2 with its problems, as `validate` shows them). Tasks run
    as a worker runs them: the same environment, retries, backoff and timeouts, in the current
    directory. Output goes to stdout, each line prefixed with its task id; state changes and a
    summary go to stderr. Nothing is stored: the run lives in memory and FLOWFORGE_HOME is not
    touched. Ctrl-C kills the running tasks and exits 130.
    """
    from flowforge.localrun import run_once, select_tasks
    from flowforge.settings import Settings

    state = get_state(ctx)
    params = _parse_params(param or [])
    spec, _ = load_local(file)  # DagValidationError: located problems, exit 2 (cli.group)
    if upstream and not task:
        raise typer.BadParameter("--upstream needs --task", param_hint="--upstream")
    try:
        spec = select_tasks(spec, task or [], upstream)
        settings = Settings.from_env()
    except InvalidRequest as exc:
        fail(exc.message, EXIT_BAD_INPUT, kind=exc.code, details=api_error_lines(exc.details))
    except ValueError as exc:
        fail(str(exc), EXIT_BAD_INPUT)
    view = JsonView() if state.json_output else TextView()
    try:
        with _engine_errors_only():
            result = run_once(spec, settings, params=params, on_output=view.output, on_change=view.change)
    except InvalidRequest as exc:  # a param the DAG does not declare, or not a scalar
        fail(exc.message, EXIT_BAD_INPUT, kind=exc.code, details=api_error_lines(exc.details))
    except KeyboardInterrupt:
        fail("interrupted: running tasks were killed", EXIT_INTERRUPTED)
    view.summary(result)
    raise typer.Exit(EXIT_OK if str(result.run.state) == "success" else EXIT_RUN_FAILED)


@contextmanager
def _engine_errors_only() -> Iterator[None]:
    """The engine's log records below ERROR left out while it runs: task states are shown instead."""
    logger = logging.getLogger("flowforge")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _secs(value: float | None) -> str:
    return "" if value is None else f"{value:.1f} s"


class TextView:
    """Output lines on stdout as `[task] line`; state changes and the summary on stderr."""

    def __init__(self) -> None:
        self.terminal = is_tty(sys.stdout)

    def output(self, line: OutputLine) -> None:
        """One line a task wrote, prefixed with its task id (made safe to show on a terminal)."""
        text = line.text
        if self.terminal:
            safe = TerminalLog()
            text = safe.feed(text) + safe.finish() + (SGR_RESET if safe.coloured else "")
        sys.stdout.write(f"[{line.task_id}] {text}\n")
        sys.stdout.flush()

    def change(self, change: TaskChange) -> None:
        """`extract: success (0.1 s)`, `load: running (attempt 2)`, `x: failed (exit code 1, 0.0 s)`."""
        what = [f"attempt {change.attempt}"] if change.attempt > 1 else []
        record = change.record
        if record is not None:
            if record.exit_code is not None and record.exit_code != 0:
                what.append(f"exit code {record.exit_code}")
            if record.started_at is not None and record.ended_at is not None:
                what.append(_secs(record.ended_at - record.started_at))
        detail = f" ({', '.join(what)})" if what else ""
        said = record.error if record is not None else None
        error = f": {said}" if said and said != f"exit code {record.exit_code if record else None}" else ""
        sys.stderr.write(f"{change.task_id}: {change.state}{detail}{error}\n")
        sys.stderr.flush()

    def summary(self, result: RunResult) -> None:
        """The run's outcome, and each task's state and attempts."""
        run = result.run
        took = run.ended_at - run.started_at if run.ended_at and run.started_at else None
        width = max((len(t.task_id) for t in result.tasks), default=0)
        lines = [f"run {run.state}" + (f" in {_secs(took)}" if took is not None else "")]
        for t in result.tasks:
            attempts = f"{t.attempt} attempt{'s' if t.attempt != 1 else ''}"
            lines.append(f"  {t.task_id:<{width}}  {t.state!s:<15}  {attempts}")
        sys.stderr.write("\n".join(lines) + "\n")
        sys.stderr.flush()


class JsonView:
    """One JSON object per line on stdout: `output`, `task` (state changes) and, last, `run`."""

    @staticmethod
    def _emit(data: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(data) + "\n")
        sys.stdout.flush()

    def output(self, line: OutputLine) -> None:
        """`{"event": "output", "task_id", "attempt", "text"}`."""
        self._emit({"event": "output", "task_id": line.task_id, "attempt": line.attempt, "text": line.text})

    def change(self, change: TaskChange) -> None:
        """`{"event": "task", "task_id", "state", "attempt", "record"}` (record: the ended attempt)."""
        record = change.record.to_dict() if change.record is not None else None
        self._emit(
            {
                "event": "task",
                "task_id": change.task_id,
                "state": str(change.state),
                "attempt": change.attempt,
                "record": record,
            }
        )

    def summary(self, result: RunResult) -> None:
        """`{"event": "run", "run": {...}, "tasks": [...]}`."""
        self._emit(
            {"event": "run", "run": result.run.to_dict(), "tasks": [t.to_dict() for t in result.tasks]}
        )
