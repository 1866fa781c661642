"""Waiting on runs (`trigger --wait`, `wait`, `backfill`) through API restarts, with progress on stderr.

Once a wait has begun, a lost API (refused connection, broken stream, 502/503/504) is retried
with backoff (0.2 s doubling to 5 s) and the events stream resumes after the last event seen, so
a restart of `flowforge up` or of an `api` process costs a CI job nothing. Only `--timeout`
ends a wait early (`GaveUp`, exit 4). Progress goes to stderr: a live table on a terminal, one
line per change otherwise (CI logs), nothing with `--json`.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from flowforge.cli.render import Sheet, is_tty, rich_table
from flowforge.cli.tables import STATE_STYLES, tasks_sheet
from flowforge.cli.times import Clock, fmt_duration
from flowforge.client import ApiClient, ApiError, ApiUnreachable, ChangeWatcher
from flowforge.core.model import RUN_TERMINAL, TASK_TERMINAL

if TYPE_CHECKING:
    from rich.console import RenderableType

    from flowforge.api.models import RunDetail, RunOut

T = TypeVar("T")

WAIT_POLL_SECS = 0.05  # gathers a burst of changes into one fetch
SAFETY_REFRESH_SECS = 2.0  # a run is fetched at least this often, events or not
POLL_SECS = 1.0  # without the events stream
RETRY_FIRST_SECS, RETRY_MAX_SECS = 0.2, 5.0
TRANSIENT_STATUSES = (502, 503, 504)
_LIVE_ROWS = 15  # a live table beyond this many tasks shows only the busy ones


class GaveUp(Exception):
    """The `--timeout` passed before the wait ended."""


def transient(exc: Exception) -> bool:
    """True for an error a restart of the API explains: no connection, or a gateway/unavailable answer."""
    return isinstance(exc, ApiUnreachable) or (isinstance(exc, ApiError) and exc.status in TRANSIENT_STATUSES)


class Patience:
    """Calls to the API that ride out its restarts, until an optional deadline."""

    def __init__(self, timeout: float | None, say: Callable[[str], None]) -> None:
        self.timeout = timeout
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.say = say

    def left(self, most: float) -> float:
        """`most` seconds, or less when the deadline is nearer; GaveUp once it has passed."""
        if self.deadline is None:
            return most
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise GaveUp
        return min(most, left)

    def pause(self, secs: float) -> None:
        """Sleep `secs` seconds, or until the deadline and then GaveUp."""
        time.sleep(self.left(secs))
        self.left(0)

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)`, tried again with backoff while the API is away."""
        delay, lost_at = RETRY_FIRST_SECS, None
        while True:
            try:
                value = fn(*args)
            except (ApiUnreachable, ApiError) as exc:
                if not transient(exc):
                    raise
                if lost_at is None:
                    lost_at = time.monotonic()
                    limit = "" if self.timeout is None else f" (up to --timeout {self.timeout:g}s in all)"
                    self.say(f"lost the API: {_reason(exc)}; reconnecting{limit}")
                self.pause(delay)
                delay = min(delay * 2, RETRY_MAX_SECS)
                continue
            if lost_at is not None:
                self.say(f"reconnected to the API after {time.monotonic() - lost_at:.1f}s")
            return value


def _reason(exc: Exception) -> str:
    return exc.reason if isinstance(exc, ApiUnreachable) else str(exc)


# -- progress ------------------------------------------------------------------------------------------
class Progress:
    """Where waiting shows itself: `run` or `runs` with each new state, `say` a note."""

    def run(self, run: RunDetail) -> None:
        """Show one run's latest state, its tasks' too."""

    def runs(self, runs: list[RunOut]) -> None:
        """Show the latest state of several runs (a backfill)."""

    def say(self, text: str) -> None:
        """A note (lost the API, reconnected)."""

    def close(self) -> None:
        """Stop showing."""


class LineProgress(Progress):
    """One line on stderr per change of a run or a task: for CI logs and other non-terminals."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.seen: dict[tuple[str, str], str] = {}

    def _line(self, text: str) -> None:
        sys.stderr.write(f"{self.clock.stamp(time.time())[11:23]} {text}\n")
        sys.stderr.flush()

    def run(self, run: RunDetail) -> None:
        for t in run.tasks:
            if self.seen.get((run.run_id, t.task_id), "pending") != t.state:
                self.seen[(run.run_id, t.task_id)] = t.state
                failed = t.state == "failed" and t.exit_code is not None
                self._line(f"{t.task_id}: {t.state}" + (f" (exit code {t.exit_code})" if failed else ""))
        self.runs([run])

    def runs(self, runs: list[RunOut]) -> None:
        for run in runs:
            if self.seen.get((run.run_id, ""), "queued") != run.state:
                self.seen[(run.run_id, "")] = run.state
                self._line(f"run {run.run_id}: {run.state}")

    def say(self, text: str) -> None:
        self._line(text)


class LiveProgress(Progress):
    """A live view on a terminal's stderr: the run's progress, or a backfill's summary line."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.live import Live

        self.console = Console(stderr=True, highlight=False)
        self.live = Live(console=self.console, refresh_per_second=10, transient=False)
        self.live.start()

    def run(self, run: RunDetail) -> None:
        self.live.update(run_view(run, self.console.width))

    def runs(self, runs: list[RunOut]) -> None:
        self.live.update(runs_line(runs))

    def say(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False)

    def close(self) -> None:
        self.live.stop()


def progress_for(quiet: bool, clock: Clock) -> Progress:
    """Nothing when `quiet` (--json), live on a terminal, lines elsewhere."""
    if quiet:
        return Progress()
    return LiveProgress() if is_tty(sys.stderr) else LineProgress(clock)


def run_view(run: RunDetail, width: int) -> RenderableType:
    """Live view of a run: state, a bar of finished tasks, counts by state, the busy tasks."""
    from rich.console import Group
    from rich.progress_bar import ProgressBar
    from rich.text import Text

    tasks = run.tasks
    done = sum(1 for t in tasks if t.state in TASK_TERMINAL)
    head = Text.assemble(
        ("run ", "bold"),
        run.run_id,
        "  ",
        (run.dag_id, "bold"),
        "  ",
        (str(run.state), STATE_STYLES.get(run.state, "")),
        f"  {done}/{len(tasks)} tasks done  {fmt_duration(run.started_at, run.ended_at)}",
    )
    counts = Text()
    for name, n in sorted(Counter(str(t.state) for t in tasks).items()):
        counts.append(f"{name} {n}  ", style=STATE_STYLES.get(name, ""))
    busy = ("running", "queued", "up_for_retry", "failed")
    shown = tasks if len(tasks) <= _LIVE_ROWS else [t for t in tasks if t.state in busy][:_LIVE_ROWS]
    bar = ProgressBar(total=max(len(tasks), 1), completed=done, width=40)
    sheet: Sheet = tasks_sheet(shown, title="")
    return Group(head, bar, counts, rich_table(sheet, width))


def runs_line(runs: list[RunOut]) -> RenderableType:
    """`backfill: 3/7 runs done  running 2  success 3 ...`."""
    from rich.text import Text

    done = sum(r.state in RUN_TERMINAL for r in runs)
    text = Text(f"backfill: {done}/{len(runs)} runs done  ")
    for name, n in sorted(Counter(str(r.state) for r in runs).items()):
        text.append(f"{name} {n}  ", style=STATE_STYLES.get(name, ""))
    return text


# -- waiting -------------------------------------------------------------------------------------------
def wait_for_run(client: ApiClient, run: RunDetail, progress: Progress, patience: Patience) -> RunDetail:
    """Follow `run` until it ends (GaveUp at the deadline); returns the final run.

    The run is fetched again whenever the events stream reports a change (at most every
    WAIT_POLL_SECS), and every SAFETY_REFRESH_SECS regardless; without the stream it is polled.
    """
    watcher = ChangeWatcher(client, run.run_id)
    try:
        progress.run(run)
        while run.state not in RUN_TERMINAL:
            if watcher.live:
                watcher.wait(patience.left(SAFETY_REFRESH_SECS))
                patience.pause(WAIT_POLL_SECS)
            else:
                patience.pause(POLL_SECS)
            run = patience.call(client.get_run, run.run_id)
            progress.run(run)
        return run
    finally:
        watcher.close()
        progress.close()


def wait_for_runs(
    client: ApiClient, dag_id: str, run_ids: list[str], progress: Progress, patience: Patience
) -> list[RunDetail]:
    """Follow runs of one DAG until every one has ended (GaveUp at the deadline); the final runs.

    One listing of the DAG's unfinished runs a second, and one fetch of each run as it ends: the
    load on the API stays the same however many runs a backfill made.
    """
    waiting = set(run_ids)
    final: dict[str, RunDetail] = {}
    try:
        while True:
            unfinished = {r.run_id: r for r in patience.call(_unfinished_runs, client, dag_id)}
            for run_id in sorted(waiting - unfinished.keys()):
                final[run_id] = patience.call(client.get_run, run_id)
            waiting &= unfinished.keys()
            progress.runs([final[r] if r in final else unfinished[r] for r in run_ids])
            if not waiting:
                return [final[r] for r in run_ids]
            patience.pause(POLL_SECS)
    finally:
        progress.close()


def _unfinished_runs(client: ApiClient, dag_id: str) -> list[RunOut]:
    """Every queued or running run of a DAG, all pages."""
    found: list[RunOut] = []
    while True:
        page = client.list_runs(dag_id=dag_id, state="queued,running", limit=500, offset=len(found))
        found += page.runs
        if not page.has_more or not page.runs:
            return found
