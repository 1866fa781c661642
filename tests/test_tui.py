"""The terminal dashboard on fixed data: snapshots, clicks, the actions it sends, and the graph layout."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Log

from flowforge.cli import app as cli_app
from flowforge.tui import FlowForgeApp
from flowforge.tui.graph import DagGraph
from flowforge.tui.grid import RunGrid
from flowforge.tui.layout import build_topology, neighbour, place
from flowforge.tui.screens import ConfirmScreen
from tests.tui_support import T0, RecordedApi, big_dag, fixture_document, recorded_app, run_app, until


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
