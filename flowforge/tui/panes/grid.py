"""The grid pane: the selected DAG's recent runs × its tasks, the cursor on the focused run and task."""

from __future__ import annotations

from flowforge.tui.feed import Snapshot
from flowforge.tui.grid import RunGrid


class GridPane(RunGrid):
    """A row per task of the DAG, a column per recent run."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, classes="stateful")
        self.border_title = "Grid: runs × tasks"

    def show_runs(self, snap: Snapshot, run_id: str | None, task_id: str | None, now: float) -> None:
        """The snapshot's runs in the task order of the drawn graph; the cursor on `run_id` and `task_id`."""
        if snap.graph is None:
            self.show([], [], {})
            return
        self.show(snap.graph.topology.task_order, snap.runs, snap.instances, now)
        self.select(run_id, task_id)
