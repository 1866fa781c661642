"""What the CLI's tests share: a real API server in a thread, the CLI run against it, a terminal.

`serving` runs the real app under uvicorn on a free port; `LiveApi` runs CLI commands against it
in-process (Typer's runner: stdout is not a terminal) and reaches the same services, to set up
runs and logs the way a scheduler and a worker would. `in_terminal` runs the real `flowforge`
process on a pseudo-terminal of a given width, for what only a terminal shows.
"""

from __future__ import annotations

import json
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fcntl import ioctl
from typing import Any

import httpx
import uvicorn
from typer.testing import CliRunner

from flowforge.cli import app
from flowforge.services import Services
from tests.harness import REPO, clean_env, free_port

GOOD = """\
id: hello
params: {who: world}
tasks:
  - id: greet
    command: echo "hello $FLOWFORGE_PARAM_WHO"
  - id: bye
    command: echo bye
    depends_on: [greet]
"""

BAD = """\
id: bad
tasks:
  - id: a
    command: echo a
    depends_on: [missing]
"""

# The environment a user might have set must not leak into the tests; times are read in one zone.
CLEAN_ENV = {"FLOWFORGE_API_URL": None, "FLOWFORGE_API_TOKEN": None, "COLUMNS": "200", "TZ": "UTC"}


@dataclass
class LiveApi:
    """A real uvicorn server over real services, and a way to run CLI commands against it."""

    url: str
    services: Services
    runner: CliRunner

    def cli(self, *args: str, **kwargs: Any) -> Any:
        return self.runner.invoke(app, ["--api-url", self.url, *args], **kwargs)

    def cli_json(self, *args: str) -> Any:
        result = self.cli("--json", *args)
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)


@contextmanager
def serving(asgi_app: Any) -> Iterator[str]:
    """Serve an app with uvicorn in a thread on a free port; yields its URL once /health answers."""
    port = free_port()
    config = uvicorn.Config(
        asgi_app, host="127.0.0.1", port=port, log_level="warning", access_log=False, lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the API server did not start"
            time.sleep(0.02)
        yield url
    finally:
        server.should_exit = True
        thread.join(10)


def start_task(api: LiveApi, run_id: str, task_id: str, attempt: int = 1) -> None:
    """Queue and claim a task as the scheduler and a worker would: it is running now."""
    store, now = api.services.store, time.time()
    assert store.queue_tasks(run_id, [(task_id, attempt - 1)], now)
    assert store.claim_task(run_id, task_id, attempt, "w1", now)


def served(store: Any, method: str) -> Callable[[], int]:
    """Count, from now on, the calls of `store.METHOD` made by other threads (the API serving the CLI)."""
    me, calls, real = threading.current_thread(), [0], getattr(store, method)

    def counted(*args: Any, **kwargs: Any) -> Any:
        if threading.current_thread() is not me:
            calls[0] += 1
        return real(*args, **kwargs)

    setattr(store, method, counted)
    return lambda: calls[0]


def wait_more(count: Callable[[], int], what: str) -> None:
    """Wait until `count()` grows: the CLI has come back to the API since."""
    before, deadline = count(), time.monotonic() + 10
    while count() == before:
        assert time.monotonic() < deadline, f"the CLI never came back for {what}"
        time.sleep(0.01)


def in_terminal(*args: str, url: str, columns: int = 80, env: dict[str, str] | None = None) -> str:
    """Run the real `flowforge --api-url URL ARGS…` on a pseudo-terminal `columns` wide; what it showed."""
    main, sub = pty.openpty()
    ioctl(sub, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    environment = {k: v for k, v in clean_env(TZ="UTC", **(env or {})).items() if k != "COLUMNS"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "flowforge", "--api-url", url, *args],
        cwd=REPO,
        env=environment,
        stdin=sub,
        stdout=sub,
        stderr=sub,
        close_fds=True,
    )
    os.close(sub)
    shown = bytearray()
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([main], [], [], 1)
            if ready:
                try:
                    data = os.read(main, 65536)
                except OSError:  # the terminal closed: the process has ended
                    break
                if not data:
                    break
                shown += data
            elif proc.poll() is not None:
                break
    finally:
        os.close(main)
        proc.wait(10)
    return shown.decode("utf-8", "replace").replace("\r\n", "\n")
