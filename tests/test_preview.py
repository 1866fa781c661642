"""Schedule preview: ticks across daylight-saving changes, through core, the API and the real CLI.

Also the warning `validate` prints for a 6-field schedule that fires every second of a minute.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from flowforge.api import create_app
from flowforge.core.preview import preview, schedule_warnings
from flowforge.core.schedule import parse_instant
from flowforge.services import Services
from tests.cli_support import serving
from tests.harness import cli, run_flowforge


def dag_yaml(schedule: str, timezone: str, dag_id: str = "nightly") -> str:
    return f"id: {dag_id}\nschedule: '{schedule}'\ntimezone: {timezone}\ntasks:\n  - {{id: a, command: 'true'}}\n"


def ticks(expr: str, timezone: str, start: str, count: int = 4) -> list[tuple[str, str | None]]:
    return [(t.local, t.dst) for t in preview(expr, timezone, parse_instant(start, timezone), count)]


def test_spring_forward_moves_a_daily_tick_and_skips_an_hourly_one() -> None:
    daily = preview("30 2 * * *", "Europe/Berlin", parse_instant("2026-03-28T12:00", "Europe/Berlin"), 2)
    assert [t.local for t in daily] == ["2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"]
    assert daily[0].dst == "moved" and daily[0].zone == "CEST" and daily[0].at == "2026-03-29T01:00:00Z"
    assert daily[0].note is not None and daily[0].note.startswith("02:30 does not exist on 2026-03-29")
    assert daily[1].note is None
    hourly = ticks("30 * * * *", "America/New_York", "2026-03-08T01:00")
    assert hourly[:2] == [("2026-03-08T01:30:00-05:00", None), ("2026-03-08T03:30:00-04:00", "skipped")]


def test_fall_back_runs_a_repeated_time_twice_and_says_so() -> None:
    got = preview("30 2 * * *", "Europe/Berlin", parse_instant("2026-10-24T12:00", "Europe/Berlin"), 3)
    assert [(t.at, t.dst) for t in got] == [
        ("2026-10-25T00:30:00Z", "repeated"),
        ("2026-10-25T01:30:00Z", "repeated"),
        ("2026-10-26T01:30:00Z", None),
    ]
    assert got[0].note is not None and "happens twice on 2026-10-25" in got[0].note
    assert "first" in got[0].note and "second" in (got[1].note or "")
    assert "runs it both times" in got[0].note
    new_york = ticks("0 1 * * *", "America/New_York", "2026-10-31T12:00", 3)
    assert new_york == [
        ("2026-11-01T01:00:00-04:00", "repeated"),
        ("2026-11-01T01:00:00-05:00", "repeated"),
        ("2026-11-02T01:00:00-05:00", None),
    ]
    # 02:30 is not in New York's repeated hour: nothing to note there.
    assert [d for _, d in ticks("30 2 * * *", "America/New_York", "2026-10-31T12:00", 3)] == [None] * 3


def test_a_per_second_schedule_over_the_gap_is_counted_not_listed() -> None:
    got = preview("* * 2 * * *", "Europe/Berlin", parse_instant("2026-03-29T00:00", "Europe/Berlin"), 1)
    assert got[0].local == "2026-03-29T03:00:00+02:00"
    assert got[0].note is not None and "02:00, 02:00:01, 02:00:02 and more do not exist" in got[0].note


def test_warnings_for_a_seconds_field_left_at_star() -> None:
    (warning,) = schedule_warnings("* 5 * * * *")
    assert "every second" in warning and "'0 5 * * * *'" in warning and "'5 * * * *'" in warning
    assert schedule_warnings("* 0 3 * * *")
    for fine in ("0 5 * * * *", "5 * * * *", "* * * * * *", "@daily", None):
        assert schedule_warnings(fine) == [], fine


@pytest.fixture
def client(services: Services) -> Iterator[TestClient]:
    with TestClient(create_app(services, api_token="")) as c:
        yield c


def test_api_previews_a_stored_dag(client: TestClient) -> None:
    assert (
        client.post("/api/v1/dags", json={"yaml": dag_yaml("30 2 * * *", "Europe/Berlin")}).status_code == 201
    )
    resp = client.get("/api/v1/dags/nightly/schedule", params={"count": 2, "from": "2026-03-28T12:00"})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert (body["schedule"], body["timezone"], body["paused"], body["warnings"]) == (
        "30 2 * * *",
        "Europe/Berlin",
        False,
        [],
    )
    assert [(t["at"], t["dst"]) for t in body["ticks"]] == [
        ("2026-03-29T01:00:00Z", "moved"),
        ("2026-03-30T00:30:00Z", None),
    ]
    assert client.get("/api/v1/dags/nope/schedule").status_code == 404
    for bad in ({"count": 0}, {"count": 101}, {"from": "tomorrow"}):
        answer = client.get("/api/v1/dags/nightly/schedule", params=bad)
        assert answer.status_code == 422, bad
    assert (
        "from" in client.get("/api/v1/dags/nightly/schedule", params={"from": "x"}).json()["error"]["message"]
    )


def test_api_preview_of_a_dag_without_schedule_is_empty(client: TestClient) -> None:
    text = "id: manual\ntasks:\n  - {id: a, command: 'true'}\n"
    assert client.post("/api/v1/dags", json={"yaml": text}).status_code == 201
    body = client.get("/api/v1/dags/manual/schedule").json()
    assert (body["schedule"], body["ticks"]) == (None, [])


def test_cli_previews_a_file_offline_and_a_stored_dag(tmp_path: Path, services: Services) -> None:
    path = tmp_path / "nightly.yaml"
    path.write_text(dag_yaml("30 1 * * *", "America/New_York"))
    # A file needs no API: the URL points where nothing listens.
    offline = cli(
        "schedule", str(path), "--from", "2026-10-31T12:00", "--count", "3", url="http://127.0.0.1:9"
    )
    assert offline.returncode == 0, offline.stderr
    assert "01:30 happens twice on 2026-11-01" in offline.stdout
    assert "2026-11-01 01:30:00 EDT" in offline.stdout and "2026-11-01 01:30:00 EST" in offline.stdout
    with serving(create_app(services, api_token="")) as url:
        assert cli("submit", str(path), url=url).returncode == 0
        stored = cli("--json", "schedule", "nightly", "--from", "2026-03-07T12:00", "-n", "2", url=url)
        assert stored.returncode == 0, stored.stderr
        body = json.loads(stored.stdout)
        assert [(t["local"], t["dst"]) for t in body["ticks"]] == [
            ("2026-03-08T01:30:00-05:00", None),
            ("2026-03-09T01:30:00-04:00", None),
        ]
        missing = cli("schedule", "no-such-dag", url=url)
        assert missing.returncode == 2 and "no-such-dag" in missing.stderr


def test_validate_warns_but_passes_a_schedule_firing_every_second(tmp_path: Path) -> None:
    path = tmp_path / "ported.yaml"
    path.write_text(dag_yaml("* 5 * * * *", "UTC", "ported"))
    result = run_flowforge("validate", str(path))
    assert result.returncode == 0, result.stderr
    assert f"{path}: warning: schedule:" in result.stderr and "every second" in result.stderr
    assert "warning" not in result.stdout
    path.write_text(dag_yaml("0 5 * * * *", "UTC", "ported"))
    assert "warning" not in run_flowforge("validate", str(path)).stderr
