"""The grid of recent runs × tasks: a row per task, a column per run (newest on the right), a glyph per cell.

Each column is labelled with when its run stands for (its logical date, else its start) above
the run's state glyph.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import ClassVar

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from flowforge.api.models import RunOut, TaskInstanceOut
from flowforge.tui.states import STATE_CLASSES, foreground, run_glyph, state_class, task_glyph

LABEL = 5  # a column's label: `HH:MM` for a run of today, `MM-DD` for an older one
CELL = LABEL + 1  # columns per run: the label's width (the glyph in its middle) and a space
HEADER_ROWS = 2  # the labels, then the runs' state glyphs
MAX_LABEL = 24


def run_label(run: RunOut, now: float) -> str:
    """When the run stands for, short: its logical date, else its start (else its creation), local time."""
    when = run.logical_date or run.started_at or run.created_at
    local = time.localtime(when)
    if time.strftime("%Y%m%d", local) == time.strftime("%Y%m%d", time.localtime(now)):
        return time.strftime("%H:%M", local)
    return time.strftime("%m-%d", local)


def _centred(text: str) -> tuple[str, str]:
    """The padding left and right of `text` centred in a column's label width."""
    left = (LABEL - cell_len(text)) // 2
    return " " * left, " " * max(0, LABEL - cell_len(text) - left)


class RunGrid(ScrollView, can_focus=True):
    """Arrow keys move over cells, enter opens that task instance's log; the header row stays put."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "grid--header",
        "grid--label",
        "grid--column",
        "grid--cursor",
        *STATE_CLASSES,
    }
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up", "move(0, -1)", "Up", show=False),
        Binding("down", "move(0, 1)", "Down", show=False),
        Binding("left", "move(-1, 0)", "Older run", show=False),
        Binding("right", "move(1, 0)", "Newer run", show=False),
        Binding("enter", "choose", "Open log", show=False),
    ]

    class CellSelected(Message):
        """The cursor moved to a task instance (`open_log`: the user asked to read its log)."""

        def __init__(self, run_id: str, task_id: str, open_log: bool = False) -> None:
            super().__init__()
            self.run_id = run_id
            self.task_id = task_id
            self.open_log = open_log

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.tasks: list[str] = []
        self._label_width = 5
        self.runs: list[RunOut] = []  # oldest first
        self._instances: Mapping[str, Mapping[str, TaskInstanceOut]] = {}  # run id → task id → instance
        self.run_id: str | None = None
        self.task_id: str | None = None
        self._now = time.time()

    def show(
        self,
        tasks: Sequence[str],
        runs_newest_first: Sequence[RunOut],
        instances: Mapping[str, Mapping[str, TaskInstanceOut]],
        now: float | None = None,
    ) -> None:
        """Replace the data; the cursor stays on the same run and task where they still exist.

        `now` decides which runs are of today (labelled with their time, older ones with their date).
        """
        self._now = time.time() if now is None else now
        if list(tasks) != self.tasks:
            self.tasks = list(tasks)
            self._label_width = min(MAX_LABEL, max([4, *(cell_len(t) for t in self.tasks)])) + 1
        self.runs = [r for r in reversed(runs_newest_first) if r.run_id in instances]
        self._instances = instances
        self.virtual_size = Size(self.size.width, len(self.tasks) + HEADER_ROWS)
        self.refresh()

    def state_of(self, run_id: str, task_id: str) -> str | None:
        """The state the grid shows for one task instance."""
        instance = self._instances.get(run_id, {}).get(task_id)
        return instance.state if instance else None

    def select(self, run_id: str | None, task_id: str | None) -> None:
        """Put the cursor on this run and task (either may be None); a new cursor is scrolled into view."""
        moved = (run_id, task_id) != (self.run_id, self.task_id)
        self.run_id, self.task_id = run_id, task_id
        if moved and task_id in self.tasks:
            row = self.tasks.index(task_id)
            top, height = int(self.scroll_y), max(1, self.scrollable_content_region.height - HEADER_ROWS)
            if row < top:
                self.scroll_to(y=row, animate=False, force=True)
            elif row >= top + height:
                self.scroll_to(y=row - height + 1, animate=False, force=True)
        self.refresh()

    # -- geometry -----------------------------------------------------------------------------
    @property
    def label_width(self) -> int:
        """Columns given to task ids."""
        return self._label_width

    def visible_runs(self) -> list[RunOut]:
        """The runs that fit the width: the newest ones, shifted left if the selected run is older."""
        fit = max(1, (self.scrollable_content_region.width - self.label_width) // CELL)
        ids = [r.run_id for r in self.runs]
        end = len(self.runs)
        if self.run_id in ids and ids.index(self.run_id) < end - fit:
            end = ids.index(self.run_id) + 1
        return self.runs[max(0, end - fit) : end]

    # -- drawing ------------------------------------------------------------------------------
    def render_line(self, y: int) -> Strip:
        """The sticky header on the first rows (labels, run states), task rows under it."""
        width = self.scrollable_content_region.width
        base = self.rich_style
        if not self.tasks:
            return Strip([Segment(("no runs yet" if y == 0 else "").ljust(width)[:width], base)])
        runs = self.visible_runs()
        label_w = self.label_width
        # Full styles (not partial): the theme's translucent colours must be blended with the background.
        column = self.get_component_rich_style("grid--column")
        if y < HEADER_ROWS:
            header = self.get_component_rich_style("grid--header")
            segments = [Segment(("run" if y else "").ljust(label_w), header)]
            for run in runs:
                style = header + foreground(self.get_component_rich_style(state_class(run.state)))
                if run.run_id == self.run_id:
                    style += column
                text = run_label(run, self._now) if y == 0 else run_glyph(run.state)
                left, right = _centred(text)
                segments += [Segment(left + text + right, style), Segment(" ", base)]
            return Strip(segments).extend_cell_length(width, base).crop(0, width).apply_style(base)
        row = y - HEADER_ROWS + int(self.scroll_y)
        if row >= len(self.tasks):
            return Strip.blank(width, base)
        task_id = self.tasks[row]
        label = task_id if cell_len(task_id) < label_w else set_cell_size(task_id, label_w - 2) + "…"
        label_style = self.get_component_rich_style(
            "grid--cursor" if task_id == self.task_id else "grid--label"
        )
        segments = [Segment(set_cell_size(label, label_w - 1), label_style), Segment(" ")]
        cursor = self.get_component_rich_style("grid--cursor")
        for run in runs:
            ti = self._instances.get(run.run_id, {}).get(task_id)
            state = ti.state if ti else None
            style = foreground(self.get_component_rich_style(state_class(state)))
            pad = base
            if run.run_id == self.run_id:
                pad = cursor if task_id == self.task_id else column
                style = pad + style
            left, right = _centred(task_glyph(state))
            segments += [Segment(left, pad), Segment(task_glyph(state), style), Segment(right, pad)]
            segments.append(Segment(" ", base))
        return Strip(segments).extend_cell_length(width, base).crop(0, width).apply_style(base)

    # -- moving -------------------------------------------------------------------------------
    def action_move(self, dx: int, dy: int) -> None:
        """Move the cursor by one run (dx) or one task (dy)."""
        if not self.tasks or not self.runs:
            return
        ids = [r.run_id for r in self.runs]
        col = ids.index(self.run_id) if self.run_id in ids else len(ids) - 1
        row = self.tasks.index(self.task_id) if self.task_id in self.tasks else -dy if dy else 0
        col = min(max(col + dx, 0), len(ids) - 1)
        row = min(max(row + dy, 0), len(self.tasks) - 1)
        self.select(ids[col], self.tasks[row])
        self.post_message(self.CellSelected(ids[col], self.tasks[row]))

    def action_choose(self) -> None:
        """Open the log of the cell under the cursor."""
        if self.run_id and self.task_id:
            self.post_message(self.CellSelected(self.run_id, self.task_id, open_log=True))

    def on_click(self, event: events.Click) -> None:
        """Select the clicked cell; a double click opens its log."""
        offset = event.get_content_offset(self)
        if offset is None or offset.y < HEADER_ROWS or not self.tasks:
            return
        row = offset.y - HEADER_ROWS + int(self.scroll_y)
        runs = self.visible_runs()
        col = (offset.x - self.label_width) // CELL
        if row < len(self.tasks) and 0 <= col < len(runs) and offset.x >= self.label_width:
            self.select(runs[col].run_id, self.tasks[row])
            self.post_message(self.CellSelected(runs[col].run_id, self.tasks[row], open_log=event.chain > 1))
