"""How the CLI shows things to people: Rich tables with state colours, times, durations, progress."""

from __future__ import annotations

import time
from collections import Counter
from datetime import datetime
from typing import TYPE_CHECKING, Any

from rich.console import Group, RenderableType
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from flowforge.core.model import TASK_TERMINAL

if TYPE_CHECKING:
    from flowforge.client import (
        BackfillResult,
        DagSummary,
        RunDetail,
        RunOut,
        Status,
        TaskInstanceOut,
        WorkerOut,
    )

# Colour helps, but the state name is always printed too (colour-blind users, no-colour terminals).
STATE_STYLES = {
    "success": "green",
    "failed": "red",
    "running": "yellow",
    "queued": "dim",
    "pending": "dim",
    "up_for_retry": "magenta",
    "upstream_failed": "dark_orange",
    "skipped": "grey50",
    "cancelled": "grey50",
}
_LIVE_ROWS = 15  # a live table beyond this many tasks shows only the interesting ones


def state_text(state: str | None) -> Text:
    """The state name, coloured."""
    name = str(state) if state else "-"
    return Text(name, style=STATE_STYLES.get(name, ""))


def fmt_time(ts: float | None, short: bool = False) -> str:
    """Epoch seconds as local `YYYY-MM-DD HH:MM:SS` (`MM-DD HH:MM:SS` when short), or `-`."""
    if not ts:
        return "-"
    return datetime.fromtimestamp(ts).strftime("%m-%d %H:%M:%S" if short else "%Y-%m-%d %H:%M:%S")


def fmt_duration(start: float | None, end: float | None, now: float | None = None) -> str:
    """`1.2s`, `3m04s`, `2h05m`; running things count up to now; `-` when not started."""
    if not start:
        return "-"
    secs = max(0.0, (end or now or time.time()) - start)
    if secs < 60:
        return f"{secs:.1f}s"
    if secs < 3600:
        return f"{int(secs // 60)}m{int(secs % 60):02d}s"
    return f"{int(secs // 3600)}h{int(secs % 3600 // 60):02d}m"


def _columns(table: Table, names: tuple[str, ...], rows: list[tuple[Any, ...]], keep: int) -> None:
    """Add columns; the first `keep` (ids, states, times) never wrap, so a narrow terminal folds the rest."""
    for i, name in enumerate(names):
        if i < keep:
            width = max([len(name), *(len(str(r[i])) for r in rows)]) if rows else len(name)
            table.add_column(name, no_wrap=True, min_width=min(width, 40))
        else:
            table.add_column(name, overflow="fold")
    for r in rows:
        table.add_row(*r)


def dags_table(dags: list[DagSummary]) -> Table:
    """One row per DAG (an Active column only when some DAG is inactive)."""
    show_active = any(not d.active for d in dags)
    names = (
        "DAG",
        "Ver",
        "Next run",
        "Paused",
        *(("Active",) if show_active else ()),
        "Tasks",
        "Schedule",
        "Name",
    )
    rows = []
    for d in dags:
        next_run = "-"
        if d.next_run:
            next_run = fmt_time(
                datetime.fromisoformat(d.next_run.replace("Z", "+00:00")).timestamp(), short=True
            )
        active = ("yes" if d.active else "no",) if show_active else ()
        rows.append(
            (
                d.id,
                str(d.version),
                next_run,
                "yes" if d.paused else "no",
                *active,
                str(d.task_count),
                d.schedule or "-",
                d.name or d.id,
            )
        )
    table = Table(title="DAGs", title_justify="left")
    _columns(table, names, rows, keep=len(names) - 1)
    return table


def runs_table(runs: list[RunOut]) -> Table:
    """One row per run."""
    rows = [
        (
            r.run_id,
            state_text(r.state),
            fmt_time(r.created_at, short=True),
            fmt_duration(r.started_at, r.ended_at),
            f"{r.dag_id} v{r.dag_version}",
            r.triggered_by or "-",
        )
        for r in runs
    ]
    table = Table(title="Runs", title_justify="left")
    _columns(table, ("Run", "State", "Created", "Duration", "DAG", "By"), rows, keep=4)
    return table


def tasks_table(tasks: list[TaskInstanceOut], title: str = "Tasks") -> Table:
    """One row per task instance: state, attempt, duration, exit code, error."""
    rows = [
        (
            t.task_id,
            state_text(t.state),
            str(t.attempt),
            fmt_duration(t.started_at, t.ended_at),
            "-" if t.exit_code is None else str(t.exit_code),
            t.error or "",
        )
        for t in tasks
    ]
    table = Table(title=title or None, title_justify="left")
    _columns(table, ("Task", "State", "Attempt", "Duration", "Exit", "Error"), rows, keep=5)
    return table


def run_summary(run: RunDetail) -> Table:
    """The run's own fields as a two-column grid."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column(overflow="fold")
    grid.add_row("Run", run.run_id)
    grid.add_row("DAG", f"{run.dag_id} (version {run.dag_version})")
    grid.add_row("State", state_text(run.state))
    grid.add_row("Triggered by", run.triggered_by or "-")
    grid.add_row("Created", fmt_time(run.created_at))
    grid.add_row("Started", fmt_time(run.started_at))
    grid.add_row("Ended", fmt_time(run.ended_at))
    grid.add_row("Duration", fmt_duration(run.started_at, run.ended_at))
    if run.params:
        grid.add_row("Params", ", ".join(f"{k}={v}" for k, v in run.params.items()))
    if run.logical_date is not None:
        grid.add_row("Logical date", fmt_time(run.logical_date))
    if run.waiting:
        grid.add_row("Waiting", run.waiting)
    return grid


def workers_table(workers: list[WorkerOut]) -> Table:
    """One row per worker."""
    rows = [
        (
            w.worker_id,
            w.state,
            str(w.slots),
            str(len(w.running)),
            fmt_time(w.last_heartbeat, short=True),
            str(w.pid),
            w.host,
        )
        for w in workers
    ]
    table = Table(title="Workers", title_justify="left")
    _columns(table, ("Worker", "State", "Slots", "Running", "Last heartbeat", "PID", "Host"), rows, keep=6)
    return table


def _counts(by_name: dict[str, int]) -> Text:
    """`name n` for each non-zero count, coloured by state; `none` when all are zero."""
    text = Text()
    # Zeros are left out: the API's --json has them all; people want what is there.
    for name, n in sorted(by_name.items()):
        if n:
            text.append(", " if text else "")
            text.append(f"{name} {n}", style=STATE_STYLES.get(name, ""))
    return text or Text("none")


def status_table(status: Status) -> Table:
    """Counts of DAGs, runs, tasks and workers, and the queue depth."""
    table = Table(title="FlowForge status", title_justify="left", show_header=False)
    table.add_column("What", style="bold")
    table.add_column("Counts", overflow="fold")
    table.add_row("DAGs", _counts(status.dags))
    table.add_row("Runs", _counts(status.runs))
    table.add_row("Tasks", _counts(status.tasks))
    workers = status.workers.model_dump(exclude={"total", "slots"})
    table.add_row("Workers", _counts(workers))
    table.add_row("Queue depth", str(status.queue_depth))
    ready = status.ready
    parts = {"store": ready.store, "queue": ready.queue, "scheduler": ready.scheduler}
    text = Text("ready", style="green") if ready.status == "ready" else Text("not ready", style="red")
    for part, said in parts.items():
        if said != "ok":
            text.append(f"; {part}: {said}")
    table.add_row("Ready", text)
    table.add_row("Scheduler leader", ready.leader or "none")
    return table


def backfill_table(result: BackfillResult) -> Table:
    """One row per schedule tick of a backfill: its run, or that it had one already."""
    table = Table(title=f"Backfill of {result.dag_id}" + (" (dry run)" if result.dry_run else ""))
    table.add_column("Logical date")
    table.add_column("Run")
    for tick in result.ticks:
        what = "exists already" if tick.existed else (tick.run_id or "would be created")
        table.add_row(tick.logical_date, what)
    if not result.ticks:
        table.caption = "no schedule tick in that range"
    return table


def run_progress(run: RunDetail) -> RenderableType:
    """Live view of a run: state, a bar of finished tasks, counts by state, the busy tasks."""
    tasks = run.tasks
    done = sum(1 for t in tasks if t.state in TASK_TERMINAL)
    by_state = Counter(str(t.state) for t in tasks)
    head = Text.assemble(
        ("run ", "bold"),
        run.run_id,
        "  ",
        (run.dag_id, "bold"),
        "  ",
        state_text(run.state),
        f"  {done}/{len(tasks)} tasks done  {fmt_duration(run.started_at, run.ended_at)}",
    )
    counts = Text()
    for name, n in sorted(by_state.items()):
        counts.append(f"{name} {n}  ", style=STATE_STYLES.get(name, ""))
    busy = ("running", "queued", "up_for_retry", "failed")
    shown = tasks if len(tasks) <= _LIVE_ROWS else [t for t in tasks if t.state in busy][:_LIVE_ROWS]
    bar = ProgressBar(total=max(len(tasks), 1), completed=done, width=40)
    return Group(head, bar, counts, tasks_table(shown, title=""))
