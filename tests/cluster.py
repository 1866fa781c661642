"""A cluster of real FlowForge processes sharing one store and queue, built on `tests.harness`.

The end-to-end tests, the chaos suite and the benchmarks start their deployments with it: `up`
alone on SQLite, or `api` + `scheduler` + `worker`s on PostgreSQL + Redis.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx

from tests.harness import REPO, TERMINAL_RUN_STATES, FlowForgeProcess, clean_env, free_port, wait_until

T = TypeVar("T")


class Cluster:
    """FlowForge processes sharing one store and queue, each logging to FOLDER/NAME.log.

    Without `db_url` and `queue_url` the processes use their defaults: SQLite in `home`, the
    in-process queue (for `flowforge up`). When `env` names FLOWFORGE_API_TOKEN, API calls carry it.
    """

    def __init__(
        self,
        folder: Path,
        *,
        db_url: str | None = None,
        queue_url: str | None = None,
        home: Path | None = None,
        heartbeat: float | None = None,
        log_level: str | None = None,
        env: dict[str, str] | None = None,
        repo: Path = REPO,
    ) -> None:
        self.dir = folder
        self.home = home or folder / "home"
        self.repo = repo
        settings = {
            "FLOWFORGE_HOME": str(self.home),
            "FLOWFORGE_DB": db_url,
            "FLOWFORGE_QUEUE": queue_url,
            "FLOWFORGE_HEARTBEAT_SECS": None if heartbeat is None else str(heartbeat),
            "FLOWFORGE_LOG_LEVEL": log_level,
        }
        self.env = clean_env(**{k: v for k, v in settings.items() if v is not None})
        self.env.update(env or {})
        self.procs: dict[str, FlowForgeProcess] = {}
        self.down: set[str] = set()  # stopped or killed on purpose: their exit is no failure
        self.http: httpx.Client | None = None

    # -- starting and stopping ----------------------------------------------------------------------
    def start(
        self, name: str, *args: str, port: int | None = None, env: dict[str, str] | None = None
    ) -> FlowForgeProcess:
        """Start (or restart) process `name` running `flowforge ARGS…`; `env` adds to the cluster's."""
        self.dir.mkdir(parents=True, exist_ok=True)
        proc = FlowForgeProcess(
            list(args),
            name=name,
            port=port,
            env={**self.env, **(env or {})},
            log_path=self.dir / f"{name}.log",
            repo=self.repo,
        )
        self.procs[name] = proc
        self.down.discard(name)
        return proc

    def connect(self, proc: FlowForgeProcess, timeout: float = 60.0) -> FlowForgeProcess:
        """Wait until `proc` answers /health (every other process still alive), then talk to its API."""
        wait_until(
            f"{proc.name} to answer /health",
            proc.healthy,
            timeout,
            alive=self.check_alive,
            context=self.outputs,
        )
        if self.http is not None:
            self.http.close()
        token = self.env.get("FLOWFORGE_API_TOKEN")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=proc.url, timeout=30, headers=headers)
        return proc

    def start_api(self, name: str = "api") -> FlowForgeProcess:
        """`flowforge api` on a free port, once healthy."""
        port = free_port()
        return self.connect(self.start(name, "api", "--port", str(port), port=port))

    def start_up(self, concurrency: int, *extra: str, name: str = "up") -> FlowForgeProcess:
        """`flowforge up` (API, scheduler and worker slots in one process) on a free port, once healthy."""
        port = free_port()
        args = ["up", "--port", str(port), "--home", str(self.home), "--concurrency", str(concurrency)]
        return self.connect(self.start(name, *args, *extra, port=port))

    def start_scheduler(self, name: str = "scheduler") -> FlowForgeProcess:
        return self.start(name, "scheduler")

    def start_worker(
        self, name: str, concurrency: int, env: dict[str, str] | None = None
    ) -> FlowForgeProcess:
        return self.start(name, "worker", "--concurrency", str(concurrency), env=env)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Signal process `name` (SIGKILL unless told otherwise); its exit is no failure."""
        self.down.add(name)
        self.procs[name].kill(sig)

    def terminate(self, name: str) -> None:
        """SIGTERM process `name`: a graceful stop, not waited for."""
        self.kill(name, signal.SIGTERM)

    def stop(self, name: str, timeout: float = 20.0) -> int | None:
        """Stop process `name` gracefully (SIGKILL if it lingers); returns its exit code."""
        self.down.add(name)
        return self.procs[name].stop(timeout)

    def close(self) -> None:
        """Stop every process, newest first."""
        if self.http is not None:
            self.http.close()
        for name in reversed(list(self.procs)):
            self.stop(name)

    # -- the API --------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """The base URL of the API this cluster talks to."""
        assert self.http is not None, "no API started"
        return str(self.http.base_url).rstrip("/")

    def get(self, path: str, **params: Any) -> Any:
        """GET an API path and return its JSON, failing on an error status."""
        assert self.http is not None, "no API started"
        response = self.http.get(path, params=params or None)
        response.raise_for_status()
        return response.json()

    def submit(self, yaml_text: str) -> dict[str, Any]:
        """Submit a DAG; its JSON."""
        assert self.http is not None, "no API started"
        response = self.http.post("/api/v1/dags", json={"yaml": yaml_text})
        assert response.status_code in (200, 201), response.text
        return dict(response.json())

    def trigger(self, dag_id: str, triggered_by: str = "test") -> str:
        """Trigger a run; its id."""
        assert self.http is not None, "no API started"
        response = self.http.post("/api/v1/runs", json={"dag_id": dag_id, "triggered_by": triggered_by})
        assert response.status_code == 201, response.text
        return str(response.json()["run_id"])

    def task_states(self, run_ids: list[str]) -> list[dict[str, Any]]:
        """Every task instance of these runs (run_id added), as the API shows them."""
        return [{**t, "run_id": r} for r in run_ids for t in self.get(f"/api/v1/runs/{r}")["tasks"]]

    def succeeded(self, run_ids: list[str]) -> tuple[int, int]:
        """(tasks succeeded, tasks) over these runs."""
        tasks = self.task_states(run_ids)
        return sum(t["state"] == "success" for t in tasks), len(tasks)

    def worker_ids(self) -> dict[int, str]:
        """pid → worker_id of the workers the store shows alive."""
        workers = self.get("/api/v1/workers")["workers"]
        return {w["pid"]: w["worker_id"] for w in workers if w["state"] == "alive"}

    # -- waiting --------------------------------------------------------------------------------------
    def check_alive(self) -> None:
        """Fail at once when a process exited that nobody stopped."""
        for name, proc in self.procs.items():
            if name not in self.down:
                proc.check_alive()

    def wait_for(self, what: str, check: Callable[[], T | None], timeout: float, poll: float = 0.1) -> T:
        """Poll `check()` until it is truthy; fail with every process's output after `timeout`."""

        def probe() -> T | None:
            try:
                return check()
            except httpx.HTTPError:
                return None  # the API may be restarting or waiting for its database

        return wait_until(what, probe, timeout, poll=poll, alive=self.check_alive, context=self.outputs)

    def wait_workers(self, names: list[str], timeout: float = 60) -> dict[str, str]:
        """Wait until each named worker process has registered; name → worker_id."""

        def ready() -> dict[str, str] | None:
            ids = self.worker_ids()
            found = {n: ids[self.procs[n].pid] for n in names if self.procs[n].pid in ids}
            return found if len(found) == len(names) else None

        return self.wait_for(f"workers {names} to register", ready, timeout)

    def wait_run(self, run_id: str, timeout: float = 60, poll: float = 0.1) -> dict[str, Any]:
        """Wait until a run has ended; the run as the API shows it."""

        def ended() -> dict[str, Any] | None:
            run = self.get(f"/api/v1/runs/{run_id}")
            return run if run["state"] in TERMINAL_RUN_STATES else None

        return self.wait_for(f"run {run_id} to end", ended, timeout, poll=poll)

    def wait_runs(self, run_ids: list[str], timeout: float) -> float:
        """Wait until every run has ended; returns the seconds waited."""
        start = time.monotonic()

        def ended() -> bool:
            return all(self.get(f"/api/v1/runs/{r}")["state"] in TERMINAL_RUN_STATES for r in run_ids)

        self.wait_for(f"runs {run_ids} to end", ended, timeout, poll=0.25)
        return time.monotonic() - start

    def wait_progress(self, run_ids: list[str], fraction: float, timeout: float) -> None:
        """Wait until `fraction` of the runs' tasks have succeeded."""

        def far_enough() -> bool:
            done, total = self.succeeded(run_ids)
            return done >= fraction * total

        self.wait_for(f"{fraction:.0%} of the tasks to succeed", far_enough, timeout, poll=0.2)

    # -- output ---------------------------------------------------------------------------------------
    def outputs(self, tail: int = 3000) -> str:
        """The end of every process's output, for a failure message."""
        return "\n".join(f"--- {name}\n{proc.output(tail)}" for name, proc in self.procs.items())

    def count_in_logs(self, text: str) -> int:
        """How many times `text` appears in the output of every process so far."""
        return sum(p.read_text(errors="replace").count(text) for p in self.dir.glob("*.log"))
