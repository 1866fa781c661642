"""Starting, watching and stopping real `flowforge` processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from benchmarks import REPO_DIR


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


def memory_kb(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of a process in KiB, from /proc; empty when unreadable."""
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
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    # After the command name: state is field 3, utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def mib(kb: int | None) -> float | None:
    """KiB → MiB."""
    return None if kb is None else kb / 1024


class Process:
    """A real `flowforge ARGS…` process, its output in `log_path`."""

    def __init__(
        self, name: str, args: list[str], *, env: dict[str, str], log_path: Path, repo: Path = REPO_DIR
    ) -> None:
        self.name = name
        self.log_path = log_path
        with open(log_path, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "flowforge", *args],
                cwd=repo,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        """The process id."""
        return self.proc.pid

    def memory(self) -> dict[str, float | None]:
        """Current and peak RSS in MiB."""
        kb = memory_kb(self.pid)
        return {"rss_mib": mib(kb.get("VmRSS")), "peak_rss_mib": mib(kb.get("VmHWM"))}

    def cpu(self) -> float | None:
        """CPU seconds used so far."""
        return cpu_seconds(self.pid)

    def check_alive(self) -> None:
        """RuntimeError with the process's output when it has exited."""
        if self.proc.poll() is not None:
            raise RuntimeError(f"flowforge {self.name} exited with {self.proc.returncode}:\n{self.output()}")

    def output(self) -> str:
        """What the process printed (its last 4,000 characters)."""
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM, wait, then SIGKILL the whole session if it lingers; returns the exit code."""
        if self.proc.poll() is None:
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


def wait_healthy(url: str, processes: list[Process], timeout: float = 30.0) -> None:
    """Block until `url`/health answers; RuntimeError when a process died or it never did."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in processes:
            p.check_alive()
        try:
            if httpx.get(f"{url}/health", timeout=0.5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError(
        f"flowforge at {url} did not become healthy:\n" + "\n".join(p.output() for p in processes)
    )


def has_command(name: str, repo: Path = REPO_DIR) -> bool:
    """True when `flowforge NAME --help` works (the command exists in this version)."""
    result = subprocess.run(
        [sys.executable, "-m", "flowforge", name, "--help"],
        cwd=repo,
        env=clean_env(),
        capture_output=True,
        timeout=60,
        check=False,
    )
    return result.returncode == 0
