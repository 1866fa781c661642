"""What the panes share: the state-coloured table, and how times and durations are written."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, ClassVar

from rich.cells import cell_len
from rich.text import Text
from textual.widgets import DataTable
from textual.widgets.data_table import CellDoesNotExist

from flowforge.tui.states import STATE_CLASSES, foreground, run_glyph, state_class


def fmt_time(ts: float | None, now: float) -> str:
    """Local clock time; with the date when it is not today."""
    if ts is None:
        return "—"
    if time.strftime("%Y%m%d", time.localtime(ts)) == time.strftime("%Y%m%d", time.localtime(now)):
        return time.strftime("%H:%M:%S", time.localtime(ts))
    return time.strftime("%m-%d %H:%M", time.localtime(ts))


def fmt_duration(start: float | None, end: float | None, now: float) -> str:
    """`1.2s`, `3m05s`, `2h10m`; up to now while still running."""
    if start is None:
        return "—"
    secs = max(0.0, (end if end is not None else now) - start)
    if secs < 60:
        return f"{secs:.1f}s"
    if secs < 3600:
        return f"{int(secs // 60)}m{int(secs % 60):02d}s"
    return f"{int(secs // 3600)}h{int(secs % 3600 // 60):02d}m"


class StateTable(DataTable[Any]):
    """A DataTable whose cells can be coloured by run or task state (colours in app.tcss)."""

    COMPONENT_CLASSES: ClassVar[set[str]] = DataTable.COMPONENT_CLASSES | STATE_CLASSES
    DEFAULT_CLASSES = "stateful"
    _spec: list[tuple[str, str]]
    _widths: list[int]

    def styled(self, text: str, state: str | None) -> Text:
        """`text` in the colour of `state`."""
        return Text(text, style=self.state_style(state))

    def state_style(self, state: str | None) -> Any:
        """The colour of `state` (blended with the theme, so it works on any row background)."""
        return foreground(self.get_component_rich_style(state_class(state)))

    def run_state(self, state: str | None) -> Text:
        """Glyph and name of a run state, coloured."""
        return self.styled(f"{run_glyph(state)} {state or '—'}", state)

    def selected_key(self) -> str | None:
        """The key of the row under the cursor."""
        if not self.row_count:
            return None
        try:
            key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        except CellDoesNotExist:  # the cursor can sit outside a table that just shrank
            return None
        return str(key) if key is not None else None

    def set_columns(self, columns: Sequence[tuple[str, str]]) -> None:
        """Declare the (label, key) columns; their widths follow the data (see `sync_rows`)."""
        self._spec = list(columns)
        self._widths = [cell_len(label) for label, _ in self._spec]
        for (label, key), width in zip(self._spec, self._widths, strict=True):
            self.add_column(label, key=key, width=width)

    def respec(self, columns: Sequence[tuple[str, str]]) -> None:
        """Change the (label, key) columns; the next `sync_rows` builds the table anew with them."""
        if list(columns) != self._spec:
            self._spec = list(columns)
            self._widths = []

    def sync_rows(self, rows: Sequence[tuple[str, Sequence[Any]]], keep: str | None) -> None:
        """Show these (key, cells) rows: cells updated in place, the table rebuilt when keys or widths change.

        Columns get explicit widths, those of their widest cells now: DataTable measures automatic
        widths later, when idle, and a frame drawn before that would show cut-off cells. A column
        that no longer needs its width gives it back (to the columns after it, on a narrow screen).
        The cursor is put back on `keep`. Call inside `prevent(RowHighlighted)` so that redrawing is
        not taken for the user moving.
        """
        keys = [k for k, _ in rows]
        current = [str(r.key.value) for r in self.ordered_rows]
        widths = [
            max([cell_len(label), *(cell_width(cells[i]) for _, cells in rows)])
            for i, (label, _) in enumerate(self._spec)
        ]
        if keys == current and widths == self._widths:
            columns = [key for _, key in self._spec]
            for key, cells in rows:
                for col, value in zip(columns, cells, strict=False):
                    if self.get_cell(key, col) != value:
                        self.update_cell(key, col, value)
        else:
            self.clear(columns=True)
            self._widths = widths
            for (label, key), width in zip(self._spec, widths, strict=True):
                self.add_column(label, key=key, width=width)
            for key, cells in rows:
                self.add_row(*cells, key=key)
        if keep in keys:
            target = keys.index(keep)
            if self.cursor_row != target:
                self.move_cursor(row=target, animate=False, scroll=True)


def cell_width(value: Any) -> int:
    """How many terminal cells a table cell's text takes."""
    return value.cell_len if isinstance(value, Text) else cell_len(str(value))
