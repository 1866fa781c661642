"""Starting real `flowforge` processes for end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent


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


class FlowForgeProcess:
    """A real `flowforge ARGS…` process; `url` is its API when it serves one."""

    def __init__(
        self,
        args: list[str],
        *,
        port: int | None = None,
        env: dict[str, str] | None = None,
        log_path: Path | None = None,
    ) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}" if port else ""
        self.log_path = log_path
        out = open(log_path, "ab") if log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "flowforge", *args],
            cwd=REPO,
            env=env or clean_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        if log_path:
            out.close()

    def wait_healthy(self, timeout: float = 60.0) -> FlowForgeProcess:
        """Block until /health answers; fail with the process's output if it died or never did."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"flowforge exited with {self.proc.returncode}:\n{self.output()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=0.5).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"flowforge did not become healthy:\n{self.output()}")

    def output(self) -> str:
        """What the process printed so far (when it logs to a file)."""
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send `sig` to the process (only to it: its task groups are its own business)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, wait, then SIGKILL the whole session if it lingers; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        return self.proc.returncode


def cli(
    *args: str, url: str, timeout: float = 60.0, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the real `flowforge` CLI against `url` and capture its output."""
    return subprocess.run(
        [sys.executable, "-m", "flowforge", "--api-url", url, *args],
        cwd=REPO,
        env=env or clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_up(home: Path, *extra: str, env: dict[str, str] | None = None) -> FlowForgeProcess:
    """Start `flowforge up` on a free port with its data in `home`, and wait until it is healthy."""
    port = free_port()
    proc = FlowForgeProcess(
        ["up", "--port", str(port), "--home", str(home), *extra],
        port=port,
        env=env,
        log_path=home.parent / f"{home.name}-up.log",
    )
    try:
        return proc.wait_healthy()
    except BaseException:
        proc.stop()
        raise
