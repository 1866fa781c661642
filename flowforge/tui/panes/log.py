"""The log pane: the focused task instance's attempts above the log of the attempt shown, followed live."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Log, Static

from flowforge.api.models import AttemptOut, SlowNoteOut, TaskDetail
from flowforge.tui.feed import Focus, Snapshot, slow_note
from flowforge.tui.states import SLOW_MARK, TASK_LIVE, task_glyph
from flowforge.tui.text import LogCleaner, visible
from flowforge.tui.widgets import fmt_duration, fmt_time

NO_TASK = "select a task: arrows and enter on the graph or grid"
MAX_ATTEMPT_LINES = 3


def attempt_outputs(attempt: AttemptOut) -> dict[str, Any]:
    """The outputs an attempt recorded (`outputs: {key: value}`); {} for none, or from an API without them."""
    outputs = getattr(attempt, "outputs", None)
    return dict(outputs) if isinstance(outputs, dict) else {}


def outputs_line(outputs: dict[str, Any]) -> str:
    """`key=value · key=value`, every part made visible."""
    return " · ".join(f"{visible(str(k))}={visible(str(v))}" for k, v in outputs.items())


def attempts_text(
    task: TaskDetail,
    shown: int,
    now: float,
    style_of: Callable[[str | None], Any],
    slow: SlowNoteOut | None = None,
) -> Text:
    """One line per attempt: number, state, worker, start, duration, exit code, error; `shown` marked.

    Under the attempt shown, the outputs it recorded, when it has any, and `slow` (the API's note
    on a running attempt that runs far longer than usual).
    """
    text = Text()
    attempts = task.attempts
    if not attempts:
        text.append(f"{task_glyph(task.state)} {task.state}", style_of(task.state))
        text.append(" · not attempted yet")
        return text
    if len(attempts) > MAX_ATTEMPT_LINES:
        # The latest ones and the one shown; the rest are a `[` away.
        keep = {a.attempt for a in attempts[-(MAX_ATTEMPT_LINES - 1) :]} | {shown}
        text.append(f"  {len(attempts) - len(keep)} earlier attempts ([ and ] to step)\n", "dim")
        attempts = [a for a in attempts if a.attempt in keep]
    for a in attempts:
        text.append("▸ " if a.attempt == shown else "  ")
        text.append(f"#{a.attempt} {task_glyph(a.state)} {a.state}", style_of(a.state))
        bits = [fmt_time(a.started_at, now), fmt_duration(a.started_at, a.ended_at, now)]
        if a.exit_code is not None:
            bits.append(f"exit {a.exit_code}")
        if a.worker_id:
            bits.append(visible(a.worker_id))
        if a.error and a.error != f"exit code {a.exit_code}":
            bits.append(visible(a.error))
        text.append("  " + " · ".join(bits) + "\n")
        if slow is not None and a.attempt == shown:
            text.append(f"    {SLOW_MARK} {visible(slow.message)}\n", style_of("failed"))
        outputs = attempt_outputs(a) if a.attempt == shown else {}
        if outputs:
            text.append("    outputs: ", "dim")
            text.append(outputs_line(outputs) + "\n")
    text.rstrip()
    return text


def stepped_attempt(task: TaskDetail | None, current: int | None, step: int) -> int | None:
    """The attempt `step` away from `current` (None: the latest), clamped; None again for the latest.

    Without a task, or before its first attempt, `current` stays.
    """
    if task is None or not task.attempt:
        return current
    latest = task.attempt
    wanted = min(max(1, (current or latest) + step), latest)
    return None if wanted == latest else wanted


def task_worth_reading(snap: Snapshot, run_id: str | None) -> str | None:
    """A running task of the run, else a failed one, else the first: the log a user most likely wants."""
    assert snap.graph is not None
    order = snap.graph.topology.task_order
    states = {t: i.state for t, i in snap.instances.get(run_id or "", {}).items()}
    for wanted in ("running", "failed", "up_for_retry"):
        for task_id in order:
            if states.get(task_id) == wanted:
                return task_id
    return order[0] if order else None


def _set_text(widget: Static, text: Text) -> None:
    """Update a Static, with a layout pass only when its height changes (a pass costs a frame on big screens)."""
    old = widget.content
    if isinstance(old, Text) and old == text:
        return
    old_lines = old.plain.count("\n") if isinstance(old, Text) else -1
    widget.update(text, layout=old_lines != text.plain.count("\n"))


class LogPane(Vertical):
    """Attempts on top (`[` and `]` step through them), the log under them, the attempt's state in the title."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.border_title = "Log"
        self._cleaner = LogCleaner()  # of the log shown: its escape sequences never reach the terminal

    def compose(self) -> ComposeResult:
        """The attempts line(s) and the log view."""
        yield Static(Text(NO_TASK), id="attempts")
        yield Log(id="log", max_lines=10_000, auto_scroll=True)

    def focus_log(self) -> None:
        """Put the keyboard on the log text (for scrolling)."""
        self.query_one("#log", Log).focus()

    def clear(self, task_selected: bool) -> None:
        """Empty the pane for another task or attempt: "loading…" until it comes."""
        self.query_one("#log", Log).clear()
        self._cleaner = LogCleaner()
        _set_text(self.query_one("#attempts", Static), Text("loading…" if task_selected else NO_TASK))
        self.border_title = "Log"  # nothing of the task or attempt shown before may linger
        self.border_subtitle = ""

    def show_task(
        self, snap: Snapshot, focus: Focus, now: float, style_of: Callable[[str | None], Any]
    ) -> None:
        """The snapshot's task: its attempts, its state in the title, and the new log text of the attempt shown."""
        task = snap.task
        if task is None:
            return
        shown = focus.attempt or task.attempt
        # The run's detail carries the note; it speaks of the latest attempt only.
        slow = (
            slow_note(snap.instances.get(task.run_id, {}).get(task.task_id))
            if shown == task.attempt
            else None
        )
        _set_text(self.query_one("#attempts", Static), attempts_text(task, shown, now, style_of, slow))
        # The attempt shown: an older one (`[`) has its own state and times, not the task's.
        attempt = next((a for a in task.attempts if a.attempt == shown), None)
        state, started, ended = (
            (attempt.state, attempt.started_at, attempt.ended_at)
            if attempt is not None and focus.attempt is not None
            else (task.state, task.started_at, task.ended_at)
        )
        follow = "following" if state in TASK_LIVE else "finished"
        self.border_title = (
            f"Log · {task.task_id} · {task_glyph(state)} {state} · attempt {shown or '—'} · {follow}"
        )
        self.border_subtitle = fmt_duration(started, ended, now)
        chunk = snap.log
        if chunk is None or chunk.generation != focus.generation:
            return  # text fetched for a log that was cleared since
        view = self.query_one("#log", Log)
        if chunk.reset:
            view.clear()
            self._cleaner = LogCleaner()
        text = self._cleaner.feed(chunk.text) + (self._cleaner.flush() if chunk.done else "")
        if text:
            view.write(text)
