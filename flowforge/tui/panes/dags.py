"""The DAG list on the left, with its filter box; posts `DagsPane.DagSelected` when the selection moves.

Where the sidebar has room (a wide terminal), each DAG also shows a sparkline of its last ended
runs' durations, oldest left, each bar in its run's state's colour; on a narrow one that column
goes first, so the ids and schedules keep their width.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from rich.cells import cell_len
from rich.text import Text
from textual import events, on
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import DataTable, Input

from flowforge.api.models import DagStats, DagSummary, RunDuration, RunOut
from flowforge.tui.states import run_glyph
from flowforge.tui.text import label
from flowforge.tui.widgets import StateTable, cell_width

NO_DAGS = "none yet: flowforge submit -f FILE"
BARS = "▁▂▃▄▅▆▇█"
NO_DURATION = "·"  # a run that ended without starting (cancelled while queued)
SPARK_MIN = 6  # narrower than this, the sparkline column is left out
SPARK_MAX = 20  # the most runs a sparkline shows
COLUMNS = [(" ", "last"), ("DAG", "id"), ("schedule", "schedule")]
SPARK_COLUMN = ("took", "took")


def spark_bars(runs: Sequence[RunDuration], width: int) -> list[tuple[str, str]]:
    """(bar, run state) for the last `width` of `runs` (given the last to end first), oldest first.

    Heights are shares of the longest duration shown: the longest is a full block, any other at
    least the lowest one, so a fast run still shows; a run without a duration is a dot.
    """
    shown = list(runs[:width])[::-1]
    longest = max((r.duration_secs for r in shown if r.duration_secs is not None), default=0.0)
    bars = []
    for r in shown:
        if r.duration_secs is None:
            bar = NO_DURATION
        else:
            level = math.ceil(r.duration_secs / longest * len(BARS)) if longest > 0 else 1
            bar = BARS[min(len(BARS), max(1, level)) - 1]
        bars.append((bar, str(r.state)))
    return bars


def sparkline(stats: DagStats | None, width: int, table: StateTable) -> Text:
    """A DAG's sparkline, `width` cells wide, right-aligned so that every row's newest run lines up."""
    bars = spark_bars(stats.runs, width) if stats is not None else []
    text = Text(" " * (width - len(bars)))
    for bar, state in bars:
        text.append(bar, table.state_style(state))
    return text


def spark_width(rows: list[tuple[str, list[Any]]], room: int) -> int:
    """How many runs the sparkline column can show in `room` cells beside these rows; 0: none.

    Each column takes its widest cell (or label) plus one cell of padding on either side.
    """
    used = sum(
        max([cell_len(label), *(cell_width(cells[i]) for _, cells in rows)]) + 2
        for i, (label, _) in enumerate(COLUMNS)
    )
    free = min(SPARK_MAX, room - used - 2)
    return free if free >= SPARK_MIN else 0


def dag_rows(
    dags: list[DagSummary], last_runs: dict[str, RunOut], needle: str, table: StateTable
) -> list[tuple[str, list[Any]]]:
    """The DAG table's rows: last run glyph, id, schedule (or "paused", "inactive"); filtered by `needle`.

    A paused or inactive DAG says so in its schedule's place: a column of its own would take the
    width the schedules need on an 80-column screen.
    """
    needle = needle.strip().lower()
    out: list[tuple[str, list[Any]]] = []
    for dag in dags:
        haystack = " ".join([dag.id, dag.name or "", *dag.tags]).lower()
        if needle and needle not in haystack:
            continue
        last = last_runs.get(dag.id)
        state = last.state if last else None
        schedule = label(dag.schedule or "—")
        flag = "inactive" if not dag.active else "paused" if dag.paused else ""
        if flag:
            schedule = Text.assemble(
                (flag, "italic"), " " if dag.schedule else "", label(dag.schedule or "", "dim")
            )
        cells = [
            table.styled(run_glyph(state) if last else " ", state),
            label(dag.id, "dim" if flag else ""),
            schedule,
        ]
        out.append((dag.id, cells))
    return out


class DagsPane(Vertical):
    """`/` filters by id, name or tag; escape clears the filter; arrows move the selection."""

    class DagSelected(Message):
        """The user moved to another DAG, or the one selected was filtered out of the list."""

        def __init__(self, dag_id: str) -> None:
            super().__init__()
            self.dag_id = dag_id

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._dags: list[DagSummary] | None = None  # None until the first snapshot
        self._last_runs: dict[str, RunOut] = {}
        self._stats: dict[str, DagStats] = {}
        self.has_room_for_durations = True  # whether the sparklines fit: worth asking the API for them
        self._selected: str | None = None  # the app's focus follows it (see `show` and DagSelected)

    def compose(self) -> ComposeResult:
        """The filter box above the table."""
        yield Input(placeholder="/ filter DAGs", id="filter")
        table = StateTable(id="dags", cursor_type="row", zebra_stripes=False)
        table.border_title = "DAGs"
        yield table

    def on_mount(self) -> None:
        """Declare the table's columns."""
        self._table.set_columns(COLUMNS)

    @property
    def _table(self) -> StateTable:
        return self.query_one("#dags", StateTable)

    def state_style(self, state: str | None) -> Any:
        """The colour of a run or task state, as the list draws it (for panes that are not tables)."""
        return self._table.state_style(state)

    def focus_list(self) -> None:
        """Put the keyboard on the DAG list."""
        self._table.focus()

    def focus_filter(self) -> None:
        """Put the keyboard in the filter box."""
        self.query_one("#filter", Input).focus()

    def show(
        self, dags: list[DagSummary], last_runs: dict[str, RunOut], stats: dict[str, DagStats] | None = None
    ) -> str | None:
        """List these DAGs, the cursor kept on the one selected; returns the DAG now selected.

        That is the one selected before, or the first DAG shown when it was filtered out or removed
        (or when none was selected yet). `stats` (DAG id → its durations) draw the sparklines.
        """
        self._dags, self._last_runs, self._stats = dags, last_runs, stats or {}
        self._selected = self._draw(self._selected)
        return self._selected

    def on_resize(self) -> None:
        """Fit the sparkline column to the new width (or leave it out)."""
        if self._dags is not None:
            self._draw(self._selected)

    def _draw(self, selected: str | None) -> str | None:
        assert self._dags is not None
        table = self._table
        rows = dag_rows(self._dags, self._last_runs, self.query_one("#filter", Input).value, table)
        # One cell kept for the scrollbar a long list brings.
        room = spark_width(rows, table.size.width - 1)
        self.has_room_for_durations = room > 0
        width = room if self._stats else 0
        table.respec([*COLUMNS, SPARK_COLUMN] if width else COLUMNS)
        if width:
            rows = [(key, [*cells, sparkline(self._stats.get(key), width, table)]) for key, cells in rows]
        with self.prevent(DataTable.RowHighlighted):  # redrawing is not the user moving
            table.sync_rows(rows, keep=selected)
        table.border_subtitle = NO_DAGS if not self._dags else ""
        keys = [k for k, _ in rows]
        return keys[0] if selected not in keys and keys else selected

    def _choose(self, dag_id: str) -> None:
        self._selected = dag_id
        self.post_message(self.DagSelected(dag_id))

    @on(DataTable.RowHighlighted, "#dags")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        if event.row_key.value is not None:
            self._choose(str(event.row_key.value))

    @on(Input.Changed, "#filter")
    def _filter_changed(self) -> None:
        if self._dags is None:
            return
        shown = self._draw(self._selected)
        if shown is not None and shown != self._selected:
            self._choose(shown)

    @on(Input.Submitted, "#filter")
    def _filter_done(self) -> None:
        self.focus_list()

    def on_key(self, event: events.Key) -> None:
        """Escape in the filter clears it and goes back to the list."""
        filt = self.query_one("#filter", Input)
        if event.key == "escape" and filt.has_focus:
            filt.value = ""
            self.focus_list()
            event.stop()
