"""The terminal dashboard on fixed data: snapshots, clicks, the actions it sends, and the graph layout."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from rich.text import Text
from textual.pilot import Pilot
from textual.widgets import Log

from flowforge.cli import app as cli_app
from flowforge.tui import FlowForgeApp
from flowforge.tui.graph import DagGraph
from flowforge.tui.grid import RunGrid
from flowforge.tui.layout import build_topology, neighbour, place
from flowforge.tui.panes.log import NO_TASK
from flowforge.tui.screens import ConfirmScreen
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
        row = grid.tasks.index("load-warehouse") + 1
        column = grid.label_width + 2 * (len(grid.visible_runs()) - 1)
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
