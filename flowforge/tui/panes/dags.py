"""The DAG list on the left, with its filter box; posts `DagsPane.DagSelected` when the selection moves."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import events, on
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import DataTable, Input

from flowforge.api.models import DagSummary, RunOut
from flowforge.tui.states import run_glyph
from flowforge.tui.text import label
from flowforge.tui.widgets import StateTable

NO_DAGS = "none yet: flowforge submit -f FILE"


def dag_rows(
    dags: list[DagSummary], last_runs: dict[str, RunOut], needle: str, table: StateTable
) -> list[tuple[str, list[Any]]]:
    """The DAG table's rows: last run glyph, id, schedule (or "paused"); filtered by `needle`.

    A paused DAG says so in its schedule's place: a column of its own would take the width the
    schedules need on an 80-column screen.
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
        if dag.paused:
            schedule = Text.assemble(
                ("paused", "italic"), " " if dag.schedule else "", label(dag.schedule or "", "dim")
            )
        cells = [
            table.styled(run_glyph(state) if last else " ", state),
            label(dag.id, "dim" if dag.paused else ""),
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
        self._selected: str | None = None  # the app's focus follows it (see `show` and DagSelected)

    def compose(self) -> ComposeResult:
        """The filter box above the table."""
        yield Input(placeholder="/ filter DAGs", id="filter")
        table = StateTable(id="dags", cursor_type="row", zebra_stripes=False)
        table.border_title = "DAGs"
        yield table

    def on_mount(self) -> None:
        """Declare the table's columns."""
        self._table.set_columns([(" ", "last"), ("DAG", "id"), ("schedule", "schedule")])

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

    def show(self, dags: list[DagSummary], last_runs: dict[str, RunOut]) -> str | None:
        """List these DAGs, the cursor kept on the one selected; returns the DAG now selected.

        That is the one selected before, or the first DAG shown when it was filtered out or removed
        (or when none was selected yet).
        """
        self._dags, self._last_runs = dags, last_runs
        self._selected = self._draw(self._selected)
        return self._selected

    def _draw(self, selected: str | None) -> str | None:
        assert self._dags is not None
        table = self._table
        rows = dag_rows(self._dags, self._last_runs, self.query_one("#filter", Input).value, table)
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
