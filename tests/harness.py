"""Real `flowforge` processes for the tests and the benchmarks: start, wait until ready, stop, kill, logs.

Every process is `python -m flowforge ARGS…`: the command line is the interface that stays put
while the package's insides move. Each runs in a session (process group) of its own, with the
environment of this process minus every FLOWFORGE_* setting, plus what the caller names.
`Cluster` is a set of such processes sharing one store and queue, and one API to talk to.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import IO, TypeVar

import httpx

REPO = Path(__file__).resolve().parent.parent
TERMINAL_RUN_STATES = ("success", "failed", "cancelled")

T = TypeVar("T")


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without FLOWFORGE_* settings, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWFORGE_")}
    env.update(extra)
    return env


def wait_until(
    what: str,
    check: Callable[[], T | None],
    timeout: float,
    *,
    poll: float = 0.05,
    alive: Callable[[], None] | None = None,
    context: Callable[[], str] | None = None,
) -> T:
    """Poll `check()` until it returns something truthy, and return that.

    `alive()` runs before every poll and raises when something the wait depends on died;
    after `timeout` seconds an AssertionError names `what`, followed by `context()`.
    """
    deadline = time.monotonic() + timeout
    while True:
        if alive is not None:
            alive()
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            more = f"\n{context()}" if context is not None else ""
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}{more}")
        time.sleep(poll)


# -- /proc ------------------------------------------------------------------------------------------
def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after "pid (comm) ": state first; None when unreadable."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rfind(")") + 2 :].split()


def pid_alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    fields = _stat_fields(pid)
    return fields is not None and bool(fields) and fields[0] != "Z"


def children(pid: int) -> list[int]:
    """The live direct children of `pid`."""
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields and len(fields) > 1 and int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(entry.name))
    return found


def memory_kb(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of a process in KiB; empty when unreadable."""
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    out[key] = int(value.split()[0])
    except OSError:
        pass
    return out


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds a process has used so far (its threads, not its children)."""
    fields = _stat_fields(pid)
    if not fields or len(fields) < 13:
        return None
    # utime and stime are the 14th and 15th fields of the whole line, the 12th and 13th here.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- one process ------------------------------------------------------------------------------------
def _sink(log_path: Path | None) -> AbstractContextManager[IO[bytes] | int]:
    """Where a process's output goes: appended to `log_path`, or nowhere."""
    if log_path is None:
        return nullcontext(subprocess.DEVNULL)
    return open(log_path, "ab")


class FlowForgeProcess:
    """A real `flowforge ARGS…` process; `url` is its API when it serves one on `port`."""

    def __init__(
        self,
        args: list[str],
        *,
        name: str = "flowforge",
        port: int | None = None,
        env: dict[str, str] | None = None,
        log_path: Path | None = None,
        repo: Path = REPO,
        program: list[str] | None = None,
    ) -> None:
        """`program` is the command that is `flowforge` (default: this interpreter's `-m flowforge`,
        run in `repo`); an installed one, such as a virtualenv's `bin/flowforge`, runs as it is."""
        self.name = name
        self.port = port
        self.url = f"http://127.0.0.1:{port}" if port else ""
        self.log_path = log_path
        with _sink(log_path) as out:
            self.proc = subprocess.Popen(
                [*(program or [sys.executable, "-m", "flowforge"]), *args],
                cwd=repo,
                env=env if env is not None else clean_env(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        """The process id (also its process group id)."""
        return self.proc.pid

    def running(self) -> bool:
        """True until the process has exited."""
        return self.proc.poll() is None

    def check_alive(self) -> None:
        """AssertionError with the process's output when it has exited."""
        if not self.running():
            raise AssertionError(
                f"flowforge {self.name} exited with {self.proc.returncode}:\n{self.output(4000)}"
            )

    def healthy(self) -> bool:
        """True when its /health answers 200 now."""
        try:
            return httpx.get(f"{self.url}/health", timeout=0.5).status_code == 200
        except httpx.HTTPError:
            return False

    def wait_healthy(self, timeout: float = 60.0) -> FlowForgeProcess:
        """Block until /health answers; fail with the process's output if it died or never did."""
        wait_until(
            f"flowforge {self.name} to answer {self.url}/health",
            self.healthy,
            timeout,
            alive=self.check_alive,
            context=self.output,
        )
        return self

    def output(self, tail: int | None = None) -> str:
        """What the process printed so far (its last `tail` characters), when it logs to a file."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        text = self.log_path.read_text(errors="replace")
        return text[-tail:] if tail else text

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send `sig` to the process (only to it: its task groups are its own business)."""
        if self.running():
            self.proc.send_signal(sig)

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, wait, then SIGKILL the whole session if it lingers; returns the exit code."""
        if self.running():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(5)
        return self.proc.returncode

    def memory(self) -> dict[str, float | None]:
        """Current and peak RSS in MiB."""
        kb = memory_kb(self.pid)
        return {
            "rss_mib": kb["VmRSS"] / 1024 if "VmRSS" in kb else None,
            "peak_rss_mib": kb["VmHWM"] / 1024 if "VmHWM" in kb else None,
        }

    def cpu(self) -> float | None:
        """CPU seconds used so far."""
        return cpu_seconds(self.pid)


def run_flowforge(
    *args: str, env: dict[str, str] | None = None, repo: Path = REPO, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    """Run `flowforge ARGS…` to its end and capture its output."""
    return subprocess.run(
        [sys.executable, "-m", "flowforge", *args],
        cwd=repo,
        env=env if env is not None else clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def cli(
    *args: str, url: str, timeout: float = 60.0, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the real `flowforge` CLI against `url` and capture its output."""
    return run_flowforge("--api-url", url, *args, env=env, timeout=timeout)


def start_cli(*args: str, url: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """Start the real `flowforge` CLI against `url` with its output piped, and return at once."""
    return subprocess.Popen(
        [sys.executable, "-m", "flowforge", "--api-url", url, *args],
        cwd=REPO,
        env=env if env is not None else clean_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def has_command(name: str, repo: Path = REPO) -> bool:
    """True when `flowforge NAME --help` works (the command exists in that checkout)."""
    return run_flowforge(name, "--help", repo=repo).returncode == 0


def start_up(home: Path, *extra: str, env: dict[str, str] | None = None) -> FlowForgeProcess:
    """Start `flowforge up` on a free port with its data in `home`, and wait until it is healthy."""
    port = free_port()
    proc = FlowForgeProcess(
        ["up", "--port", str(port), "--home", str(home), *extra],
        name="up",
        port=port,
        env=env,
        log_path=home.parent / f"{home.name}-up.log",
    )
    try:
        return proc.wait_healthy()
    except BaseException:
        proc.stop()
        raise
