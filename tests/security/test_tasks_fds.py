"""A process holding more than 1,024 files still reads its tasks' whole output (no `select` limit)."""

from __future__ import annotations

import os
import resource
import socket
import sys
from collections.abc import Iterator

import httpx
import pytest

from flowforge.engine.executor import run_command
from tests.harness import TERMINAL_RUN_STATES, cli, start_up, wait_until

ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
# More than a pipe buffer (64 KiB) holds: a reader that stopped reading would leave the task blocked.
LINES = 60_000  # `seq 1 60000` prints 348,894 bytes
SEQ_OUTPUT = "".join(f"{i}\n" for i in range(1, LINES + 1))
IDLE_SOCKETS = 1_100


@pytest.fixture
def fd_room() -> Iterator[None]:
    """RLIMIT_NOFILE raised (up to the hard limit) so that this process and its children can pass 1,024 files."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 4096
    if hard != resource.RLIM_INFINITY and hard < want:
        pytest.skip(f"the hard limit on open files is {hard}: no process here can hold {want}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.fixture
def low_fds_taken(fd_room: None) -> Iterator[None]:
    """Every file descriptor up to past 1,100 in use: the next one opened is numbered above 1,024."""
    pipes = [os.pipe() for _ in range(IDLE_SOCKETS // 2)]
    try:
        probe = os.dup(0)
        os.close(probe)
        assert probe > 1024, f"the next descriptor is {probe}: the test needs it past 1,024"
        yield
    finally:
        for r, w in pipes:
            os.close(r)
            os.close(w)


@pytest.mark.parametrize("command", ["seq 1 60000", "seq 1 60000 | cat"], ids=["direct", "shell"])
def test_output_is_read_whole_when_the_pipe_is_numbered_past_1024(low_fds_taken, command):
    out: list[str] = []
    result = run_command(command, env=ENV, timeout=30, sink=out.append)
    assert not result.timed_out, "the task blocked on a pipe nobody read"
    assert result.succeeded, result.error
    assert "".join(out) == SEQ_OUTPUT


REPORTER = """\
import os, sys
pipe = os.readlink("/proc/self/fd/1")
# The descriptor of our output pipe in the worker that reads it (the parent: run without a shell).
parent = os.getppid()
def target(fd):
    try:
        return os.readlink(f"/proc/{parent}/fd/{fd}")
    except OSError:  # closed since it was listed: the server opens and closes connections meanwhile
        return None
fds = [int(fd) for fd in os.listdir(f"/proc/{parent}/fd") if target(fd) == pipe]
print("reader fd", max(fds))
sys.stdout.write("".join(f"line {i}\\n" for i in range(30000)))
print("end")
"""


def expected_report_tail() -> str:
    return "".join(f"line {i}\n" for i in range(30000)) + "end\n"


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@pytest.mark.e2e
def test_flowforge_up_with_1100_idle_connections_stores_a_whole_log(fd_room, tmp_path):
    script = tmp_path / "report.py"
    script.write_text(REPORTER)
    dag = tmp_path / "big.yaml"
    dag.write_text(
        f"id: big\ntasks:\n  - id: t\n    command: {sys.executable} {script}\n    timeout_secs: 20\n"
    )
    up = start_up(tmp_path / "home", "--concurrency", "1")
    sockets: list[socket.socket] = []
    try:
        assert cli("submit", "-f", str(dag), url=up.url).returncode == 0
        before = open_fds(up.pid)
        sockets = [socket.create_connection(("127.0.0.1", up.port)) for _ in range(IDLE_SOCKETS)]
        wait_until(
            "flowforge up to accept the idle connections",
            lambda: open_fds(up.pid) >= before + IDLE_SOCKETS,
            30,
            alive=up.check_alive,
        )
        # Triggered at once: the server closes connections that send no request after a while.
        run_id = httpx.post(f"{up.url}/api/v1/runs", json={"dag_id": "big"}, timeout=30).json()["run_id"]
        run = wait_until("the run to end", lambda: ended(up.url, run_id), 60, alive=up.check_alive)
        log = cli("logs", run_id, "t", url=up.url)
    finally:
        for s in sockets:
            s.close()
        up.stop()
    assert run["state"] == "success", [(t["task_id"], t["state"], t.get("error")) for t in run["tasks"]]
    assert log.returncode == 0, log.stderr
    first, _, rest = log.stdout.partition("\n")
    assert first.startswith("reader fd ")
    assert int(first.split()[-1]) > 1024, f"{first}: the task's pipe was not past 1,024 in flowforge up"
    assert rest == expected_report_tail()


def ended(url: str, run_id: str) -> dict | None:
    """The run once it has ended, else None."""
    run = httpx.get(f"{url}/api/v1/runs/{run_id}", timeout=30).json()
    return run if run["state"] in TERMINAL_RUN_STATES else None
