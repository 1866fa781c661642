"""What the CLI shows of each answer: the columns of DAGs, runs, tasks and workers, status, backfills.

Each function turns API models into a `render.Sheet` (or key/value pairs); `render.show` prints
it as a Rich table on a terminal or as plain aligned text in a pipe. Column priorities say what a
narrow terminal drops first. Times go through `times.Clock`: local time or UTC, zone named.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from flowforge.cli.render import KEEP, Cell, Column, Sheet, Styled
from flowforge.cli.times import Clock, fmt_duration, parse_iso
from flowforge.core.durations import secs_text

if TYPE_CHECKING:
    from flowforge.api.models import (
        BackfillResult,
        DagStats,
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

Pairs = tuple[str, list[tuple[str, Cell]]]
# A task output's value (up to 64 KiB) is cut to this many characters in a table.
MAX_VALUE_CHARS = 200


def state_cell(state: str | None) -> Styled:
    """The state name, coloured on a terminal."""
    name = str(state) if state else "-"
    return Styled(name, STATE_STYLES.get(name, ""))


def _stats_cells(stats: DagStats | None) -> list[Cell]:
    """p50, p95 and success rate of a DAG's last ended runs; `-` where there is nothing to tell."""
    if stats is None or not stats.count:
        return ["-", "-", "-"]
    p50, p95, rate = stats.p50_secs, stats.p95_secs, stats.success_rate or 0.0
    success = f"{rate:.0%} of {stats.count}"
    return [
        "-" if p50 is None else secs_text(p50),
        "-" if p95 is None else secs_text(p95),
        Styled(success, "green" if rate == 1 else "red" if rate < 0.5 else "yellow"),
    ]


def dags_sheet(
    dags: list[DagSummary], clock: Clock, stats: Mapping[str, DagStats] | None = None, runs: int = 0
) -> Sheet:
    """One row per DAG (an Active column only when some DAG is inactive).

    With `stats` (by DAG id, over each one's last `runs` ended runs): the p50 and p95 durations of
    its successful runs and its success rate too.
    """
    show_active = any(not d.active for d in dags)
    next_title, next_runs = clock.column("Next run", (parse_iso(d.next_run) for d in dags))
    columns = [
        Column("DAG", KEEP),
        Column("Ver", 2, right=True),
        Column(next_title, 6),
        Column("Paused", 8),
        *([Column("Active", 7)] if show_active else []),
        Column("Tasks", 1, right=True),
        Column("Schedule", 4),
        Column("Name", 3, wrap=True),
    ]
    if stats is not None:
        columns[1:1] = [Column("p50", 7, right=True), Column("p95", 7, right=True), Column("Success", 7)]
    rows: list[list[Cell]] = []
    for d, next_run in zip(dags, next_runs, strict=True):
        active: list[Cell] = ["yes" if d.active else "no"] if show_active else []
        measured = [] if stats is None else _stats_cells(stats.get(d.id))
        rows.append(
            [
                d.id,
                *measured,
                str(d.version),
                next_run,
                "yes" if d.paused else "no",
                *active,
                str(d.task_count),
                d.schedule or "-",
                d.name or d.id,
            ]
        )
    caption = ""
    if stats is not None:
        caption = f"p50, p95: durations of the successful runs among each DAG's last {runs} ended runs"
    return Sheet("DAGs", columns, rows, caption)


def runs_sheet(runs: list[RunOut], clock: Clock) -> Sheet:
    """One row per run; a scheduled run shows the tick it stands for (its logical date)."""
    created_title, created = clock.column("Created", (r.created_at for r in runs))
    logical_title, logical = clock.column("Logical date", (r.logical_date for r in runs), year=True)
    scheduled = any(r.logical_date is not None for r in runs)
    columns = [
        Column("Run", KEEP),
        Column("State", KEEP),
        Column("DAG", 8),
        # Only scheduled runs have one: worth the room when some run in the list does.
        Column(logical_title, 6 if scheduled else 1),
        Column(created_title, 5),
        Column("Duration", 7, right=True),
        Column("By", 3),
    ]
    rows: list[list[Cell]] = [
        [
            r.run_id,
            state_cell(r.state),
            f"{r.dag_id} v{r.dag_version}",
            logical[i],
            created[i],
            fmt_duration(r.started_at, r.ended_at),
            r.triggered_by or "-",
        ]
        for i, r in enumerate(runs)
    ]
    return Sheet("Runs", columns, rows)


def tasks_sheet(
    tasks: Sequence[TaskInstanceOut], title: str = "Tasks", notes: Mapping[str, str] | None = None
) -> Sheet:
    """One row per task instance: state, attempt, duration, exit code, error.

    `notes` by task id (a running task's slow note) add a Note column when there are some.
    """
    columns = [
        Column("Task", KEEP),
        Column("State", KEEP),
        Column("Attempt", 4, right=True),
        Column("Duration", 6, right=True),
        Column("Exit", 5, right=True),
        Column("Error", 7, wrap=True),
    ]
    if notes:
        columns.insert(4, Column("Note", 8, wrap=True))
    rows: list[list[Cell]] = [
        [
            t.task_id,
            state_cell(t.state),
            str(t.attempt),
            fmt_duration(t.started_at, t.ended_at),
            *([Styled(notes.get(t.task_id, ""), "yellow")] if notes else []),
            "-" if t.exit_code is None else str(t.exit_code),
            t.error or "",
        ]
        for t in tasks
    ]
    return Sheet(title, columns, rows)


def slow_notes(run: RunDetail) -> dict[str, str]:
    """By task id, the slow notes of the run's running tasks (`running 3.1× longer than usual ...`)."""
    return {t.task_id: t.slow.message for t in run.tasks if t.slow is not None}


def _cut(value: str) -> str:
    """A value cut to what a table line shows; `--json` has it whole."""
    if len(value) <= MAX_VALUE_CHARS:
        return value
    return f"{value[:MAX_VALUE_CHARS]}… ({len(value) - MAX_VALUE_CHARS} more characters; --json has all)"


def outputs_sheets(run: RunDetail) -> list[Sheet]:
    """The outputs the run's tasks pass downstream, one row per key, in the DAG's task order; none when none."""
    rows: list[list[Cell]] = [
        [t.task_id, key, _cut(value)]
        for t in run.tasks
        for key, value in run.outputs.get(t.task_id, {}).items()
    ]
    if not rows:
        return []
    columns = [Column("Task", KEEP), Column("Key", KEEP), Column("Value", KEEP, wrap=True)]
    return [Sheet("Outputs", columns, rows, plain_title=True)]


def run_pairs(run: RunDetail, clock: Clock, latest: int | None = None) -> Pairs:
    """The run's own fields, one per line (`latest`: the DAG's latest version, when known)."""
    newer = "" if latest is None else ", the latest" if latest == run.dag_version else f"; latest is {latest}"
    pairs: list[tuple[str, Cell]] = [
        ("Run", run.run_id),
        ("DAG", f"{run.dag_id} (version {run.dag_version}{newer})"),
        ("State", state_cell(run.state)),
        ("Triggered by", run.triggered_by or "-"),
    ]
    if run.logical_date is not None:
        pairs.append(("Logical date", clock.full(run.logical_date)))
    pairs += [
        ("Created", clock.full(run.created_at)),
        ("Started", clock.full(run.started_at)),
        ("Ended", clock.full(run.ended_at)),
        ("Duration", fmt_duration(run.started_at, run.ended_at)),
    ]
    if run.params:
        pairs.append(("Params", ", ".join(f"{k}={v}" for k, v in run.params.items())))
    if run.waiting:
        pairs.append(("Waiting", run.waiting))
    return "", pairs


def workers_sheet(workers: list[WorkerOut], clock: Clock) -> Sheet:
    """One row per worker."""
    beat_title, beats = clock.column("Last heartbeat", (w.last_heartbeat for w in workers))
    columns = [
        Column("Worker", KEEP),
        Column("State", KEEP),
        Column("Slots", 6, right=True),
        Column("Running", 7, right=True),
        Column(beat_title, 5),
        Column("PID", 2, right=True),
        Column("Host", 4),
    ]
    rows: list[list[Cell]] = [
        [w.worker_id, w.state, str(w.slots), str(len(w.running)), beats[i], str(w.pid), w.host]
        for i, w in enumerate(workers)
    ]
    return Sheet("Workers", columns, rows)


def _counts(by_name: dict[str, int]) -> str:
    """`name n` for each non-zero count; `none` when all are zero (the API's --json has them all)."""
    return ", ".join(f"{name} {n}" for name, n in sorted(by_name.items()) if n) or "none"


def status_pairs(status: Status) -> Pairs:
    """Counts of DAGs, runs, tasks and workers, the queue depth and readiness."""
    ready = status.ready
    said = ", ".join(
        f"{part}: {what}"
        for part, what in (("store", ready.store), ("queue", ready.queue), ("scheduler", ready.scheduler))
        if what != "ok"
    )
    readiness: Cell = (
        Styled("ready", "green") if ready.status == "ready" else Styled(f"not ready; {said}", "red")
    )
    workers = status.workers.model_dump(exclude={"total", "slots"})
    pairs: list[tuple[str, Cell]] = [
        ("DAGs", _counts(status.dags)),
        ("Runs", _counts(status.runs)),
        ("Tasks", _counts(status.tasks)),
        ("Workers", _counts(workers)),
        ("Queue depth", str(status.queue_depth)),
        ("Ready", readiness),
        ("Scheduler leader", ready.leader or "none"),
    ]
    if (folder := status.dag_folder) is not None:
        said = f"{folder.path}: {folder.files} file(s), {len(folder.dags)} DAG(s)"
        pairs.append(("DAG folder", "\n".join([said, *(p.text for p in folder.problems)])))
    return "FlowForge status", pairs


def backfill_sheet(result: BackfillResult, clock: Clock) -> Sheet:
    """One row per schedule tick of a backfill: its run, or that it had one already."""
    title, dates = clock.column("Logical date", (parse_iso(t.logical_date) for t in result.ticks), year=True)
    rows: list[list[Cell]] = []
    for tick, date in zip(result.ticks, dates, strict=True):
        what = "exists already" if tick.existed else (tick.run_id or "would be created")
        rows.append([date, what])
    caption = "" if result.ticks else "no schedule tick in that range"
    name = f"Backfill of {result.dag_id}" + (" (dry run)" if result.dry_run else "")
    return Sheet(name, [Column(title, KEEP), Column("Run", KEEP)], rows, caption)
