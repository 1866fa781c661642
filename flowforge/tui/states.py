"""How run and task states look in the terminal: one glyph each, so state never rests on colour alone."""

from __future__ import annotations

from rich.style import Style

from flowforge.core.model import RunState, TaskState

TASK_GLYPHS: dict[str, str] = {
    TaskState.PENDING: "○",
    TaskState.QUEUED: "◔",
    TaskState.RUNNING: "◐",
    TaskState.SUCCESS: "✔",
    TaskState.FAILED: "✘",
    TaskState.UP_FOR_RETRY: "↻",
    TaskState.UPSTREAM_FAILED: "⊘",
    TaskState.SKIPPED: "»",
    TaskState.CANCELLED: "■",
}

RUN_GLYPHS: dict[str, str] = {
    RunState.QUEUED: "◔",
    RunState.RUNNING: "◐",
    RunState.SUCCESS: "✔",
    RunState.FAILED: "✘",
    RunState.CANCELLED: "■",
}

# Before a running task's glyph: the task runs far longer than usual (the API's slow note).
SLOW_MARK = "!"

# Every state a cell can show, for the widgets' COMPONENT_CLASSES (styled in app.tcss).
ALL_STATES: tuple[str, ...] = tuple(dict.fromkeys([*map(str, TaskState), *map(str, RunState)]))
STATE_CLASSES: frozenset[str] = frozenset({f"state--{s}" for s in ALL_STATES} | {"state--unknown"})

RUN_ACTIVE = frozenset({str(RunState.QUEUED), str(RunState.RUNNING)})
TASK_LIVE = frozenset({str(TaskState.QUEUED), str(TaskState.RUNNING), str(TaskState.UP_FOR_RETRY)})


def task_glyph(state: str | None) -> str:
    """The glyph of a task state; `·` for a task with no instance in that run."""
    return TASK_GLYPHS.get(state or "", "·")


def run_glyph(state: str | None) -> str:
    """The glyph of a run state."""
    return RUN_GLYPHS.get(state or "", "·")


def state_class(state: str | None) -> str:
    """The component class that styles a state (`state--success`, …)."""
    return f"state--{state}" if state in ALL_STATES else "state--unknown"


def foreground(style: Style) -> Style:
    """Only the colour and attributes of a style, so it can be laid over any background."""
    return Style(color=style.color, bold=style.bold, italic=style.italic, underline=style.underline)
