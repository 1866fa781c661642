"""The live DAG graph: a Line API widget drawing a cached layout, coloured by task state at draw time.

A running task that has run far longer than usual (the API's slow note) is marked with SLOW_MARK
before its state's glyph.
"""

from __future__ import annotations

from typing import ClassVar

from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Region, Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from flowforge.tui.layout import Canvas, Placed, Topology, neighbour, place
from flowforge.tui.states import SLOW_MARK, STATE_CLASSES, foreground, state_class, task_glyph


class DagGraph(ScrollView, can_focus=True):
    """Boxes per task in columns by depth, connectors left to right; arrow keys move, enter opens the log."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "graph--edge",
        "graph--node",
        "graph--selected",
        "graph--slow",
        *STATE_CLASSES,
    }
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up", "move('up')", "Up", show=False),
        Binding("down", "move('down')", "Down", show=False),
        Binding("left", "move('left')", "Left", show=False),
        Binding("right", "move('right')", "Right", show=False),
        Binding("enter", "choose", "Open log", show=False),
        Binding("shift+left", "scroll_left", "Pan left", show=False),
        Binding("shift+right", "scroll_right", "Pan right", show=False),
        Binding("shift+up", "scroll_up", "Pan up", show=False),
        Binding("shift+down", "scroll_down", "Pan down", show=False),
    ]

    selected: reactive[str | None] = reactive(None, layout=False)

    class TaskSelected(Message):
        """The cursor moved to a task (`open_log`: the user asked to read its log)."""

        def __init__(self, task_id: str, open_log: bool = False) -> None:
            super().__init__()
            self.task_id = task_id
            self.open_log = open_log

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._topology: Topology | None = None
        self._canvas: Canvas | None = None
        self._canvas_key: tuple[int, bool, int] | None = None
        self._states: dict[str, str] = {}
        self._slow: frozenset[str] = frozenset()
        self._empty_text = "no DAG selected"

    # -- data in ----------------------------------------------------------------------------
    def show(self, topology: Topology | None, empty_text: str = "") -> None:
        """Draw this structure; the same object again is a no-op (layouts are cached per DAG version)."""
        if empty_text:
            self._empty_text = empty_text
        if topology is self._topology:
            return
        self._topology = topology
        self._canvas_key = None
        self._relayout()

    def set_states(self, states: dict[str, str]) -> None:
        """Task id → state; repaints without any layout work."""
        if states != self._states:
            self._states = dict(states)
            self.refresh()

    def set_slow(self, task_ids: set[str] | frozenset[str]) -> None:
        """The tasks to mark as running far longer than usual; repaints only on a change."""
        if task_ids != self._slow:
            self._slow = frozenset(task_ids)
            self.refresh()

    def is_slow(self, task_id: str) -> bool:
        """Whether the graph marks the task as running far longer than usual."""
        return task_id in self._slow

    def state_of(self, task_id: str) -> str | None:
        """The state the graph shows for a task."""
        return self._states.get(task_id)

    @property
    def canvas(self) -> Canvas | None:
        """The layout currently drawn."""
        return self._canvas

    def rendered_text(self) -> str:
        """The whole graph as plain text, connectors and labels (what a screen reader or test sees)."""
        if self._canvas is None:
            return self._empty_text
        return "\n".join(self._line(y, 0, self._canvas.width).text for y in range(self._canvas.height))

    # -- layout -------------------------------------------------------------------------------
    def on_resize(self, event: events.Resize) -> None:
        """Pick the node style and stretch for the new size."""
        self._relayout()

    def _relayout(self) -> None:
        if self._topology is None or not self._topology.task_count:
            self._canvas = None
            self.virtual_size = Size(0, 0)
            self.refresh()
            return
        width, height = self.scrollable_content_region.size
        # Boxes when every layer fits the height; one line per task otherwise (80×24, big DAGs).
        boxed = max(len(c) for c in self._topology.layers) * 4 - 1 <= height and height > 0
        key = (id(self._topology), boxed, width)
        if key == self._canvas_key:
            return
        self._canvas_key = key
        self._canvas = place(self._topology, boxed=boxed, fill_width=width)
        self.virtual_size = Size(self._canvas.width, self._canvas.height)
        if self.selected is not None and self.selected not in self._canvas.index:
            self.selected = None
        self.refresh()

    # -- drawing ------------------------------------------------------------------------------
    def render_line(self, y: int) -> Strip:
        """One screen row: the canvas row under the scroll offset, cropped to the width."""
        scroll_x, scroll_y = self.scroll_offset
        width = self.scrollable_content_region.width
        base = self.rich_style
        if self._canvas is None:
            text = self._empty_text if y == 0 else ""
            return Strip([Segment(text.ljust(width)[:width], base)], width)
        row = y + scroll_y - self._top_pad()
        if not 0 <= row < self._canvas.height:
            return Strip.blank(width, base)
        return self._line(row, scroll_x, scroll_x + width).apply_style(base)

    def _top_pad(self) -> int:
        # A graph lower than the pane sits in its middle rather than under its title.
        if self._canvas is None:
            return 0
        return max(0, (self.scrollable_content_region.height - self._canvas.height) // 2)

    def _line(self, row: int, x1: int, x2: int) -> Strip:
        canvas = self._canvas
        assert canvas is not None
        edge = self.get_component_rich_style("graph--edge")
        text = canvas.rows[row]
        segments: list[Segment] = []
        origin: int | None = None  # canvas column of the first cell in `segments`
        x = x1
        for sx, w, node_index, part in canvas.spans[row]:
            if sx + w <= x1:
                continue
            if sx >= x2:
                break
            if origin is None:
                origin = min(sx, x1)
            if sx > x:
                segments.append(Segment(text[x:sx], edge))
            segments.extend(self._node_segments(canvas, node_index, part))
            x = sx + w
        if x < x2:
            segments.append(Segment(text[x:x2], edge))
        start = x1 if origin is None else origin
        return Strip(segments).crop(x1 - start, x2 - start).extend_cell_length(x2 - x1)

    def _node_segments(self, canvas: Canvas, index: int, part: str) -> list[Segment]:
        node = canvas.nodes[index]
        state = self._states.get(node.task_id)
        # Full styles (not partial): the theme's translucent colours must be blended with the background.
        colour = foreground(self.get_component_rich_style(state_class(state)))
        selected = node.task_id == self.selected
        body = self.get_component_rich_style("graph--selected" if selected else "graph--node")
        glyph = task_glyph(state)
        slow = node.task_id in self._slow
        lead = Segment(SLOW_MARK, body + foreground(self.get_component_rich_style("graph--slow")))
        if part == "line":
            label = f" {glyph} {node.label}".ljust(node.width - 1) + " "
            first = lead if slow else Segment(label[:1], body)
            return [first, Segment(label[1], body + colour), Segment(label[2:], body)]
        border = colour + Style(bgcolor=self.rich_style.bgcolor)
        if not selected:  # a box is frame enough: no shading inside it
            body = Style(color=body.color, bgcolor=self.rich_style.bgcolor)
        inner = node.width - 2
        if part == "top":
            return [Segment("╭" + "─" * inner + "╮", border)]
        if part == "bottom":
            return [Segment("╰" + "─" * inner + "╯", border)]
        left = "┤" if index in canvas.has_in else "│"
        right = "├" if index in canvas.has_out else "│"
        text = f" {glyph} {node.label}".ljust(inner)
        return [
            Segment(left, border),
            lead if slow else Segment(text[:1], body),
            Segment(text[1], body + colour),
            Segment(text[2:], body),
            Segment(right, border),
        ]

    # -- moving -------------------------------------------------------------------------------
    def watch_selected(self, old: str | None, new: str | None) -> None:
        """Repaint the old and new selection, and bring the new one into view."""
        self.refresh()
        node = self._node(new)
        if node is not None:
            top = node.y - (1 if self._canvas and self._canvas.boxed else 0)
            height = 3 if self._canvas and self._canvas.boxed else 1
            self.scroll_to_region(Region(node.x, top, node.width, height), animate=False, force=True)

    def _node(self, task_id: str | None) -> Placed | None:
        if task_id is None or self._canvas is None or task_id not in self._canvas.index:
            return None
        return self._canvas.nodes[self._canvas.index[task_id]]

    def action_move(self, direction: str) -> None:
        """Move the cursor to the neighbouring task."""
        if self._canvas is None or not self._canvas.nodes:
            return
        if self.selected not in self._canvas.index:
            target: str | None = self._canvas.nodes[0].task_id
        else:
            assert self.selected is not None
            target = neighbour(self._canvas, self.selected, direction)
        if target is not None:
            self.selected = target
            self.post_message(self.TaskSelected(target))

    def action_choose(self) -> None:
        """Open the log of the task under the cursor."""
        if self.selected is not None:
            self.post_message(self.TaskSelected(self.selected, open_log=True))

    def on_click(self, event: events.Click) -> None:
        """Select the task clicked on; a double click opens its log."""
        if self._canvas is None:
            return
        offset = event.get_content_offset(self)
        if offset is None:
            return
        node = self._canvas.node_at(
            offset.x + self.scroll_offset.x, offset.y + self.scroll_offset.y - self._top_pad()
        )
        if node is not None:
            self.selected = node.task_id
            self.post_message(self.TaskSelected(node.task_id, open_log=event.chain > 1))
