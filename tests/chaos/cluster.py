"""A cluster of real FlowForge processes for the chaos suite, with the faults it can inflict.

Every process is `python -m flowforge ROLE` with a process group of its own, and so is every task
it starts (setsid). `kill_tree` therefore freezes the process, SIGKILLs the process group of
every task it runs, then SIGKILLs the process: what a host losing power does to its worker.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

from tests.chaos.ledger import TERMINAL_RUN_STATES, Dag, Verdict, kill_survivors
from tests.support import FlowForgeProcess, clean_env, free_port

T = TypeVar("T")

# Test-mode timings: workers renew leases every 0.5 s and heartbeat every 0.5 s; a lease (and a
# worker's life without a heartbeat) lasts 3 × 0.5 = 1.5 s.
HEARTBEAT_SECS = 0.5
LEASE_SECS = 3 * HEARTBEAT_SECS


# -- figures ------------------------------------------------------------------------------------
@dataclass
class Figures:
    """What one scenario did and found, for its printout and the summary at the end of the test run."""

    scenario: str
    seed: int
    tasks: int = 0
    runs: int = 0
    runs_completed: int = 0  # ended as they must: success (R9's, failed by its timeouts)
    faults: int = 0  # faults injected
    hits: int = 0  # faults that hit running tasks
    tasks_hit: int = 0  # task executions those faults killed, paused or cut off
    lost_attempts: int = 0
    re_executions: int = 0
    double_successes: int = 0
    losses: int = 0
    recovery: list[float] = field(default_factory=list)  # seconds from a fault's end to progress
    elapsed: float = 0.0
    notes: list[str] = field(default_factory=list)

    def absorb(self, verdict: Verdict) -> None:
        self.tasks += verdict.tasks
        self.runs += verdict.runs
        self.runs_completed += verdict.runs_succeeded
        self.lost_attempts += verdict.lost_attempts
        self.re_executions += verdict.re_executions
        self.double_successes += verdict.double_successes
        self.losses += verdict.losses

    def recovery_text(self) -> str:
        if not self.recovery:
            return "-"
        return f"max {max(self.recovery):.1f}s (" + ", ".join(f"{r:.1f}" for r in self.recovery) + ")"

    def text(self) -> str:
        lines = [
            f"{self.scenario} (seed {self.seed}): {self.tasks} tasks in {self.runs} run(s), "
            f"{self.runs_completed} completed, in {self.elapsed:.1f}s",
            f"  faults injected {self.faults}, hit running tasks {self.hits} ({self.tasks_hit} task executions); "
            f"lost attempts {self.lost_attempts}, re-executions {self.re_executions}",
            f"  double successes {self.double_successes}, losses {self.losses}; recovery {self.recovery_text()}",
        ]
        lines += [f"  {note}" for note in self.notes]
        return "\n".join(lines)


REPORT: list[Figures] = []  # every scenario's figures, printed at the end of the test run


# -- processes ----------------------------------------------------------------------------------
def children(pid: int) -> list[int]:
    """The direct children of `pid` (from /proc)."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()  # after "pid (comm) "
        if len(fields) > 1 and int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(entry.name))
    return found


def pid_alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2 :].split()[0] != "Z"


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def scheduler_leader(db_url: str) -> tuple[int | None, float]:
    """(pid of the scheduler holding the lease, its expiry) read from the store; (None, 0) when none."""
    sql = "SELECT holder, expires_at FROM leases WHERE name = 'scheduler'"
    if db_url.startswith("sqlite:///"):
        conn = sqlite3.connect(f"file:{db_url.removeprefix('sqlite:///')}?mode=ro", uri=True, timeout=10)
        try:
            row = conn.execute(sql).fetchone()
        finally:
            conn.close()
    else:
        import psycopg

        with psycopg.connect(db_url, connect_timeout=5) as conn:
            row = conn.execute(sql).fetchone()
    if row is None or row[1] < time.time():
        return None, 0.0
    return int(row[0].rsplit("-", 2)[1]), float(row[1])  # holder is host-pid-random


class Cluster:
    """FlowForge processes sharing one store and queue, and a ledger for their test tasks."""

    def __init__(
        self,
        tmp_path: Path,
        *,
        db_url: str,
        queue_url: str,
        check_db_url: str | None = None,
        heartbeat: float = HEARTBEAT_SECS,
    ) -> None:
        self.dir = tmp_path
        self.ledger = tmp_path / "ledger.txt"
        self.ledger.touch()
        self.home = tmp_path / "home"
        self.env = clean_env(
            FLOWFORGE_DB=db_url,
            FLOWFORGE_QUEUE=queue_url,
            FLOWFORGE_HOME=str(self.home),
            FLOWFORGE_HEARTBEAT_SECS=str(heartbeat),
            FLOWFORGE_LOG_LEVEL="info",
        )
        self.db_url = check_db_url or db_url  # the checker's way in, never through a fault
        self.procs: dict[str, FlowForgeProcess] = {}
        self.down: set[str] = set()  # stopped or killed on purpose: their exit is no failure
        self.http: httpx.Client | None = None

    # -- starting ---------------------------------------------------------------------------
    def start(
        self, name: str, *args: str, port: int | None = None, env: dict[str, str] | None = None
    ) -> FlowForgeProcess:
        """Start (or restart) process `name` running `flowforge ARGS…`, logging to NAME.log; `env` adds to the cluster's."""
        proc = FlowForgeProcess(
            list(args), port=port, env={**self.env, **(env or {})}, log_path=self.dir / f"{name}.log"
        )
        self.procs[name] = proc
        self.down.discard(name)
        return proc

    def _connect(self, proc: FlowForgeProcess) -> None:
        proc.wait_healthy(timeout=60)
        if self.http is not None:
            self.http.close()
        self.http = httpx.Client(base_url=proc.url, timeout=30)

    def start_api(self) -> None:
        port = free_port()
        self._connect(self.start("api", "api", "--port", str(port), port=port))

    def start_up(self, concurrency: int, name: str = "up") -> None:
        """`flowforge up` (API, scheduler and worker slots in one process) on a free port."""
        port = free_port()
        self._connect(
            self.start(
                name,
                "up",
                "--port",
                str(port),
                "--home",
                str(self.home),
                "--concurrency",
                str(concurrency),
                port=port,
            )
        )

    def start_scheduler(self, name: str = "scheduler") -> FlowForgeProcess:
        return self.start(name, "scheduler")

    def start_worker(
        self, name: str, concurrency: int, env: dict[str, str] | None = None
    ) -> FlowForgeProcess:
        return self.start(name, "worker", "--concurrency", str(concurrency), env=env)

    # -- the API ----------------------------------------------------------------------------
    def get(self, path: str) -> Any:
        assert self.http is not None
        response = self.http.get(path)
        response.raise_for_status()
        return response.json()

    def submit(self, dag: Dag) -> None:
        assert self.http is not None
        response = self.http.post("/api/v1/dags", json={"yaml": dag.yaml})
        assert response.status_code in (200, 201), response.text

    def trigger(self, dag_id: str) -> str:
        assert self.http is not None
        response = self.http.post("/api/v1/runs", json={"dag_id": dag_id, "triggered_by": "chaos"})
        assert response.status_code == 201, response.text
        return str(response.json()["run_id"])

    def task_states(self, run_ids: list[str]) -> list[dict[str, Any]]:
        """Every task instance of these runs (run_id added), as the API shows them."""
        out = []
        for run_id in run_ids:
            for t in self.get(f"/api/v1/runs/{run_id}")["tasks"]:
                out.append({**t, "run_id": run_id})
        return out

    def succeeded(self, run_ids: list[str]) -> tuple[int, int]:
        """(tasks succeeded, tasks) over these runs."""
        tasks = self.task_states(run_ids)
        return sum(t["state"] == "success" for t in tasks), len(tasks)

    def worker_ids(self) -> dict[int, str]:
        """pid → worker_id of the workers the store shows alive."""
        return {
            w["pid"]: w["worker_id"] for w in self.get("/api/v1/workers")["workers"] if w["state"] == "alive"
        }

    def wait_workers(self, names: list[str], timeout: float = 60) -> dict[str, str]:
        """Wait until each named worker process has registered; name → worker_id."""

        def ready() -> dict[str, str] | None:
            ids = self.worker_ids()
            found = {n: ids[self.procs[n].proc.pid] for n in names if self.procs[n].proc.pid in ids}
            return found if len(found) == len(names) else None

        return self.wait_for(f"workers {names} to register", ready, timeout)

    # -- waiting ----------------------------------------------------------------------------
    def check_alive(self) -> None:
        """Fail at once when a process exited that nobody stopped."""
        for name, proc in self.procs.items():
            if name not in self.down and proc.proc.poll() is not None:
                raise AssertionError(f"{name} exited with {proc.proc.returncode}:\n{proc.output()[-4000:]}")

    def wait_for(self, what: str, check: Callable[[], T | None], timeout: float, poll: float = 0.1) -> T:
        """Poll `check()` until it is truthy; fail with every process's output after `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive()
            try:
                value = check()
            except httpx.HTTPError:
                value = None  # the API may be restarting or waiting for its database
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}\n{self.outputs()}")
            time.sleep(poll)

    def wait_runs(self, run_ids: list[str], timeout: float) -> float:
        """Wait until every run has ended (I7); returns the seconds waited."""
        start = time.monotonic()

        def ended() -> bool:
            return all(self.get(f"/api/v1/runs/{r}")["state"] in TERMINAL_RUN_STATES for r in run_ids)

        self.wait_for(f"runs {run_ids} to end (I7)", ended, timeout, poll=0.25)
        return time.monotonic() - start

    def wait_progress(self, run_ids: list[str], fraction: float, timeout: float) -> None:
        """Wait until `fraction` of the runs' tasks have succeeded."""

        def far_enough() -> bool:
            done, total = self.succeeded(run_ids)
            return done >= fraction * total

        self.wait_for(f"{fraction:.0%} of the tasks to succeed", far_enough, timeout, poll=0.2)

    # -- faults -----------------------------------------------------------------------------
    def kill_tree(self, name: str) -> list[int]:
        """SIGKILL process `name` and every task it runs, as a host crash would; returns the task pids.

        The process is frozen first, so that it can neither notice nor start another task meanwhile.
        """
        proc = self.procs[name]
        self.down.add(name)
        pid = proc.proc.pid
        tasks: list[int] = []
        if proc.proc.poll() is None:
            _signal_group(pid, signal.SIGSTOP)
            tasks = children(pid)
            for child in tasks:
                _signal_group(child, signal.SIGKILL)
                try:
                    os.kill(child, signal.SIGKILL)  # in case it had not made its own group yet
                except ProcessLookupError:
                    pass
            _signal_group(pid, signal.SIGKILL)
        proc.proc.wait(10)
        return tasks

    def pause(self, name: str) -> None:
        """SIGSTOP process `name` (only it: its tasks go on, as under a long GC pause or a VM freeze)."""
        os.kill(self.procs[name].proc.pid, signal.SIGSTOP)

    def resume(self, name: str) -> None:
        os.kill(self.procs[name].proc.pid, signal.SIGCONT)

    def terminate(self, name: str) -> None:
        """SIGTERM process `name`: a graceful stop."""
        self.down.add(name)
        self.procs[name].proc.send_signal(signal.SIGTERM)

    # -- output -----------------------------------------------------------------------------
    def outputs(self, tail: int = 3000) -> str:
        return "\n".join(f"--- {name}\n{proc.output()[-tail:]}" for name, proc in self.procs.items())

    def count_in_logs(self, text: str) -> int:
        """How many times `text` appears in the output of every process so far."""
        return sum(p.read_text(errors="replace").count(text) for p in self.dir.glob("*.log"))

    def close(self) -> None:
        """Kill every process with its tasks, and whatever task process is left."""
        if self.http is not None:
            self.http.close()
        for name, proc in self.procs.items():
            if proc.proc.poll() is None:
                self.kill_tree(name)  # SIGKILL ends a paused process too
        kill_survivors(self.ledger)


class RedisServer:
    """A redis-server of this test's own on a free port, with no persistence: a restart loses everything."""

    def __init__(self, tmp_path: Path) -> None:
        self.port = free_port()
        self.dir = tmp_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        log = open(self.dir / "redis-server.log", "ab")
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--dir",
                str(self.dir),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        import redis

        client = redis.Redis(port=self.port)
        deadline = time.monotonic() + 15
        while True:
            try:
                client.ping()
                break
            except redis.RedisError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise AssertionError("redis-server did not start") from None
                time.sleep(0.05)
            finally:
                client.close()
        return self

    def kill(self) -> None:
        """SIGKILL: everything it held is gone."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
