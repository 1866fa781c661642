"""The CLI's live output: waiting on a run with progress, following logs, tails of failed tasks."""

from __future__ import annotations

import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.live import Live
from rich.text import Text

from flowforge.cli.tables import fmt_duration, run_progress, state_text, tasks_table
from flowforge.client import ApiClient, ApiError, ChangeWatcher
from flowforge.core.errors import Problem
from flowforge.core.model import RUN_TERMINAL, TASK_TERMINAL

EXIT_OK, EXIT_RUN_FAILED, EXIT_BAD_INPUT, EXIT_UNREACHABLE = 0, 1, 2, 3
WAIT_POLL_SECS = 0.05
SAFETY_REFRESH_SECS = 2.0  # a run is fetched at least this often, events or not
FOLLOW_POLL_SECS = 0.5


def fail(message: str, code: int) -> NoReturn:
    """Print `error: message` to stderr and exit with `code`."""
    # typer.echo, not Rich: a URL or a path must not be re-wrapped or read as markup.
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def wait_for_run(
    client: ApiClient, run_id: str, console: Console | None, poll: float = WAIT_POLL_SECS
) -> dict[str, Any]:
    """Follow a run until it ends; with a console, draw its progress live. Returns the final run.

    The run is fetched again whenever the events stream reports a change (at most every
    `poll` seconds), and every few seconds regardless; without the stream it is polled.
    """
    watcher = ChangeWatcher(client, run_id)
    try:
        run = client.get_run(run_id)
        live = Live(run_progress(run), console=console, refresh_per_second=10) if console else None
        with live or nullcontext():
            while run["state"] not in RUN_TERMINAL:
                if watcher.live:
                    watcher.wait(SAFETY_REFRESH_SECS)
                time.sleep(poll)  # also gathers a burst of changes into one fetch
                run = client.get_run(run_id)
                if live:
                    live.update(run_progress(run))
        return run
    finally:
        watcher.close()


def log_chunks(
    client: ApiClient,
    run_id: str,
    task_id: str,
    attempt: int | None = None,
    *,
    follow: bool = False,
    poll: float = FOLLOW_POLL_SECS,
    on_new_attempt: Callable[[int], None] | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield the log answers of a task with text in them, reading on with the cursor.

    Without `follow`, stops when nothing more is written now. With `follow`, stops when the
    attempt is done; when no attempt was given it follows the task's retries on to the last one.
    """
    cursor = 0
    pinned = attempt
    streamed: int | None = None  # an attempt already followed to its end
    while True:
        if pinned is not None and pinned == streamed:
            chunk = {"attempt": pinned, "cursor": cursor, "text": "", "done": True}
        else:
            chunk = client.logs(run_id, task_id, attempt=pinned, after=cursor)
        if pinned is None and chunk["attempt"] > 0:
            pinned = chunk["attempt"]  # a cursor belongs to one attempt: pin it before reading on
        cursor = chunk["cursor"]
        if chunk["text"]:
            yield chunk
            continue
        if not follow:
            return
        if pinned is not None and not chunk["done"]:
            # The server streams the attempt's log as it is written, until the attempt ends.
            for text in client.follow_log(run_id, task_id, pinned, after=cursor):
                yield {"run_id": run_id, "task_id": task_id, "attempt": pinned, "text": text}
            chunk["done"], streamed = True, pinned
        if chunk["done"]:
            if attempt is not None:
                return
            task = client.get_task(run_id, task_id)
            if pinned is not None and task["attempt"] > pinned:
                pinned, cursor = task["attempt"], 0
                if on_new_attempt:
                    on_new_attempt(pinned)
                continue
            if task["state"] in TASK_TERMINAL:
                return
        time.sleep(poll)


def log_tail(client: ApiClient, run_id: str, task_id: str, lines: int = 20) -> list[str]:
    """The last `lines` lines of a task's latest attempt."""
    tail: deque[str] = deque(maxlen=lines)
    partial = ""
    for chunk in log_chunks(client, run_id, task_id):
        text = partial + chunk["text"]
        *complete, partial = text.split("\n")
        tail.extend(complete)
    if partial:
        tail.append(partial)
    return list(tail)


def write_raw(text: str) -> None:
    """Log text to stdout exactly as written by the task."""
    sys.stdout.write(text)
    sys.stdout.flush()


def report_outcome(client: ApiClient, out: Console, run: dict[str, Any], tail_lines: int = 20) -> None:
    """The run's result in one line; for a failed run, its failed tasks and the end of their logs."""
    took = fmt_duration(run.get("started_at"), run.get("ended_at"))
    out.print(Text.assemble("run ", run["run_id"], " ", state_text(run["state"]), f" in {took}"))
    failed = [t for t in run.get("tasks", []) if t.get("state") == "failed"]
    if not failed:
        return
    out.print(tasks_table(failed, title="Failed tasks"))
    for t in failed:
        out.print(Text(f"--- last lines of {t['task_id']} (attempt {t.get('attempt')}) ---", style="bold"))
        for line in log_tail(client, run["run_id"], t["task_id"], tail_lines):
            out.print(line, markup=False, highlight=False)


def api_error_lines(exc: ApiError) -> list[str]:
    """The details of an API error answer, one readable line each (DAG problems as file:line:col)."""
    lines = []
    for d in exc.details:
        if isinstance(d, dict) and "message" in d and "line" in d:
            p = Problem(str(d["message"]), str(d.get("field") or ""), d.get("line"), d.get("column"))
            lines.append(p.format("<request>"))
        elif isinstance(d, dict) and "message" in d:
            where = ".".join(str(x) for x in d.get("loc", [])) or str(d.get("param") or d.get("field") or "")
            lines.append(f"{where}: {d['message']}" if where else str(d["message"]))
        else:
            lines.append(str(d))
    return lines
