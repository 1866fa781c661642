"""The chaos suite's cluster: the shared `tests.cluster.Cluster` plus a task ledger and the faults.

Every process is `python -m flowforge ROLE` with a process group of its own, and so is every task
it starts (setsid). `kill_tree` therefore freezes the process, SIGKILLs the process group of
every task it runs, then SIGKILLs the process: what a host losing power does to its worker.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.chaos.invariants import Verdict, query
from tests.chaos.ledger import kill_survivors
from tests.cluster import Cluster
from tests.harness import FlowForgeProcess, children, free_port, wait_until

# Test-mode timings: workers renew leases every 0.5 s and heartbeat every 0.5 s; a lease (and a
# worker's life without a heartbeat) lasts 3 × 0.5 = 1.5 s.
HEARTBEAT_SECS = 0.5
LEASE_SECS = 3 * HEARTBEAT_SECS
# The worker token of clusters whose workers are API-mode ones (`worker --api-url`).
WORKER_TOKEN = "chaos-worker-token-3b9e51f07c2a"
WORKER_MODES = ("direct", "api")


# -- figures ------------------------------------------------------------------------------------
@dataclass
class Figures:
    """What one scenario did and found, for its printout and the summary at the end of the test run."""

    scenario: str
    seed: int
    tasks: int = 0
    runs: int = 0
    runs_completed: int = 0  # ended as they must: success (R9's, failed by its timeouts)
    faults: int = 0  # faults injected, as counted when they were
    hits: int = 0  # faults that struck work in flight
    tasks_hit: int = 0  # task executions (or queued tasks' messages) those faults struck
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
            f"  faults injected {self.faults}, hit work in flight {self.hits} ({self.tasks_hit} tasks); "
            f"lost attempts {self.lost_attempts}, re-executions {self.re_executions}",
            f"  double successes {self.double_successes}, losses {self.losses}; recovery {self.recovery_text()}",
        ]
        lines += [f"  {note}" for note in self.notes]
        return "\n".join(lines)


REPORT: list[Figures] = []  # every scenario's figures, printed at the end of the test run


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class ChaosCluster(Cluster):
    """A `Cluster` whose test tasks write to a ledger, with the faults the scenarios inflict."""

    def __init__(
        self,
        tmp_path: Path,
        *,
        db_url: str,
        queue_url: str,
        check_db_url: str | None = None,
        heartbeat: float = HEARTBEAT_SECS,
        worker_mode: str = "direct",
    ) -> None:
        super().__init__(tmp_path, db_url=db_url, queue_url=queue_url, heartbeat=heartbeat, log_level="info")
        self.ledger = tmp_path / "ledger.txt"
        self.ledger.touch()
        self.db_url = check_db_url or db_url  # the checker's way in, never through a fault
        if worker_mode not in WORKER_MODES:
            raise ValueError(f"worker_mode {worker_mode!r}: expected one of {WORKER_MODES}")
        # "api": workers hold only the API's URL and the worker token (the API is given the token too).
        self.worker_mode = worker_mode
        if worker_mode == "api":
            self.env["FLOWFORGE_WORKER_TOKEN"] = WORKER_TOKEN

    def start_worker(
        self,
        name: str,
        concurrency: int,
        env: dict[str, str] | None = None,
        api_url: str | None = None,
        mode: str | None = None,
    ) -> FlowForgeProcess:
        """A worker of `mode` (default: the cluster's); an API-mode one talks to `api_url` (default: the
        API's URL) and has neither FLOWFORGE_DB nor FLOWFORGE_QUEUE."""
        if (mode or self.worker_mode) == "direct":
            return super().start_worker(name, concurrency, env)
        base = {k: v for k, v in self.env.items() if k not in ("FLOWFORGE_DB", "FLOWFORGE_QUEUE")}
        args = ["worker", "--api-url", api_url or self.url, "--concurrency", str(concurrency)]
        proc = FlowForgeProcess(
            args, name=name, env={**base, **(env or {})}, log_path=self.dir / f"{name}.log", repo=self.repo
        )
        self.procs[name] = proc
        self.down.discard(name)
        return proc

    def trigger(self, dag_id: str, triggered_by: str = "chaos") -> str:
        return super().trigger(dag_id, triggered_by)

    def kill_tree(self, name: str) -> list[int]:
        """SIGKILL process `name` and every task it runs, as a host crash would; returns the task pids.

        The process is frozen first, so that it can neither notice nor start another task meanwhile.
        """
        proc = self.procs[name]
        self.down.add(name)
        tasks: list[int] = []
        if proc.running():
            _signal_group(proc.pid, signal.SIGSTOP)
            tasks = children(proc.pid)
            for child in tasks:
                _signal_group(child, signal.SIGKILL)
                try:
                    os.kill(child, signal.SIGKILL)  # in case it had not made its own group yet
                except ProcessLookupError:
                    pass
            _signal_group(proc.pid, signal.SIGKILL)
        proc.proc.wait(10)
        return tasks

    def pause(self, name: str) -> None:
        """SIGSTOP process `name` (only it: its tasks go on, as under a long GC pause or a VM freeze)."""
        os.kill(self.procs[name].pid, signal.SIGSTOP)

    def resume(self, name: str) -> None:
        os.kill(self.procs[name].pid, signal.SIGCONT)

    def close(self) -> None:
        """Kill every process with its tasks, and whatever task process is left."""
        if self.http is not None:
            self.http.close()
        for name, proc in self.procs.items():
            if proc.running():
                self.kill_tree(name)  # SIGKILL ends a paused process too
        kill_survivors(self.ledger)


def scheduler_leader(db_url: str) -> tuple[int | None, float]:
    """(pid of the scheduler holding the lease, its expiry) read from the store; (None, 0) when none."""
    rows = query(db_url, "SELECT holder, expires_at FROM leases WHERE name = 'scheduler'")
    row = rows[0] if rows else None
    if row is None or row[1] < time.time():
        return None, 0.0
    return int(row[0].rsplit("-", 2)[1]), float(row[1])  # holder is host-pid-random


class RedisServer:
    """A redis-server of this test's own on a free port, with no persistence: a restart loses everything."""

    def __init__(self, tmp_path: Path) -> None:
        self.port = free_port()
        self.dir = tmp_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        args = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        args += ["--daemonize", "no", "--dir", str(self.dir)]
        with open(self.dir / "redis-server.log", "ab") as log:
            self.proc = subprocess.Popen(
                ["redis-server", *args], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        wait_until("redis-server to answer", self.answers, timeout=15, alive=self.check_alive)
        return self

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"redis-server exited with {self.proc.returncode}")

    def answers(self) -> bool:
        """True when it answers PING."""
        import redis

        client = redis.Redis(port=self.port)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL: everything it held is gone."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
