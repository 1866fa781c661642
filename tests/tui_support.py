"""Fixed data for the dashboard's tests: the API's answers at one moment, served without a server.

`RecordedApi` answers like `flowforge.client.ApiClient` (the same models) from a plain document,
and records the actions sent to it instead of performing them. `run_app` and `until` drive a
dashboard headless, `drawn` shows what it draws; `big_dag` builds a large DAG for the layout tests.
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Awaitable, Callable
from typing import Any

from rich.console import Console
from textual.pilot import Pilot

from flowforge.api.models import (
    DagStats,
    DagSummary,
    LogPage,
    RunDetail,
    RunList,
    Status,
    TaskDetail,
    TaskExplanation,
)
from flowforge.core.durations import percentile, success_rate
from flowforge.tui import FlowForgeApp


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


def drawn(app: FlowForgeApp) -> tuple[str, str]:
    """The whole screen as the app writes it to a terminal (styles and all), and as plain text.

    Headless, Textual writes nothing out: this renders the screen the way it does for a terminal.
    """
    console = Console(
        width=app.size.width,
        height=app.size.height,
        file=io.StringIO(),
        force_terminal=True,
        color_system="truecolor",
        legacy_windows=False,
        safe_box=False,
        record=True,
    )
    update = app.screen._compositor.render_update(full=True, screen_stack=app._background_screens)
    raw = update.render_segments(console)
    console.print(update)
    return raw, console.export_text()


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


# (state, seconds) of etl-pipeline's older runs, the latest first.
ETL_HISTORY = [
    ("success", 55),
    ("success", 52),
    ("success", 66),
    ("failed", 12),
    ("success", 58),
    ("success", 54),
    ("success", 61),
    ("success", 49),
    ("success", 57),
    ("success", 100),
    ("success", 53),
    ("success", 56),
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
    instances: dict[str, list[dict[str, Any]]] = {
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
        "status": {
            "dags": {"active": 4, "paused": 1, "inactive": 0},
            "runs": {"running": 1},
            "tasks": {},
            "workers": {"alive": 1, "stale": 0, "stopped": 0, "dead": 0, "total": 1, "slots": 4},
            "queue_depth": 0,
            "ready": {"status": "ready", "store": "ok", "queue": "ok", "scheduler": "ok", "leader": None},
        },
        "dags": [dag, *others],
        "runs": sorted([*runs, *other_runs], key=lambda r: -r["created_at"]),
        # Older ended runs of etl-pipeline, past the runs listed: only its statistics read them.
        "history": [
            _run(f"01d{i:013d}", state, -1200 - 3600 * (i + 1), -1200 - 3600 * (i + 1) + took)
            for i, (state, took) in enumerate(ETL_HISTORY)
        ],
        "instances": instances,
        "tasks": {"5f2c9e1a7b3d4c60/load-warehouse": {**load, "attempts": attempts}},
        "explain": {
            "5f2c9e1a7b3d4c60/load-warehouse": {
                "state": "running",
                "run_state": "running",
                "summary": "running: attempt 2 of 3 on worker-a",
                "reasons": [{"code": "retrying", "message": "attempt 1 failed (exit code 1)"}],
            }
        },
        "logs": {
            "5f2c9e1a7b3d4c60/load-warehouse/1": "connecting to warehouse…\nerror: connection reset by peer\n",
            "5f2c9e1a7b3d4c60/load-warehouse/2": "connecting to warehouse…\nloading 12840 rows into analytics.orders\n"
            "  batch 1/4 done\n  batch 2/4 done\n",
        },
    }


# What the fixed document leaves out, filled in so that each answer is the model ApiClient returns.
TASK_SPEC = {
    "command": "true",
    "depends_on": [],
    "retries": 0,
    "timeout_secs": None,
    "trigger_rule": "all_success",
    "env": {},
    "retry_delay_secs": 0.0,
    "max_retry_delay_secs": 0.0,
}
DAG_FIELDS: dict[str, Any] = {
    "description": "",
    "schedule": None,
    "timezone": "UTC",
    "catchup": False,
    "max_active_runs": 1,
    "max_active_tasks": 16,
    "run_timeout_secs": None,
    "params": {},
    "default_retries": 0,
    "default_timeout_secs": None,
    "env": {},
    "tags": [],
    "active": True,
    "paused": False,
    "created_at": T0,
    "updated_at": T0,
    "next_run": None,
}
INSTANCE_FIELDS = dict.fromkeys(
    ["retry_at", "queued_at", "started_at", "ended_at", "exit_code", "error", "worker_id"]
)


def dag_summary(dag: dict[str, Any]) -> DagSummary:
    """A DAG of the document as the API lists it."""
    tasks = [{**TASK_SPEC, "name": t["id"], **t} for t in dag["tasks"]]
    return DagSummary.model_validate({**DAG_FIELDS, **dag, "tasks": tasks, "task_count": len(tasks)})


def instance(ti: dict[str, Any]) -> dict[str, Any]:
    """A task instance of the document with every field of the API's answer."""
    return {**INSTANCE_FIELDS, **ti}


class RecordedApi:
    """Serves the fixed document as the models ApiClient returns; actions are recorded, not performed."""

    base_url = "http://flowforge.example:8080"

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        self.actions: list[tuple[Any, ...]] = []
        self.stats_asked: list[str] = []  # the DAG ids whose statistics were asked for, in order

    def status(self) -> Status:
        return Status.model_validate(self.doc["status"])

    def list_dags(self, include_inactive: bool = False) -> list[DagSummary]:
        dags = [dag_summary(d) for d in self.doc["dags"]]
        return [d for d in dags if include_inactive or d.active]

    def list_runs(
        self, dag_id: str | None = None, state: str | None = None, limit: int = 50, offset: int = 0
    ) -> RunList:
        runs = [r for r in self.doc["runs"] if dag_id in (None, r["dag_id"])]
        page = runs[offset : offset + limit]
        return RunList.model_validate(
            {"runs": page, "limit": limit, "offset": offset, "has_more": offset + limit < len(runs)}
        )

    def get_run(self, run_id: str) -> RunDetail:
        run = next(r for r in self.doc["runs"] if r["run_id"] == run_id)
        tasks = [instance(t) for t in self.doc["instances"].get(run_id, [])]
        return RunDetail.model_validate({**run, "tasks": tasks, "waiting": None})

    def get_task(self, run_id: str, task_id: str) -> TaskDetail:
        key = f"{run_id}/{task_id}"
        if key in self.doc["tasks"]:
            detail = self.doc["tasks"][key]
        else:
            ti = next(t for t in self.doc["instances"][run_id] if t["task_id"] == task_id)
            detail = {**ti, "attempts": []}
        attempts = [
            {"run_id": run_id, "task_id": task_id, "queued_at": None, **a} for a in detail["attempts"]
        ]
        return TaskDetail.model_validate({**instance(detail), "attempts": attempts, "spec": None})

    def logs(self, run_id: str, task_id: str, attempt: int | None = None, after: int = 0) -> LogPage:
        text = self.doc["logs"].get(f"{run_id}/{task_id}/{attempt}", "")
        page = {"run_id": run_id, "task_id": task_id, "attempt": attempt or 0, "text": text[after:]}
        return LogPage.model_validate({**page, "cursor": len(text), "done": True})

    def dag_stats(self, dag_id: str, runs: int = 50) -> DagStats:
        """The document's ended runs of the DAG (history included), summed up as the API does."""
        self.stats_asked.append(dag_id)
        ended = [
            r
            for r in [*self.doc["runs"], *self.doc.get("history", [])]
            if r["dag_id"] == dag_id and r["ended_at"] is not None
        ]
        ended = sorted(ended, key=lambda r: -r["ended_at"])[:runs]
        durations = [
            {
                **{k: r[k] for k in ("run_id", "state", "started_at", "ended_at")},
                "duration_secs": None if r["started_at"] is None else r["ended_at"] - r["started_at"],
            }
            for r in ended
        ]
        ok = [
            d["duration_secs"]
            for d in durations
            if d["state"] == "success" and d["duration_secs"] is not None
        ]
        return DagStats.model_validate(
            {
                "dag_id": dag_id,
                "runs": durations,
                "p50_secs": percentile(ok, 50),
                "p95_secs": percentile(ok, 95),
                "success_rate": success_rate([d["state"] for d in durations]),
                "count": len(durations),
            }
        )

    def explain_task(self, run_id: str, task_id: str) -> TaskExplanation:
        why = self.doc["explain"][f"{run_id}/{task_id}"]
        return TaskExplanation.model_validate({"run_id": run_id, "task_id": task_id, **why})

    def trigger(self, dag_id: str, params: dict[str, Any] | None = None, triggered_by: str = "cli") -> None:
        self.actions.append(("trigger", dag_id, params) if params else ("trigger", dag_id))

    def pause_dag(self, dag_id: str) -> None:
        self.actions.append(("pause", dag_id))

    def unpause_dag(self, dag_id: str) -> None:
        self.actions.append(("unpause", dag_id))

    def cancel_run(self, run_id: str) -> None:
        self.actions.append(("cancel", run_id))

    def retry_task(self, run_id: str, task_id: str, downstream: bool = False) -> None:
        self.actions.append(("retry", run_id, task_id, downstream))

    def retry_run(self, run_id: str) -> None:
        self.actions.append(("retry failed", run_id))

    def delete_dag(self, dag_id: str) -> None:
        self.actions.append(("deactivate", dag_id))

    def activate_dag(self, dag_id: str) -> None:
        self.actions.append(("activate", dag_id))


def recorded_app() -> FlowForgeApp:
    """The dashboard over the fixed document, its clock stopped 70 s into the running run."""
    return FlowForgeApp(RecordedApi(fixture_document()), poll_interval=3600, clock=lambda: T0 + 3670)


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
