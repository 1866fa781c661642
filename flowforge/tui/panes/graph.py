"""The graph pane: the focused run's DAG drawn live, titled with the run and its state."""

from __future__ import annotations

from flowforge.tui.feed import Snapshot, slow_note
from flowforge.tui.graph import DagGraph
from flowforge.tui.states import run_glyph


class GraphPane(DagGraph):
    """The structure of the focused run's DAG version, each task in its state in that run."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, classes="stateful")
        self.border_title = "Graph"

    def show_run(self, snap: Snapshot, run_id: str | None, task_id: str | None) -> None:
        """Draw `run_id` of the snapshot's DAG, the cursor on `task_id`.

        The run may have been focused after the snapshot's fetch began (a new run followed): every
        recent run's instances are in the snapshot.
        """
        if snap.graph is None:
            self.show(None, "no DAG selected")
            return
        instances = snap.instances.get(run_id or "", {})
        self.show(snap.graph.topology)
        self.set_states({t: i.state for t, i in instances.items()})
        self.set_slow({t for t, i in instances.items() if slow_note(i) is not None})
        run = next((r for r in snap.runs if r.run_id == run_id), None)
        title = f"Graph · {snap.graph.dag_id} v{snap.graph.version}"
        if run:
            title += f" · run {run.run_id[:8]} {run_glyph(run.state)} {run.state}"
        dag = next((d for d in snap.dags if d.id == snap.graph.dag_id), None)
        if dag is not None:  # whether the run used the DAG's latest version
            latest = dag.version == snap.graph.version
            title += " · the latest version" if latest else f" · not the latest (v{dag.version} is)"
        if not snap.graph.exact:
            title += " · structure of the latest version"
        self.border_title = title
        self.selected = task_id
