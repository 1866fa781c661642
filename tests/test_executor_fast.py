"""Commands of plain words run without /bin/sh, and behave exactly as they do through it."""

import os
import signal
import time

import pytest

from flowforge.engine.executor import direct_argv, run_command

ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}


def run(command, timeout=None, env=None, **kw):
    out: list[str] = []
    started: list[int] = []
    result = run_command(
        command, env=env or ENV, timeout=timeout, sink=out.append, on_start=started.append, **kw
    )
    return result, "".join(out), started[0] if started else None


@pytest.mark.parametrize(
    "command, argv",
    [
        ("true", ["true"]),
        ("false", ["false"]),
        ("sleep 2", ["sleep", "2"]),
        ("  python3 job.py --n=3 -v\n", ["python3", "job.py", "--n=3", "-v"]),
        ("./run.sh a,b x+y user@host:path", ["./run.sh", "a,b", "x+y", "user@host:path"]),
        ("/usr/bin/env", ["/usr/bin/env"]),
    ],
)
def test_plain_words_need_no_shell(command, argv):
    assert direct_argv(command, ENV) == argv


@pytest.mark.parametrize(
    "command",
    [
        "",
        "   ",
        "echo hi",  # a builtin: the shell's echo differs from /bin/echo (-e, backslashes)
        "cd /tmp",
        "exit 3",
        "kill -9 1234",
        "test -f x",
        ". ./env.sh",
        ": nothing",
        "true --help",  # /bin/true prints its help; the builtin does not
        "A=1 env",  # a variable assignment
        "ls *.py",  # globbing
        "ls ~",  # tilde expansion
        "echo $HOME",
        "cat 'a file'",  # quoting
        'grep "x y" f',
        "a && b",
        "a; b",
        "a | b",
        "a > out",
        "sleep 1 &",
        "sleep 1 # comment",
        "first\nsecond",  # two commands
        "if true; then echo y; fi",
        r"printf a\\n",
    ],
)
def test_anything_a_shell_would_interpret_goes_through_the_shell(command):
    assert direct_argv(command, ENV) is None


def test_without_a_path_the_shell_decides_where_to_look():
    assert direct_argv("true", {}) is None
    assert direct_argv("true", {"HOME": "/root"}) is None


def test_plain_command_is_the_process_itself(tmp_path):
    script = tmp_path / "whoami.sh"
    script.write_text("#!/bin/sh\necho \"$$ $(ps -o pgid= -p $$ | tr -d ' ') $(ps -o comm= -p $PPID)\"\n")
    script.chmod(0o755)
    result, log, pgid = run(str(script))
    assert result.succeeded
    pid, group, parent = log.split()
    # No shell in between: the script is the group leader, and its parent is this Python process.
    assert int(pid) == pgid and int(group) == pgid
    assert parent.startswith(("python", "pytest"))


def test_plain_and_shell_forms_see_the_same_environment(tmp_path):
    env = ENV | {"A": "1", "FLOWFORGE_TASK_ID": "t"}
    direct, log_direct, _ = run("env", env=env)
    shelled, log_shell, _ = run("env | cat", env=env)
    assert direct.succeeded and shelled.succeeded
    keep = ("A=", "FLOWFORGE_TASK_ID=", "PATH=")
    assert sorted(line for line in log_direct.splitlines() if line.startswith(keep)) == sorted(
        line for line in log_shell.splitlines() if line.startswith(keep)
    )


def test_exit_codes_match_the_shell():
    assert run("false")[0].exit_code == 1
    result, _, _ = run("ls /no/such/path")
    assert result.exit_code == 2 and result.error == "exit code 2"


@pytest.mark.parametrize("command", ["no-such-program-xyz", "no-such-program-xyz --flag", "./no/such/file"])
def test_a_missing_program_fails_as_the_shell_reports_it(command):
    result, log, _ = run(command)
    assert result.exit_code == 127 and result.error == "exit code 127"
    assert "not found" in log


def test_a_file_that_is_not_executable_fails_as_the_shell_reports_it(tmp_path):
    path = tmp_path / "plain.txt"
    path.write_text("hello\n")
    result, log, _ = run(str(path))
    assert result.exit_code == 126
    assert "Permission denied" in log


def test_a_script_without_a_shebang_still_runs_through_the_shell(tmp_path):
    path = tmp_path / "legacy"
    path.write_text("echo from legacy\n")
    path.chmod(0o755)
    result, log, _ = run(str(path))
    assert result.succeeded and log == "from legacy\n"


def test_timeout_kills_a_plain_command_group():
    start = time.monotonic()
    result, _, _ = run("sleep 30", timeout=0.3, kill_grace=1)
    assert result.timed_out and "timed out after 0.3s" in result.error
    assert time.monotonic() - start < 3


def test_a_plain_command_killed_by_a_signal_is_reported():
    def kill_soon(pid: int) -> None:
        os.kill(pid, signal.SIGKILL)

    result = run_command("sleep 30", env=ENV, timeout=None, sink=lambda s: None, on_start=kill_soon)
    assert result.exit_code is None and result.error == "killed by signal SIGKILL"


def test_plain_command_output_is_captured():
    result, log, _ = run("seq 1 3")
    assert result.succeeded and log == "1\n2\n3\n"
