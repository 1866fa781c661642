"""Process logs: JSON lines with context fields, console lines on a terminal, and no secret anywhere."""

from __future__ import annotations

import io
import json
import logging
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from flowforge.logsetup import ConsoleFormatter, JsonFormatter, setup_logging, wants_json
from flowforge.settings import redact_url
from tests.harness import FlowForgeProcess, clean_env, free_port, start_up, wait_until


class Tty(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.fixture
def root_logger(monkeypatch: pytest.MonkeyPatch) -> Iterator[logging.Logger]:
    """The root logger, restored after the test; no FLOWFORGE_LOG_* from the environment."""
    monkeypatch.delenv("FLOWFORGE_LOG_FORMAT", raising=False)
    monkeypatch.delenv("FLOWFORGE_LOG_LEVEL", raising=False)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield root
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in handlers:
        root.addHandler(h)
    root.setLevel(level)


def test_json_line_has_the_fields_and_the_context_first() -> None:
    record = logging.makeLogRecord(
        {
            "name": "flowforge.worker",
            "levelno": logging.WARNING,
            "levelname": "WARNING",
            "msg": "task %s",
            "args": ("failed",),
            "created": 0.0,
            "worker_id": "w-1",
            "attempt": 2,
            "task_id": "t",
            "run_id": "r",
            "db_password": "hunter2",
        }
    )
    line = JsonFormatter().format(record)
    assert "\n" not in line and "hunter2" not in line
    entry = json.loads(line)
    assert list(entry)[:9] == [
        "ts",
        "level",
        "logger",
        "msg",
        "run_id",
        "task_id",
        "attempt",
        "worker_id",
        "db_password",
    ]
    assert entry["ts"] == "1970-01-01T00:00:00.000+00:00" and entry["level"] == "warning"
    assert (entry["msg"], entry["attempt"], entry["db_password"]) == ("task failed", 2, "***")


@pytest.mark.parametrize(
    ("fmt", "tty", "json_lines"),
    [
        ("", False, True),
        ("", True, False),
        ("json", True, True),
        ("console", False, False),
        ("JSON ", False, True),
    ],
)
def test_json_unless_a_terminal_or_told(fmt: str, tty: bool, json_lines: bool) -> None:
    stream = Tty() if tty else io.StringIO()
    assert wants_json(stream, {"FLOWFORGE_LOG_FORMAT": fmt}) is json_lines


def test_setup_logging_level_from_the_flag_then_the_environment(
    root_logger: logging.Logger, monkeypatch: pytest.MonkeyPatch
) -> None:
    stream = io.StringIO()
    setup_logging(None, stream)
    assert root_logger.level == logging.INFO
    monkeypatch.setenv("FLOWFORGE_LOG_LEVEL", "warning")
    setup_logging(None, stream)
    assert root_logger.level == logging.WARNING
    setup_logging("debug", stream)
    assert root_logger.level == logging.DEBUG and len(root_logger.handlers) == 1, "replaced, not added"
    with pytest.raises(ValueError, match="--log-level / FLOWFORGE_LOG_LEVEL"):
        setup_logging("loud", stream)


def test_console_lines_on_a_terminal_carry_the_context(root_logger: logging.Logger) -> None:
    stream = Tty()
    setup_logging("info", stream)
    logging.getLogger("flowforge.worker").info(
        "task started", extra={"run_id": "r1", "task_id": "t", "attempt": 1}
    )
    text = re.sub(r"\x1b\[[0-9;]*m", "", stream.getvalue())  # Rich's colours
    assert (
        "INFO" in text
        and "task started" in text
        and "run_id=r1 task_id=t attempt=1" in text
        and "{" not in text
    )


# -- a real `flowforge up` -----------------------------------------------------------------------
def log_lines(output: str) -> list[dict[str, Any]]:
    """Every line the process wrote, each parsed as one JSON object."""
    lines = [line for line in output.splitlines() if line.strip()]
    assert lines, "the process logged nothing"
    entries = []
    for line in lines:
        entry = json.loads(line)  # every line, with none left over in another format
        assert {"ts", "level", "logger", "msg"} <= set(entry), line
        entries.append(entry)
    return entries


@pytest.mark.e2e
def test_up_logs_json_lines_with_context_and_no_secret(tmp_path: Path) -> None:
    password, token = f"pw-{uuid.uuid4().hex}", f"tok-{uuid.uuid4().hex}"
    dag = f"""
id: secretive
params: {{api_token: ""}}
env: {{DB_PASSWORD: "{password}"}}
tasks:
  - id: use
    command: 'echo "connecting with $DB_PASSWORD and $FLOWFORGE_PARAM_API_TOKEN"'
  - id: shaky
    command: 'test -f {tmp_path}/marker || {{ touch {tmp_path}/marker; exit 1; }}'
    retries: 1
    retry_delay_secs: 0.1
    depends_on: [use]
"""
    proc = start_up(tmp_path / "home", "--log-level", "debug", "--concurrency", "2")
    try:
        with httpx.Client(base_url=proc.url, timeout=10) as client:
            assert client.post("/api/v1/dags", json={"yaml": dag}).status_code == 201
            resp = client.post("/api/v1/runs", json={"dag_id": "secretive", "params": {"api_token": token}})
            run_id = resp.json()["run_id"]
            deadline = time.monotonic() + 30
            while client.get(f"/api/v1/runs/{run_id}").json()["state"] not in ("success", "failed"):
                assert time.monotonic() < deadline, proc.output()
                time.sleep(0.1)
            assert client.get(f"/api/v1/runs/{run_id}").json()["state"] == "success"
            task_log = client.get(f"/api/v1/runs/{run_id}/tasks/use/logs").json()["text"]
            worker_id = client.get(f"/api/v1/runs/{run_id}/tasks/use").json()["attempts"][0]["worker_id"]
            status = client.get("/api/v1/status").json()
    finally:
        assert proc.stop() == 0, proc.output()
    assert status["ready"]["status"] == "ready" and status["ready"]["leader"]
    assert task_log == "connecting with *** and ***\n"

    output = proc.output()
    assert password not in output and token not in output
    entries = log_lines(output)
    task_lines = [e for e in entries if e.get("run_id") == run_id and e["logger"] == "flowforge.worker"]
    assert {(e["msg"], e["task_id"], e["attempt"]) for e in task_lines} == {
        ("task started", "use", 1),
        ("task succeeded", "use", 1),
        ("task started", "shaky", 1),
        ("task up_for_retry: exit code 1", "shaky", 1),
        ("task started", "shaky", 2),
        ("task succeeded", "shaky", 2),
    }
    assert all(e["worker_id"] == worker_id and e["dag_id"] == "secretive" for e in task_lines)
    finished = [e for e in task_lines if e["msg"] != "task started"]
    assert all(isinstance(e["duration_secs"], float) and "exit_code" in e for e in finished)
    assert any(
        e["logger"] == "flowforge.scheduler" and e["msg"] == "run success" and e["run_id"] == run_id
        for e in entries
    )
    assert any(e["msg"] == "task queued" and e["level"] == "debug" for e in entries), "--log-level debug"


@pytest.mark.e2e
def test_an_unknown_log_level_exits_2_with_one_line(tmp_path: Path) -> None:
    proc = FlowForgeProcess(
        ["up", "--port", str(free_port()), "--home", str(tmp_path / "home")],
        env=clean_env(FLOWFORGE_LOG_LEVEL="loud"),
        log_path=tmp_path / "out.log",
    )
    try:
        code = proc.proc.wait(60)
    finally:
        proc.stop()
    [line] = proc.output().strip().splitlines()
    assert code == 2 and line.startswith("error: log level must be one of") and "'loud'" in line


# -- redaction: every form of a database or queue string, one function ---------------------------
@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("postgresql://ff:pw@db:5432/ff", "postgresql://ff:***@db:5432/ff"),
        ("postgresql://ff:p@ss/w@db/ff", "postgresql://ff:***@db/ff"),  # unescaped "@" and "/" too
        (
            "postgresql://ff@db/ff?sslpassword=pw&sslmode=require",
            "postgresql://ff@db/ff?sslpassword=***&sslmode=require",
        ),
        ("postgres://db/ff?password=pw", "postgres://db/ff?password=***"),
        ("host=db user=ff password=pw dbname=ff", "host=db user=ff password=*** dbname=ff"),
        ("host=db password = 'p w\\'x' dbname=ff", "host=db password = *** dbname=ff"),
        ("redis://:pw@cache:6379/0?prefix=ff", "redis://:***@cache:6379/0?prefix=ff"),
        ("rediss://default:pw@cache:6380/0", "rediss://default:***@cache:6380/0"),
        ("redis://cache:6379/0?password=pw", "redis://cache:6379/0?password=***"),
        (
            "store postgresql://a:pw@db/ff, queue redis://:pw@r/0",
            "store postgresql://a:***@db/ff, queue redis://:***@r/0",
        ),
        ("sqlite:////var/lib/flowforge.db", "sqlite:////var/lib/flowforge.db"),
        ("postgresql://ff@db:5432/ff", "postgresql://ff@db:5432/ff"),
        ("memory://", "memory://"),
    ],
)
def test_redact_url_hides_every_password_form(text: str, shown: str) -> None:
    assert redact_url(text) == shown


def test_log_lines_redact_passwords_in_messages_and_tracebacks() -> None:
    error = ValueError("cannot connect to postgresql://ff:hunter2@db/ff")
    exc_info = (ValueError, error, None)
    record = logging.makeLogRecord(
        {
            "name": "x",
            "levelname": "ERROR",
            "msg": "store %s",
            "args": ("host=db password=hunter2",),
            "exc_info": exc_info,
        }
    )
    for formatter in (JsonFormatter(), ConsoleFormatter()):
        line = formatter.format(record)
        assert "hunter2" not in line and "password=***" in line and "ff:***@db" in line


def one_line_exit(tmp_path: Path, args: list[str], env: dict[str, str]) -> tuple[int, str]:
    proc = FlowForgeProcess(args, env=env, log_path=tmp_path / "out.log")
    try:
        code = proc.proc.wait(60)
    finally:
        proc.stop()
    lines = proc.output().strip().splitlines()
    assert len(lines) == 1, lines
    return code, lines[0]


@pytest.mark.e2e
def test_a_dsn_with_a_password_is_redacted_in_the_start_up_error(tmp_path: Path) -> None:
    env = clean_env(FLOWFORGE_DB="host=db.example user=ff password=dsn-pw-1f2e dbname=ff")
    args = ["up", "--port", str(free_port()), "--home", str(tmp_path / "home")]
    code, line = one_line_exit(tmp_path, args, env)
    assert code == 2 and line.startswith("error: FLOWFORGE_DB=host=db.example user=ff password=***")
    assert "dsn-pw-1f2e" not in line


@pytest.mark.e2e
def test_an_unreachable_database_url_is_redacted_in_the_start_up_error(
    tmp_path: Path, redis_url: str
) -> None:
    env = clean_env(
        FLOWFORGE_DB="postgresql://ff:url-pw-9c8b@127.0.0.1:1/ff?sslpassword=ssl-pw-7a6d&connect_timeout=2",
        FLOWFORGE_QUEUE=redis_url,
    )
    args = ["scheduler", "--home", str(tmp_path / "home"), "--log-level", "warning"]
    code, line = one_line_exit(tmp_path, args, env)
    assert code == 3 and line.startswith(
        "error: FLOWFORGE_DB=postgresql://ff:***@127.0.0.1:1/ff?sslpassword=***"
    )
    assert "url-pw-9c8b" not in line and "ssl-pw-7a6d" not in line


@pytest.mark.e2e
def test_a_running_scheduler_logs_its_backends_redacted(tmp_path: Path, pg_url: str, redis_url: str) -> None:
    db = pg_url.replace("://postgres@", "://postgres:db-pw-5e4f@", 1) + "?sslpassword=ssl-pw-3c2b"
    queue = redis_url.replace("redis://", "redis://:q-pw-1a0f@", 1)
    assert "db-pw-5e4f" in db and "q-pw-1a0f" in queue
    env = clean_env(FLOWFORGE_DB=db, FLOWFORGE_QUEUE=queue)
    proc = FlowForgeProcess(
        ["scheduler", "--home", str(tmp_path / "home")], env=env, log_path=tmp_path / "out.log"
    )
    try:
        wait_until(
            "the scheduler to log its backends",
            lambda: "FlowForge scheduler" in proc.output(),
            30,
            alive=proc.check_alive,
        )
    finally:
        assert proc.stop() == 0
    out = proc.output()
    assert "sslpassword=***" in out and "postgres:***@" in out and "redis://:***@" in out
    for password in ("db-pw-5e4f", "ssl-pw-3c2b", "q-pw-1a0f"):
        assert password not in out
