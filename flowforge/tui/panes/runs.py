"""The selected DAG's recent runs, newest first; posts `RunsPane.RunSelected` when the user moves to a run."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import on
from textual.message import Message
from textual.widgets import DataTable

from flowforge.api.models import DagSummary, RunOut
from flowforge.tui.text import label, visible
from flowforge.tui.widgets import StateTable, fmt_duration, fmt_time


def run_rows(runs: list[RunOut], table: StateTable, now: float) -> list[tuple[str, list[Any]]]:
    """The run table's rows: id, state, started, duration, who triggered it."""
    return [
        (
            r.run_id,
            [
                r.run_id[:8],
                table.run_state(r.state),
                fmt_time(r.started_at or r.created_at, now),
                fmt_duration(r.started_at, r.ended_at, now),
                label(r.triggered_by or ""),  # any text an API caller chose
            ],
        )
        for r in runs
    ]


class RunsPane(StateTable):
    """A row per run: id, state, start, duration, trigger."""

    class RunSelected(Message):
        """The user moved the cursor to a run."""

        def __init__(self, run_id: str) -> None:
            super().__init__()
            self.run_id = run_id

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row")
        self.border_title = "Runs"

    def on_mount(self) -> None:
        """Declare the columns."""
        self.set_columns(
            [("run", "run"), ("state", "state"), ("started", "started"), ("took", "took"), ("by", "by")]
        )

    def show(self, runs: list[RunOut], selected: str | None, dag: DagSummary | None, now: float) -> None:
        """The runs of `dag`, the cursor on `selected`; the DAG's name in the title."""
        with self.prevent(DataTable.RowHighlighted):  # redrawing is not the user moving
            self.sync_rows(run_rows(runs, self, now), keep=selected)
        title = Text("Runs")
        if dag is not None:
            title = label(f"Runs of {dag.id}")
            if dag.name and dag.name != dag.id:
                title.append(f" · {visible(dag.name)}")
        self.border_title = title  # a Text: a string would be read as markup

    @on(DataTable.RowHighlighted)
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        if event.row_key.value is not None:
            self.post_message(self.RunSelected(str(event.row_key.value)))
