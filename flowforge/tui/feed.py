"""What the dashboard shows, fetched from the API: one `Poller.fetch` call gathers a consistent picture.

The dashboard's worker thread calls `fetch` whenever its `ChangeSource` says something may have
changed: a timer (`PollingChanges`), or the timer woken early by `/api/v1/events`
(`EventChanges`). Fetching and the widgets are the same either way.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from flowforge.api.models import (
    DagStats,
    DagSummary,
    LogPage,
    RunDetail,
    RunList,
    RunOut,
    RunTaskOut,
    SlowNoteOut,
    Status,
    TaskDetail,
    TaskExplanation,
)
from flowforge.client import ApiClient, ApiError
from flowforge.tui.layout import Topology, build_topology
from flowforge.tui.states import RUN_ACTIVE

log = logging.getLogger(__name__)

Instances = dict[str, RunTaskOut]  # a run's task instances by task id

RUNS_SHOWN = 25  # runs of the selected DAG listed, and the most the grid can show
RECENT_RUNS = 200  # runs read at once to find every DAG's last run
SPEC_BY_TASK_LIMIT = 300  # old versions are rebuilt task by task up to this many tasks
LAST_RUN_TTL = 30.0  # seconds a DAG's last run, looked up on its own, is reused
STATS_RUNS = 50  # ended runs a DAG's statistics are read over
STATS_TTL = 30.0  # seconds a DAG's statistics are reused before they are asked again
STATS_PER_FETCH = 10  # the most DAGs whose statistics one fetch asks for: a long list fills in over a few


class DashboardApi(Protocol):
    """The part of `flowforge.client.ApiClient` the dashboard uses.

    The actions' answers are not read (the next fetch shows their effect), hence `object`.
    """

    base_url: str

    def status(self) -> Status: ...
    def list_dags(self, include_inactive: bool = False) -> list[DagSummary]: ...
    def list_runs(
        self, dag_id: str | None = None, state: str | None = None, limit: int = 50, offset: int = 0
    ) -> RunList: ...
    def get_run(self, run_id: str) -> RunDetail: ...
    def get_task(self, run_id: str, task_id: str) -> TaskDetail: ...
    def logs(self, run_id: str, task_id: str, attempt: int | None = None, after: int = 0) -> LogPage: ...
    def trigger(
        self, dag_id: str, params: dict[str, Any] | None = None, triggered_by: str = "cli"
    ) -> object: ...
    def pause_dag(self, dag_id: str) -> object: ...
    def unpause_dag(self, dag_id: str) -> object: ...
    def cancel_run(self, run_id: str) -> object: ...
    def retry_task(self, run_id: str, task_id: str, downstream: bool = False) -> object: ...
    def retry_run(self, run_id: str) -> object: ...
    def delete_dag(self, dag_id: str) -> object: ...
    def activate_dag(self, dag_id: str) -> object: ...
    def explain_task(self, run_id: str, task_id: str) -> TaskExplanation: ...
    def dag_stats(self, dag_id: str, runs: int = 50) -> DagStats: ...


@dataclass(frozen=True)
class Focus:
    """What the user is looking at; `generation` grows on every change so a re-opened log starts afresh."""

    dag_id: str | None = None
    run_id: str | None = None
    task_id: str | None = None
    attempt: int | None = None  # None: the latest attempt, followed as retries happen
    inactive: bool = False  # the DAG list shows inactive DAGs too
    generation: int = 0


@dataclass(frozen=True)
class LogChunk:
    """New log text of the focused task instance; `reset` means it starts a new log (clear first)."""

    run_id: str
    task_id: str
    attempt: int
    text: str
    reset: bool
    done: bool
    generation: int


@dataclass(frozen=True)
class GraphInfo:
    """The structure to draw for the focused run (or the DAG's latest version when it has no run)."""

    dag_id: str
    version: int
    topology: Topology
    exact: bool = True  # False when an old version's structure could not be read and the latest stands in


@dataclass
class Snapshot:
    """Everything one fetch saw, handed to the UI thread in one piece."""

    focus: Focus
    status: Status | None = None
    dags: list[DagSummary] = field(default_factory=list)
    last_runs: dict[str, RunOut] = field(default_factory=dict)  # DAG id → its newest run
    stats: dict[str, DagStats] = field(default_factory=dict)  # DAG id → its last ended runs' durations
    runs: list[RunOut] = field(default_factory=list)  # of focus.dag_id, newest first
    instances: dict[str, Instances] = field(default_factory=dict)  # run id → its task instances
    graph: GraphInfo | None = None
    task: TaskDetail | None = None  # the focused task instance with its attempts
    log: LogChunk | None = None
    problems: list[str] = field(default_factory=list)  # things that failed without the API being down


class ChangeSource(Protocol):
    """Tells the fetch loop when to look again."""

    def wait(self, timeout: float) -> bool:
        """Block until something may have changed or `wake` is called (True), or `timeout` seconds pass (False)."""

    def wake(self) -> None:
        """End the current wait now (the user changed what they look at, or acted)."""

    def close(self) -> None:
        """Stop whatever the source runs in the background."""


class PollingChanges:
    """A ChangeSource that assumes everything may change at any time: the loop simply polls."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def wait(self, timeout: float) -> bool:
        """Sleep up to `timeout` seconds, less if woken."""
        woken = self._event.wait(timeout)
        self._event.clear()
        return woken

    def wake(self) -> None:
        """Cut the current sleep short."""
        self._event.set()

    def close(self) -> None:
        """Nothing runs in the background."""


class EventChanges(PollingChanges):
    """Polling, plus `GET /api/v1/events`: a change anywhere wakes the fetch loop at once.

    The stream is read in a daemon thread with a client of its own, since it holds a connection
    open. When it drops (the API restarted) it is opened again; an API without the endpoint leaves
    plain polling. The poll stays either way: log text grows without events.
    """

    RETRY_SECS = 2.0

    def __init__(self, base_url: str, token: str | None = None) -> None:
        super().__init__()
        self.live = False  # True while the stream is delivering
        self._stop = threading.Event()
        self._client = ApiClient(base_url, token=token)
        self._thread = threading.Thread(target=self._listen, name="dashboard-events", daemon=True)
        self._thread.start()

    def _listen(self) -> None:
        while not self._stop.is_set():
            try:
                for _event in self._client.events():
                    self.live = True
                    self.wake()
                    if self._stop.is_set():
                        return
            except ApiError as exc:
                if exc.status in (404, 405):
                    log.info("the API offers no events stream; polling only")
                    return
            except Exception:  # a dropped stream is retried, whatever broke it
                if self._stop.is_set():
                    return  # closing the client under the stream lands here
                log.debug("events stream dropped", exc_info=True)
            self.live = False
            self._stop.wait(self.RETRY_SECS)

    def close(self) -> None:
        """End the stream and its thread."""
        self._stop.set()
        self._client.close()


def slow_note(instance: RunTaskOut | None) -> SlowNoteOut | None:
    """The API's note on a running task that runs far longer than usual; None otherwise.

    None too from an API that sends no such note.
    """
    if instance is None or instance.state != "running":
        return None
    return getattr(instance, "slow", None)


def _run_signature(run: RunOut) -> tuple[Any, ...]:
    return (run.state, run.started_at, run.ended_at)


class Poller:
    """Fetches a Snapshot per call, re-reading only what can have changed since the last one."""

    def __init__(self, api: DashboardApi, clock: Callable[[], float] = time.monotonic) -> None:
        self.api = api
        self._clock = clock
        self._instances: dict[str, tuple[tuple[Any, ...], Instances]] = {}
        self._topologies: dict[tuple[str, int], GraphInfo] = {}
        self._last_run_cache: dict[str, tuple[float, RunOut | None]] = {}
        self._stats_cache: dict[str, tuple[float, DagStats | None]] = {}
        self.want_stats = True  # False while the DAG list has no room for durations: none are asked
        self._log_key: tuple[Any, ...] | None = None
        self._log_cursor = 0
        self._log_done = False

    def fetch(self, focus: Focus) -> Snapshot:
        """One consistent picture for `focus`; raises ApiUnreachable when the API does not answer."""
        snap = Snapshot(focus=focus)
        snap.status = self.api.status()
        snap.dags = self.api.list_dags(include_inactive=focus.inactive)
        snap.last_runs = self._last_runs(snap.dags)
        snap.stats = self._stats(snap.dags, focus.dag_id, snap.problems)
        dag = next((d for d in snap.dags if d.id == focus.dag_id), None)
        if dag is None:
            return snap
        snap.runs = self.api.list_runs(dag_id=dag.id, limit=RUNS_SHOWN).runs
        if snap.runs:
            snap.last_runs[dag.id] = snap.runs[0]
        snap.instances = self._instances_of(snap.runs, snap.problems)
        run = next((r for r in snap.runs if r.run_id == focus.run_id), None)
        snap.graph = self._graph(dag, run, snap.instances.get(run.run_id) if run else None, snap.problems)
        if run is not None and focus.task_id:
            self._task_and_log(snap, run.run_id, focus)
        return snap

    # -- parts ----------------------------------------------------------------------------
    def _last_runs(self, dags: list[DagSummary]) -> dict[str, RunOut]:
        out: dict[str, RunOut] = {}
        for run in self.api.list_runs(limit=RECENT_RUNS).runs:
            out.setdefault(run.dag_id, run)
        now = self._clock()
        for dag in dags:
            if dag.id in out:
                continue
            # Older than the recent window (or never run): asked on its own, and not every second.
            at, cached = self._last_run_cache.get(dag.id, (-LAST_RUN_TTL, None))
            if now - at >= LAST_RUN_TTL:
                runs = self.api.list_runs(dag_id=dag.id, limit=1).runs
                cached = runs[0] if runs else None
                self._last_run_cache[dag.id] = (now, cached)
            if cached is not None:
                out[dag.id] = cached
        return out

    def _stats(self, dags: list[DagSummary], first: str | None, problems: list[str]) -> dict[str, DagStats]:
        """Each listed DAG's statistics, asked at most once per STATS_TTL seconds per DAG.

        The DAGs never read come first, then the stalest; the selected one (`first`) before the
        others. At most STATS_PER_FETCH are asked per fetch, so a long list costs a few calls a
        second, not one per DAG. A DAG the API has no statistics for (removed since it was listed,
        or an API without the route) is left out until its time comes again. None are asked (or
        shown) while `want_stats` is off: the app turns it off while the DAG list has no room for them.
        """
        if not self.want_stats:
            return {}
        now = self._clock()
        listed = {d.id for d in dags}
        for gone in set(self._stats_cache) - listed:
            del self._stats_cache[gone]
        due = [d.id for d in dags if now - self._stats_cache.get(d.id, (-STATS_TTL, None))[0] >= STATS_TTL]
        due.sort(key=lambda dag_id: (dag_id != first, self._stats_cache.get(dag_id, (-STATS_TTL, None))[0]))
        for dag_id in due[:STATS_PER_FETCH]:
            stats = None
            try:
                stats = self.api.dag_stats(dag_id, runs=STATS_RUNS)
            except ApiError as exc:
                if exc.status not in (404, 405):
                    problems.append(f"durations of {dag_id}: {exc.message}")
            self._stats_cache[dag_id] = (now, stats)
        return {k: s for k, (_, s) in self._stats_cache.items() if s is not None}

    def _instances_of(self, runs: list[RunOut], problems: list[str]) -> dict[str, Instances]:
        out: dict[str, Instances] = {}
        for run in runs:
            run_id, sig = run.run_id, _run_signature(run)
            cached = self._instances.get(run_id)
            # A finished run's tasks change only through the run itself (retry, cancel), which
            # changes its signature: until then the cached instances stand.
            if cached and cached[0] == sig and run.state not in RUN_ACTIVE:
                out[run_id] = cached[1]
                continue
            try:
                tasks = self.api.get_run(run_id).tasks
            except ApiError as exc:
                problems.append(f"run {run_id}: {exc.message}")
                continue
            out[run_id] = {t.task_id: t for t in tasks}
            self._instances[run_id] = (sig, out[run_id])
        for gone in set(self._instances) - set(out):
            del self._instances[gone]
        return out

    def _graph(
        self,
        dag: DagSummary,
        run: RunOut | None,
        instances: Instances | None,
        problems: list[str],
    ) -> GraphInfo:
        version = run.dag_version if run else dag.version
        key = (dag.id, version)
        if key in self._topologies:
            return self._topologies[key]
        exact = True
        if version == dag.version:
            tasks = [(t.id, t.depends_on) for t in dag.tasks]
        elif run is not None and instances and len(instances) <= SPEC_BY_TASK_LIMIT:
            tasks = self._tasks_of_version(run.run_id, list(instances), problems)
        else:
            tasks = [(t.id, t.depends_on) for t in dag.tasks]
            exact = False
        info = GraphInfo(dag.id, version, build_topology(tasks), exact)
        if exact:
            self._topologies[key] = info
        return info

    def _tasks_of_version(
        self, run_id: str, task_ids: list[str], problems: list[str]
    ) -> list[tuple[str, list[str]]]:
        # The API serves the latest version of a DAG, but each task instance carries its task's
        # spec at the run's version: enough to rebuild the old structure, once per version.
        tasks = []
        for task_id in task_ids:
            try:
                spec = self.api.get_task(run_id, task_id).spec
            except ApiError as exc:
                problems.append(f"task {task_id}: {exc.message}")
                spec = None
            tasks.append((task_id, list(spec.depends_on) if spec else []))
        return tasks

    def _task_and_log(self, snap: Snapshot, run_id: str, focus: Focus) -> None:
        assert focus.task_id is not None
        try:
            snap.task = self.api.get_task(run_id, focus.task_id)
        except ApiError as exc:
            snap.problems.append(f"task {focus.task_id}: {exc.message}")
            return
        attempt = focus.attempt or snap.task.attempt
        if attempt <= 0:
            return
        key = (run_id, focus.task_id, attempt, focus.generation)
        reset = key != self._log_key
        if reset:
            self._log_key, self._log_cursor, self._log_done = key, 0, False
        elif self._log_done:
            return
        try:
            page = self.api.logs(run_id, focus.task_id, attempt=attempt, after=self._log_cursor)
        except ApiError as exc:
            snap.problems.append(f"log of {focus.task_id}: {exc.message}")
            return
        self._log_cursor = page.cursor
        self._log_done = page.done
        snap.log = LogChunk(
            run_id, focus.task_id, attempt, page.text, reset, self._log_done, focus.generation
        )
