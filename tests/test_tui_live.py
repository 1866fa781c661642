"""The terminal dashboard driven headless against a real `flowforge up`: keys, live cells, logs, outages."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Input, Log, Static

from flowforge.api.models import RunDetail
from flowforge.client import ApiClient
from flowforge.tui import FlowForgeApp
from flowforge.tui.feed import EventChanges
from flowforge.tui.graph import DagGraph
from flowforge.tui.grid import RunGrid
from flowforge.tui.screens import ConfirmScreen, HelpScreen, TriggerScreen
from tests.harness import FlowForgeProcess, free_port, wait_until
from tests.tui_support import drawn, run_app, until


def start_up(port: int, home: Path) -> FlowForgeProcess:
    """`flowforge up` on `port` with its data in `home`, once /health answers."""
    args = ["up", "--port", str(port), "--home", str(home), "--concurrency", "2"]
    proc = FlowForgeProcess(args, name="up", port=port, log_path=home / "up.log")
    try:
        return proc.wait_healthy(30)
    except BaseException:
        proc.stop()
        raise


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a `flowforge up` shared by this module's tests (each uses DAGs of its own)."""
    up = start_up(free_port(), tmp_path_factory.mktemp("tui-up"))
    try:
        yield up.url
    finally:
        up.stop()


@pytest.fixture
def api(server: str) -> Iterator[ApiClient]:
    """A client of the shared server, for setting up and checking what the dashboard did."""
    with ApiClient(server) as client:
        yield client


def submit(api: ApiClient, dag_id: str, tasks: str) -> None:
    """Store a DAG whose tasks are given as YAML list items."""
    api.submit_dag(f"id: {dag_id}\ntasks:\n{tasks}")


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


def wait_run(api: ApiClient, run_id: str, states: set[str], timeout: float = 30) -> RunDetail:
    """Poll the API until the run is in one of `states`."""

    def reached() -> RunDetail | None:
        run = api.get_run(run_id)
        return run if run.state in states else None

    return wait_until(f"run {run_id} to reach {states}", reached, timeout, poll=0.2)


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
    first = api.trigger("tui-graph").run_id
    wait_run(api, first, {"success"})
    second = api.trigger("tui-graph").run_id
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
        run_id = app.snapshot.runs[0].run_id
        assert app.snapshot.runs[0].triggered_by == "tui"
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
    run_id = api.trigger("tui-cancel").run_id
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
        assert api.get_run(run_id).state == "running"  # "no" did nothing
        await pilot.press("c")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the confirmation again")
        await pilot.press("y")
        await until(pilot, lambda: api.get_run(run_id).state == "cancelled", "the run to be cancelled")
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
    run_id = api.trigger("tui-retry").run_id
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
        assert len(api.get_task(run_id, "flaky-step").attempts) == 2
        assert api.get_run(run_id).state == "success"

    with client:
        run_app(app, scenario, (100, 30))


@pytest.mark.e2e
def test_log_pane_follows_a_running_task(api: ApiClient, server: str, tmp_path: Path) -> None:
    # The task prints its second line only once the test has seen the first: no race with a slow machine.
    go_on = tmp_path / "go-on"
    command = f"echo hello-from-task; for i in $(seq 300); do [ -f {go_on} ] && break; sleep 0.1; done; echo bye-from-task"
    submit(api, "tui-logs", f"  - {{id: chatty, command: '{command}'}}\n")
    run_id = api.trigger("tui-logs").run_id
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


@pytest.mark.e2e
def test_escape_sequences_from_a_dag_and_its_task_stay_text(api: ApiClient, server: str) -> None:
    """A DAG named with escape sequences and markup, its task printing them: the terminal gets neither."""
    hostile = r"\e[2J\e]0;title\a[bold red]loud[/bold red]"  # YAML's escapes for ESC and BEL
    printed = r"\033[2J\033]0;title\007[bold red]loud[/bold red] out\n"
    api.submit_dag(
        f'id: tui-hostile\nname: "{hostile}"\ndescription: "{hostile}"\n'
        f"tasks:\n  - id: shout\n    command: |\n      printf '{printed}'\n"
    )
    run_id = api.trigger("tui-hostile").run_id
    wait_run(api, run_id, {"success"})
    app, client = dashboard(server)

    async def scenario(pilot: Pilot[None]) -> None:
        await select_dag(pilot, "tui-hostile")
        await until(pilot, lambda: app.focus_state.run_id == run_id, "the run to be selected")
        await pilot.press("l")  # the log of the task most worth reading: the only one
        view = app.query_one("#log", Log)
        await until(pilot, lambda: "out" in "\n".join(view.lines), "the task's output")
        assert view.lines[0] == "[bold red]loud[/bold red] out"
        raw, text = drawn(app)
        for sequence in ("\x1b[2J", "\x1b]", "\x07"):
            assert sequence not in raw
        assert "Runs of tui-hostile · \\x1b[2J\\x1b]0;title\\x07[bold red]loud[/bold red]" in text

    with client:
        run_app(app, scenario, (160, 48))


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
    proc = start_up(port, tmp_path)
    with ApiClient(f"http://127.0.0.1:{port}") as setup:
        submit(setup, "tui-back", "  - {id: one, command: 'true'}\n")
    app, client = dashboard(f"http://127.0.0.1:{port}")

    async def scenario(pilot: Pilot[None]) -> None:
        nonlocal proc
        status = app.query_one("#status")
        await until(pilot, lambda: app.connected is True, "the first connection")
        proc.stop()
        await until(pilot, lambda: "disconnected" in str(status.render()), "the disconnected message")
        proc = start_up(port, tmp_path)
        await until(pilot, lambda: "connected" in str(status.render()) and app.connected, "reconnection", 30)
        assert "disconnected" not in str(status.render())
        assert app.snapshot is not None and [d.id for d in app.snapshot.dags] == ["tui-back"]

    try:
        with client:
            run_app(app, scenario, (80, 24))
    finally:
        proc.stop()


@pytest.mark.e2e
def test_trigger_form_shows_the_apis_refusal_then_starts_the_run(api: ApiClient, server: str) -> None:
    api.submit_dag(
        "id: tui-params\nparams: {region: eu, batch: 100}\n"
        "tasks:\n  - {id: say, command: 'echo region=$FLOWFORGE_PARAM_REGION'}\n"
    )
    app, client = dashboard(server)

    async def scenario(pilot: Pilot[None]) -> None:
        await select_dag(pilot, "tui-params")
        app.query_one("#dags").focus()
        await pilot.press("t")
        await until(pilot, lambda: isinstance(app.screen, TriggerScreen), "the trigger form")
        form = app.screen
        assert isinstance(form, TriggerScreen)
        region, batch = form.field("region"), form.field("batch")
        assert isinstance(region, Input) and isinstance(batch, Input)
        assert (region.value, batch.value) == ("eu", "100")
        region.value = "us"
        extra = form.query_one("#extra", Input)
        extra.value = "regoin=x"
        extra.focus()
        await pilot.press("enter")
        error = form.query_one("#trigger-error", Static)
        await until(
            pilot, lambda: "did you mean 'region'" in str(error.render()), "the API's refusal in the form"
        )
        assert "not declared by the DAG" in str(error.render())
        assert app.screen is form and api.list_runs(dag_id="tui-params").runs == []
        extra.value = ""
        await pilot.press("enter")
        await until(pilot, lambda: not isinstance(app.screen, TriggerScreen), "the form to close")
        await until(pilot, lambda: bool(app.snapshot and app.snapshot.runs), "the run to appear")
        assert app.snapshot is not None
        run = wait_run(api, app.snapshot.runs[0].run_id, {"success"})
        assert run.params == {"region": "us", "batch": "100"}  # declared params are text, as written
        assert run.triggered_by == "tui"

    with client:
        run_app(app, scenario, (100, 30))


@pytest.mark.e2e
def test_retry_failed_key_runs_every_failed_task_again(api: ApiClient, server: str, tmp_path: Path) -> None:
    def flaky(name: str) -> str:
        marker = tmp_path / name
        return f"  - {{id: {name}, command: 'test -f {marker} || {{ touch {marker}; exit 1; }}'}}\n"

    submit(
        api,
        "tui-retry-all",
        flaky("left") + flaky("right") + "  - {id: both, command: 'true', depends_on: [left, right]}\n",
    )
    run_id = api.trigger("tui-retry-all").run_id
    wait_run(api, run_id, {"failed"})
    app, client = dashboard(server)

    async def scenario(pilot: Pilot[None]) -> None:
        await select_dag(pilot, "tui-retry-all")
        await until(pilot, lambda: app.focus_state.run_id == run_id, "the failed run to be selected")
        grid = app.query_one("#grid", RunGrid)
        await until(pilot, lambda: grid.state_of(run_id, "both") == "upstream_failed", "the failure to show")
        await pilot.press("R")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the confirmation")
        await pilot.press("y")
        await until(pilot, lambda: grid.state_of(run_id, "both") == "success", "the run to succeed", 30)
        assert grid.state_of(run_id, "left") == grid.state_of(run_id, "right") == "success"
        assert [len(api.get_task(run_id, t).attempts) for t in ("left", "right", "both")] == [2, 2, 1]

    with client:
        run_app(app, scenario, (100, 30))


@pytest.mark.e2e
def test_deactivate_asks_then_the_dag_leaves_the_list_until_activated(api: ApiClient, server: str) -> None:
    submit(api, "tui-retire", "  - {id: a, command: 'true'}\n")
    app, client = dashboard(server)

    def listed() -> set[str]:
        return {str(r.key.value) for r in app.query_one("#dags").ordered_rows}  # type: ignore[attr-defined]

    async def scenario(pilot: Pilot[None]) -> None:
        await select_dag(pilot, "tui-retire")
        app.query_one("#dags").focus()
        await pilot.press("d")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the confirmation")
        await pilot.press("n")
        await pilot.pause(0.3)
        assert api.get_dag("tui-retire").active
        await pilot.press("d")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the confirmation again")
        await pilot.press("y")
        await until(pilot, lambda: "tui-retire" not in listed(), "the DAG to leave the list")
        assert not api.get_dag("tui-retire").active
        await pilot.press("i")  # inactive DAGs shown: it is back, marked, and can be activated
        await until(pilot, lambda: "tui-retire" in listed(), "the inactive DAG")
        await select_dag(pilot, "tui-retire")
        assert "inactive" in drawn(app)[1]
        app.query_one("#dags").focus()
        await pilot.press("d")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the activation")
        await pilot.press("y")
        await until(pilot, lambda: api.get_dag("tui-retire").active, "the DAG to be active again")

    with client:
        run_app(app, scenario, (100, 30))
