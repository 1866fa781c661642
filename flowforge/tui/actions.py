"""The dashboard's actions that change something through the API, each behind a key of `app.py`.

Each action finds what it acts on (the selected DAG, run or task), asks first when the action
cannot be undone at a keypress, and sends one request from a worker thread; the next fetch shows
its effect. `FlowForgeApp` inherits them and binds their keys.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from textual import work
from textual.app import App

from flowforge.api.models import DagSummary, RunOut
from flowforge.client import ApiError, ApiUnreachable
from flowforge.tui.feed import ChangeSource, DashboardApi, Focus, Snapshot
from flowforge.tui.messages import Notice
from flowforge.tui.screens import ConfirmScreen, ExplainScreen, TriggerScreen
from flowforge.tui.states import RUN_ACTIVE
from flowforge.tui.text import visible

# The task states a run's "retry failed tasks" runs again, as the API's retry of a run does.
RETRYABLE = frozenset({"failed", "upstream_failed", "cancelled"})
MAX_NAMED = 6  # tasks named in a confirmation; the rest are counted


class DashboardActions(App[None]):
    """Trigger, pause, deactivate and activate a DAG; cancel and retry a run; retry and explain a task."""

    api: DashboardApi
    changes: ChangeSource
    focus_state: Focus
    snapshot: Snapshot | None
    follow_latest: bool

    def _dag(self) -> DagSummary | None:
        if self.snapshot is None:
            return None
        return next((d for d in self.snapshot.dags if d.id == self.focus_state.dag_id), None)

    def _run(self) -> RunOut | None:
        if self.snapshot is None:
            return None
        return next((r for r in self.snapshot.runs if r.run_id == self.focus_state.run_id), None)

    # -- DAGs ---------------------------------------------------------------------------------
    def action_trigger(self) -> None:
        """Start a run of the selected DAG: at once, or through its params form when it declares some."""
        dag = self._dag()
        if dag is None:
            self.notify("select a DAG first", severity="warning")
            return
        if not dag.active:
            self.notify(f"{dag.id} is inactive: d activates it", severity="warning", markup=False)
            return
        dag_id = dag.id
        if not dag.params:
            self.follow_latest = True
            self._call(f"triggered {dag_id}", lambda: self.api.trigger(dag_id, triggered_by="tui"))
            return

        def start(params: dict[str, Any]) -> object:
            return self.api.trigger(dag_id, params, triggered_by="tui")

        def done(started: bool | None) -> None:
            if started:
                self.follow_latest = True
                self.notify(f"triggered {dag_id}", markup=False)
                self.changes.wake()

        self.push_screen(TriggerScreen(dag, start), done)

    def action_pause(self) -> None:
        """Pause the selected DAG, or unpause it when paused."""
        dag = self._dag()
        if dag is None:
            return
        if dag.paused:
            self._call(f"unpaused {dag.id}", lambda: self.api.unpause_dag(dag.id))
        else:
            self._call(f"paused {dag.id}", lambda: self.api.pause_dag(dag.id))

    def action_deactivate(self) -> None:
        """Deactivate the selected DAG, or activate it when inactive; after asking."""
        dag = self._dag()
        if dag is None:
            self.notify("select a DAG first", severity="warning")
            return
        dag_id = dag.id
        if dag.active:
            question = (
                f"Deactivate {dag_id}?\nIt starts no new runs and leaves the DAG list (i shows inactive "
                "DAGs); its runs and history stay."
            )
            screen = ConfirmScreen("Deactivate DAG", question, "Deactivate")
            request: Callable[[], object] = lambda: self.api.delete_dag(dag_id)  # noqa: E731
            done = f"deactivated {dag_id}"
        else:
            catchup = "the ticks it missed are run" if dag.catchup else "ticks missed meanwhile are skipped"
            question = f"Activate {dag_id} again, at its latest version?\nScheduled runs resume; {catchup}."
            screen = ConfirmScreen("Activate DAG", question, "Activate", danger=False)
            request = lambda: self.api.activate_dag(dag_id)  # noqa: E731
            done = f"activated {dag_id}"

        def answered(result: dict[str, bool] | None) -> None:
            if result is not None:
                self._call(done, request)

        self.push_screen(screen, answered)

    # -- runs and tasks -----------------------------------------------------------------------
    def action_cancel_run(self) -> None:
        """Cancel the selected run, after asking."""
        run = self._run()
        if run is None:
            self.notify("select a run first", severity="warning")
            return
        if run.state not in RUN_ACTIVE:
            self.notify(f"run {run.run_id[:8]} has already finished ({run.state})", severity="warning")
            return
        run_id = run.run_id

        def answered(result: dict[str, bool] | None) -> None:
            if result is not None:
                self._call(f"cancelled run {run_id[:8]}", lambda: self.api.cancel_run(run_id))

        question = (
            f"Cancel run {run_id} of {run.dag_id}?\nIts running tasks are killed, the rest are cancelled."
        )
        self.push_screen(ConfirmScreen("Cancel run", question, "Cancel run"), answered)

    def action_retry_failed(self) -> None:
        """Run every failed, upstream-failed or cancelled task of the selected run again, after asking."""
        run = self._run()
        if run is None or self.snapshot is None:
            self.notify("select a run first", severity="warning")
            return
        run_id = run.run_id
        instances = self.snapshot.instances.get(run_id, {})
        failed = [t for t, i in instances.items() if i.state in RETRYABLE]
        if not failed:
            self.notify(f"run {run_id[:8]} has no failed task to retry", severity="warning")
            return
        named = ", ".join(visible(t) for t in failed[:MAX_NAMED])
        more = f" and {len(failed) - MAX_NAMED} more" if len(failed) > MAX_NAMED else ""

        def answered(result: dict[str, bool] | None) -> None:
            if result is not None:
                self._call(
                    f"retrying the failed tasks of run {run_id[:8]}", lambda: self.api.retry_run(run_id)
                )

        question = (
            f"Retry the failed tasks of run {run_id}?\n{named}{more} run again, "
            "with what never ran because of them."
        )
        self.push_screen(ConfirmScreen("Retry failed tasks", question, "Retry", danger=False), answered)

    def action_retry_task(self) -> None:
        """Retry the selected task of the selected run, after asking."""
        run, task_id = self._run(), self.focus_state.task_id
        if run is None or task_id is None:
            self.notify("select a task first (arrows and enter on the graph or grid)", severity="warning")
            return
        run_id = run.run_id

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

    def action_explain(self) -> None:
        """Say why the selected task is in its state."""
        run, task_id = self._run(), self.focus_state.task_id
        if run is None or task_id is None:
            self.notify("select a task first (arrows on the graph or grid)", severity="warning")
            return
        run_id = run.run_id
        self.push_screen(ExplainScreen(run_id, task_id, lambda: self.api.explain_task(run_id, task_id)))

    # -- requests -----------------------------------------------------------------------------
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
            self.notify(visible(message.text), severity=message.severity, markup=False)
