"""The HTTP client of the FlowForge API, shared by the CLI and the TUI (sync; `client.transport`).

Every answer reads as its model from `flowforge.api.models` (typed attributes), and
`answer.model_dump(mode="json")` gives back the JSON the API sent. At run time an answer is the
JSON itself (`flowforge.client.answers`): pydantic is not imported, so a CLI command starts fast.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import quote

from flowforge.client.answers import parse
from flowforge.client.errors import ApiError, ApiUnreachable, api_error
from flowforge.client.transport import Http, Response, TransportError
from flowforge.client.watch import ChangeWatcher

if TYPE_CHECKING:  # the types of the answers; at run time they are `Answer`s
    from flowforge.api.models import (
        BackfillResult,
        DagDetail,
        DagStats,
        DagSubmitted,
        DagSummary,
        DagVersionDetail,
        DagVersionOut,
        Health,
        LogPage,
        PruneResult,
        Ready,
        RunDetail,
        RunList,
        RunRetried,
        SchedulePreview,
        Status,
        TaskDetail,
        TaskExplanation,
        TaskInstanceOut,
        TriggeredRun,
        WorkerOut,
    )

__all__ = ["ApiClient", "ApiError", "ApiUnreachable", "ChangeWatcher"]


def _seg(value: str) -> str:
    # Ids go into the path as one segment each: "a/../b" must not become another route.
    return quote(value, safe="")


class ApiClient:
    """One method per endpoint; returns the answer's model, raises ApiError / ApiUnreachable."""

    def __init__(self, base_url: str, token: str | None = None, timeout: float = 10) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        headers = {"Accept": "application/json", "User-Agent": "flowforge-client"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        try:
            self._http = Http(self.base_url, headers, timeout)
        except ValueError as exc:
            raise ApiUnreachable(self.base_url, str(exc)) from exc

    def close(self) -> None:
        """Close the connection."""
        self._http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing ---------------------------------------------------------------------
    def _request(self, method: str, path: str, **kwargs: Any) -> Response:
        try:
            resp = self._http.request(method, path, **kwargs)
        except TransportError as exc:
            raise ApiUnreachable(self.base_url, str(exc)) from exc
        if resp.status >= 400:
            raise api_error(resp)
        return resp

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        """The answer to one request: a JSON object (an ApiError when it is not one).

        Each method below says which model the answer reads as.
        """
        resp = self._request(method, path, **kwargs)
        try:
            data = parse(resp.content)
        except ValueError as exc:
            raise ApiError(
                resp.status, "bad_response", f"the API answered with non-JSON from {path}"
            ) from exc
        if not isinstance(data, dict):
            raise ApiError(
                resp.status,
                "bad_response",
                f"the API answered {path} with a shape this client does not know",
            )
        return data

    def _every_page(self, path: str, key: str, params: dict[str, Any]) -> list[Any]:
        """Every item of a paged list (the answer's `key`), reading on while the answer says `has_more`."""
        found: list[Any] = []
        while True:
            answer = self._call("GET", path, params={**params, "offset": len(found)})
            more = answer[key]
            found.extend(more)
            if not answer.has_more or not more:
                return found

    # -- system -----------------------------------------------------------------------
    def health(self) -> Health:
        """GET /health."""
        return cast("Health", self._call("GET", "/health"))

    def ready(self) -> Ready:
        """GET /ready (ApiError 503 when the store or queue is down)."""
        return cast("Ready", self._call("GET", "/ready"))

    def metrics(self) -> str:
        """GET /metrics as Prometheus text."""
        return self._request("GET", "/metrics").text

    def status(self) -> Status:
        """GET /api/v1/status."""
        return cast("Status", self._call("GET", "/api/v1/status"))

    def workers(self) -> list[WorkerOut]:
        """GET /api/v1/workers, every page."""
        return cast("list[WorkerOut]", self._every_page("/api/v1/workers", "workers", {}))

    def prune(self, older_than: str, dry_run: bool = False, cursor: str | None = None) -> PruneResult:
        """POST /api/v1/prune: what this request deleted (with `dry_run`, would delete); `next` goes on."""
        body = {"older_than": older_than, "dry_run": dry_run, "cursor": cursor}
        return cast("PruneResult", self._call("POST", "/api/v1/prune", body=body))

    # -- DAGs -------------------------------------------------------------------------
    def list_dags(self, include_inactive: bool = False) -> list[DagSummary]:
        """GET /api/v1/dags, every page."""
        params = {"include_inactive": "1"} if include_inactive else {}
        return cast("list[DagSummary]", self._every_page("/api/v1/dags", "dags", params))

    def submit_dag(self, yaml_text: str) -> DagSubmitted:
        """POST /api/v1/dags with the YAML; the stored record plus `created` / `changed`."""
        return cast("DagSubmitted", self._call("POST", "/api/v1/dags", body={"yaml": yaml_text}))

    def get_dag(self, dag_id: str) -> DagDetail:
        """GET /api/v1/dags/{dag_id}."""
        return cast("DagDetail", self._call("GET", f"/api/v1/dags/{_seg(dag_id)}"))

    def delete_dag(self, dag_id: str) -> DagDetail:
        """DELETE /api/v1/dags/{dag_id} (deactivate)."""
        return cast("DagDetail", self._call("DELETE", f"/api/v1/dags/{_seg(dag_id)}"))

    def activate_dag(self, dag_id: str) -> DagDetail:
        """POST /api/v1/dags/{dag_id}/activate."""
        return cast("DagDetail", self._call("POST", f"/api/v1/dags/{_seg(dag_id)}/activate"))

    def pause_dag(self, dag_id: str) -> DagDetail:
        """POST /api/v1/dags/{dag_id}/pause."""
        return cast("DagDetail", self._call("POST", f"/api/v1/dags/{_seg(dag_id)}/pause"))

    def unpause_dag(self, dag_id: str) -> DagDetail:
        """POST /api/v1/dags/{dag_id}/unpause."""
        return cast("DagDetail", self._call("POST", f"/api/v1/dags/{_seg(dag_id)}/unpause"))

    def dag_schedule(self, dag_id: str, count: int = 10, after: str | None = None) -> SchedulePreview:
        """GET /api/v1/dags/{dag_id}/schedule: the next `count` ticks (after `after`, default now)."""
        params: dict[str, Any] = {"count": count} if after is None else {"count": count, "from": after}
        return cast(
            "SchedulePreview", self._call("GET", f"/api/v1/dags/{_seg(dag_id)}/schedule", params=params)
        )

    def dag_stats(self, dag_id: str, runs: int = 50) -> DagStats:
        """GET /api/v1/dags/{dag_id}/stats: the durations and success rate of its last `runs` ended runs."""
        params = {"runs": runs}
        return cast("DagStats", self._call("GET", f"/api/v1/dags/{_seg(dag_id)}/stats", params=params))

    def dag_versions(self, dag_id: str) -> list[DagVersionOut]:
        """GET /api/v1/dags/{dag_id}/versions, every page, newest first."""
        return cast(
            "list[DagVersionOut]", self._every_page(f"/api/v1/dags/{_seg(dag_id)}/versions", "versions", {})
        )

    def dag_version(self, dag_id: str, version: int) -> DagVersionDetail:
        """GET /api/v1/dags/{dag_id}/versions/{version}, its source masked."""
        return cast("DagVersionDetail", self._call("GET", f"/api/v1/dags/{_seg(dag_id)}/versions/{version}"))

    # -- runs -------------------------------------------------------------------------
    def list_runs(
        self, dag_id: str | None = None, state: str | None = None, limit: int = 50, offset: int = 0
    ) -> RunList:
        """GET /api/v1/runs: one page of runs, newest first."""
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        if dag_id:
            params["dag_id"] = dag_id
        if state:
            params["state"] = state
        return cast("RunList", self._call("GET", "/api/v1/runs", params=params))

    def trigger(
        self, dag_id: str, params: dict[str, Any] | None = None, triggered_by: str = "cli"
    ) -> TriggeredRun:
        """POST /api/v1/runs; the new run."""
        body = {"dag_id": dag_id, "triggered_by": triggered_by, "params": params or {}}
        return cast("TriggeredRun", self._call("POST", "/api/v1/runs", body=body))

    def cancel_run(self, run_id: str) -> RunDetail:
        """POST /api/v1/runs/{run_id}/cancel; the cancelled run with its tasks."""
        return cast("RunDetail", self._call("POST", f"/api/v1/runs/{_seg(run_id)}/cancel"))

    def retry_run(self, run_id: str) -> RunRetried:
        """POST /api/v1/runs/{run_id}/retry: run the failed tasks again; the run plus `cleared`."""
        return cast("RunRetried", self._call("POST", f"/api/v1/runs/{_seg(run_id)}/retry"))

    def retry_task(self, run_id: str, task_id: str, downstream: bool = False) -> RunRetried:
        """POST /api/v1/runs/{run_id}/tasks/{task_id}/retry; the run plus `cleared`."""
        path = f"/api/v1/runs/{_seg(run_id)}/tasks/{_seg(task_id)}/retry"
        return cast("RunRetried", self._call("POST", path, body={"downstream": downstream}))

    def backfill(self, dag_id: str, start: str, end: str, dry_run: bool = False) -> BackfillResult:
        """POST /api/v1/dags/{dag_id}/backfill: the ticks in the range and how many runs were created."""
        body = {"start": start, "end": end, "dry_run": dry_run}
        return cast("BackfillResult", self._call("POST", f"/api/v1/dags/{_seg(dag_id)}/backfill", body=body))

    def get_run(self, run_id: str) -> RunDetail:
        """GET /api/v1/runs/{run_id}: the run with its `tasks`."""
        return cast("RunDetail", self._call("GET", f"/api/v1/runs/{_seg(run_id)}"))

    def run_tasks(self, run_id: str) -> list[TaskInstanceOut]:
        """GET /api/v1/runs/{run_id}/tasks."""
        return cast("list[TaskInstanceOut]", self._call("GET", f"/api/v1/runs/{_seg(run_id)}/tasks").tasks)

    def get_task(self, run_id: str, task_id: str) -> TaskDetail:
        """GET /api/v1/runs/{run_id}/tasks/{task_id}: the instance, its `attempts` and `spec`."""
        return cast("TaskDetail", self._call("GET", f"/api/v1/runs/{_seg(run_id)}/tasks/{_seg(task_id)}"))

    def explain_task(self, run_id: str, task_id: str) -> TaskExplanation:
        """GET /api/v1/runs/{run_id}/tasks/{task_id}/explain: why the task is in its state."""
        path = f"/api/v1/runs/{_seg(run_id)}/tasks/{_seg(task_id)}/explain"
        return cast("TaskExplanation", self._call("GET", path))

    def events(
        self,
        *,
        run_id: str | None = None,
        dag_id: str | None = None,
        after: int | None = None,
        read_timeout: float = 30.0,
    ) -> Iterator[dict[str, Any]]:
        """GET /api/v1/events: yield each server-sent event's data (a dict with `id`) as it comes.

        The server sends a keep-alive at least every 15 s, so `read_timeout` only trips on a
        dead connection (ApiUnreachable). Ends when the server closes the stream.
        """
        params: dict[str, Any] = {
            k: v for k, v in (("run_id", run_id), ("dag_id", dag_id), ("after", after)) if v is not None
        }
        try:
            with self._http.stream(
                "GET",
                "/api/v1/events",
                params=params,
                read_timeout=read_timeout,
                headers={"Accept": "text/event-stream"},
            ) as resp:
                if resp.status >= 400:
                    resp.read()
                    raise api_error(resp)
                for line in resp.iter_lines():
                    if line.startswith("data: "):
                        yield json.loads(line[6:])
        except TransportError as exc:
            raise ApiUnreachable(self.base_url, str(exc)) from exc

    def follow_log(self, run_id: str, task_id: str, attempt: int, after: int = 0) -> Iterator[str]:
        """GET .../logs?follow=1: yield an attempt's log text as it is written, until the attempt ends."""
        params = {"follow": 1, "attempt": attempt, "after": after}
        path = f"/api/v1/runs/{_seg(run_id)}/tasks/{_seg(task_id)}/logs"
        try:
            with self._http.stream("GET", path, params=params, read_timeout=None) as resp:
                if resp.status >= 400:
                    resp.read()
                    raise api_error(resp)
                yield from resp.iter_text()
        except TransportError as exc:
            raise ApiUnreachable(self.base_url, str(exc)) from exc

    def logs(self, run_id: str, task_id: str, attempt: int | None = None, after: int = 0) -> LogPage:
        """GET .../logs: a piece of an attempt's log, from the cursor `after`."""
        params: dict[str, Any] = {"after": after}
        if attempt is not None:
            params["attempt"] = attempt
        path = f"/api/v1/runs/{_seg(run_id)}/tasks/{_seg(task_id)}/logs"
        return cast("LogPage", self._call("GET", path, params=params))
