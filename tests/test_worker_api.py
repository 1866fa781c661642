"""The execution API (`/api/v1/worker/...`) and the API-mode worker built on it, against a real server.

The API runs under uvicorn on a real store and queue (SQLite + the in-process queue, and
PostgreSQL + Redis when they are configured); the scheduler's own tick queues the tasks. The
contract is spoken over HTTP with the worker token, and the real `Worker` is run over
`engine.remote.ExecutionClient` to show what a worker does with the answers: it kills a task
whose lease the API refuses, and fences itself when the API is gone for a whole lease.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from flowforge import operations as ops
from flowforge.api import create_app
from flowforge.engine.remote import connect_worker
from flowforge.roles import make_scheduler
from flowforge.services import Services, build_services
from flowforge.settings import Settings
from tests.cli_support import serving
from tests.harness import clean_env, free_port, pid_alive, run_flowforge, wait_until

WORKER_TOKEN = "worker-token-5d1c8e2f9a"
USER_TOKEN = "user-token-0b7e4a"
HEARTBEAT = 0.5  # so a lease lasts 1.5 s


@dataclass
class Api:
    url: str
    app: FastAPI
    services: Services
    worker: httpx.Client  # sends the worker token
    user: httpx.Client  # sends the user token

    def submit(self, yaml_text: str) -> None:
        ops.submit_dag(self.services.store, self.services.queue, yaml_text, max_bytes=1 << 20)

    def trigger(self, dag_id: str) -> str:
        return ops.trigger_run(self.services.store, self.services.queue, dag_id).run.run_id

    def tick(self) -> None:
        """One scheduler pass: what is ready is queued and pushed."""
        make_scheduler(self.services).tick(time.time())

    def claim(self, worker_id: str = "w1", wait: float = 0, lease_secs: float = 30) -> httpx.Response:
        body = {"worker_id": worker_id, "lease_secs": lease_secs}
        return self.worker.post("/api/v1/worker/claim", params={"wait": wait}, json=body, timeout=wait + 30)

    def wait_run(self, run_id: str, timeout: float = 30) -> dict[str, Any]:
        def ended() -> dict[str, Any] | None:
            run = dict(self.user.get(f"/api/v1/runs/{run_id}").json())
            return run if run["state"] in ("success", "failed", "cancelled") else None

        return wait_until(f"run {run_id} to end", ended, timeout)

    def task(self, run_id: str, task_id: str) -> dict[str, Any]:
        return dict(self.user.get(f"/api/v1/runs/{run_id}/tasks/{task_id}").json())


@pytest.fixture(params=["sqlite", "postgres"])
def api(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Api]:
    """A served API with a user token and a worker token, on SQLite + memory or PostgreSQL + Redis."""
    monkeypatch.setenv("FLOWFORGE_HEARTBEAT_SECS", str(HEARTBEAT))
    if request.param == "postgres":
        db, queue = request.getfixturevalue("pg_url"), request.getfixturevalue("redis_url")
    else:
        db, queue = f"sqlite:///{tmp_path / 'ff.db'}", "memory://"
    settings = Settings(
        home=tmp_path, db_url=db, queue_url=queue, heartbeat_secs=HEARTBEAT, worker_token=WORKER_TOKEN
    )
    services = build_services(settings)
    with ExitStack() as stack:
        stack.callback(services.close)
        app = create_app(services, api_token=USER_TOKEN)
        url = stack.enter_context(serving(app))
        stack.callback(services.stopping.set)
        worker = stack.enter_context(httpx.Client(base_url=url, headers=_bearer(WORKER_TOKEN), timeout=30))
        user = stack.enter_context(httpx.Client(base_url=url, headers=_bearer(USER_TOKEN), timeout=30))
        yield Api(url, app, services, worker, user)


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


ONE = "id: one\ntasks:\n  - {id: a, command: 'echo hi'}\n"


def test_claim_renew_log_and_finish_exactly_once(api: Api) -> None:
    api.submit(ONE)
    run_id = api.trigger("one")
    assert api.claim().status_code == 204  # nothing queued yet
    api.tick()
    resp = api.claim()
    assert resp.status_code == 200, resp.text
    claimed = resp.json()
    assert (claimed["run_id"], claimed["task_id"], claimed["attempt"]) == (run_id, "a", 1)
    token = claimed["lease_token"]
    task = api.task(run_id, "a")
    assert task["state"] == "running" and task["worker_id"] == "w1"
    assert api.claim().status_code == 204  # the one task is taken

    lease = {"run_id": run_id, "task_id": "a", "attempt": 1, "lease_token": token}
    renew = api.worker.post(
        "/api/v1/worker/renew", json={"worker_id": "w1", "lease_secs": 30, "leases": [lease]}
    )
    assert renew.status_code == 200 and renew.json() == {"renewed": 1}
    stale = {**lease, "lease_token": "not-the-token"}
    renew = api.worker.post(
        "/api/v1/worker/renew", json={"worker_id": "w1", "lease_secs": 30, "leases": [stale]}
    )
    assert renew.status_code == 409 and renew.json()["error"]["code"] == "lease_lost"
    assert renew.json()["error"]["details"] == [stale]

    chunks = [{"run_id": run_id, "task_id": "a", "attempt": 1, "text": t} for t in ("hello\n", "world\n")]
    chunks.append({"run_id": run_id, "task_id": "nope", "attempt": 1, "text": "lost\n"})
    logs = api.worker.post("/api/v1/worker/logs", json={"chunks": chunks})
    assert logs.status_code == 200 and logs.json()["appended"] == 2
    assert [r["task_id"] for r in logs.json()["refused"]] == ["nope"]
    assert api.user.get(f"/api/v1/runs/{run_id}/tasks/a/logs").json()["text"] == "hello\nworld\n"

    finish = {"run_id": run_id, "task_id": "a", "attempt": 1, "worker_id": "w1", "state": "success"}
    finish |= {"now": time.time(), "exit_code": 0}
    wrong = api.worker.post("/api/v1/worker/finish", json={**finish, "lease_token": "not-the-token"})
    assert wrong.status_code == 409 and api.task(run_id, "a")["state"] == "running"
    done = api.worker.post("/api/v1/worker/finish", json={**finish, "lease_token": token})
    assert done.status_code == 200 and done.json() == {"recorded": True}
    again = api.worker.post("/api/v1/worker/finish", json={**finish, "lease_token": token})
    assert again.status_code == 409  # finished exactly once
    detail = api.task(run_id, "a")
    assert detail["state"] == "success" and [a["state"] for a in detail["attempts"]] == ["success"]
    assert detail["attempts"][0]["exit_code"] == 0 and detail["attempts"][0]["worker_id"] == "w1"
    # The lease of a finished attempt is gone: renewing it is refused.
    renew = api.worker.post(
        "/api/v1/worker/renew", json={"worker_id": "w1", "lease_secs": 30, "leases": [lease]}
    )
    assert renew.status_code == 409


def test_a_long_poll_is_answered_as_soon_as_a_task_is_ready(api: Api) -> None:
    api.submit(ONE)
    assert api.claim(wait=0.3).status_code == 204  # nothing came within the wait
    answers: list[httpx.Response] = []
    waiting = threading.Thread(target=lambda: answers.append(api.claim(wait=40)))
    started = time.monotonic()
    waiting.start()
    time.sleep(0.5)  # the claim is waiting by now (it would still be served if not)
    run_id = api.trigger("one")
    api.tick()
    waiting.join(35)
    assert answers and answers[0].status_code == 200, answers
    assert answers[0].json()["run_id"] == run_id
    # Answered when the task came, not at the end of its 40 s wait.
    assert time.monotonic() - started < 30


def test_waiting_claims_hold_no_thread_and_end_when_the_worker_stops(api: Api) -> None:
    before = threading.active_count()
    statuses: list[int] = []

    async def wait_many() -> None:
        headers = _bearer(WORKER_TOKEN)
        async with httpx.AsyncClient(base_url=api.url, headers=headers, timeout=60) as client:
            body = {"worker_id": "stopping", "lease_secs": 30}
            calls = [client.post("/api/v1/worker/claim", params={"wait": 50}, json=body) for _ in range(40)]
            statuses.extend(r.status_code for r in await asyncio.gather(*calls))

    waiter = threading.Thread(target=asyncio.run, args=(wait_many(),))
    waiter.start()
    wait_until("40 claims to wait", lambda: _waiting(api) == 40, 20)
    # The waiter thread, the broker's thread, a few of the server's: not one per waiting claim.
    assert threading.active_count() - before < 10, threading.enumerate()
    released = api.worker.post("/api/v1/worker/release", json={"worker_id": "stopping"})
    assert released.status_code == 200 and released.json() == {"released": 40}
    waiter.join(20)
    assert statuses == [204] * 40


def _waiting(api: Api) -> int:
    """How many claims wait in the API's claim broker."""
    return int(api.app.state.claim_broker.waiting())


# -- the worker over the API ---------------------------------------------------------------------
def worker_settings(tmp_path: Path) -> Settings:
    """What an API-mode worker has: the worker token, and no database or queue of its own."""
    return Settings(
        home=tmp_path / "worker",
        db_url="sqlite:///unused",
        queue_url="memory://",
        concurrency=2,
        kill_grace_secs=1.0,
        worker_token=WORKER_TOKEN,
    )


class Running:
    """A `Worker` over the API, serving in a thread until `stop`."""

    def __init__(self, api: Api, tmp_path: Path) -> None:
        self.worker, self.client = connect_worker(worker_settings(tmp_path), api.url)
        self.stop_event = threading.Event()
        self.client.release_on(self.stop_event)
        self.thread = threading.Thread(target=self.worker.run, args=(self.stop_event, 5.0), daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(30)
        self.client.close()


@pytest.fixture
def scheduler(api: Api) -> Iterator[None]:
    stop = threading.Event()
    thread = threading.Thread(target=make_scheduler(api.services).run, args=(stop, 0.2), daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join(10)


CHAIN = """\
id: chain
tasks:
  - {id: one, command: 'echo one; echo oops >&2; echo greeting=hi >>"$FLOWFORGE_OUTPUT"'}
  - {id: two, command: 'echo "$FLOWFORGE_TASK_ID got $FLOWFORGE_UPSTREAM_ONE_GREETING"', depends_on: [one]}
  - {id: flaky, command: 'test "$FLOWFORGE_ATTEMPT" -ge 2', retries: 1, retry_delay_secs: 0.1, depends_on: [two]}
"""


def test_a_worker_over_the_api_runs_a_dag_to_success(api: Api, scheduler: None, tmp_path: Path) -> None:
    running = Running(api, tmp_path)
    try:
        assert running.worker.heartbeat_secs == HEARTBEAT  # the deployment's, from the API
        api.submit(CHAIN)
        run_id = api.trigger("chain")
        run = api.wait_run(run_id)
        assert run["state"] == "success", run
        logs = {
            t: api.user.get(f"/api/v1/runs/{run_id}/tasks/{t}/logs").json()["text"] for t in ("one", "two")
        }
        # Output shipped, and the outputs of `one` passed through the API to `two`.
        assert logs == {"one": "one\noops\n", "two": "two got hi\n"}
        attempts = api.task(run_id, "flaky")["attempts"]
        assert [a["state"] for a in attempts] == ["failed", "success"]
        workers = api.user.get("/api/v1/workers").json()["workers"]
        assert [(w["worker_id"], w["state"]) for w in workers] == [(running.worker.worker_id, "alive")]
    finally:
        running.stop()
    workers = api.user.get("/api/v1/workers").json()["workers"]
    assert [w["state"] for w in workers] == ["stopped"]


LONG = "id: long\ntasks:\n  - {{id: sleeper, command: 'echo $$ > {pid}; exec sleep 60'}}\n"


def _task_pid(pid_file: Path) -> int:
    return int(
        wait_until("the task to start", lambda: pid_file.exists() and pid_file.read_text().strip(), 20)
    )


def test_a_refused_renewal_kills_the_task(api: Api, tmp_path: Path) -> None:
    pid_file = tmp_path / "task.pid"
    api.submit(LONG.format(pid=pid_file))
    run_id = api.trigger("long")
    api.tick()
    running = Running(api, tmp_path)
    try:
        pid = _task_pid(pid_file)
        assert api.user.post(f"/api/v1/runs/{run_id}/cancel").status_code == 200
        # The next renewal answers 409: the worker kills the task (and its result is dropped).
        wait_until("the task to be killed", lambda: not pid_alive(pid), 15)
        wait_until("the slot to be free", lambda: not running.worker.leases.keys(), 15)
        detail = api.task(run_id, "sleeper")
        assert detail["state"] == "cancelled" and detail["attempts"][0]["state"] == "cancelled"
    finally:
        running.stop()


def test_a_worker_that_cannot_reach_the_api_for_a_lease_fences_itself(
    api: Api, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pid_file = tmp_path / "task.pid"
    api.submit(LONG.format(pid=pid_file))
    api.trigger("long")
    api.tick()
    # A second server on the same services, which the worker talks to and which then goes away.
    with ExitStack() as stack:
        url = stack.enter_context(serving(create_app(api.services, api_token=USER_TOKEN)))
        worker, client = connect_worker(worker_settings(tmp_path), url)
        stop = threading.Event()
        thread = threading.Thread(target=worker.run, args=(stop, 1.0), daemon=True)
        thread.start()
        pid = _task_pid(pid_file)
        assert worker.lease_secs == 3 * HEARTBEAT
        api.services.stopping.set()  # as `flowforge api` on SIGTERM: waiting claims end at once
        stack.close()  # the API is gone
        wait_until("the worker to fence itself", lambda: not pid_alive(pid), 20)
        assert "fencing myself, killing 1 task(s)" in caplog.text
        stop.set()
        thread.join(30)
        client.close()


# -- the command --------------------------------------------------------------------------------
def test_the_worker_command_says_what_is_missing_or_wrong(services: Services, tmp_path: Path) -> None:
    env = clean_env(FLOWFORGE_HOME=str(tmp_path))
    nobody = f"http://127.0.0.1:{free_port()}"
    proc = run_flowforge("worker", "--api-url", nobody, env=env)
    assert proc.returncode == 2 and "FLOWFORGE_WORKER_TOKEN" in proc.stderr, proc.stderr
    proc = run_flowforge(
        "worker", "--api-url", "ftp://example.com", env={**env, "FLOWFORGE_WORKER_TOKEN": "x" * 20}
    )
    assert proc.returncode == 2 and "base URL" in proc.stderr, proc.stderr
    proc = run_flowforge("worker", "--token-file", str(tmp_path / "t"), env=env)
    assert proc.returncode == 2 and "--api-url" in proc.stderr, proc.stderr
    token_file = tmp_path / "worker-token"
    token_file.write_text(WORKER_TOKEN + "\n")
    proc = run_flowforge("worker", "--api-url", nobody, "--token-file", str(token_file), env=env)
    assert proc.returncode == 3 and nobody in proc.stderr, proc.stderr
    with serving(create_app(services, api_token=USER_TOKEN, worker_token=WORKER_TOKEN)) as url:
        wrong = {**env, "FLOWFORGE_WORKER_TOKEN": USER_TOKEN}
        proc = run_flowforge("worker", "--api-url", url, env=wrong)
        assert proc.returncode == 2 and "refused" in proc.stderr and "execution API" in proc.stderr, (
            proc.stderr
        )
    for out in (proc.stdout, proc.stderr):
        assert "Traceback" not in out and WORKER_TOKEN not in out
    assert os.environ.get("FLOWFORGE_WORKER_TOKEN") is None
