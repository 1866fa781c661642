"""The terminal dashboard: pilot tests against a real `flowforge up`, snapshots on fixed data, layout checks."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from textual.pilot import Pilot
from textual.widgets import Input, Log

from flowforge.cli import app as cli_app
from flowforge.client import ApiClient
from flowforge.tui import FlowForgeApp
from flowforge.tui.feed import EventChanges
from flowforge.tui.graph import DagGraph
from flowforge.tui.grid import RunGrid
from flowforge.tui.layout import build_topology, neighbour, place
from flowforge.tui.screens import ConfirmScreen, HelpScreen

REPO = Path(__file__).resolve().parent.parent


# -- a real `flowforge up` ---------------------------------------------------------------------
def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(port: int, home: Path) -> subprocess.Popen[bytes]:
    """`flowforge up` on `port` with its data in `home`, once /health answers."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWFORGE_")}
    log = open(home / "up.log", "ab")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "flowforge",
            "up",
            "--port",
            str(port),
            "--home",
            str(home),
            "--concurrency",
            "2",
        ],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"flowforge up exited with {proc.returncode}: {(home / 'up.log').read_text()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    stop_server(proc)
    raise RuntimeError("flowforge up did not answer /health within 30 s")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    """Terminate, then kill if it lingers."""
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a `flowforge up` shared by this module's tests (each uses DAGs of its own)."""
    port = free_port()
    proc = start_server(port, tmp_path_factory.mktemp("tui-up"))
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_server(proc)


@pytest.fixture
def api(server: str) -> Iterator[ApiClient]:
    """A client of the shared server, for setting up and checking what the dashboard did."""
    with ApiClient(server) as client:
        yield client


def submit(api: ApiClient, dag_id: str, tasks: str) -> None:
    """Store a DAG whose tasks are given as YAML list items."""
    api.submit_dag(f"id: {dag_id}\ntasks:\n{tasks}")


def run_app(
    app: FlowForgeApp, scenario: Callable[[Pilot[None]], Awaitable[None]], size: tuple[int, int]
) -> None:
    """Run the dashboard headless and drive it with `scenario`."""

    async def main() -> None:
        async with app.run_test(size=size) as pilot:
            await scenario(pilot)

    asyncio.run(main())


async def until(pilot: Pilot[None], check: Callable[[], Any], what: str, timeout: float = 20) -> None:
    """Let the app run until `check()` is true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        await pilot.pause(0.1)
    raise AssertionError(f"timed out waiting for {what}")


async def select_dag(pilot: Pilot[None], dag_id: str) -> None:
    """Filter the DAG list down to one DAG, as a user would with `/`."""
    app = pilot.app
    assert isinstance(app, FlowForgeApp)
    await pilot.press("slash")
    app.query_one("#filter", Input).value = dag_id
    await pilot.press("enter")
    await until(
        pilot,
        lambda: (
            app.focus_state.dag_id == dag_id
            and app.snapshot is not None
            and app.snapshot.focus.dag_id == dag_id
        ),
        f"DAG {dag_id} and its data",
    )


def dashboard(url: str, **kwargs: Any) -> tuple[FlowForgeApp, ApiClient]:
    """The dashboard on `url`, and the client it uses (closed by the caller)."""
    client = ApiClient(url, timeout=5)
    return FlowForgeApp(client, **{"poll_interval": 0.3, **kwargs}), client


def wait_run(api: ApiClient, run_id: str, states: set[str], timeout: float = 30) -> dict[str, Any]:
    """Poll the API until the run is in one of `states`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = api.get_run(run_id)
        if run["state"] in states:
            return run
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} never reached {states}")


# -- against the real server -------------------------------------------------------------------
@pytest.mark.e2e
def test_dag_list_fills(api: ApiClient, server: str) -> None:
    submit(api, "tui-list-one", "  - {id: a, command: 'true'}\n")
    submit(api, "tui-list-two", "  - {id: b, command: 'true'}\n")
    app, client = dashboard(server)

    async def scenario(pilot: Pilot[None]) -> None:
        table = app.query_one("#dags")

        def ids() -> set[str]:
            return {str(r.key.value) for r in table.ordered_rows}  # type: ignore[attr-defined]

        await until(pilot, lambda: {"tui-list-one", "tui-list-two"} <= ids(), "both DAGs listed")
        assert "connected" in str(app.query_one("#status").render())
        await pilot.press("slash")
        app.query_one("#filter", Input).value = "list-two"
        await until(pilot, lambda: ids() == {"tui-list-two"}, "the filter to leave one DAG")
        await pilot.press("escape")
        await until(pilot, lambda: {"tui-list-one", "tui-list-two"} <= ids(), "escape to clear the filter")

    with client:
        run_app(app, scenario, (100, 30))


@pytest.mark.e2e
def test_selecting_a_run_draws_its_graph(api: ApiClient, server: str) -> None:
    submit(
        api,
        "tui-graph",
        "  - {id: fetch-users, command: 'true'}\n"
        "  - {id: fetch-orders, command: 'true'}\n"
        "  - {id: join-both, command: 'true', depends_on: [fetch-users, fetch-orders]}\n"
        "  - {id: publish, command: 'true', depends_on: [join-both]}\n",
    )
    first = api.trigger("tui-graph")["run_id"]
    wait_run(api, first, {"success"})
    second = api.trigger("tui-graph")["run_id"]
    wait_run(api, second, {"success"})
    app, client = dashboard(server)

    async def scenario(pilot: Pilot[None]) -> None:
        await select_dag(pilot, "tui-graph")
        graph = app.query_one("#graph", DagGraph)
        await until(pilot, lambda: app.focus_state.run_id == second, "the newest run to be selected")
        await until(pilot, lambda: "publish" in graph.rendered_text(), "the graph to be drawn")
        text = graph.rendered_text()
        for task in ("fetch-users", "fetch-orders", "join-both", "publish"):
            assert task in text
        assert "▶" in text and "✔" in text  # connectors with arrows; states as glyphs
        # Picking the older run in the run list shows that run.
        app.query_one("#runs").focus()
        await pilot.press("down")
        await until(pilot, lambda: app.focus_state.run_id == first, "the older run to be selected")
        await until(pilot, lambda: first[:8] in str(graph.border_title), "the graph title to name the run")
        assert not app.follow_latest

    with client:
        run_app(app, scenario, (100, 30))


@pytest.mark.e2e
@pytest.mark.parametrize("source", ["polling", "events"])
def test_trigger_key_and_live_cells(api: ApiClient, server: str, source: str, tmp_path: Path) -> None:
    dag_id = f"tui-live-{source}"
    go_on = tmp_path / "go-on"  # the first task runs until the test has seen it running
    wait = f"for i in $(seq 300); do [ -f {go_on} ] && break; sleep 0.1; done"
    submit(
        api,
        dag_id,
        f"  - {{id: slow-one, command: '{wait}'}}\n  - {{id: slow-two, command: 'sleep 0.5', depends_on: [slow-one]}}\n",
    )
    if source == "events":
        # A poll every 60 s: within the test, only the events stream can bring the changes.
        changes = EventChanges(server)
        app, client = dashboard(server, poll_interval=60, changes=changes)
    else:
        app, client = dashboard(server)

    async def scenario(pilot: Pilot[None]) -> None:
        await select_dag(pilot, dag_id)
        assert app.snapshot is not None and app.snapshot.runs == []
        await pilot.press("t")
        await until(pilot, lambda: bool(app.snapshot and app.snapshot.runs), "the triggered run to appear")
        assert app.snapshot is not None
        run_id = app.snapshot.runs[0]["run_id"]
        assert app.snapshot.runs[0]["triggered_by"] == "tui"
        grid = app.query_one("#grid", RunGrid)
        graph = app.query_one("#graph", DagGraph)
        await until(pilot, lambda: grid.state_of(run_id, "slow-one") == "running", "the first cell to run")
        assert graph.state_of("slow-one") == "running"
        assert grid.state_of(run_id, "slow-two") == "pending"
        go_on.touch()
        seen: list[tuple[str | None, str | None]] = []

        def done() -> bool:
            cells = (grid.state_of(run_id, "slow-one"), grid.state_of(run_id, "slow-two"))
            if not seen or seen[-1] != cells:
                seen.append(cells)
            return cells == ("success", "success")

        await until(pilot, done, "both cells to turn success", timeout=30)
        assert seen[0] != ("success", "success"), seen  # the cells changed while we only watched
        assert graph.state_of("slow-two") == "success"
        if source == "events":
            assert changes.live

    with client:
        run_app(app, scenario, (100, 30))
    app.changes.close()


@pytest.mark.e2e
def test_cancel_asks_first(api: ApiClient, server: str) -> None:
    submit(api, "tui-cancel", "  - {id: long-sleep, command: 'sleep 60'}\n")
    run_id = api.trigger("tui-cancel")["run_id"]
    wait_run(api, run_id, {"running"})
    app, client = dashboard(server)

    async def scenario(pilot: Pilot[None]) -> None:
        await select_dag(pilot, "tui-cancel")
        await until(pilot, lambda: app.focus_state.run_id == run_id, "the run to be selected")
        await pilot.press("c")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the confirmation")
        await pilot.press("n")
        await until(pilot, lambda: not isinstance(app.screen, ConfirmScreen), "the dialog to close")
        await pilot.pause(0.5)
        assert api.get_run(run_id)["state"] == "running"  # "no" did nothing
        await pilot.press("c")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the confirmation again")
        await pilot.press("y")
        await until(pilot, lambda: api.get_run(run_id)["state"] == "cancelled", "the run to be cancelled")
        grid = app.query_one("#grid", RunGrid)
        await until(pilot, lambda: grid.state_of(run_id, "long-sleep") == "cancelled", "the cell to show it")

    with client:
        run_app(app, scenario, (100, 30))


@pytest.mark.e2e
def test_retry_asks_first_and_reruns_downstream(api: ApiClient, server: str, tmp_path: Path) -> None:
    marker = tmp_path / "tried-once"
    submit(
        api,
        "tui-retry",
        f"  - {{id: flaky-step, command: 'test -f {marker} || {{ touch {marker}; exit 1; }}'}}\n"
        "  - {id: after-it, command: 'echo fine', depends_on: [flaky-step]}\n",
    )
    run_id = api.trigger("tui-retry")["run_id"]
    wait_run(api, run_id, {"failed"})
    app, client = dashboard(server)

    async def scenario(pilot: Pilot[None]) -> None:
        await select_dag(pilot, "tui-retry")
        await until(pilot, lambda: app.focus_state.run_id == run_id, "the failed run to be selected")
        graph = app.query_one("#graph", DagGraph)
        await until(pilot, lambda: graph.state_of("flaky-step") == "failed", "the failure to show")
        assert graph.state_of("after-it") == "upstream_failed"
        graph.focus()
        await pilot.press("down")  # the first move puts the cursor on the first task
        await until(pilot, lambda: app.focus_state.task_id == "flaky-step", "the task to be selected")
        await pilot.press("r")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the confirmation")
        await pilot.press("y")
        await until(pilot, lambda: graph.state_of("after-it") == "success", "the retried run to finish", 30)
        assert graph.state_of("flaky-step") == "success"
        assert len(api.get_task(run_id, "flaky-step")["attempts"]) == 2
        assert api.get_run(run_id)["state"] == "success"

    with client:
        run_app(app, scenario, (100, 30))


@pytest.mark.e2e
def test_log_pane_follows_a_running_task(api: ApiClient, server: str, tmp_path: Path) -> None:
    # The task prints its second line only once the test has seen the first: no race with a slow machine.
    go_on = tmp_path / "go-on"
    command = f"echo hello-from-task; for i in $(seq 300); do [ -f {go_on} ] && break; sleep 0.1; done; echo bye-from-task"
    submit(api, "tui-logs", f"  - {{id: chatty, command: '{command}'}}\n")
    run_id = api.trigger("tui-logs")["run_id"]
    app, client = dashboard(server)

    async def scenario(pilot: Pilot[None]) -> None:
        await select_dag(pilot, "tui-logs")
        await until(pilot, lambda: app.focus_state.run_id == run_id, "the run to be selected")
        app.query_one("#grid", RunGrid).focus()
        await pilot.press("down", "enter")
        await until(pilot, lambda: app.focus_state.task_id == "chatty", "the task to be selected")
        await until(pilot, lambda: app.query_one("#bottom").has_class("-log"), "enter to open the log pane")
        view = app.query_one("#log", Log)

        def text() -> str:
            return "\n".join(view.lines)

        await until(pilot, lambda: "hello-from-task" in text(), "the first line")
        assert "bye-from-task" not in text()  # shown while the task still runs
        assert "following" in str(app.query_one("#logpane").border_title)
        go_on.touch()
        await until(pilot, lambda: "bye-from-task" in text(), "the second line, printed later", 20)
        pane = app.query_one("#logpane")
        await until(pilot, lambda: "finished" in str(pane.border_title), "the pane to say the task ended")
        assert "#1 ✔ success" in str(app.query_one("#attempts").render())

    with client:
        run_app(app, scenario, (100, 30))


def test_unreachable_api_shows_disconnected_and_survives() -> None:
    app, client = dashboard(f"http://127.0.0.1:{free_port()}")

    async def scenario(pilot: Pilot[None]) -> None:
        status = app.query_one("#status")
        await until(pilot, lambda: "disconnected" in str(status.render()), "the disconnected message")
        assert "retrying" in str(status.render())
        for key in ("t", "p", "c", "r", "l", "l", "slash", "escape", "question_mark"):
            await pilot.press(key)
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        await pilot.pause(0.3)
        assert app.is_running and app.connected is False

    with client:
        run_app(app, scenario, (80, 24))


@pytest.mark.e2e
def test_reconnects_when_the_api_comes_back(tmp_path: Path) -> None:
    port = free_port()
    proc = start_server(port, tmp_path)
    with ApiClient(f"http://127.0.0.1:{port}") as setup:
        submit(setup, "tui-back", "  - {id: one, command: 'true'}\n")
    app, client = dashboard(f"http://127.0.0.1:{port}")

    async def scenario(pilot: Pilot[None]) -> None:
        nonlocal proc
        status = app.query_one("#status")
        await until(pilot, lambda: app.connected is True, "the first connection")
        stop_server(proc)
        await until(pilot, lambda: "disconnected" in str(status.render()), "the disconnected message")
        proc = start_server(port, tmp_path)
        await until(pilot, lambda: "connected" in str(status.render()) and app.connected, "reconnection", 30)
        assert "disconnected" not in str(status.render())
        assert app.snapshot is not None and [d["id"] for d in app.snapshot.dags] == ["tui-back"]

    try:
        with client:
            run_app(app, scenario, (80, 24))
    finally:
        stop_server(proc)


def test_cli_has_a_tui_command() -> None:
    from typer.testing import CliRunner

    result = CliRunner().invoke(cli_app, ["tui", "--help"])
    assert result.exit_code == 0
    assert "dashboard" in result.stdout


# -- fixed data: snapshots, big DAGs -----------------------------------------------------------
T0 = 1_750_000_000.0  # 2025-06-15 15:06:40 UTC: every time in the fixture is an offset from it


def _run(run_id: str, state: str, start: float, end: float | None, by: str = "schedule") -> dict[str, Any]:
    return {
        "run_id": run_id,
        "dag_id": "etl-pipeline",
        "dag_version": 3,
        "state": state,
        "triggered_by": by,
        "params": {},
        "logical_date": T0 + start,
        "created_at": T0 + start,
        "started_at": T0 + start,
        "ended_at": None if end is None else T0 + end,
    }


ETL_TASKS = [
    ("extract-users", []),
    ("extract-orders", []),
    ("transform", ["extract-users", "extract-orders"]),
    ("quality-check", ["transform"]),
    ("load-warehouse", ["transform"]),
    ("report", ["load-warehouse", "quality-check"]),
    ("notify", ["report", "extract-users"]),
]


def fixture_document() -> dict[str, Any]:
    """The API's answers at one fixed moment: four DAGs, five runs of etl-pipeline, one task's attempts and log."""
    states = {
        "5f2c9e1a7b3d4c60": dict.fromkeys([t for t, _ in ETL_TASKS], "success")
        | {"quality-check": "running", "load-warehouse": "running", "report": "pending", "notify": "pending"},
        "b81d03e6c2a94f17": dict.fromkeys([t for t, _ in ETL_TASKS], "success")
        | {"load-warehouse": "failed", "report": "upstream_failed", "notify": "upstream_failed"},
        "0e7a4c5d9f1b2368": dict.fromkeys([t for t, _ in ETL_TASKS], "success"),
        "9c3f6a2e1d7b5804": dict.fromkeys([t for t, _ in ETL_TASKS], "success"),
        "47d2b8e0a6c13f95": dict.fromkeys([t for t, _ in ETL_TASKS], "cancelled")
        | {"extract-users": "success", "extract-orders": "success"},
    }
    runs = [
        _run("5f2c9e1a7b3d4c60", "running", 3600, None),
        _run("b81d03e6c2a94f17", "failed", 2400, 2461),
        _run("0e7a4c5d9f1b2368", "success", 1200, 1254),
        _run("9c3f6a2e1d7b5804", "success", 0, 57, by="cli"),
        _run("47d2b8e0a6c13f95", "cancelled", -1200, -1170, by="tui"),
    ]
    instances = {
        run_id: [
            {
                "run_id": run_id,
                "task_id": task_id,
                "state": state,
                "attempt": 0 if state == "pending" else 1,
                "started_at": None,
                "ended_at": None,
            }
            for task_id, state in by_task.items()
        ]
        for run_id, by_task in states.items()
    }
    load = next(i for i in instances["5f2c9e1a7b3d4c60"] if i["task_id"] == "load-warehouse")
    load.update(attempt=2, started_at=T0 + 3640, worker_id="worker-a")
    attempts = [
        {
            "attempt": 1,
            "state": "failed",
            "worker_id": "worker-a",
            "started_at": T0 + 3620,
            "ended_at": T0 + 3622.5,
            "exit_code": 1,
            "error": "exit code 1",
        },
        {
            "attempt": 2,
            "state": "running",
            "worker_id": "worker-a",
            "started_at": T0 + 3640,
            "ended_at": None,
            "exit_code": None,
            "error": None,
        },
    ]
    dag = {
        "id": "etl-pipeline",
        "name": "ETL Data Pipeline",
        "version": 3,
        "paused": False,
        "schedule": "0 * * * *",
        "tags": ["etl"],
        "tasks": [{"id": t, "depends_on": deps, "command": "true"} for t, deps in ETL_TASKS],
    }

    def small(dag_id: str, schedule: str | None = None, paused: bool = False) -> dict[str, Any]:
        return {
            "id": dag_id,
            "name": dag_id,
            "version": 1,
            "paused": paused,
            "schedule": schedule,
            "tags": [],
            "tasks": [{"id": "main", "depends_on": [], "command": "true"}],
        }

    others = [small("hello"), small("flaky-retries"), small("nightly-backup", "@daily", paused=True)]
    other_runs = [
        {**_run("d00d000000000001", "failed", 3000, 3010), "dag_id": "flaky-retries"},
        {**_run("d00d000000000002", "success", 2000, 2001), "dag_id": "hello"},
        {**_run("d00d000000000003", "cancelled", 1000, 1001), "dag_id": "nightly-backup"},
    ]
    return {
        "status": {"runs": {"running": 1}, "workers": {"alive": 1, "slots": 4}},
        "dags": [dag, *others],
        "runs": sorted([*runs, *other_runs], key=lambda r: -r["created_at"]),
        "instances": instances,
        "tasks": {"5f2c9e1a7b3d4c60/load-warehouse": {**load, "attempts": attempts}},
        "logs": {
            "5f2c9e1a7b3d4c60/load-warehouse/1": "connecting to warehouse…\nerror: connection reset by peer\n",
            "5f2c9e1a7b3d4c60/load-warehouse/2": "connecting to warehouse…\nloading 12840 rows into analytics.orders\n"
            "  batch 1/4 done\n  batch 2/4 done\n",
        },
    }


class RecordedApi:
    """Serves the fixed document in the shapes ApiClient returns; actions are recorded, not performed."""

    base_url = "http://flowforge.example:8080"

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        self.actions: list[tuple[Any, ...]] = []

    def status(self) -> dict[str, Any]:
        return self.doc["status"]

    def list_dags(self, include_inactive: bool = False) -> list[dict[str, Any]]:
        return self.doc["dags"]

    def list_runs(
        self, dag_id: str | None = None, state: str | None = None, limit: int = 50, offset: int = 0
    ) -> dict[str, Any]:
        runs = [r for r in self.doc["runs"] if dag_id in (None, r["dag_id"])]
        return {"runs": runs[offset : offset + limit], "limit": limit, "offset": offset}

    def get_run(self, run_id: str) -> dict[str, Any]:
        run = next(r for r in self.doc["runs"] if r["run_id"] == run_id)
        return {**run, "tasks": self.doc["instances"].get(run_id, [])}

    def get_task(self, run_id: str, task_id: str) -> dict[str, Any]:
        key = f"{run_id}/{task_id}"
        if key in self.doc["tasks"]:
            return self.doc["tasks"][key]
        ti = next(t for t in self.doc["instances"][run_id] if t["task_id"] == task_id)
        return {**ti, "attempts": [], "spec": None}

    def logs(self, run_id: str, task_id: str, attempt: int | None = None, after: int = 0) -> dict[str, Any]:
        text = self.doc["logs"].get(f"{run_id}/{task_id}/{attempt}", "")
        return {"text": text[after:], "cursor": len(text), "done": True, "attempt": attempt}

    def trigger(
        self, dag_id: str, params: dict[str, Any] | None = None, triggered_by: str = "cli"
    ) -> dict[str, Any]:
        self.actions.append(("trigger", dag_id))
        return {}

    def pause_dag(self, dag_id: str) -> dict[str, Any]:
        self.actions.append(("pause", dag_id))
        return {}

    def unpause_dag(self, dag_id: str) -> dict[str, Any]:
        self.actions.append(("unpause", dag_id))
        return {}

    def cancel_run(self, run_id: str) -> dict[str, Any]:
        self.actions.append(("cancel", run_id))
        return {}

    def retry_task(self, run_id: str, task_id: str, downstream: bool = False) -> dict[str, Any]:
        self.actions.append(("retry", run_id, task_id, downstream))
        return {}


@pytest.fixture
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Times on screen are local: pin the zone so snapshots do not depend on the machine."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def recorded_app() -> FlowForgeApp:
    """The dashboard over the fixed document, its clock stopped 70 s into the running run."""
    return FlowForgeApp(RecordedApi(fixture_document()), poll_interval=3600, clock=lambda: T0 + 3670)


async def settle(pilot: Pilot[None], task_id: str | None = "load-warehouse") -> None:
    """Wait for the newest run, select a task, and wait for its attempts and log."""
    app = pilot.app
    assert isinstance(app, FlowForgeApp)
    await until(
        pilot, lambda: app.focus_state.run_id == "5f2c9e1a7b3d4c60" and app.snapshot is not None, "data"
    )
    if task_id:
        app.query_one("#graph", DagGraph).focus()
        for _ in range(8):  # right to its layer, then down: the way a user walks the graph
            here = app.focus_state.task_id
            if here == task_id:
                break
            await pilot.press("right" if here in (None, "extract-users", "transform") else "down")
            await until(pilot, lambda: app.focus_state.task_id != here, "the cursor to move")
        assert app.focus_state.task_id == task_id
        await until(pilot, lambda: bool(app.query_one("#log", Log).lines), "the log")
    await pilot.pause(0.2)


@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=["80x24", "160x48"])
def test_snapshot_main(snap_compare: Any, utc: None, size: tuple[int, int]) -> None:
    assert snap_compare(recorded_app(), terminal_size=size, run_before=settle)


def test_snapshot_log_pane_80x24(snap_compare: Any, utc: None) -> None:
    assert snap_compare(recorded_app(), terminal_size=(80, 24), press=["l"], run_before=settle)


def test_snapshot_retry_confirmation_80x24(snap_compare: Any, utc: None) -> None:
    assert snap_compare(recorded_app(), terminal_size=(80, 24), press=["r"], run_before=settle)


def test_confirmed_actions_reach_the_api(utc: None) -> None:
    app = recorded_app()
    assert isinstance(app.api, RecordedApi)
    recorded = app.api

    async def scenario(pilot: Pilot[None]) -> None:
        await settle(pilot)
        await pilot.press("r")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the retry dialog")
        await pilot.press("n")
        await pilot.press("r")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the retry dialog")
        await pilot.click("#opt-downstream")
        await pilot.press("y")
        await pilot.press("c", "y", "t", "p")
        await until(pilot, lambda: len(recorded.actions) == 4, "four requests")
        assert recorded.actions == [
            ("retry", "5f2c9e1a7b3d4c60", "load-warehouse", False),
            ("cancel", "5f2c9e1a7b3d4c60"),
            ("trigger", "etl-pipeline"),
            ("pause", "etl-pipeline"),
        ]

    run_app(app, scenario, (100, 30))


def test_clicks_select_tasks_and_open_logs(utc: None) -> None:
    app = recorded_app()

    async def scenario(pilot: Pilot[None]) -> None:
        await settle(pilot, task_id=None)
        graph = app.query_one("#graph", DagGraph)
        canvas = graph.canvas
        assert canvas is not None and canvas.boxed  # 160×48 has room for boxes
        node = canvas.nodes[canvas.index["report"]]
        top = graph.scrollable_content_region.y - graph.region.y  # the title bar above the content
        pad = (graph.scrollable_content_region.height - canvas.height) // 2
        await pilot.click(graph, offset=(node.x + 2, top + pad + node.y))
        await until(pilot, lambda: app.focus_state.task_id == "report", "a click to select the task")
        grid = app.query_one("#grid", RunGrid)
        assert grid.task_id == "report"
        # A double click in the grid opens that cell's log.
        row = grid.tasks.index("load-warehouse") + 1
        column = grid.label_width + 2 * (len(grid.visible_runs()) - 1)
        await pilot.click(grid, offset=(column, 1 + row), times=2)
        await until(pilot, lambda: app.focus_state.task_id == "load-warehouse", "the grid click")
        await until(pilot, lambda: "batch 2/4" in "\n".join(app.query_one("#log", Log).lines), "its log")

    run_app(app, scenario, (160, 48))


def big_dag(n_layers: int = 25, width: int = 20) -> list[tuple[str, list[str]]]:
    """`n_layers * width` tasks, each depending on up to three tasks of earlier layers (deterministic)."""
    tasks: list[tuple[str, list[str]]] = []
    for layer in range(n_layers):
        for i in range(width):
            deps = []
            if layer:
                deps = sorted({f"task-{layer - 1}-{(i * 7 + k) % width}" for k in range(1 + i % 3)})
                if layer > 2 and i % 5 == 0:
                    deps.append(f"task-{layer - 3}-{(i + 1) % width}")  # a long edge, routed around columns
            tasks.append((f"task-{layer}-{i}", deps))
    return tasks


def test_layout_of_a_diamond() -> None:
    topology = build_topology([("a", []), ("b", ["a"]), ("c", ["a"]), ("d", ["b", "c"])])
    canvas = place(topology, boxed=False)
    rows = [list(r) for r in canvas.rows]
    for node in canvas.nodes:
        rows[node.y][node.x : node.x + node.width] = f" · {node.label}".ljust(node.width)
    assert ["".join(r).rstrip() for r in rows] == [
        "      ╭──▶ · b ─╮",
        " · a ─┤         ├──▶ · d",
        "      ╰──▶ · c ─╯",
    ]
    assert neighbour(canvas, "a", "right") == "b"
    assert neighbour(canvas, "b", "down") == "c"
    assert neighbour(canvas, "d", "left") == "b"
    assert neighbour(canvas, "d", "right") is None


def test_layout_of_500_tasks_is_fast() -> None:
    tasks = big_dag()
    assert len(tasks) == 500
    started = time.perf_counter()
    topology = build_topology(tasks)
    built = time.perf_counter()
    canvas = place(topology, boxed=False, fill_width=120)
    placed = time.perf_counter()
    assert canvas.index.keys() == {t for t, _ in tasks}
    assert built - started < 2.0 and placed - built < 1.0, (built - started, placed - built)
    # Every edge has its arrow into the task: count the arrows against the tasks that have dependencies.
    arrows = sum(row.count("▶") for row in canvas.rows)
    assert arrows == sum(1 for _, deps in tasks if deps)


def test_a_500_task_graph_scrolls_and_keeps_its_layout(utc: None) -> None:
    doc = fixture_document()
    tasks = big_dag()
    doc["dags"][0]["tasks"] = [{"id": t, "depends_on": d, "command": "true"} for t, d in tasks]
    run = doc["runs"][0]
    doc["runs"] = [run]
    doc["instances"] = {
        run["run_id"]: [
            {"run_id": run["run_id"], "task_id": t, "state": "pending", "attempt": 0} for t, _ in tasks
        ]
    }
    api = RecordedApi(doc)
    app = FlowForgeApp(api, poll_interval=3600, clock=lambda: T0 + 3670)

    async def scenario(pilot: Pilot[None]) -> None:
        graph = app.query_one("#graph", DagGraph)
        await until(
            pilot, lambda: graph.canvas is not None and app.focus_state.run_id == run["run_id"], "graph"
        )
        canvas = graph.canvas
        assert canvas is not None
        assert graph.virtual_size.width > graph.size.width and graph.virtual_size.height > graph.size.height
        graph.focus()
        await pilot.press("shift+right", "shift+right", "shift+down")
        assert graph.scroll_offset.x > 0 and graph.scroll_offset.y > 0
        for _ in range(30):
            await pilot.press("right")
        assert graph.selected is not None and graph.selected.startswith("task-24-")
        node = canvas.nodes[canvas.index[graph.selected]]
        assert graph.scroll_offset.x <= node.x < graph.scroll_offset.x + graph.size.width  # kept in view
        # New states repaint without a new layout.
        for instance in doc["instances"][run["run_id"]][:250]:
            instance["state"] = "success"
        app.changes.wake()
        await until(pilot, lambda: graph.state_of("task-0-0") == "success", "the new states", 60)
        assert graph.canvas is canvas

    run_app(app, scenario, (120, 40))
