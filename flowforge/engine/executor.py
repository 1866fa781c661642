"""Run one shell command: its own process group, a clean environment, a timeout, streamed output."""

from __future__ import annotations

import heapq
import itertools
import math
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from flowforge.core.outputs import OUTPUT_ENV, OutputsError, upstream_env
from flowforge.engine.output import OutputReader, pidfd_of
from flowforge.engine.outputs import OutputsFile

# The longest a task may be given (about ten years): a longer timeout, however written
# (1e300, .inf), is this one, which a timer can wait on.
MAX_TIMEOUT_SECS = 10 * 365 * 24 * 3600.0
# Whatever of its group is left is killed when a task's process ends; after this long without EOF
# on its output (a process that left the group holds the pipe), the rest of the output is not read.
OUTPUT_EOF_WAIT_SECS = 2.0

# A command made only of these characters, words separated by blanks, has nothing for a shell to
# do: no quoting, expansion, globbing, redirection, operator or comment. It is run without
# /bin/sh, which saves starting a shell per task (dash forks the command rather than exec it).
_PLAIN_COMMAND = re.compile(r"[A-Za-z0-9_./:,+@=-]+(?:[ \t]+[A-Za-z0-9_./:,+@=-]+)*")
# Words /bin/sh runs itself (builtins, keywords, special names): these keep going through the
# shell, whose own versions can differ from the programs of the same name (echo -e, pwd, kill …).
_SHELL_WORDS_TEXT = (
    ". : [ [[ ]] { } ! alias bg break case cd command continue do done echo elif else esac eval exec exit "
    "export fc fg fi for function getopts hash if in jobs kill let local printf pwd read readonly return "
    "select set shift source test then time times trap type typeset ulimit umask unalias unset until wait "
    "while"
)
_SHELL_WORDS = frozenset(_SHELL_WORDS_TEXT.split())
# `true` and `false` are builtins too, but the programs behave the same unless given options.
_SAME_WITHOUT_ARGS = frozenset({"true", "false"})


@dataclass(frozen=True)
class ExecResult:
    """How a command ended."""

    exit_code: int | None  # None when killed by a signal
    timed_out: bool
    duration: float
    error: str | None  # None on success, else a plain sentence
    # What the task wrote to $FLOWFORGE_OUTPUT (`core.outputs`); {} when its file broke a rule.
    outputs: dict[str, str] = field(default_factory=dict)

    @property
    def succeeded(self) -> bool:
        """True for exit code 0 within the time limit, with outputs that keep the rules."""
        return self.exit_code == 0 and not self.timed_out and self.error is None


def task_env(
    base: Mapping[str, str],
    dag_env: Mapping[str, str],
    task_env: Mapping[str, str],
    context: Mapping[str, str],
) -> dict[str, str]:
    """The environment of a task, later layers winning.

    The worker's own environment minus every FLOWFORGE_* variable (a task must not read
    the database URL or the API token), then the DAG's env, the task's env, and last the
    FLOWFORGE_* context of this attempt (run id, task id, attempt, params …).
    """
    env = {k: v for k, v in base.items() if not k.startswith("FLOWFORGE_")}
    env.update(dag_env)
    env.update(task_env)
    env.update(context)
    return env


def attempt_context(
    *,
    dag_id: str,
    run_id: str,
    task_id: str,
    attempt: int,
    logical_date: str,
    params: Mapping[str, Any],
    lease_token: str | None = None,
    upstream_outputs: Mapping[str, Mapping[str, str]] | None = None,
) -> dict[str, str]:
    """The FLOWFORGE_* variables a task sees; params as FLOWFORGE_PARAM_<NAME>.

    FLOWFORGE_LEASE_TOKEN is the attempt's fencing token, new on every claim: with it a command
    can tell its own writes from those of an earlier attempt that is still running somewhere.
    `upstream_outputs` (direct upstream task id → its outputs) become FLOWFORGE_UPSTREAM_<TASK>_<KEY>
    (`core.outputs.upstream_env`): data in the environment, never part of a command.
    """
    ctx = {
        "FLOWFORGE_DAG_ID": dag_id,
        "FLOWFORGE_RUN_ID": run_id,
        "FLOWFORGE_TASK_ID": task_id,
        "FLOWFORGE_ATTEMPT": str(attempt),
        "FLOWFORGE_LOGICAL_DATE": logical_date,
    }
    if lease_token is not None:
        ctx["FLOWFORGE_LEASE_TOKEN"] = lease_token
    for name, value in params.items():
        ctx[f"FLOWFORGE_PARAM_{name.upper()}"] = "" if value is None else str(value)
    if upstream_outputs:
        ctx.update(upstream_env(upstream_outputs))
    return ctx


def direct_argv(command: str, env: Mapping[str, str]) -> list[str] | None:
    """The argv to run `command` with, without a shell, when it needs none; else None.

    Only plain words qualify (see `_PLAIN_COMMAND`), not starting with a variable assignment or
    a shell builtin or keyword, and only when the environment has a PATH (without one, /bin/sh
    and Python would search different default paths).
    """
    text = command.strip()
    if "PATH" not in env or not _PLAIN_COMMAND.fullmatch(text):
        return None
    argv = text.split()
    first = argv[0]
    if "=" in first or first in _SHELL_WORDS or (first in _SAME_WITHOUT_ARGS and len(argv) > 1):
        return None
    return argv


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass  # the group is already gone


def terminate_group(pgid: int, grace: float) -> None:
    """SIGTERM a task's process group now and SIGKILL it after `grace` seconds (in the background)."""
    _signal_group(pgid, signal.SIGTERM)
    timer = threading.Timer(grace, _signal_group, args=(pgid, signal.SIGKILL))
    timer.daemon = True
    timer.start()


class _Watchdog:
    """Terminates a process group at its deadline: SIGTERM, then SIGKILL after a grace period.

    The deadlines of every running task are kept by one thread of the process (`_Deadlines`), not
    by a thread per task.
    """

    def __init__(self, pgid: int, timeout: float, grace: float) -> None:
        self.pgid = pgid
        self.grace = grace
        self.fired = False
        self.done = False
        self._lock = threading.Lock()
        _DEADLINES.add(time.monotonic() + timeout, self)

    def due(self, now: float) -> float | None:
        """Called by `_Deadlines` at the deadline: signal the group; when to be called again, or None."""
        with self._lock:
            if self.done:
                return None
            if self.fired:
                _signal_group(self.pgid, signal.SIGKILL)
                return None
            self.fired = True
            _signal_group(self.pgid, signal.SIGTERM)
            return now + self.grace

    def stop(self) -> None:
        """The process ended: no signal is sent after this returns."""
        with self._lock:
            self.done = True
        _DEADLINES.forget()


class _Deadlines:
    """One thread that calls each `_Watchdog.due` at its time, started when first needed.

    A stopped watchdog stays in the heap until its time (it is then skipped); once they are more
    than half of it, the heap is rebuilt without them, so that finished tasks with long timeouts
    do not pile up.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._heap: list[tuple[float, int, _Watchdog]] = []
        self._count = itertools.count()
        self._stopped = 0
        self._thread: threading.Thread | None = None

    def add(self, when: float, watchdog: _Watchdog) -> None:
        """Call `watchdog.due` at monotonic time `when`."""
        with self._cond:
            heapq.heappush(self._heap, (when, next(self._count), watchdog))
            if self._thread is None or not self._thread.is_alive():  # first use, or after a fork
                self._thread = threading.Thread(target=self._run, name="task-deadlines", daemon=True)
                self._thread.start()
            self._cond.notify()

    def forget(self) -> None:
        """A watchdog was stopped: drop the stopped ones once they are most of the heap."""
        with self._cond:
            self._stopped += 1
            if self._stopped * 2 > len(self._heap):
                self._heap = [e for e in self._heap if not e[2].done]
                heapq.heapify(self._heap)
                self._stopped = 0

    def _run(self) -> None:
        while True:
            with self._cond:
                now = time.monotonic()
                while not self._heap or self._heap[0][0] > now:
                    self._cond.wait(
                        min(self._heap[0][0] - now, threading.TIMEOUT_MAX) if self._heap else None
                    )
                    now = time.monotonic()
                _, _, watchdog = heapq.heappop(self._heap)
            again = watchdog.due(now)  # outside the lock: signalling may take a moment
            if again is not None:
                self.add(again, watchdog)


_DEADLINES = _Deadlines()


def _spawn(argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,  # own session => own process group, pgid == pid
        close_fds=True,
    )


def run_command(
    command: str,
    *,
    env: Mapping[str, str],
    timeout: float | None,
    sink: Callable[[str], None],
    kill_grace: float = 5.0,
    on_start: Callable[[int], None] | None = None,
) -> ExecResult:
    """Run `command` with /bin/sh -c in a new process group and wait for it.

    A command of plain words (`direct_argv`) is run as it is, without the shell; if that fails
    to start (not found, not executable, no #! line), /bin/sh runs it as before, so the error,
    exit code and output are the shell's as always. A command that cannot be started at all
    (a NUL byte in it or in its environment, no /bin/sh) ends at once with the reason in `error`.
    stdout and stderr go, interleaved, to `sink` (`output.OutputReader`, in this thread). At `timeout`
    (`effective_timeout`) the whole group gets SIGTERM, then SIGKILL after `kill_grace`. When
    the shell exits, whatever it left running in its group is killed too: a task's processes
    end with the task. `on_start` receives the process group id (for cancelling from elsewhere).

    The command finds an empty private file at $FLOWFORGE_OUTPUT; what it wrote there comes back
    in `outputs` (`outputs.OutputsFile`). A file that breaks the rules fails the attempt, even
    after exit code 0, with the problem in `error`.
    """
    try:
        outputs = OutputsFile()
    except OSError as exc:  # no room or no right in the temporary directory
        return ExecResult(None, False, 0.0, f"could not make the task's outputs file: {exc}")
    with outputs as outputs_file:
        result = _run(command, {**env, OUTPUT_ENV: outputs_file.path}, timeout, sink, kill_grace, on_start)
        try:
            return replace(result, outputs=outputs_file.read())
        except OutputsError as exc:
            error = str(exc) if result.error is None else f"{result.error}; {exc}"
            return replace(result, error=error)


def _run(
    command: str,
    env: dict[str, str],
    timeout: float | None,
    sink: Callable[[str], None],
    kill_grace: float,
    on_start: Callable[[int], None] | None,
) -> ExecResult:
    """`run_command` but for its outputs file."""
    started = time.monotonic()
    try:
        proc = _start(command, env)
    except (OSError, ValueError, TypeError, subprocess.SubprocessError) as exc:
        # A NUL byte, an unencodable character, a value that is not text, no /bin/sh …: it fails now.
        reason = str(exc).replace("\x00", "\ufffd")
        return ExecResult(None, False, time.monotonic() - started, f"could not start the command: {reason}")
    assert proc.stdout is not None
    pgid = proc.pid
    reader = OutputReader(proc.stdout, sink)
    limit = effective_timeout(timeout)
    watchdog: _Watchdog | None = None
    pidfd = pidfd_of(proc.pid)
    try:
        if on_start is not None:
            on_start(pgid)
        watchdog = _Watchdog(pgid, limit, kill_grace) if limit is not None else None
        # This thread reads the output until EOF or the process's end, then waits for its end.
        reader.follow(pidfd, lambda: proc.poll() is not None)
        code = proc.wait()
    finally:
        if watchdog is not None:
            watchdog.stop()
        # Leftovers of the group (background jobs) die with the task; this also closes
        # their copies of the pipe so that the reader sees EOF.
        _signal_group(pgid, signal.SIGKILL)
        if pidfd is not None:
            os.close(pidfd)
        reader.drain(OUTPUT_EOF_WAIT_SECS)
    timed_out = watchdog is not None and watchdog.fired
    return _result(code, timed_out, limit, time.monotonic() - started)


def effective_timeout(timeout: float | None) -> float | None:
    """The seconds a task is given: None (no limit) for None or NaN, at most MAX_TIMEOUT_SECS."""
    if timeout is None or math.isnan(timeout):
        return None
    return min(timeout, MAX_TIMEOUT_SECS)


def _start(command: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start `command` without a shell when it needs none and that works, else with /bin/sh -c."""
    argv = direct_argv(command, env)
    if argv is not None:
        try:
            return _spawn(argv, env)
        except OSError:
            pass  # the shell will run it and say why it cannot
    return _spawn(["/bin/sh", "-c", command], env)


def _result(code: int, timed_out: bool, timeout: float | None, duration: float) -> ExecResult:
    """How a command that exited with `code` (negative: killed by that signal) ended."""
    if timed_out:
        return ExecResult(
            None if code < 0 else code, True, duration, f"timed out after {timeout:g}s; process group killed"
        )
    if code < 0:
        name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
        return ExecResult(None, False, duration, f"killed by signal {name}")
    if code != 0:
        return ExecResult(code, False, duration, f"exit code {code}")
    return ExecResult(0, False, duration, None)
