"""`flowforge logs` for CI: every failed task's log, timestamps, unknown ids, control characters."""

from __future__ import annotations

import json
import re
import time

import pytest

from flowforge.cli.safetext import SGR_RESET, TerminalLog
from flowforge.client import ApiClient
from flowforge.core.model import TaskState
from tests.cli_support import LiveApi, in_terminal, start_task

THREE = """\
id: three
tasks:
  - {id: fetch, command: echo fetch}
  - {id: parse, command: echo parse}
  - {id: report, command: echo report, depends_on: [fetch, parse]}
"""
STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00 "


def finish(api: LiveApi, run_id: str, task_id: str, state: TaskState, log: str, code: int) -> None:
    """Run a task as a worker would: it writes `log` and ends in `state` with exit code `code`."""
    start_task(api, run_id, task_id)
    api.services.store.append_log(run_id, task_id, 1, log)
    error = None if state == TaskState.SUCCESS else f"exit code {code}"
    api.services.store.finish_task(
        run_id, task_id, 1, "w1", state=state, now=time.time(), exit_code=code, error=error
    )


@pytest.fixture
def run_id(api: LiveApi) -> str:
    """A run of `three`: fetch and parse failed (with logs), report never ran."""
    with ApiClient(api.url) as client:
        client.submit_dag(THREE)
        run = client.trigger("three").run_id
    finish(api, run, "fetch", TaskState.FAILED, "connecting\nrefused\n", 7)
    finish(api, run, "parse", TaskState.SUCCESS, "parsed 3 rows", 0)  # no newline at the end
    return run


def test_failed_prints_every_failed_tasks_log_under_a_heading(api: LiveApi, run_id: str) -> None:
    result = api.cli("logs", run_id, "--failed")
    assert result.exit_code == 0, result.output
    assert result.stdout == "==> fetch (attempt 1, failed, exit code 7) <==\nconnecting\nrefused\n"
    everything = api.cli("logs", run_id)
    assert everything.stdout == (
        "==> fetch (attempt 1, failed, exit code 7) <==\nconnecting\nrefused\n"
        "==> parse (attempt 1, success, exit code 0) <==\nparsed 3 rows\n"  # the log's last line ended
    )
    chunks = [json.loads(line) for line in api.cli("--json", "logs", run_id, "--failed").stdout.splitlines()]
    assert [(c["task_id"], c["text"]) for c in chunks] == [("fetch", "connecting\nrefused\n")]


def test_failed_with_no_failed_task_says_so(api: LiveApi) -> None:
    with ApiClient(api.url) as client:
        client.submit_dag(THREE)
        run = client.trigger("three").run_id
    result = api.cli("logs", run, "--failed")
    assert result.exit_code == 0 and result.stdout == ""
    assert result.stderr == f"no failed task in run {run} (queued)\n"


def test_unknown_run_or_task_is_named(api: LiveApi, run_id: str) -> None:
    unknown = api.cli("logs", "no-such-run", "fetch")
    assert unknown.exit_code == 2 and unknown.stderr == "error: no run 'no-such-run'\n"
    assert api.cli("logs", "no-such-run", "--failed").stderr == "error: no run 'no-such-run'\n"
    task = api.cli("logs", run_id, "ghost")
    assert task.exit_code == 2
    assert task.stderr == f"error: no task 'ghost' in run '{run_id}' (its tasks: fetch, parse, report)\n"
    both = api.cli("logs", run_id, "fetch", "--failed")
    assert both.exit_code == 2 and "not both" in both.stderr


def test_timestamps_start_every_line(api: LiveApi, run_id: str) -> None:
    result = api.cli("--utc", "logs", run_id, "fetch", "--timestamps")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert [re.sub(STAMP, "", line) for line in lines] == ["connecting", "refused"]
    assert all(re.match(STAMP, line) for line in lines), lines
    headed = api.cli("logs", run_id, "-t", "--utc").stdout.splitlines()
    assert headed[0] == "==> fetch (attempt 1, failed, exit code 7) <==" and re.match(
        STAMP + "parsed", headed[4]
    )


def test_logs_to_a_terminal_show_escapes_but_keep_colours(api: LiveApi) -> None:
    with ApiClient(api.url) as client:
        client.submit_dag(THREE)
        run = client.trigger("three").run_id
    log = "\x1b[31mred\x1b[0m plain \x1b]0;pwned\x07 \x1b[2J\rover\n"
    finish(api, run, "fetch", TaskState.SUCCESS, log, 0)
    piped = api.cli("logs", run, "fetch")
    assert piped.stdout == log  # a pipe gets the log as written
    shown = in_terminal("logs", run, "fetch", url=api.url)
    assert "\x1b[31mred\x1b[0m plain \\x1b]0;pwned\\x07 \\x1b[2J\\rover\n" in shown
    assert "\x1b]" not in shown and "\x1b[2J" not in shown and shown.endswith(SGR_RESET)


@pytest.mark.parametrize("scale", [1, 4, 16])
def test_a_terminal_log_reads_the_same_however_it_is_cut(scale: int) -> None:
    """Sequences split across chunks are kept or escaped whole; output grows with input, no more."""
    log = (
        "ok \x1b[1;31mbold red\x1b[0m \x1b]8;;http://x\x07link\x1b]8;;\x07 \r\n\x00\x9b\u202e" * 50
    ) * scale
    whole = TerminalLog()
    expected = whole.feed(log) + whole.finish()
    assert "\x1b]" not in expected and expected.count("\x1b[1;31m") == 50 * scale
    for size in (1, 2, 3, 7, 64):
        cut = TerminalLog()
        pieces = [cut.feed(log[i : i + size]) for i in range(0, len(log), size)]
        assert "".join(pieces) + cut.finish() == expected, size
    assert len(expected) < 3 * len(log)
