"""Running real shell commands: output, exit codes, timeouts, process groups, environment."""

import os
import signal
import threading
import time

import pytest

from flowforge.engine.executor import attempt_context, run_command, task_env

ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}


def run(command, timeout=None, env=None, **kw):
    out: list[str] = []
    result = run_command(command, env=env or ENV, timeout=timeout, sink=out.append, **kw)
    return result, "".join(out)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); read its state.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


def test_stdout_and_stderr_are_captured_in_order():
    result, log = run("echo one; echo two >&2; echo three")
    assert result.succeeded and result.exit_code == 0 and result.error is None
    assert log == "one\ntwo\nthree\n"


def test_nonzero_exit_is_a_failure_with_its_code():
    result, _ = run("echo bad >&2; exit 7")
    assert not result.succeeded
    assert result.exit_code == 7
    assert result.error == "exit code 7"


def test_output_is_streamed_while_the_task_runs(tmp_path):
    # The task goes on only once its first line has reached the sink: without streaming it
    # would wait the whole 10 s and then say so.
    seen = tmp_path / "seen"
    chunks: list[str] = []

    def sink(text: str) -> None:
        chunks.append(text)
        seen.touch()

    run_command(
        f"echo early; for i in $(seq 200); do [ -f {seen} ] && echo late && exit; sleep 0.05; done; echo never-streamed",
        env=ENV,
        timeout=None,
        sink=sink,
    )
    assert "".join(chunks) == "early\nlate\n", "the first line must reach the log before the task ends"


def test_timeout_kills_the_whole_process_group(tmp_path):
    pidfile = tmp_path / "child.pid"
    result, _ = run(f"sleep 60 & echo $! > {pidfile}; wait", timeout=0.5, kill_grace=1)
    assert result.timed_out and not result.succeeded
    assert "timed out after 0.5s" in result.error
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 3
    while pid_alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not pid_alive(child), "the child sleep survived the timeout"


def test_timeout_escalates_to_sigkill_when_sigterm_is_ignored():
    start = time.monotonic()
    result, log = run(
        "trap 'echo got TERM' TERM; while true; do sleep 0.1; done", timeout=0.3, kill_grace=0.5
    )
    assert result.timed_out
    assert time.monotonic() - start < 3
    assert "got TERM" in log


def test_background_leftovers_die_with_the_task(tmp_path):
    pidfile = tmp_path / "bg.pid"
    result, _ = run(f"sleep 60 & echo $! > {pidfile}")
    assert result.succeeded
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 3
    while pid_alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not pid_alive(child)


def test_killed_by_signal_is_reported():
    result, _ = run("kill -9 $$")
    assert result.exit_code is None
    assert result.error == "killed by signal SIGKILL"


def test_env_layers_and_hides_flowforge_settings():
    base = {
        "PATH": "/bin",
        "HOME": "/root",
        "SHARED": "worker",
        "FLOWFORGE_DB": "postgresql://secret",
        "FLOWFORGE_API_TOKEN": "t0ken",
    }
    ctx = attempt_context(
        dag_id="d", run_id="r1", task_id="t", attempt=2, logical_date="", params={"region": "eu"}
    )
    env = task_env(
        base, {"SHARED": "dag", "STAGE": "prod"}, {"STAGE": "task", "FLOWFORGE_RUN_ID": "spoof"}, ctx
    )
    assert env["SHARED"] == "dag"
    assert env["STAGE"] == "task"
    assert env["HOME"] == "/root"
    assert env["FLOWFORGE_RUN_ID"] == "r1", "the attempt's context wins over a task's env"
    assert env["FLOWFORGE_ATTEMPT"] == "2"
    assert env["FLOWFORGE_PARAM_REGION"] == "eu"
    assert "FLOWFORGE_DB" not in env and "FLOWFORGE_API_TOKEN" not in env


def test_command_sees_its_environment():
    env = task_env(
        ENV | {"FLOWFORGE_DB": "sqlite:///x"},
        {"A": "1"},
        {"B": "2"},
        attempt_context(dag_id="d", run_id="r", task_id="t", attempt=1, logical_date="", params={}),
    )
    _, log = run('echo "$A$B $FLOWFORGE_TASK_ID ${FLOWFORGE_DB:-unset}"', env=env)
    assert log == "12 t unset\n"


def test_invalid_utf8_output_does_not_break_capture():
    result, log = run(r"printf 'ok \377\376 end\n'")
    assert result.succeeded
    assert log.startswith("ok ") and log.endswith(" end\n")


@pytest.mark.parametrize("lines", [10_000])
def test_large_output_is_captured_completely(lines):
    result, log = run(f"seq 1 {lines}")
    assert result.succeeded
    assert log.count("\n") == lines and log.endswith(f"{lines}\n")


def test_a_process_that_left_the_group_does_not_hold_up_the_task(tmp_path, monkeypatch):
    # `setsid` takes the sleep out of the task's group, with a copy of the output pipe: the task
    # still ends soon after its shell, with the output it printed, and the pipe's reader stops cleanly.
    thread_errors: list[BaseException | None] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: thread_errors.append(args.exc_value))
    pidfile = tmp_path / "escaped.pid"
    start = time.monotonic()
    result, log = run(
        f"setsid sh -c 'echo $$ > {pidfile}.new; mv {pidfile}.new {pidfile}; exec sleep 30' & "
        f"while [ ! -e {pidfile} ]; do sleep 0.01; done; echo done"
    )
    elapsed = time.monotonic() - start
    escaped = int(pidfile.read_text())
    assert pid_alive(escaped), "the sleep was meant to outlive the task"
    os.kill(escaped, signal.SIGKILL)
    assert result.succeeded and log == "done\n"
    assert elapsed < 10, f"the task took {elapsed:.1f}s to end"
    assert thread_errors == []
    assert not [t.name for t in threading.enumerate() if t.name.startswith("log-")], (
        "a reader outlived its task"
    )
