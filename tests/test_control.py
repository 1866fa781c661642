"""Cancel, retry, params and run timeouts, on a live in-process engine through the real API routes."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from flowforge.api import create_app
from flowforge.core.model import RunState, TaskState
from flowforge.services import Services
from flowforge.settings import Settings
from tests.test_engine import Engine
from tests.test_executor import pid_alive


@pytest.fixture
def engine(tmp_path):
    e = Engine(tmp_path).start()
    yield e
    e.close()


@pytest.fixture
def api(engine, tmp_path):
    settings = Settings(home=tmp_path, db_url="sqlite://", queue_url="memory://")
    with TestClient(create_app(Services(settings, engine.store, engine.queue), api_token="")) as client:
        yield client


def wait_for(predicate, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("condition not reached in time")


def all_dead(pids: list[int], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(pid_alive(p) for p in pids):
            return True
        time.sleep(0.05)
    return False


def test_cancel_kills_every_process_of_the_run(engine, api, tmp_path):
    engine.submit(f"""
id: long
tasks:
  - id: a
    command: "sleep 60 & echo $! > {tmp_path}/a.child; echo $$ > {tmp_path}/a.pid; wait"
  - id: b
    command: "echo $$ > {tmp_path}/b.pid; exec sleep 60"
  - id: after
    command: echo never
    depends_on: [a, b]
""")
    run = engine.trigger("long")
    files = [tmp_path / n for n in ("a.child", "a.pid", "b.pid")]
    wait_for(lambda: all(f.exists() and f.read_text().strip() for f in files))
    pids = [int(f.read_text()) for f in files]
    answer = api.post(f"/api/v1/runs/{run.run_id}/cancel")
    assert answer.status_code == 200
    assert answer.json()["state"] == "cancelled"
    assert {t["task_id"]: t["state"] for t in answer.json()["tasks"]} == {
        "a": "cancelled",
        "b": "cancelled",
        "after": "cancelled",
    }
    assert all_dead(pids), "a process of the cancelled run survived"
    # The worker has handed in its killed attempts' late results: they must not overwrite the cancellation.
    wait_for(lambda: not engine.worker.info().running)
    assert engine.store.get_run(run.run_id).state == RunState.CANCELLED
    assert {a.state for a in engine.store.attempts(run.run_id, "a")} == {TaskState.CANCELLED}
    again = api.post(f"/api/v1/runs/{run.run_id}/cancel")
    assert again.status_code == 409 and again.json()["error"]["code"] == "conflict"
    assert api.post("/api/v1/runs/nope/cancel").status_code == 404


def test_run_timeout_fails_the_run_and_kills_its_tasks(engine, tmp_path):
    engine.submit(f"""
id: bounded
run_timeout_secs: 0.5
tasks:
  - {{id: slow, command: "echo $$ > {tmp_path}/slow.pid; exec sleep 60"}}
  - {{id: next, command: echo never, depends_on: [slow]}}
""")
    run = engine.trigger("bounded")
    assert engine.wait(run.run_id).state == RunState.FAILED
    slow = engine.store.get_task_instance(run.run_id, "slow")
    assert slow.state == TaskState.FAILED and "run timed out after 0.5s" in slow.error
    assert engine.store.get_task_instance(run.run_id, "next").state == TaskState.CANCELLED
    assert all_dead([int((tmp_path / "slow.pid").read_text())])


def test_retry_failed_tasks_keeps_history_and_finishes_the_run(engine, api, tmp_path):
    flag = tmp_path / "fixed"
    engine.submit(f"""
id: fixable
tasks:
  - {{id: ok, command: echo ok}}
  - {{id: broken, command: "test -f {flag}", depends_on: [ok]}}
  - {{id: after, command: echo after, depends_on: [broken]}}
""")
    run = engine.trigger("fixable")
    assert engine.wait(run.run_id).state == RunState.FAILED
    flag.write_text("")
    answer = api.post(f"/api/v1/runs/{run.run_id}/retry")
    assert answer.status_code == 200 and answer.json()["cleared"] == ["broken", "after"]
    assert engine.wait(run.run_id).state == RunState.SUCCESS
    attempts = engine.store.attempts(run.run_id, "broken")
    assert [(a.attempt, a.state) for a in attempts] == [(1, TaskState.FAILED), (2, TaskState.SUCCESS)]
    assert [a.attempt for a in engine.store.attempts(run.run_id, "ok")] == [1], (
        "a successful task is not re-run"
    )
    assert api.post(f"/api/v1/runs/{run.run_id}/retry").status_code == 409  # nothing failed any more


def test_retry_a_successful_task_with_downstream(engine, api):
    engine.submit("""
id: rerun
tasks:
  - {id: a, command: 'echo "a$FLOWFORGE_ATTEMPT"'}
  - {id: b, command: 'echo "b$FLOWFORGE_ATTEMPT"', depends_on: [a]}
  - {id: c, command: 'echo c'}
""")
    run = engine.trigger("rerun")
    assert engine.wait(run.run_id).state == RunState.SUCCESS
    answer = api.post(f"/api/v1/runs/{run.run_id}/tasks/a/retry", json={"downstream": True})
    assert answer.status_code == 200 and answer.json()["cleared"] == ["a", "b"]
    assert engine.wait(run.run_id).state == RunState.SUCCESS
    assert [a.state for a in engine.store.attempts(run.run_id, "a")] == [TaskState.SUCCESS] * 2
    assert engine.log(run.run_id, "b", 2) == "b2\n"
    assert len(engine.store.attempts(run.run_id, "c")) == 1
    assert api.post(f"/api/v1/runs/{run.run_id}/tasks/zzz/retry").status_code == 404


def test_retry_of_a_running_task_is_refused(engine, api):
    engine.submit("id: busy\ntasks:\n  - {id: t, command: 'sleep 30'}\n")
    run = engine.trigger("busy")
    wait_for(lambda: engine.store.get_task_instance(run.run_id, "t").state == TaskState.RUNNING)
    answer = api.post(f"/api/v1/runs/{run.run_id}/tasks/t/retry")
    assert answer.status_code == 409 and "running" in answer.json()["error"]["message"]
    api.post(f"/api/v1/runs/{run.run_id}/cancel")


def test_params_reach_tasks_as_env_never_as_shell_text(engine, api, tmp_path):
    marker = tmp_path / "pwned"
    engine.submit("""
id: declared
params: {name: world}
tasks:
  - {id: t, command: 'echo "hello $FLOWFORGE_PARAM_NAME"'}
""")
    evil = f"$(touch {marker}); `touch {marker}`"
    answer = api.post("/api/v1/runs", json={"dag_id": "declared", "params": {"name": evil}})
    assert answer.status_code == 201
    assert engine.wait(answer.json()["run_id"]).state == RunState.SUCCESS
    assert engine.log(answer.json()["run_id"], "t") == f"hello {evil}\n"
    assert not marker.exists()
    refused = api.post("/api/v1/runs", json={"dag_id": "declared", "params": {"nmae": "typo"}})
    assert refused.status_code == 422 and "nmae" in refused.json()["error"]["message"]
    bad = api.post("/api/v1/runs", json={"dag_id": "declared", "params": {"name": {"nested": 1}}})
    assert bad.status_code == 422


def test_a_dag_without_declared_params_takes_any(engine, api):
    engine.submit("id: open\ntasks:\n  - {id: t, command: 'echo \"$FLOWFORGE_PARAM_COLOUR\"'}\n")
    answer = api.post("/api/v1/runs", json={"dag_id": "open", "params": {"colour": "blue"}})
    assert answer.status_code == 201
    assert engine.wait(answer.json()["run_id"]).state == RunState.SUCCESS
    assert engine.log(answer.json()["run_id"], "t") == "blue\n"


def test_a_run_waiting_for_a_slot_says_so(engine, api, monkeypatch):
    engine.submit("id: single\nmax_active_runs: 1\ntasks:\n  - {id: t, command: 'sleep 30'}\n")
    first = engine.trigger("single")
    second = engine.trigger("single")
    wait_for(lambda: engine.store.get_run(first.run_id).state == RunState.RUNNING)
    ticks = []  # the scheduler's ticks from now on: it has had its chance to start the second run
    tick = engine.scheduler.tick
    monkeypatch.setattr(engine.scheduler, "tick", lambda *a, **k: ticks.append(1) or tick(*a, **k))
    wait_for(lambda: len(ticks) >= 2)
    detail = api.get(f"/api/v1/runs/{second.run_id}").json()
    assert detail["state"] == "queued"
    assert "max_active_runs is 1" in detail["waiting"]
    for run in (first, second):
        api.post(f"/api/v1/runs/{run.run_id}/cancel")


def test_secret_values_are_masked_in_task_logs_and_answers(engine, api):
    engine.submit("""
id: secretive
env: {DB_PASSWORD: hunter22-long}
tasks:
  - id: t
    env: {API_TOKEN: tok-123456}
    command: 'echo "db=$DB_PASSWORD token=$API_TOKEN stage=ok"'
""")
    run = engine.trigger("secretive")
    assert engine.wait(run.run_id).state == RunState.SUCCESS
    assert engine.log(run.run_id, "t") == "db=*** token=*** stage=ok\n"
    answer = api.get(f"/api/v1/runs/{run.run_id}/tasks/t/logs").json()
    assert "hunter22" not in answer["text"] and "tok-123456" not in answer["text"]
    dag = api.get("/api/v1/dags/secretive").text
    assert "hunter22" not in dag and "tok-123456" not in dag
