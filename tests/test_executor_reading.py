"""The task's own thread reads its output and one thread keeps every timeout: what that must keep.

Real `/bin/sh` commands. Where the kernel gives no pidfd (before Linux 5.3) the reader asks the
process instead; those tests run both ways.
"""

import os
import threading
import time

import pytest

from flowforge.engine import executor
from flowforge.engine.executor import run_command

ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}


@pytest.fixture(params=["pidfd", "no-pidfd"])
def kernel(request, monkeypatch):
    """Each test once as on this kernel, once as on a kernel without pidfd_open."""
    if request.param == "no-pidfd":
        monkeypatch.setattr(executor, "pidfd_of", lambda pid: None)
    return request.param


def run(command, timeout=None, **kw):
    out: list[str] = []
    result = run_command(command, env=ENV, timeout=timeout, sink=out.append, **kw)
    return result, "".join(out)


def gone(pid: int, within: float = 3.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().split(") ")[1][0] == "Z":
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.02)
    return False


def test_output_and_exit_code_come_back(kernel):
    result, log = run("echo one; echo two >&2; exit 4")
    assert result.exit_code == 4 and log == "one\ntwo\n"


def test_background_leftovers_die_as_soon_as_the_task_ends(kernel, tmp_path):
    pidfile = tmp_path / "bg.pid"
    start = time.monotonic()
    result, _ = run(f"sleep 60 & echo $! > {pidfile}")
    assert result.succeeded and time.monotonic() - start < 5
    assert gone(int(pidfile.read_text()))


def test_a_task_that_closes_its_output_is_still_waited_for(kernel, tmp_path):
    # What it printed before closing reaches the sink at once; its result is that of its end.
    seen = tmp_path / "seen"
    chunks: list[str] = []

    def sink(text: str) -> None:
        chunks.append(text)
        seen.touch()

    start = time.monotonic()
    result = run_command(
        f"echo before; exec >/dev/null 2>&1; for i in $(seq 100); do [ -f {seen} ] && exit 3; sleep 0.05; done",
        env=ENV,
        timeout=None,
        sink=sink,
    )
    assert "".join(chunks) == "before\n"
    assert result.exit_code == 3, "the output must be handed on before the task ends"
    assert time.monotonic() - start < 4


def test_timeouts_of_tasks_running_together_each_fire_on_time(kernel):
    # One thread keeps every deadline: a short one behind a long one, and finished tasks'
    # deadlines left behind, do not hold up the next.
    for _ in range(20):
        assert run("true", timeout=3600)[0].succeeded
    results: dict[str, tuple[float, bool]] = {}

    def one(name: str, command: str, timeout: float) -> None:
        start = time.monotonic()
        result, _ = run(command, timeout=timeout, kill_grace=0.5)
        results[name] = (time.monotonic() - start, result.timed_out)

    threads = [
        threading.Thread(target=one, args=("long", "sleep 1", 3600)),
        threading.Thread(target=one, args=("short", "sleep 30", 0.3)),
        threading.Thread(target=one, args=("stubborn", "trap '' TERM; sleep 30", 0.4)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert results["long"][1] is False and results["long"][0] >= 1
    assert results["short"][1] is True and results["short"][0] < 3
    assert results["stubborn"][1] is True and results["stubborn"][0] < 4, "SIGKILL after the grace"


def test_no_thread_is_started_per_task(kernel):
    names: list[set[str]] = []

    def seen(pgid: int) -> None:
        names.append({t.name for t in threading.enumerate()})

    before = {t.name for t in threading.enumerate()}
    for _ in range(5):
        assert run("echo hi", timeout=60, on_start=seen)[1] == "hi\n"
    during = set().union(*names) - before
    assert during <= {"task-deadlines"}, f"threads started for tasks: {sorted(during)}"
