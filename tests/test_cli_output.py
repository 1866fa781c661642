"""What tables look like: plain text in a pipe, fitted to a terminal, control characters shown, times zoned."""

from __future__ import annotations

import re
import time

import pytest

from flowforge.client import ApiClient
from flowforge.core.model import TaskState
from tests.cli_support import LiveApi, in_terminal, start_task
from tests.harness import clean_env, cli

ETL = """\
id: etl-pipeline
name: ETL Data Pipeline With A Long Descriptive Name
schedule: "@daily"
tasks:
  - {id: extract, command: echo extract}
  - {id: load, command: echo load, depends_on: [extract]}
"""
SGR = re.compile(r"\x1b\[[0-9;]*m")
HOSTILE = "boom \x1b]0;pwned\x07\x1b[2J\u202egnp.exe"  # retitles the window, clears the screen, reverses text


@pytest.fixture
def etl(api: LiveApi) -> LiveApi:
    """The API with a scheduled DAG whose name is long."""
    with ApiClient(api.url) as client:
        client.submit_dag(ETL)
    return api


def failed_run(api: LiveApi, error: str) -> str:
    """A run of etl-pipeline whose first task failed with `error`."""
    run_id = api.cli("trigger", "etl-pipeline").stdout.strip()
    start_task(api, run_id, "extract")
    api.services.store.finish_task(
        run_id, "extract", 1, "w1", state=TaskState.FAILED, now=time.time(), exit_code=7, error=error
    )
    return run_id


def test_in_a_pipe_tables_are_plain_aligned_lines(etl: LiveApi) -> None:
    result = etl.cli("dags", env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    header, row = result.stdout.splitlines()
    assert not set("┏┃│─╇┗") & set(result.stdout)
    assert row.endswith("ETL Data Pipeline With A Long Descriptive Name") and len(row) > 80
    # Each value starts under its column's title.
    for title, value in (("Ver", "1"), ("Paused", "no"), ("Schedule", "@daily")):
        assert row[header.index(title) :].startswith(value) or row[
            : header.index(title) + len(title)
        ].endswith(value), title


def test_a_terminal_80_columns_wide_drops_columns_before_breaking_words(etl: LiveApi) -> None:
    shown = SGR.sub("", in_terminal("dags", url=etl.url, columns=80))
    lines = shown.splitlines()
    assert "┃ DAG" in shown and max(len(line) for line in lines) <= 80, shown
    assert "Tasks" not in shown  # the least useful column went first
    words = re.findall(r"[A-Za-z]+", " ".join(line.split("│")[-2] for line in lines if line.count("│") > 2))
    assert {"ETL", "Data", "Pipeline", "Descriptive", "Name"} <= set(words), shown  # wrapped, never split
    wide = SGR.sub("", in_terminal("dags", url=etl.url, columns=200))
    assert "Tasks" in wide and "ETL Data Pipeline With A Long Descriptive Name" in wide


def test_control_characters_are_shown_as_escapes_in_tables(etl: LiveApi) -> None:
    run_id = failed_run(etl, HOSTILE)
    piped = etl.cli("run", run_id)
    assert "\x1b" not in piped.stdout and "\u202e" not in piped.stdout
    assert "boom \\x1b]0;pwned\\x07\\x1b[2J\\u202egnp.exe" in piped.stdout
    shown = in_terminal("run", run_id, url=etl.url, columns=200)
    assert "\x1b]" not in shown and "\x1b[2J" not in shown and "\u202e" not in shown
    assert "boom \\x1b]0;pwned\\x07\\x1b[2J\\u202egnp.exe" in SGR.sub("", shown)


def test_times_name_their_zone_local_by_default_utc_on_request(etl: LiveApi) -> None:
    backfilled = etl.cli(
        "backfill", "etl-pipeline", "--start", "2026-01-01", "--end", "2026-01-01", "--no-wait"
    )
    assert backfilled.exit_code == 0, backfilled.output
    paris = clean_env(TZ="Europe/Paris", COLUMNS="200")
    local = cli("runs", url=etl.url, env=paris)
    assert local.returncode == 0, local.stderr
    assert "Logical date (CET)" in local.stdout and "2026-01-01 01:00:00" in local.stdout
    assert re.search(r"Created \(CES?T\)", local.stdout)
    utc = cli("runs", "--utc", url=etl.url, env=paris)
    assert "Logical date (UTC)" in utc.stdout and "2026-01-01 00:00:00" in utc.stdout
    run_id = utc.stdout.splitlines()[1].split()[0]
    detail = cli("--utc", "run", run_id, url=etl.url, env=paris).stdout
    assert re.search(r"^Logical date:\s+2026-01-01 00:00:00 UTC$", detail, re.M), detail
    assert re.search(r"^Created:\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$", detail, re.M), detail
    manual = etl.cli("trigger", "etl-pipeline").stdout.strip()
    line = next(
        x for x in cli("runs", "--utc", url=etl.url, env=paris).stdout.splitlines() if x.startswith(manual)
    )
    assert re.match(rf"{manual}\s+queued\s+etl-pipeline v1\s+-\s+\d\d-\d\d", line), line  # no logical date
