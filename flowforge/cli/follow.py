"""The CLI's live output: waiting on runs with progress, following logs, tails of failed tasks."""

from __future__ import annotations

import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.text import Text

from flowforge.cli.tables import STATE_STYLES, fmt_duration, run_progress, state_text, tasks_table
from flowforge.client import ApiClient, ChangeWatcher, LogPage, RunDetail
from flowforge.core.model import RUN_TERMINAL, TASK_TERMINAL, RunState

WAIT_POLL_SECS = 0.05
SAFETY_REFRESH_SECS = 2.0  # a run is fetched at least this often, events or not
FOLLOW_POLL_SECS = 0.5
BACKFILL_POLL_SECS = WAIT_POLL_SECS * 5


def wait_for_run(
    client: ApiClient, run_id: str, console: Console | None, poll: float = WAIT_POLL_SECS
) -> RunDetail:
    """Follow a run until it ends; with a console, draw its progress live. Returns the final run.

    The run is fetched again whenever the events stream reports a change (at most every
    `poll` seconds), and every few seconds regardless; without the stream it is polled.
    """
    watcher = ChangeWatcher(client, run_id)
    try:
        run = client.get_run(run_id)
        live = Live(run_progress(run), console=console, refresh_per_second=10) if console else None
        with live or nullcontext():
            while run.state not in RUN_TERMINAL:
                if watcher.live:
                    watcher.wait(SAFETY_REFRESH_SECS)
                time.sleep(poll)  # also gathers a burst of changes into one fetch
                run = client.get_run(run_id)
                if live:
                    live.update(run_progress(run))
        return run
    finally:
        watcher.close()


def _runs_line(runs: list[RunDetail]) -> Text:
    """`backfill: 3/7 runs done  running 2  success 3 ...`."""
    done = sum(r.state in RUN_TERMINAL for r in runs)
    text = Text(f"backfill: {done}/{len(runs)} runs done  ")
    for name in RunState:
        n = sum(r.state == name for r in runs)
        if n:
            text.append(f"{name} {n}  ", style=STATE_STYLES.get(name, ""))
    return text


def wait_for_runs(client: ApiClient, run_ids: list[str], console: Console | None) -> list[RunDetail]:
    """Poll the runs until every one has ended; with a console, draw a one-line summary live."""

    def fetch() -> list[RunDetail]:
        return [client.get_run(r) for r in run_ids]

    runs = fetch()
    live = Live(_runs_line(runs), console=console, refresh_per_second=4) if console else None
    with live or nullcontext():
        while not all(r.state in RUN_TERMINAL for r in runs):
            time.sleep(BACKFILL_POLL_SECS)
            runs = fetch()
            if live:
                live.update(_runs_line(runs))
    if console:
        for r in runs:
            console.print(Text.assemble(f"{r.run_id}  ", state_text(r.state)))
    return runs


@dataclass(frozen=True)
class LogChunk:
    """New text of a task's log: a page read at a cursor (`page`), or text streamed as it is written."""

    run_id: str
    task_id: str
    attempt: int
    text: str
    page: LogPage | None = None

    def to_json(self) -> dict[str, Any]:
        """What `--json` prints: the API's log answer, or the streamed text with where it belongs."""
        if self.page is not None:
            return self.page.model_dump(mode="json")
        return {"run_id": self.run_id, "task_id": self.task_id, "attempt": self.attempt, "text": self.text}


def log_chunks(
    client: ApiClient,
    run_id: str,
    task_id: str,
    attempt: int | None = None,
    *,
    follow: bool = False,
    poll: float = FOLLOW_POLL_SECS,
    on_new_attempt: Callable[[int], None] | None = None,
) -> Iterator[LogChunk]:
    """Yield a task's log in pieces with text in them, reading on with the cursor.

    Without `follow`, stops when nothing more is written now. With `follow`, stops when the
    attempt is done; when no attempt was given it follows the task's retries on to the last one.
    """
    cursor = 0
    pinned = attempt
    streamed: int | None = None  # an attempt already followed to its end
    while True:
        done = True  # an attempt followed to its end has nothing more to read
        if pinned is None or pinned != streamed:
            page = client.logs(run_id, task_id, attempt=pinned, after=cursor)
            if pinned is None and page.attempt > 0:
                pinned = page.attempt  # a cursor belongs to one attempt: pin it before reading on
            cursor, done = page.cursor, page.done
            if page.text:
                yield LogChunk(run_id, task_id, page.attempt, page.text, page)
                continue
        if not follow:
            return
        if pinned is not None and not done:
            # The server streams the attempt's log as it is written, until the attempt ends.
            for text in client.follow_log(run_id, task_id, pinned, after=cursor):
                yield LogChunk(run_id, task_id, pinned, text)
            done, streamed = True, pinned
        if done:
            if attempt is not None:
                return
            task = client.get_task(run_id, task_id)
            if pinned is not None and task.attempt > pinned:
                pinned, cursor = task.attempt, 0
                if on_new_attempt:
                    on_new_attempt(pinned)
                continue
            if task.state in TASK_TERMINAL:
                return
        time.sleep(poll)


def log_tail(client: ApiClient, run_id: str, task_id: str, lines: int = 20) -> list[str]:
    """The last `lines` lines of a task's latest attempt."""
    tail: deque[str] = deque(maxlen=lines)
    partial = ""
    for chunk in log_chunks(client, run_id, task_id):
        text = partial + chunk.text
        *complete, partial = text.split("\n")
        tail.extend(complete)
    if partial:
        tail.append(partial)
    return list(tail)


def write_raw(text: str) -> None:
    """Log text to stdout exactly as written by the task."""
    sys.stdout.write(text)
    sys.stdout.flush()


def report_outcome(client: ApiClient, out: Console, run: RunDetail, tail_lines: int = 20) -> None:
    """The run's result in one line; for a failed run, its failed tasks and the end of their logs."""
    took = fmt_duration(run.started_at, run.ended_at)
    out.print(Text.assemble("run ", run.run_id, " ", state_text(run.state), f" in {took}"))
    failed = [t for t in run.tasks if t.state == "failed"]
    if not failed:
        return
    out.print(tasks_table(failed, title="Failed tasks"))
    for t in failed:
        out.print(Text(f"--- last lines of {t.task_id} (attempt {t.attempt}) ---", style="bold"))
        for line in log_tail(client, run.run_id, t.task_id, tail_lines):
            out.print(line, markup=False, highlight=False)
