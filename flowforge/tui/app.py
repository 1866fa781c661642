"""`flowforge tui`: the Textual dashboard, a client of the REST API (never of the database).

The app composes the panes of `flowforge.tui.panes` (each draws itself from a `Snapshot`), keeps
what the user looks at (`focus_state`), wires keys to actions, and runs the feed worker: a thread
that fetches a snapshot whenever the change source says something may have changed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any, ClassVar

from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import Footer
from textual.worker import Worker, get_current_worker

from flowforge.client import ApiError, ApiUnreachable
from flowforge.tui.actions import DashboardActions
from flowforge.tui.feed import (
    ChangeSource,
    DashboardApi,
    EventChanges,
    Focus,
    Poller,
    PollingChanges,
    Snapshot,
)
from flowforge.tui.graph import DagGraph
from flowforge.tui.grid import RunGrid
from flowforge.tui.messages import ConnectionLost, SnapshotReady
from flowforge.tui.panes.dags import DagsPane
from flowforge.tui.panes.graph import GraphPane
from flowforge.tui.panes.grid import GridPane
from flowforge.tui.panes.log import LogPane, stepped_attempt, task_worth_reading
from flowforge.tui.panes.runs import RunsPane
from flowforge.tui.panes.status import StatusBar
from flowforge.tui.screens import HelpScreen
from flowforge.tui.text import visible

log = logging.getLogger(__name__)

WIDE = 130  # columns from which the grid and the log sit side by side
MAX_BACKOFF = 8.0


class FlowForgeApp(DashboardActions):
    """DAGs on the left; the selected DAG's runs, live graph, runs × tasks grid and task log on the right."""

    CSS_PATH = "app.tcss"
    ENABLE_COMMAND_PALETTE = False  # its footer entry would push the last key off an 80-column screen
    TITLE = "FlowForge"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("t", "trigger", "Trigger"),
        Binding("p", "pause", "Pause"),
        Binding("c", "cancel_run", "Cancel"),
        Binding("r", "retry_task", "Retry"),
        Binding("R", "retry_failed", "Retry failed", show=False),
        Binding("d", "deactivate", "Deactivate / activate", show=False),
        Binding("e", "explain", "Why", show=False),
        Binding("i", "toggle_inactive", "Inactive DAGs", show=False),
        Binding("l", "toggle_log", "Logs"),
        Binding("slash", "filter", "Filter", key_display="/"),
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("q", "quit", "Quit"),
        Binding("left_square_bracket", "attempt(-1)", "Older attempt", show=False),
        Binding("right_square_bracket", "attempt(1)", "Newer attempt", show=False),
    ]

    def __init__(
        self,
        api: DashboardApi,
        *,
        poll_interval: float = 1.0,
        clock: Callable[[], float] = time.time,
        changes: ChangeSource | None = None,
    ) -> None:
        super().__init__()
        self.api = api
        self.poll_interval = poll_interval
        self.clock = clock
        self.changes: ChangeSource = changes or PollingChanges()
        self.poller = Poller(api)
        self.focus_state = Focus()
        self.follow_latest = True  # the run shown follows the newest run until the user picks another
        self.snapshot: Snapshot | None = None
        self.connected: bool | None = None  # None until the first answer or failure
        self.fetches = 0  # snapshots applied, for tests that wait for fresh data
        self._stopping = False
        self._told: set[str] = set()
        self._shown = threading.Event()
        self._shown.set()

    # -- layout -------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        """Status line, DAG list, the run panes, footer."""
        yield StatusBar(self.api.base_url, id="status")
        with Horizontal(id="body"):
            yield DagsPane(id="sidebar")
            with Vertical(id="main"):
                yield RunsPane(id="runs")
                yield GraphPane(id="graph")
                with Horizontal(id="bottom"):
                    yield GridPane(id="grid")
                    yield LogPane(id="logpane")
        yield Footer()

    def on_mount(self) -> None:
        """Start on the DAG list, and start fetching."""
        self.query_one(DagsPane).focus_list()
        self._fetch_loop()

    def on_resize(self, event: events.Resize) -> None:
        """Put the grid and the log side by side when there is room."""
        self.query_one("#body").set_class(event.size.width >= WIDE, "-wide")

    def show_log(self, visible: bool) -> None:
        """Show (or hide) the log pane; on a narrow terminal it takes the grid's place."""
        self.query_one("#bottom").set_class(visible, "-log")

    # -- the feed worker ----------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="fetch", exit_on_error=False)
    def _fetch_loop(self) -> None:
        """Fetch, hand the snapshot to the UI, wait for the change source; back off while the API is away."""
        worker = get_current_worker()
        backoff = 0.0
        while not worker.is_cancelled and not self._stopping:
            focus = self.focus_state
            try:
                snapshot = self.poller.fetch(focus)
            except ApiUnreachable as exc:
                backoff = min(MAX_BACKOFF, max(1.0, backoff * 2))
                self.post_message(ConnectionLost(exc.reason, backoff))
                self._pause(worker, backoff)
                continue
            except ApiError as exc:
                snapshot = Snapshot(focus=focus, problems=[exc.message])
            except Exception as exc:  # a dashboard must outlive any one bad answer
                log.exception("fetch failed")
                snapshot = Snapshot(focus=focus, problems=[f"{type(exc).__name__}: {exc}"])
            backoff = 0.0
            self._shown.clear()
            if not self.post_message(SnapshotReady(snapshot)):
                return  # the app is closing
            self._pause(worker, self.poll_interval)
            # One snapshot in flight at most: a busy screen gets fresher data, not a queue of old.
            while not self._shown.wait(0.2):
                if worker.is_cancelled or self._stopping:
                    return

    def _pause(self, worker: Worker[None], seconds: float) -> None:
        """Wait for the change source, in short slices so that a cancelled worker ends promptly."""
        deadline = time.monotonic() + seconds
        while not worker.is_cancelled and not self._stopping:
            left = deadline - time.monotonic()
            if left <= 0 or self.changes.wait(min(left, 0.2)):
                return

    def refocus(self, **changes: Any) -> None:
        """Change what is looked at and fetch for it at once."""
        new = replace(self.focus_state, **changes)
        if new != self.focus_state:
            self.focus_state = replace(new, generation=self.focus_state.generation + 1)
            if "task_id" in changes or "run_id" in changes or "attempt" in changes:
                self.query_one(LogPane).clear(task_selected=bool(self.focus_state.task_id))
            self.changes.wake()

    def on_connection_lost(self, message: ConnectionLost) -> None:
        """Say so in the status line; the data shown stays as it was."""
        if not self.is_running:  # a message that arrived while the app closes: its widgets are gone
            return
        self.connected = False
        self.query_one(StatusBar).show_disconnected(message.reason, message.retry_in)

    def on_snapshot_ready(self, message: SnapshotReady) -> None:
        """Show a fresh snapshot in every pane."""
        try:
            if self.is_running:  # not a message that arrived while the app closes: its widgets are gone
                self._show_snapshot(message.snapshot)
        finally:
            self._shown.set()

    def _show_snapshot(self, snap: Snapshot) -> None:
        self.connected = True
        if snap.status is None:  # the API answered, but with an error (a wrong token, a failing store)
            self.query_one(StatusBar).show_api_error(snap.problems)
            return
        self.snapshot = snap
        self.query_one(StatusBar).show_connected(snap)
        dags_pane = self.query_one(DagsPane)
        selected = dags_pane.show(snap.dags, snap.last_runs, snap.stats)
        self.poller.want_stats = dags_pane.has_room_for_durations
        if selected is not None:
            self._select_dag(selected)
        focus = self.focus_state
        if snap.focus.dag_id != focus.dag_id:
            return  # fetched for a DAG no longer selected: the next fetch brings the right one
        if self.follow_latest and snap.runs and focus.run_id != snap.runs[0].run_id:
            self.refocus(run_id=snap.runs[0].run_id)
        elif focus.run_id and snap.runs and focus.run_id not in {r.run_id for r in snap.runs}:
            self.follow_latest = True
            self.refocus(run_id=snap.runs[0].run_id)
        focus = self.focus_state
        dag = next((d for d in snap.dags if d.id == snap.focus.dag_id), None)
        self.query_one(RunsPane).show(snap.runs, focus.run_id, dag, self.clock())
        self.query_one(GraphPane).show_run(snap, focus.run_id, focus.task_id)
        self.query_one(GridPane).show_runs(snap, focus.run_id, focus.task_id, self.clock())
        if snap.focus.run_id == focus.run_id and snap.focus.task_id == focus.task_id:
            self.query_one(LogPane).show_task(snap, focus, self.clock(), self.query_one(DagsPane).state_style)
        for problem in snap.problems:
            if problem not in self._told:  # once each: the same problem comes back every second
                self._told.add(problem)
                self.notify(visible(problem), severity="warning", timeout=4, markup=False)
        self.fetches += 1

    # -- selection ----------------------------------------------------------------------------
    def _select_dag(self, dag_id: str) -> None:
        if dag_id != self.focus_state.dag_id:
            self.follow_latest = True
            self.refocus(dag_id=dag_id, run_id=None, task_id=None, attempt=None)
            self.query_one(GraphPane).show(None, "loading…")

    def _select_run(self, run_id: str, **changes: Any) -> None:
        runs = self.snapshot.runs if self.snapshot else []
        self.follow_latest = bool(runs) and runs[0].run_id == run_id
        self.refocus(run_id=run_id, attempt=None, **changes)

    @on(DagsPane.DagSelected)
    def _dag_selected(self, event: DagsPane.DagSelected) -> None:
        self._select_dag(event.dag_id)

    @on(RunsPane.RunSelected)
    def _run_selected(self, event: RunsPane.RunSelected) -> None:
        self._select_run(event.run_id)

    @on(DagGraph.TaskSelected)
    def _graph_task(self, event: DagGraph.TaskSelected) -> None:
        self.refocus(task_id=event.task_id, attempt=None)
        self.query_one(GridPane).select(self.focus_state.run_id, event.task_id)
        if event.open_log:
            self.show_log(True)

    @on(RunGrid.CellSelected)
    def _grid_cell(self, event: RunGrid.CellSelected) -> None:
        self._select_run(event.run_id, task_id=event.task_id)
        self.query_one(GraphPane).selected = event.task_id
        if event.open_log:
            self.show_log(True)

    # -- actions ------------------------------------------------------------------------------
    # Those that change something through the API are in `DashboardActions`.
    def action_toggle_inactive(self) -> None:
        """Show or hide the inactive DAGs in the list."""
        shown = not self.focus_state.inactive
        self.refocus(inactive=shown)
        self.notify("inactive DAGs shown" if shown else "inactive DAGs hidden")

    def action_toggle_log(self) -> None:
        """Show or hide the log of the selected task (with none selected, the one most worth reading)."""
        if self.focus_state.task_id is None and self.snapshot and self.snapshot.graph:
            task_id = task_worth_reading(self.snapshot, self.focus_state.run_id)
            if task_id:
                self.refocus(task_id=task_id, attempt=None)
                self.query_one(GraphPane).selected = task_id
                self.query_one(GridPane).select(self.focus_state.run_id, task_id)
        if self.query_one("#body").has_class("-wide"):  # the log is always shown: go to it
            self.show_log(True)
            self.query_one(LogPane).focus_log()
            return
        self.show_log(not self.query_one("#bottom").has_class("-log"))

    def action_filter(self) -> None:
        """Type to filter the DAG list."""
        self.query_one(DagsPane).focus_filter()

    def action_help(self) -> None:
        """Show the keys and the state legend."""
        self.push_screen(HelpScreen())

    def action_attempt(self, step: int) -> None:
        """Show the log of an older or newer attempt."""
        task = self.snapshot.task if self.snapshot else None
        self.refocus(attempt=stepped_attempt(task, self.focus_state.attempt, step))

    def exit(self, *args: Any, **kwargs: Any) -> None:
        """Stop the fetch loop at once (it may be sleeping), then leave."""
        self._stopping = True
        self.changes.wake()
        self.changes.close()
        super().exit(*args, **kwargs)


def run_tui(api_url: str, token: str | None = None) -> None:
    """Open the dashboard on the API at `api_url` until the user quits."""
    from flowforge.client import ApiClient

    with ApiClient(api_url, token=token, timeout=5) as client:
        FlowForgeApp(client, changes=EventChanges(api_url, token)).run()
