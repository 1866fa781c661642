"""The execution API and API-mode workers: a worker going away while it waits, a busy worker's round trips.

A worker killed (or cut off) while its slots long-poll `POST /claim` leaves claims waiting in
the API. A task handed to one of them would be claimed for a worker that is no more and wait a
whole lease before it is given up and run again; the API must notice the closed connection
and hand the task to a worker that is there.

A busy worker takes its next task with its last result (`POST /finish?claim=`), reads a run and
its DAG once however many slots start its tasks together, and does not take a lease whose task
ended here for one it lost.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from typing import Any

import httpx
import pytest

from flowforge.api import routes_worker
from flowforge.core.model import TaskState
from flowforge.engine.remote import ExecutionClient
from tests.harness import wait_until
from tests.test_worker_api import ONE, WORKER_TOKEN, Api, _waiting
from tests.test_worker_api import api as api  # the fixture: a served API, SQLite and PostgreSQL


def open_claim(url: str, worker_id: str, wait: float) -> socket.socket:
    """Send a long-polled claim on a raw connection (not read): closing it is a worker going away."""
    host, port = url.removeprefix("http://").split(":")
    body = json.dumps({"worker_id": worker_id, "lease_secs": 30}).encode()
    head = (
        f"POST /api/v1/worker/claim?wait={wait} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Authorization: Bearer {WORKER_TOKEN}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    sock = socket.create_connection((host, int(port)))
    sock.sendall(head + body)
    return sock


def test_a_task_is_not_handed_to_a_worker_that_went_away(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    # A waiting claim looks at nothing else for a minute: only the closed connection can end it.
    monkeypatch.setattr(routes_worker, "STOP_CHECK_SECS", 60.0)
    api.submit(ONE)
    gone = [open_claim(api.url, "gone", wait=50) for _ in range(3)]
    wait_until("the three claims to wait", lambda: _waiting(api) == 3, 20)
    for sock in gone:
        sock.close()  # the worker is killed: its connections close
    wait_until("the API to end the claims of the worker that went away", lambda: _waiting(api) == 0, 20)
    run_id = api.trigger("one")
    api.tick()
    answers: list[httpx.Response] = []
    alive = threading.Thread(target=lambda: answers.append(api.claim("alive", wait=20)))
    alive.start()
    alive.join(30)
    assert answers and answers[0].status_code == 200, answers
    assert answers[0].json()["run_id"] == run_id
    attempts = api.task(run_id, "a")["attempts"]
    assert [(a["attempt"], a["worker_id"]) for a in attempts] == [(1, "alive")], attempts
    assert _waiting(api) == 0


# -- a busy worker's round trips -----------------------------------------------------------------
THREE = "id: three\ntasks:\n" + "".join(f"  - {{id: t{i}, command: 'true'}}\n" for i in range(3))


def finish_body(claimed: dict[str, Any]) -> dict[str, Any]:
    return {
        "run_id": claimed["run_id"],
        "task_id": claimed["task_id"],
        "attempt": claimed["attempt"],
        "worker_id": "w1",
        "lease_token": claimed["lease_token"],
        "state": "success",
        "now": time.time(),
        "exit_code": 0,
    }


def test_a_finish_claims_the_next_task_in_the_same_round_trip(api: Api) -> None:
    api.submit(THREE)
    run_id = api.trigger("three")
    api.tick()
    claimed = api.claim("w1").json()
    seen = {claimed["task_id"]}
    for _ in range(2):  # each result brings the next task, claimed for this worker
        done = api.worker.post("/api/v1/worker/finish", params={"claim": 30}, json=finish_body(claimed))
        assert done.status_code == 200, done.text
        claimed = done.json()["next"]
        assert claimed["run_id"] == run_id and claimed["task_id"] not in seen
        assert api.task(run_id, claimed["task_id"])["state"] == "running"
        assert api.task(run_id, claimed["task_id"])["worker_id"] == "w1"
        seen.add(claimed["task_id"])
    last = api.worker.post("/api/v1/worker/finish", params={"claim": 30}, json=finish_body(claimed))
    assert last.status_code == 200 and last.json() == {"recorded": True, "next": None}  # none left
    api.tick()  # the scheduler sees every task done: the run ends
    assert api.wait_run(run_id)["state"] == "success"
    bad = api.worker.post("/api/v1/worker/finish", params={"claim": 0}, json=finish_body(claimed))
    assert bad.status_code == 422 and "claim" in bad.text


def test_an_api_mode_worker_takes_its_next_task_with_its_last_result(api: Api) -> None:
    api.submit(THREE)
    run_id = api.trigger("three")
    api.tick()
    client = ExecutionClient(api.url, WORKER_TOKEN, worker_id="w1", slots=1)
    try:
        msg = client.get(1.0)
        assert msg is not None
        for i in range(3):
            ti = client.claim_task(msg.run_id, msg.task_id, msg.attempt, "w1", time.time())
            assert ti is not None and ti.lease_token is not None
            lease = (ti.run_id, ti.task_id, ti.attempt, ti.lease_token)
            recorded = client.finish_task(
                *lease[:3], "w1", state=TaskState.SUCCESS, now=time.time(), exit_code=0, lease_token=lease[3]
            )
            assert recorded
            # A renewal listed before the result was recorded: the lease is gone, but its task ended
            # here, so it is not reported lost (the worker would log that it stops a finished task).
            assert client.renew_leases("w1", [lease], time.time(), 30) == []
            client.ack(msg)
            if i < 2:
                following = client.get(1.0)  # handed with the result
                assert following is not None and following.task_id != msg.task_id
                msg = following
        api.tick()  # the scheduler sees every task done: the run ends
        assert api.wait_run(run_id)["state"] == "success"
        assert requests_by_route(api)["/api/v1/worker/claim"] == 1  # the first task's; not one per task
    finally:
        client.close()


def test_slots_starting_tasks_of_one_run_at_once_read_the_run_and_its_dag_once(api: Api) -> None:
    api.submit(THREE)
    run_id = api.trigger("three")
    client = ExecutionClient(api.url, WORKER_TOKEN, worker_id="w1", slots=4)
    try:
        barrier = threading.Barrier(4)

        def start() -> None:
            barrier.wait()
            client.get_dag_spec("three", client.get_run(run_id).dag_version)

        slots = [threading.Thread(target=start) for _ in range(4)]
        for t in slots:
            t.start()
        for t in slots:
            t.join(30)
    finally:
        client.close()
    reads = requests_by_route(api)
    assert reads["/api/v1/worker/runs/{run_id}"] == 1
    assert reads["/api/v1/worker/dags/{dag_id}/versions/{version}"] == 1


def requests_by_route(api: Api) -> dict[str, float]:
    """Requests the API answered so far, by route template (its metrics)."""
    counts: dict[str, float] = {}
    for family in api.app.state.metrics_registry.collect():
        if family.name == "flowforge_api_requests":
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    route = sample.labels["route"]
                    counts[route] = counts.get(route, 0) + sample.value
    return counts
