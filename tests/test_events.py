"""Live streams over a real HTTP server: server-sent events and followed logs."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.harness import cli, start_cli, start_up, wait_until


@pytest.fixture(scope="module")
def up(tmp_path_factory):
    proc = start_up(tmp_path_factory.mktemp("events") / "home", "--concurrency", "2")
    yield proc
    proc.stop()


def submit(url: str, text: str) -> None:
    assert httpx.post(f"{url}/api/v1/dags", json={"yaml": text}).status_code == 201


def attempt(url: str, run_id: str) -> int:
    """The attempt number of task `t` of the run (0 until it is first queued)."""
    return int(httpx.get(f"{url}/api/v1/runs/{run_id}/tasks/t").json()["attempt"])


def read_events(
    url: str, params: dict, until, timeout: float = 15.0, headers=None, on_open=None
) -> list[dict]:
    """Collect SSE events (with their `id:` lines) until `until(events)` is true.

    `on_open()` is called once the server has answered: the stream's starting point is fixed by
    then, so every change made from then on reaches it.
    """
    events: list[dict] = []
    with httpx.stream(
        "GET", f"{url}/api/v1/events", params=params, headers=headers or {}, timeout=timeout
    ) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        if on_open is not None:
            on_open()
        current: dict = {}
        for line in resp.iter_lines():
            if line.startswith("id: "):
                current["id"] = int(line[4:])
            elif line.startswith("event: "):
                current["event"] = line[7:]
            elif line.startswith("data: "):
                current["data"] = json.loads(line[6:])
            elif line == "" and current:
                events.append(current)
                current = {}
                if until(events):
                    break
    return events


def test_events_stream_a_runs_changes_live_and_resume_by_id(up):
    submit(
        up.url,
        "id: ev\ntasks:\n  - {id: a, command: 'echo a'}\n  - {id: b, command: 'echo b', depends_on: [a]}\n",
    )
    box: dict = {}

    def trigger():  # once the stream is open: it must see changes made after it started
        box["run"] = httpx.post(f"{up.url}/api/v1/runs", json={"dag_id": "ev"}).json()["run_id"]

    def run_over(events):
        return any(e["event"] == "run" and e["data"]["state"] == "success" for e in events)

    events = read_events(up.url, {"dag_id": "ev"}, run_over, on_open=trigger)
    run_id = box["run"]
    mine = [e for e in events if e["data"]["run_id"] == run_id]
    tasks = [(e["data"]["task_id"], e["data"]["state"]) for e in mine if e["event"] == "task"]
    assert tasks == [
        ("a", "queued"),
        ("a", "running"),
        ("a", "success"),
        ("b", "queued"),
        ("b", "running"),
        ("b", "success"),
    ]
    assert [e["data"]["state"] for e in mine if e["event"] == "run"] == ["queued", "running", "success"]
    ids = [e["id"] for e in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    # Resume: with Last-Event-ID the stream replays what came after that event.
    middle = mine[3]["id"]
    replay = read_events(
        up.url,
        {"run_id": run_id},
        lambda ev: ev[-1]["data"]["state"] == "success" and ev[-1]["event"] == "run",
        headers={"Last-Event-ID": str(middle)},
    )
    assert replay[0]["id"] > middle
    assert [e["id"] for e in replay] == [e["id"] for e in mine if e["id"] > middle]


def test_followed_log_streams_lines_as_they_are_written(up, tmp_path):
    go_on = tmp_path / "go-on"  # the task writes its second line once this file exists
    submit(
        up.url,
        "id: chatty\ntasks:\n  - {id: t, command: 'echo one; "
        f"while [ ! -e {go_on} ]; do sleep 0.02; done; echo two'}}\n",
    )
    run_id = httpx.post(f"{up.url}/api/v1/runs", json={"dag_id": "chatty"}).json()["run_id"]
    wait_until("the task to start", lambda: attempt(up.url, run_id) > 0, timeout=10)
    chunks = []
    with httpx.stream(
        "GET", f"{up.url}/api/v1/runs/{run_id}/tasks/t/logs", params={"follow": 1, "attempt": 1}, timeout=15
    ) as resp:
        assert resp.headers["content-type"].startswith("text/plain")
        for chunk in resp.iter_text():
            chunks.append(chunk)
            go_on.touch()  # only now may the task go on and end
    assert "".join(chunks) == "one\ntwo\n"
    assert chunks[0] == "one\n", "the first line arrives while the task still runs"


def test_cli_logs_follow_prints_the_whole_log(up):
    submit(up.url, "id: follow\ntasks:\n  - {id: t, command: 'echo start; sleep 0.5; echo end'}\n")
    run_id = cli("trigger", "follow", url=up.url).stdout.strip()
    result = cli("logs", run_id, "t", "--follow", url=up.url)
    assert result.returncode == 0 and result.stdout == "start\nend\n"


def test_cli_logs_follow_goes_on_through_retries_without_repeating(up, tmp_path):
    go_on = tmp_path / "go-on"  # the first attempt fails once this file exists
    submit(
        up.url,
        f"""\
id: retrying
retry_delay_secs: 0.2
tasks:
  - id: t
    retries: 1
    command: 'echo "try $FLOWFORGE_ATTEMPT"; [ "$FLOWFORGE_ATTEMPT" -ge 2 ] || {{ while [ ! -e {go_on} ]; do sleep 0.02; done; exit 1; }}'
""",
    )
    run_id = cli("trigger", "retrying", url=up.url).stdout.strip()
    wait_until("the task to start", lambda: attempt(up.url, run_id) > 0, timeout=10)
    follower = start_cli("logs", run_id, "t", "--follow", url=up.url)
    try:
        assert follower.stdout is not None
        first = follower.stdout.readline()  # the CLI follows the first attempt now
        go_on.touch()
        out, err = follower.communicate(timeout=60)
    finally:
        follower.kill()  # nothing to do once it has exited
    assert follower.returncode == 0, err
    assert first + out == "try 1\ntry 2\n"
    assert "--- attempt 2 ---" in err


def test_last_event_id_wins_over_after(up):
    """A reconnecting EventSource sends Last-Event-ID, and its URL may still say `after`: the header wins."""
    submit(
        up.url,
        "id: resume\ntasks:\n  - {id: a, command: 'true'}\n  - {id: b, command: 'true', depends_on: [a]}\n",
    )
    box: dict = {}

    def trigger():
        box["run"] = httpx.post(f"{up.url}/api/v1/runs", json={"dag_id": "resume"}).json()["run_id"]

    def run_over(events):
        return any(e["event"] == "run" and e["data"]["state"] == "success" for e in events)

    first = read_events(up.url, {"dag_id": "resume"}, run_over, on_open=trigger)
    mine = [e for e in first if e["data"]["run_id"] == box["run"]]
    middle = mine[len(mine) // 2]["id"]
    replay = read_events(
        up.url,
        {"run_id": box["run"], "after": mine[0]["id"] - 1},  # the URL the stream was first opened with
        run_over,
        headers={"Last-Event-ID": str(middle)},
    )
    assert [e["id"] for e in replay] == [e["id"] for e in mine if e["id"] > middle]
