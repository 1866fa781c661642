"""Whatever reaches a worker, an attempt ends with a reason: unstartable commands, absurd timeouts and retries.

Refusing such values in DAG files and params is the loader's job (tests/test_dagfile.py); these tests
put them in the store directly, as a bug or an older version could, to show the worker never sticks.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from flowforge.core.dagfile import load_dag
from flowforge.core.model import DagSpec, RunState, TaskState
from flowforge.engine.executor import run_command
from tests.harness import wait_until
from tests.test_engine import Engine

ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
ONE_TASK = "id: d\ntasks:\n  - {id: t, command: 'echo placeholder'}\n"


@pytest.fixture
def engine(tmp_path) -> Iterator[Engine]:
    e = Engine(tmp_path, slots=1).start()
    yield e
    e.close()


def put_task(engine: Engine, **task: Any) -> DagSpec:
    """Store DAG `d` with one task `t` whose fields are `task`, as they are (no validation)."""
    spec = load_dag(ONE_TASK)
    spec = dataclasses.replace(spec, tasks=(dataclasses.replace(spec.tasks[0], **task),))
    engine.store.put_dag(spec, ONE_TASK, time.time())
    return spec


@pytest.fixture
def thread_errors(monkeypatch) -> list[BaseException]:
    """Exceptions that end a thread of this process during the test."""
    seen: list[BaseException] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: seen.append(args.exc_value))
    return seen


# -- commands that cannot be started -------------------------------------------------------------
@pytest.mark.parametrize(
    "command, env, reason",
    [
        ("echo a\x00b", ENV, "embedded null byte"),
        ("\ud800", ENV, "surrogates not allowed"),
        ("true", ENV | {"X": "a\x00b"}, "embedded null byte"),
        ("env", ENV | {"A=B": "x"}, "illegal environment variable name"),
        ("true", ENV | {"N": 5}, "not int"),
    ],
    ids=["nul-in-command", "lone-surrogate", "nul-in-env-direct", "equals-in-env-name", "number-in-env"],
)
def test_an_unstartable_command_ends_at_once_with_the_reason(command, env, reason):
    result = run_command(command, env=env, timeout=None, sink=lambda text: None)
    assert not result.succeeded and result.exit_code is None and not result.timed_out
    assert result.error.startswith("could not start the command: ") and reason in result.error
    assert "\x00" not in result.error


def test_a_missing_interpreter_fails_the_task_as_the_shell_reports_it(tmp_path):
    script = tmp_path / "job"
    script.write_text("#!/no/such/interpreter\necho never\n")
    script.chmod(0o755)
    out: list[str] = []
    result = run_command(str(script), env=ENV, timeout=10, sink=out.append)
    assert result.exit_code == 127 and result.error == "exit code 127"
    assert "never" not in "".join(out)


@pytest.mark.parametrize(
    "task, params, reason",
    [
        ({"command": "echo a\x00b"}, {}, "embedded null byte"),
        ({}, {"x": "a\x00b"}, "embedded null byte"),  # reaches the task as FLOWFORGE_PARAM_X
        ({"env": {"A=B": "x"}}, {}, "illegal environment variable name"),
        ({"env": {"N": 5}}, {}, "not int"),  # a value the loader would have made text
    ],
    ids=["command", "param", "env-name", "env-number"],
)
def test_the_worker_fails_an_unstartable_attempt_at_once_without_using_its_lease(
    engine, task, params, reason
):
    put_task(engine, retries=0, **task)
    run = engine.store.create_run("d", triggered_by="test", params=params, now=time.time())
    engine.queue.wake_scheduler()
    assert engine.wait(run.run_id).state == RunState.FAILED
    ti = engine.store.get_task_instance(run.run_id, "t")
    assert ti.state == TaskState.FAILED and ti.attempt == 1, "the attempt must not be lost and run again"
    assert (
        ti.error is not None and ti.error.startswith("could not start the command: ") and reason in ti.error
    )
    [attempt] = engine.store.attempts(run.run_id, "t")
    assert attempt.state == TaskState.FAILED and attempt.error == ti.error


def test_an_attempt_whose_environment_cannot_be_built_fails_at_once(engine):
    put_task(engine, retries=0)
    # Past what a date can show: FLOWFORGE_LOGICAL_DATE cannot be written.
    run = engine.store.create_run("d", triggered_by="test", params={}, now=time.time(), logical_date=1e300)
    engine.queue.wake_scheduler()
    assert engine.wait(run.run_id).state == RunState.FAILED
    [attempt] = engine.store.attempts(run.run_id, "t")
    assert attempt.state == TaskState.FAILED
    assert attempt.error is not None and attempt.error.startswith("could not run the task: ")


def test_an_unstartable_attempt_with_retries_is_retried_like_any_failure(engine):
    put_task(engine, command="echo a\x00b", retries=1, retry_delay_secs=0.01)
    run = engine.trigger("d")
    assert engine.wait(run.run_id).state == RunState.FAILED
    attempts = engine.store.attempts(run.run_id, "t")
    assert [a.state for a in attempts] == [TaskState.FAILED, TaskState.FAILED]
    assert all(a.error == "could not start the command: embedded null byte" for a in attempts)


# -- absurd timeouts and retries -----------------------------------------------------------------
@pytest.mark.parametrize("timeout", [1e300, float("inf"), float("nan")])
def test_an_absurd_timeout_is_waited_on_safely_and_the_task_runs(timeout, thread_errors):
    out: list[str] = []
    result = run_command("sleep 0.2; echo done", env=ENV, timeout=timeout, sink=out.append)
    assert result.succeeded and not result.timed_out, result.error
    assert "".join(out) == "done\n"
    assert thread_errors == []


def test_a_task_with_an_absurd_timeout_runs_in_the_worker(engine, thread_errors):
    put_task(engine, command="echo ok", timeout_secs=1e300)
    run = engine.trigger("d")
    assert engine.wait(run.run_id).state == RunState.SUCCESS
    assert engine.log(run.run_id, "t") == "ok\n"
    assert thread_errors == []


def test_a_huge_retry_budget_keeps_recording_attempts(engine, thread_errors):
    put_task(engine, command="exit 3", retries=10**40, retry_delay_secs=0.01, max_retry_delay_secs=0.01)
    run = engine.trigger("d")
    wait_until("three failed attempts", lambda: len(engine.store.attempts(run.run_id, "t")) > 3, 20)
    engine.store.stop_run(run.run_id, RunState.CANCELLED, "enough", time.time())
    failed = [a for a in engine.store.attempts(run.run_id, "t") if a.state == TaskState.FAILED]
    assert len(failed) >= 3 and all(a.error == "exit code 3" and a.exit_code == 3 for a in failed)
    assert thread_errors == []


def test_an_absurd_retry_delay_puts_the_retry_far_away_without_overflowing(engine, thread_errors):
    put_task(engine, command="exit 3", retries=10**40, retry_delay_secs=1e300, max_retry_delay_secs=1e308)
    run = engine.trigger("d")
    ti = wait_until(
        "the first attempt to fail",
        lambda: (t := engine.store.get_task_instance(run.run_id, "t")).state == TaskState.UP_FOR_RETRY and t,
        20,
    )
    assert ti.retry_at is not None and ti.retry_at > time.time() + 1e9
    assert [a.error for a in engine.store.attempts(run.run_id, "t")] == ["exit code 3"]
    assert thread_errors == []
