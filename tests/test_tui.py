"""The terminal dashboard on fixed data: snapshots, clicks, the actions it sends, and the graph layout."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from rich.text import Text
from textual.pilot import Pilot
from textual.widgets import Checkbox, DataTable, Input, Log, Static

from flowforge.api import models
from flowforge.cli import app as cli_app
from flowforge.tui import FlowForgeApp
from flowforge.tui.feed import STATS_PER_FETCH, STATS_TTL, Focus, Poller
from flowforge.tui.graph import DagGraph
from flowforge.tui.grid import CELL, HEADER_ROWS, RunGrid
from flowforge.tui.layout import build_topology, neighbour, place
from flowforge.tui.panes.dags import DagsPane, spark_bars
from flowforge.tui.panes.log import NO_TASK
from flowforge.tui.screens import ConfirmScreen, ExplainScreen, TriggerScreen
from tests.tui_support import T0, RecordedApi, big_dag, drawn, fixture_document, recorded_app, run_app, until


@pytest.fixture
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Times on screen are local: pin the zone so snapshots do not depend on the machine."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


async def settle(pilot: Pilot[None], task_id: str | None = "load-warehouse") -> None:
    """Wait for the newest run, select a task, and wait for its attempts and log."""
    app = pilot.app
    assert isinstance(app, FlowForgeApp)
    await until(
        pilot, lambda: app.focus_state.run_id == "5f2c9e1a7b3d4c60" and app.snapshot is not None, "data"
    )
    if task_id:

        def moved_from(start: str | None) -> Callable[[], bool]:
            return lambda: app.focus_state.task_id != start

        app.query_one("#graph", DagGraph).focus()
        for _ in range(8):  # right to its layer, then down: the way a user walks the graph
            here = app.focus_state.task_id
            if here == task_id:
                break
            await pilot.press("right" if here in (None, "extract-users", "transform") else "down")
            await until(pilot, moved_from(here), "the cursor to move")
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
        row = grid.tasks.index("load-warehouse") + HEADER_ROWS
        column = grid.label_width + CELL * (len(grid.visible_runs()) - 1) + CELL // 2
        await pilot.click(grid, offset=(column, 1 + row), times=2)
        await until(pilot, lambda: app.focus_state.task_id == "load-warehouse", "the grid click")
        await until(pilot, lambda: "batch 2/4" in "\n".join(app.query_one("#log", Log).lines), "its log")

    run_app(app, scenario, (160, 48))


def title(widget: Any) -> str:
    """A pane's title as drawn (the property gives it back as markup)."""
    return Text.from_markup(widget.border_title or "").plain


def test_an_older_attempt_shows_its_own_state_in_the_log_title(utc: None) -> None:
    app = recorded_app()

    async def scenario(pilot: Pilot[None]) -> None:
        await settle(pilot)  # load-warehouse: attempt 1 failed after 2.5 s, attempt 2 is running
        pane = app.query_one("#logpane")
        assert "◐ running · attempt 2 · following" in title(pane)
        await pilot.press("left_square_bracket")
        await until(pilot, lambda: "attempt 1" in title(pane), "the title to name attempt 1")
        assert "✘ failed · attempt 1 · finished" in title(pane), title(pane)
        assert pane.border_subtitle == "2.5s"  # that attempt's duration, not the task's
        await until(
            pilot, lambda: "connection reset" in "\n".join(app.query_one("#log", Log).lines), "its log"
        )
        await pilot.press("right_square_bracket")
        await until(pilot, lambda: "◐ running · attempt 2 · following" in title(pane), "back to attempt 2")

    run_app(app, scenario, (160, 48))


def test_another_dag_leaves_nothing_of_the_last_dags_task_in_the_log_pane(utc: None) -> None:
    app = recorded_app()

    async def scenario(pilot: Pilot[None]) -> None:
        await settle(pilot)
        pane, log = app.query_one("#logpane"), app.query_one("#log", Log)
        assert "load-warehouse" in title(pane) and log.lines
        app.query_one("#dags").focus()
        await pilot.press("down")  # hello
        await until(
            pilot,
            lambda: (
                app.snapshot is not None and app.snapshot.focus.dag_id == "hello" and app.focus_state.run_id
            ),
            "the other DAG and its run",
        )
        await pilot.pause(0.2)
        assert app.focus_state.task_id is None
        assert title(pane) == "Log" and pane.border_subtitle == ""
        assert not [line for line in log.lines if line]
        assert str(app.query_one("#attempts").render()) == NO_TASK

    run_app(app, scenario, (160, 48))


class PausingApi(RecordedApi):
    """Pausing and unpausing change the document, as the API would."""

    def pause_dag(self, dag_id: str) -> None:
        super().pause_dag(dag_id)
        next(d for d in self.doc["dags"] if d["id"] == dag_id)["paused"] = True

    def unpause_dag(self, dag_id: str) -> None:
        super().unpause_dag(dag_id)
        next(d for d in self.doc["dags"] if d["id"] == dag_id)["paused"] = False


def test_pausing_keeps_every_schedule_on_an_80_column_screen(utc: None) -> None:
    api = PausingApi(fixture_document())  # nightly-backup (@daily) is paused already
    app = FlowForgeApp(api, poll_interval=3600, clock=lambda: T0 + 3670)

    def rows() -> dict[str, str]:
        table = app.query_one("#dags")
        lines = ["".join(seg.text for seg in table.render_line(y)) for y in range(1, 6)]
        return {line.split()[1]: line for line in lines if len(line.split()) > 1}

    async def scenario(pilot: Pilot[None]) -> None:
        await until(pilot, lambda: app.focus_state.run_id is not None, "data")
        await pilot.pause(0.2)
        shown = rows()
        assert "0 * *" in shown["etl-pipeline"] and "paused" in shown["nightly-backup"]
        assert "—" in shown["hello"] and "—" in shown["flaky-retries"]
        await pilot.press("p")
        await until(pilot, lambda: "paused" in rows().get("etl-pipeline", ""), "etl-pipeline to show paused")
        assert "—" in rows()["hello"] and "—" in rows()["flaky-retries"]
        await pilot.press("p")
        await until(pilot, lambda: "0 * *" in rows().get("etl-pipeline", ""), "its schedule back")
        assert "—" in rows()["hello"] and "paused" in rows()["nightly-backup"]
        assert api.actions == [("pause", "etl-pipeline"), ("unpause", "etl-pipeline")]

    run_app(app, scenario, (80, 24))


HOSTILE = "\x1b[2J\x1b]0;title\x07[bold red]loud[/bold red]"


def test_names_and_output_cannot_drive_the_terminal(utc: None) -> None:
    """Escape sequences and markup in a DAG's name, a run's trigger, an error and task output are shown as text."""
    doc = fixture_document()
    doc["dags"][0].update(name=f"ETL {HOSTILE}", description=HOSTILE)
    doc["runs"][0]["triggered_by"] = "[bold red]me[/]\x1b[2J"
    doc["tasks"]["5f2c9e1a7b3d4c60/load-warehouse"]["attempts"][0]["error"] = f"boom {HOSTILE}"
    doc["logs"]["5f2c9e1a7b3d4c60/load-warehouse/2"] = (
        f"{HOSTILE} in the log\r\nbatch \x1b[32m1/4\x1b[0m done\n"
    )
    app = FlowForgeApp(RecordedApi(doc), poll_interval=3600, clock=lambda: T0 + 3670)

    async def scenario(pilot: Pilot[None]) -> None:
        await settle(pilot)
        raw, text = drawn(app)
        # Only the dashboard's own colours reach the terminal: no clearing, no title, no bell.
        for sequence in ("\x1b[2J", "\x1b]", "\x07"):
            assert sequence not in raw
        assert "Runs of etl-pipeline · ETL \\x1b[2J\\x1b]0;title\\x07[bold red]loud[/bold red]" in text
        assert "[bold red]me[/]\\x1b[2J" in text  # the trigger, not read as markup
        assert "boom \\x1b[2J" in text  # the attempt's error
        assert app.query_one("#log", Log).lines[:2] == [
            "[bold red]loud[/bold red] in the log",
            "batch 1/4 done",
        ]

    run_app(app, scenario, (160, 48))


def test_grid_columns_are_labelled_by_when_each_run_stands_for(utc: None) -> None:
    doc = fixture_document()
    runs = [r for r in doc["runs"] if r["dag_id"] == "etl-pipeline"]
    runs[1]["logical_date"] = T0 + 2400 - 1800  # a scheduled run started late: its tick labels it
    runs[2]["logical_date"] = None  # a manual run: its start labels it
    runs[4]["logical_date"] = runs[4]["started_at"] = T0 - 86400  # yesterday: the date, not the time
    app = FlowForgeApp(RecordedApi(doc), poll_interval=3600, clock=lambda: T0 + 3670)

    async def scenario(pilot: Pilot[None]) -> None:
        await settle(pilot, task_id=None)
        grid = app.query_one("#grid", RunGrid)
        header = "".join(seg.text for seg in grid.render_line(0)).split()
        assert header == ["06-14", "15:06", "15:26", "15:16", "16:06"]
        glyphs = "".join(seg.text for seg in grid.render_line(1)).split()
        assert glyphs == ["run", "■", "✔", "✔", "✘", "◐"]

    run_app(app, scenario, (80, 24))


def test_trigger_form_sends_the_params_with_their_defaults_types(utc: None) -> None:
    doc = fixture_document()
    doc["dags"][1]["params"] = {"region": "eu", "batch": 100, "dry_run": False}  # hello
    app = FlowForgeApp(RecordedApi(doc), poll_interval=3600, clock=lambda: T0 + 3670)
    assert isinstance(app.api, RecordedApi)
    recorded = app.api

    async def scenario(pilot: Pilot[None]) -> None:
        await settle(pilot, task_id=None)
        app.query_one("#dags").focus()
        await pilot.press("down")  # hello
        await until(pilot, lambda: app.focus_state.dag_id == "hello", "hello to be selected")
        await pilot.press("t")
        await until(pilot, lambda: isinstance(app.screen, TriggerScreen), "the trigger form")
        form = app.screen
        assert [form.query_one(f"#param-{i}", Input).value for i in (0, 1)] == ["eu", "100"]
        assert form.query_one("#param-2", Checkbox).value is False
        form.query_one("#param-0", Input).value = "us"
        form.query_one("#param-1", Input).value = "250"
        form.query_one("#param-2", Checkbox).value = True
        form.query_one("#extra", Input).value = "owner=ops oops"
        await pilot.click("#go")
        error = form.query_one("#trigger-error", Static)
        await until(
            pilot, lambda: "expected NAME=VALUE, got 'oops'" in str(error.render()), "the form's error"
        )
        assert recorded.actions == [] and app.screen is form  # nothing sent, the form stays
        form.query_one("#extra", Input).value = "owner=ops"
        form.query_one("#extra", Input).focus()
        await pilot.press("enter")  # enter in a field sends the form too
        await until(pilot, lambda: not isinstance(app.screen, TriggerScreen), "the form to close")
        assert recorded.actions == [
            ("trigger", "hello", {"region": "us", "batch": 250, "dry_run": True, "owner": "ops"})
        ]
        await pilot.press("t", "escape")  # closed without a run: nothing sent
        await pilot.pause(0.2)
        assert len(recorded.actions) == 1
        app.query_one("#dags").focus()
        await pilot.press("down")  # flaky-retries declares no params: triggered at once
        await until(pilot, lambda: app.focus_state.dag_id == "flaky-retries", "flaky-retries")
        await pilot.press("t")
        await until(pilot, lambda: len(recorded.actions) == 2, "the plain trigger")
        assert recorded.actions[-1] == ("trigger", "flaky-retries")
        assert not isinstance(app.screen, TriggerScreen)

    run_app(app, scenario, (100, 30))


def test_new_keys_ask_then_reach_the_api(utc: None) -> None:
    app = recorded_app()
    assert isinstance(app.api, RecordedApi)
    recorded = app.api

    async def scenario(pilot: Pilot[None]) -> None:
        await settle(pilot, task_id=None)
        app.query_one("#runs").focus()
        await pilot.press("down")  # b81d03e6: failed, with two tasks that never ran
        await until(pilot, lambda: app.focus_state.run_id == "b81d03e6c2a94f17", "the failed run")
        await pilot.press("R")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the retry-failed dialog")
        _, text = drawn(app)
        assert "load-warehouse, report, notify run again" in text
        await pilot.press("y")
        app.query_one("#runs").focus()
        await pilot.press("up")  # the running run has no failed task: nothing to ask
        await until(pilot, lambda: app.focus_state.run_id == "5f2c9e1a7b3d4c60", "the running run")
        await pilot.press("R")
        await pilot.pause(0.2)
        assert not isinstance(app.screen, ConfirmScreen)
        await pilot.press("d")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the deactivate dialog")
        await pilot.press("y")
        await until(pilot, lambda: len(recorded.actions) == 2, "two requests")
        assert recorded.actions == [("retry failed", "b81d03e6c2a94f17"), ("deactivate", "etl-pipeline")]

    run_app(app, scenario, (100, 30))


def test_inactive_dags_show_on_request_and_can_be_activated(utc: None) -> None:
    doc = fixture_document()
    doc["dags"][2]["active"] = False  # flaky-retries
    app = FlowForgeApp(RecordedApi(doc), poll_interval=3600, clock=lambda: T0 + 3670)
    assert isinstance(app.api, RecordedApi)
    recorded = app.api

    def listed() -> list[str]:
        table = app.query_one("#dags")
        return [" ".join("".join(s.text for s in table.render_line(y)).split()) for y in range(1, 6)]

    async def scenario(pilot: Pilot[None]) -> None:
        await settle(pilot, task_id=None)
        assert not any("flaky-retries" in line for line in listed())
        await pilot.press("i")
        await until(pilot, lambda: any("flaky-retries" in line for line in listed()), "the inactive DAG")
        assert "✘ flaky-retries inactiv" in listed()  # cut to the sidebar's width
        app.query_one("#dags").focus()
        await pilot.press("down", "down")
        await until(pilot, lambda: app.focus_state.dag_id == "flaky-retries", "flaky-retries")
        await pilot.press("t")  # an inactive DAG cannot run: nothing is sent
        await pilot.press("d")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the activate dialog")
        assert "Activate flaky-retries again" in drawn(app)[1]
        await pilot.press("y")
        await until(pilot, lambda: bool(recorded.actions), "the request")
        assert recorded.actions == [("activate", "flaky-retries")]

    run_app(app, scenario, (100, 30))


def test_explain_key_shows_why_as_text(utc: None) -> None:
    doc = fixture_document()
    why = doc["explain"]["5f2c9e1a7b3d4c60/load-warehouse"]
    why["reasons"].append({"code": "odd", "message": f"a reason with {HOSTILE}"})
    app = FlowForgeApp(RecordedApi(doc), poll_interval=3600, clock=lambda: T0 + 3670)

    async def scenario(pilot: Pilot[None]) -> None:
        await settle(pilot)
        await pilot.press("e")
        await until(pilot, lambda: isinstance(app.screen, ExplainScreen), "the explanation")
        await until(pilot, lambda: "attempt 1 failed" in drawn(app)[1], "its reasons")
        raw, text = drawn(app)
        assert "running: attempt 2 of 3 on worker-a" in text
        assert "• attempt 1 failed (exit code 1)  (retrying)" in text
        assert "a reason with \\x1b[2J\\x1b]0;title\\x07[bold red]loud[/bold red]" in text
        for sequence in ("\x1b[2J", "\x1b]", "\x07"):
            assert sequence not in raw
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, ExplainScreen), "the screen to close")

    run_app(app, scenario, (100, 30))


def test_outputs_of_the_attempt_shown_are_listed(utc: None) -> None:
    doc = fixture_document()
    attempts = doc["tasks"]["5f2c9e1a7b3d4c60/load-warehouse"]["attempts"]
    attempts[0]["outputs"] = {"rows": "12840", "note": f"{HOSTILE}"}
    app = FlowForgeApp(RecordedApi(doc), poll_interval=3600, clock=lambda: T0 + 3670)

    async def scenario(pilot: Pilot[None]) -> None:
        await settle(pilot)  # attempt 2 is shown: it has no outputs
        shown = app.query_one("#attempts", Static)
        assert "outputs:" not in str(shown.render())
        await pilot.press("left_square_bracket")
        await until(pilot, lambda: "outputs:" in str(shown.render()), "attempt 1's outputs")
        assert "outputs: rows=12840 · note=\\x1b[2J\\x1b]0;title\\x07[bold red]loud[/bold red]" in str(
            shown.render()
        )

    run_app(app, scenario, (160, 48))


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


def test_cli_has_a_tui_command() -> None:
    from typer.testing import CliRunner

    result = CliRunner().invoke(cli_app, ["tui", "--help"])
    assert result.exit_code == 0
    assert "dashboard" in result.stdout


# -- durations: sparklines in the DAG list, the slow note of a running task --------------------------
def dag_cells(app: FlowForgeApp) -> dict[str, dict[str, str]]:
    """The DAG list as drawn: DAG id → column key → the cell's text."""
    table = app.query_one("#dags", DataTable)
    columns = [str(c.key.value) for c in table.ordered_columns]
    return {
        str(row.key.value): {
            col: str(getattr(cell, "plain", cell))
            for col, cell in zip(columns, table.get_row(row.key), strict=True)
        }
        for row in table.ordered_rows
    }


def test_each_dag_shows_a_sparkline_of_its_last_durations_where_there_is_room(utc: None) -> None:
    app = recorded_app()

    async def scenario(pilot: Pilot[None]) -> None:
        await settle(pilot, task_id=None)
        await until(pilot, lambda: "took" in dag_cells(app).get("hello", {}), "the sparklines")
        cells = dag_cells(app)
        spark = cells["etl-pipeline"]["took"]
        width = len(spark)
        assert 6 <= width <= 20
        # Oldest left, the newest ended run (b81d03e6, failed after 61 s) at the right end; the
        # cancelled one before it took 30 s of the 66 s the longest shown took: half a block.
        assert spark.endswith("▄▇▇█") and spark.strip() == spark
        assert cells["hello"]["took"] == " " * (width - 1) + "█"  # one run: the longest, right-aligned
        # Each bar is in its run's state's colour: the failed run's bar like a failed state.
        table = app.query_one("#dags", DataTable)
        bar = table.get_cell("etl-pipeline", "took").spans[-1]
        assert bar.style == app.query_one(DagsPane).state_style("failed")
        # A narrow screen drops the sparklines first: every id and schedule keeps its width.
        await pilot.resize_terminal(80, 24)
        await until(pilot, lambda: "took" not in dag_cells(app)["hello"], "the sparklines to go")
        assert dag_cells(app)["nightly-backup"] == {
            "last": "■",
            "id": "nightly-backup",
            "schedule": "paused @daily",
        }
        await pilot.resize_terminal(160, 48)
        await until(pilot, lambda: "took" in dag_cells(app)["hello"], "the sparklines to come back")

    run_app(app, scenario, (160, 48))


def test_spark_bars_scale_to_the_longest_run_shown() -> None:
    def run(state: str, secs: float | None) -> Any:
        return models.RunDuration(run_id="r", state=state, started_at=None, ended_at=None, duration_secs=secs)

    runs = [run("success", 80.0), run("cancelled", None), run("failed", 10.0), run("success", 40.0)]
    assert spark_bars(runs, 10) == [("▄", "success"), ("▁", "failed"), ("·", "cancelled"), ("█", "success")]
    assert spark_bars(runs, 2) == [("·", "cancelled"), ("█", "success")]  # only the latest two
    assert spark_bars([run("success", 0.0)], 5) == [("▁", "success")]  # no time at all: still a bar


def test_durations_are_asked_at_most_once_per_30_seconds_per_dag() -> None:
    doc = fixture_document()
    many = [{**doc["dags"][1], "id": f"dag-{i:02d}", "name": f"dag-{i:02d}"} for i in range(20)]
    doc["dags"].extend(many)  # 24 DAGs
    api = RecordedApi(doc)
    now = [1000.0]
    poller = Poller(api, clock=lambda: now[0])
    poller.want_stats = False  # no room to show them: not asked
    assert poller.fetch(Focus(dag_id="dag-07")).stats == {} and api.stats_asked == []
    poller.want_stats = True
    snaps = [poller.fetch(Focus(dag_id="dag-07"))]
    # The DAG selected first; at most STATS_PER_FETCH per fetch, so a long list fills in over a few.
    assert api.stats_asked[0] == "dag-07" and len(api.stats_asked) == STATS_PER_FETCH
    for _ in range(5):
        now[0] += 1
        snaps.append(poller.fetch(Focus(dag_id="dag-07")))
    assert sorted(api.stats_asked) == sorted(d["id"] for d in doc["dags"])  # each once
    assert snaps[-1].stats.keys() == {d["id"] for d in doc["dags"]}
    assert [r.duration_secs for r in snaps[-1].stats["etl-pipeline"].runs[:2]] == [61.0, 54.0]
    now[0] = 1000.0 + STATS_TTL - 0.5
    poller.fetch(Focus(dag_id="dag-07"))
    assert len(api.stats_asked) == len(doc["dags"])  # still fresh: not asked again
    now[0] = 1000.0 + STATS_TTL
    poller.fetch(Focus(dag_id="dag-07"))
    assert api.stats_asked[len(doc["dags"])] == "dag-07"  # 30 s on: asked again, the selected first


SLOW = {"factor": 3.1, "usual_secs": 12.0, "message": "running 3.1× longer than usual (p95 12 s)"}


def test_a_task_running_far_longer_than_usual_is_marked_and_its_note_shown(utc: None) -> None:
    doc = fixture_document()
    for ti in doc["instances"]["5f2c9e1a7b3d4c60"]:
        if ti["task_id"] == "load-warehouse":
            ti["slow"] = {**SLOW, "message": SLOW["message"] + " " + HOSTILE}
    app = FlowForgeApp(RecordedApi(doc), poll_interval=3600, clock=lambda: T0 + 3670)

    async def scenario(pilot: Pilot[None]) -> None:
        await settle(pilot)
        graph = app.query_one("#graph", DagGraph)
        assert graph.is_slow("load-warehouse") and not graph.is_slow("quality-check")
        assert "!◐ load-warehouse" in graph.rendered_text()
        assert " ◐ quality-check" in graph.rendered_text()
        shown = str(app.query_one("#attempts", Static).render())
        assert "! running 3.1× longer than usual (p95 12 s) \\x1b[2J\\x1b]0;title\\x07" in shown
        raw, _ = drawn(app)
        for sequence in ("\x1b[2J", "\x1b]", "\x07"):
            assert sequence not in raw
        # An older attempt has no such note: it ended.
        await pilot.press("left_square_bracket")
        await until(pilot, lambda: "attempt 1" in title(app.query_one("#logpane")), "attempt 1")
        await until(
            pilot, lambda: "longer than usual" not in str(app.query_one("#attempts").render()), "no note"
        )

    run_app(app, scenario, (160, 48))
