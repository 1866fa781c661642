"""`flowforge tui`: the Textual dashboard, a client of the REST API (never of the database)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any, ClassVar

from rich.text import Text
from textual import events, on, work
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.notifications import SeverityLevel
from textual.widgets import DataTable, Footer, Input, Log, Static
from textual.worker import Worker, get_current_worker

from flowforge.client import ApiError, ApiUnreachable
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
from flowforge.tui.screens import ConfirmScreen, HelpScreen
from flowforge.tui.states import RUN_ACTIVE, TASK_LIVE, run_glyph, task_glyph
from flowforge.tui.widgets import StateTable, StatusBar, attempts_text, dag_rows, fmt_duration, run_rows

log = logging.getLogger(__name__)

WIDE = 130  # columns from which the grid and the log sit side by side
MAX_BACKOFF = 8.0
NO_TASK = "select a task: arrows and enter on the graph or grid"


class SnapshotReady(Message):
    """A fetch finished."""

    def __init__(self, snapshot: Snapshot) -> None:
        super().__init__()
        self.snapshot = snapshot


class ConnectionLost(Message):
    """The API did not answer; the next try comes in `retry_in` seconds."""

    def __init__(self, reason: str, retry_in: float) -> None:
        super().__init__()
        self.reason = reason
        self.retry_in = retry_in


class Notice(Message):
    """A line for the user from a background request."""

    def __init__(self, text: str, severity: SeverityLevel = "information") -> None:
        super().__init__()
        self.text = text
        self.severity = severity


class FlowForgeApp(App[None]):
    """DAGs on the left; the selected DAG's runs, live graph, runs × tasks grid and task log on the right."""

    CSS_PATH = "app.tcss"
    ENABLE_COMMAND_PALETTE = False  # its footer entry would push the last key off an 80-column screen
    TITLE = "FlowForge"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("t", "trigger", "Trigger"),
        Binding("p", "pause", "Pause"),
        Binding("c", "cancel_run", "Cancel"),
        Binding("r", "retry_task", "Retry"),
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
        yield StatusBar(f"FlowForge · {self.api.base_url} · connecting…", id="status")
        with Horizontal(id="body"):
            with Vertical(id="sidebar"):
                yield Input(placeholder="/ filter DAGs", id="filter")
                dags = StateTable(id="dags", cursor_type="row", zebra_stripes=False)
                dags.border_title = "DAGs"
                yield dags
            with Vertical(id="main"):
                runs = StateTable(id="runs", cursor_type="row")
                runs.border_title = "Runs"
                yield runs
                graph = DagGraph(id="graph")
                graph.border_title = "Graph"
                yield graph
                with Horizontal(id="bottom"):
                    grid = RunGrid(id="grid", classes="stateful")
                    grid.border_title = "Grid: runs × tasks"
                    yield grid
                    with Vertical(id="logpane") as pane:
                        pane.border_title = "Log"
                        yield Static(Text(NO_TASK), id="attempts")
                        yield Log(id="log", max_lines=10_000, auto_scroll=True)
        yield Footer()

    def on_mount(self) -> None:
        """Set up the tables, then start fetching."""
        dags = self.query_one("#dags", StateTable)
        dags.set_columns([(" ", "last"), ("DAG", "id"), ("", "paused"), ("schedule", "schedule")])
        runs = self.query_one("#runs", StateTable)
        runs.set_columns(
            [("run", "run"), ("state", "state"), ("started", "started"), ("took", "took"), ("by", "by")]
        )
        self.query_one("#graph", DagGraph).add_class("stateful")
        dags.focus()
        self._fetch_loop()

    def on_resize(self, event: events.Resize) -> None:
        """Put the grid and the log side by side when there is room."""
        self.query_one("#body").set_class(event.size.width >= WIDE, "-wide")

    # -- fetching -----------------------------------------------------------------------------
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
                self._clear_log()
            self.changes.wake()

    def on_connection_lost(self, message: ConnectionLost) -> None:
        """Say so in the status line; the data shown stays as it was."""
        if not self.is_running:  # a message that arrived while the app closes: its widgets are gone
            return
        self.connected = False
        bar = self.query_one("#status", StatusBar)
        text = Text(f"FlowForge · {self.api.base_url} · ")
        text.append(f"✘ disconnected — retrying in {message.retry_in:.0f}s", style="bold red")
        text.append(f" ({message.reason})", style="dim")
        bar.update(text, layout=False)  # one line, always: no layout pass needed
        bar.add_class("-down")

    def on_snapshot_ready(self, message: SnapshotReady) -> None:
        """Show a fresh snapshot in every pane."""
        try:
            if self.is_running:  # not a message that arrived while the app closes: its widgets are gone
                self._show_snapshot(message.snapshot)
        finally:
            self._shown.set()

    def _show_snapshot(self, snap: Snapshot) -> None:
        if snap.status is None:  # the API answered, but with an error (a wrong token, a failing store)
            self.connected = True
            bar = self.query_one("#status", StatusBar)
            text = Text(f"FlowForge · {self.api.base_url} · ")
            text.append(f"✘ API error: {'; '.join(snap.problems)}", style="bold red")
            bar.update(text, layout=False)
            bar.add_class("-down")
            return
        self.connected = True
        self.snapshot = snap
        self._show_status(snap)
        self._show_dags()
        focus = self.focus_state
        if snap.focus.dag_id != focus.dag_id:
            return  # fetched for a DAG no longer selected: the next fetch brings the right one
        if self.follow_latest and snap.runs and focus.run_id != snap.runs[0]["run_id"]:
            self.refocus(run_id=snap.runs[0]["run_id"])
        elif focus.run_id and snap.runs and focus.run_id not in {r["run_id"] for r in snap.runs}:
            self.follow_latest = True
            self.refocus(run_id=snap.runs[0]["run_id"])
        self._show_runs(snap)
        self._show_graph(snap)
        if snap.focus.run_id == self.focus_state.run_id and snap.focus.task_id == self.focus_state.task_id:
            self._show_task(snap)
        for problem in snap.problems:
            if problem not in self._told:  # once each: the same problem comes back every second
                self._told.add(problem)
                self.notify(problem, severity="warning", timeout=4)
        self.fetches += 1

    # -- panes --------------------------------------------------------------------------------
    def _show_status(self, snap: Snapshot) -> None:
        bar = self.query_one("#status", StatusBar)
        bar.remove_class("-down")
        status = snap.status or {}
        runs = status.get("runs", {})
        workers = status.get("workers", {})
        text = Text(f"FlowForge · {self.api.base_url} · ")
        text.append("● connected", style="bold green")
        text.append(f" · {len(snap.dags)} DAGs")
        for state in ("running", "queued"):
            if runs.get(state):
                text.append(f" · {runs[state]} {state}")
        if workers:
            text.append(f" · {workers.get('slots', 0)} slots")
        bar.update(text, layout=False)

    def _show_dags(self) -> None:
        if self.snapshot is None:
            return
        table = self.query_one("#dags", StateTable)
        needle = self.query_one("#filter", Input).value
        rows = dag_rows(self.snapshot.dags, self.snapshot.last_runs, needle, table)
        with self.prevent(DataTable.RowHighlighted):
            table.sync_rows(rows, keep=self.focus_state.dag_id)
        keys = [k for k, _ in rows]
        if self.focus_state.dag_id not in keys and keys:
            # The selected DAG was filtered out or removed: select the first one shown.
            self._select_dag(keys[0])
        table.border_subtitle = "none yet: flowforge submit -f FILE" if not self.snapshot.dags else ""

    def _show_runs(self, snap: Snapshot) -> None:
        table = self.query_one("#runs", StateTable)
        with self.prevent(DataTable.RowHighlighted):
            table.sync_rows(run_rows(snap.runs, table, self.clock()), keep=self.focus_state.run_id)
        table.border_title = f"Runs of {snap.focus.dag_id}" if snap.focus.dag_id else "Runs"

    def _show_graph(self, snap: Snapshot) -> None:
        graph = self.query_one("#graph", DagGraph)
        grid = self.query_one("#grid", RunGrid)
        if snap.graph is None:
            graph.show(None, "no DAG selected")
            grid.show([], [], {})
            return
        # The focused run's instances, even when it was focused after this fetch began (a new run
        # followed): every recent run's instances are in the snapshot.
        run_id = self.focus_state.run_id
        instances = snap.instances.get(run_id or "", {})
        graph.show(snap.graph.topology)
        graph.set_states({t: i.get("state", "") for t, i in instances.items()})
        run = next((r for r in snap.runs if r["run_id"] == run_id), None)
        title = f"Graph · {snap.graph.dag_id} v{snap.graph.version}"
        if run:
            title += f" · run {run['run_id'][:8]} {run_glyph(run.get('state'))} {run.get('state')}"
        if not snap.graph.exact:
            title += " · structure of the latest version"
        graph.border_title = title
        grid.show(snap.graph.topology.task_order, snap.runs, snap.instances)
        grid.select(self.focus_state.run_id, self.focus_state.task_id)
        graph.selected = self.focus_state.task_id

    def _show_task(self, snap: Snapshot) -> None:
        pane = self.query_one("#logpane")
        attempts = self.query_one("#attempts", Static)
        task = snap.task
        if task is None:
            return
        now = self.clock()
        shown = self.focus_state.attempt or int(task.get("attempt") or 0)
        table = self.query_one("#dags", StateTable)
        _set_text(attempts, attempts_text(task, shown, now, table.state_style))
        state = task.get("state")
        follow = "following" if state in TASK_LIVE else "finished"
        pane.border_title = (
            f"Log · {task['task_id']} · {task_glyph(state)} {state} · attempt {shown or '—'} · {follow}"
        )
        pane.border_subtitle = fmt_duration(task.get("started_at"), task.get("ended_at"), now)
        chunk = snap.log
        if chunk is None or chunk.generation != self.focus_state.generation:
            return
        view = self.query_one("#log", Log)
        if chunk.reset:
            view.clear()
        if chunk.text:
            view.write(chunk.text)

    def _clear_log(self) -> None:
        self.query_one("#log", Log).clear()
        _set_text(
            self.query_one("#attempts", Static), Text("loading…" if self.focus_state.task_id else NO_TASK)
        )

    # -- selection ----------------------------------------------------------------------------
    def _select_dag(self, dag_id: str) -> None:
        if dag_id != self.focus_state.dag_id:
            self.follow_latest = True
            self.refocus(dag_id=dag_id, run_id=None, task_id=None, attempt=None)
            self.query_one("#graph", DagGraph).show(None, "loading…")

    @on(DataTable.RowHighlighted, "#dags")
    def _dag_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.row_key.value is not None:
            self._select_dag(str(event.row_key.value))

    @on(DataTable.RowHighlighted, "#runs")
    def _run_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.row_key.value is None:
            return
        run_id = str(event.row_key.value)
        runs = self.snapshot.runs if self.snapshot else []
        self.follow_latest = bool(runs) and runs[0]["run_id"] == run_id
        self.refocus(run_id=run_id, attempt=None)

    @on(DagGraph.TaskSelected)
    def _graph_task(self, event: DagGraph.TaskSelected) -> None:
        self.refocus(task_id=event.task_id, attempt=None)
        self.query_one("#grid", RunGrid).select(self.focus_state.run_id, event.task_id)
        if event.open_log:
            self.show_log(True)

    @on(RunGrid.CellSelected)
    def _grid_cell(self, event: RunGrid.CellSelected) -> None:
        runs = self.snapshot.runs if self.snapshot else []
        self.follow_latest = bool(runs) and runs[0]["run_id"] == event.run_id
        self.refocus(run_id=event.run_id, task_id=event.task_id, attempt=None)
        self.query_one("#graph", DagGraph).selected = event.task_id
        if event.open_log:
            self.show_log(True)

    @on(Input.Changed, "#filter")
    def _filter_changed(self) -> None:
        self._show_dags()

    @on(Input.Submitted, "#filter")
    def _filter_done(self) -> None:
        self.query_one("#dags").focus()

    def on_key(self, event: events.Key) -> None:
        """Escape in the filter clears it and goes back to the list."""
        filt = self.query_one("#filter", Input)
        if event.key == "escape" and filt.has_focus:
            filt.value = ""
            self.query_one("#dags").focus()
            event.stop()

    def show_log(self, visible: bool) -> None:
        """Show (or hide) the log pane; on a narrow terminal it takes the grid's place."""
        self.query_one("#bottom").set_class(visible, "-log")

    # -- actions ------------------------------------------------------------------------------
    def _dag(self) -> dict[str, Any] | None:
        if self.snapshot is None:
            return None
        return next((d for d in self.snapshot.dags if d["id"] == self.focus_state.dag_id), None)

    def _run(self) -> dict[str, Any] | None:
        if self.snapshot is None:
            return None
        return next((r for r in self.snapshot.runs if r["run_id"] == self.focus_state.run_id), None)

    def action_trigger(self) -> None:
        """Start a run of the selected DAG."""
        dag = self._dag()
        if dag is None:
            self.notify("select a DAG first", severity="warning")
            return
        self.follow_latest = True
        self._call(f"triggered {dag['id']}", lambda: self.api.trigger(dag["id"], triggered_by="tui"))

    def action_pause(self) -> None:
        """Pause the selected DAG, or unpause it when paused."""
        dag = self._dag()
        if dag is None:
            return
        if dag.get("paused"):
            self._call(f"unpaused {dag['id']}", lambda: self.api.unpause_dag(dag["id"]))
        else:
            self._call(f"paused {dag['id']}", lambda: self.api.pause_dag(dag["id"]))

    def action_cancel_run(self) -> None:
        """Cancel the selected run, after asking."""
        run = self._run()
        if run is None:
            self.notify("select a run first", severity="warning")
            return
        if run.get("state") not in RUN_ACTIVE:
            self.notify(
                f"run {run['run_id'][:8]} has already finished ({run.get('state')})", severity="warning"
            )
            return
        run_id = run["run_id"]

        def answered(result: dict[str, bool] | None) -> None:
            if result is not None:
                self._call(f"cancelled run {run_id[:8]}", lambda: self.api.cancel_run(run_id))

        question = (
            f"Cancel run {run_id} of {run['dag_id']}?\nIts running tasks are killed, the rest are cancelled."
        )
        self.push_screen(ConfirmScreen("Cancel run", question, "Cancel run"), answered)

    def action_retry_task(self) -> None:
        """Retry the selected task of the selected run, after asking."""
        run, task_id = self._run(), self.focus_state.task_id
        if run is None or task_id is None:
            self.notify("select a task first (arrows and enter on the graph or grid)", severity="warning")
            return
        run_id = run["run_id"]

        def answered(result: dict[str, bool] | None) -> None:
            if result is not None:
                downstream = result.get("downstream", False)
                self._call(
                    f"retrying {task_id}" + (" and downstream" if downstream else ""),
                    lambda: self.api.retry_task(run_id, task_id, downstream=downstream),
                )

        question = f"Retry task {task_id} of run {run_id}?\nIts state is cleared and it runs again."
        options = {"downstream": "also the tasks downstream of it"}
        self.push_screen(ConfirmScreen("Retry task", question, "Retry", options), answered)

    def action_toggle_log(self) -> None:
        """Show or hide the log of the selected task (with none selected, the one most worth reading)."""
        if self.focus_state.task_id is None and self.snapshot and self.snapshot.graph:
            task_id = self._task_worth_reading()
            if task_id:
                self.refocus(task_id=task_id, attempt=None)
                self.query_one("#graph", DagGraph).selected = task_id
                self.query_one("#grid", RunGrid).select(self.focus_state.run_id, task_id)
        bottom = self.query_one("#bottom")
        if self.query_one("#body").has_class("-wide"):  # the log is always shown: go to it
            self.show_log(True)
            self.query_one("#log").focus()
            return
        self.show_log(not bottom.has_class("-log"))

    def _task_worth_reading(self) -> str | None:
        """A running task, else a failed one, else the first: the log a user most likely wants."""
        assert self.snapshot is not None and self.snapshot.graph is not None
        order = self.snapshot.graph.topology.task_order
        states = {
            t: i.get("state")
            for t, i in self.snapshot.instances.get(self.focus_state.run_id or "", {}).items()
        }
        for wanted in ("running", "failed", "up_for_retry"):
            for task_id in order:
                if states.get(task_id) == wanted:
                    return task_id
        return order[0] if order else None

    def action_filter(self) -> None:
        """Type to filter the DAG list."""
        self.query_one("#filter", Input).focus()

    def action_help(self) -> None:
        """Show the keys and the state legend."""
        self.push_screen(HelpScreen())

    def action_attempt(self, step: int) -> None:
        """Show the log of an older or newer attempt."""
        task = self.snapshot.task if self.snapshot else None
        if not task or not task.get("attempt"):
            return
        latest = int(task["attempt"])
        current = self.focus_state.attempt or latest
        wanted = min(max(1, current + step), latest)
        self.refocus(attempt=None if wanted == latest else wanted)

    def exit(self, *args: Any, **kwargs: Any) -> None:
        """Stop the fetch loop at once (it may be sleeping), then leave."""
        self._stopping = True
        self.changes.wake()
        self.changes.close()
        super().exit(*args, **kwargs)

    @work(thread=True, group="actions", exit_on_error=False)
    def _call(self, done: str, request: Callable[[], Any]) -> None:
        """Send one request; say what happened; fetch again at once."""
        # Messages, not call_from_thread: that blocks, and would hang on an app that is closing.
        try:
            request()
        except ApiUnreachable as exc:
            self.post_message(Notice(f"API unreachable: {exc.reason}", "error"))
        except ApiError as exc:
            self.post_message(Notice(exc.message, "error"))
        else:
            self.post_message(Notice(done))
        self.changes.wake()

    def on_notice(self, message: Notice) -> None:
        """Show a background request's outcome."""
        if self.is_running:
            self.notify(message.text, severity=message.severity)


def _set_text(widget: Static, text: Text) -> None:
    """Update a Static, with a layout pass only when its height changes (a pass costs a frame on big screens)."""
    old = widget.content
    if isinstance(old, Text) and old == text:
        return
    old_lines = old.plain.count("\n") if isinstance(old, Text) else -1
    widget.update(text, layout=old_lines != text.plain.count("\n"))


def run_tui(api_url: str, token: str | None = None) -> None:
    """Open the dashboard on the API at `api_url` until the user quits."""
    from flowforge.client import ApiClient

    with ApiClient(api_url, token=token, timeout=5) as client:
        FlowForgeApp(client, changes=EventChanges(api_url, token)).run()
