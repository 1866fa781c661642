"""Why a task is in its state: `operations_explain.explain_task` on a real store (every backend),
the API route through the app, and `flowforge explain` against a real server.

The states are made the way the scheduler and workers make them: the real scheduler ticks, and
the store's own calls claim and finish attempts and record heartbeats.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from flowforge import operations as ops
from flowforge.api import create_app
from flowforge.core.model import TaskState
from flowforge.core.records import WorkerInfo
from flowforge.operations_explain import Explanation, explain_task
from flowforge.services import Services
from flowforge.store import Store
from flowforge.store.base import LEADER_LEASE
from tests.cli_support import CLEAN_ENV, LiveApi, serving
from tests.test_operations import CHAIN, Engine

HEARTBEAT = 5.0
PAIR = "id: pair\n{extra}tasks:\n  - {{id: x, command: 'true'{task}}}\n  - {{id: y, command: 'true'}}\n"


@pytest.fixture
def engine(store: Store) -> Iterator[Engine]:
    e = Engine(store)
    assert store.hold_lease(LEADER_LEASE, "host-1-test", time.time(), 300.0)  # a scheduler leads
    yield e
    e.queue.close()


def explain(engine: Engine, run_id: str, task_id: str, now: float | None = None) -> Explanation:
    return explain_task(engine.store, engine.queue, run_id, task_id, heartbeat_secs=HEARTBEAT, now=now)


def codes(answer: Explanation) -> dict[str, str]:
    return {r.code: r.message for r in answer.reasons}


def beat(store: Store, worker_id: str, slots: int, running: tuple[str, ...], at: float) -> None:
    store.upsert_worker(WorkerInfo(worker_id, "host", 1, slots, at, at, running))


def claim(engine: Engine, run_id: str, task_id: str, attempt: int = 1, at: float | None = None) -> str:
    ti = engine.store.claim_task(run_id, task_id, attempt, "w1", at or time.time(), 15.0)
    assert ti is not None and ti.lease_token
    return ti.lease_token


# -- pending -------------------------------------------------------------------------------------------
def test_a_pending_task_names_the_upstream_it_waits_for_and_its_trigger_rule(engine: Engine) -> None:
    engine.submit(CHAIN)
    run_id = engine.trigger()
    engine.scheduler.tick(time.time())  # a and d queued, b waits for a
    answer = explain(engine, run_id, "b")
    assert answer.state == TaskState.PENDING
    assert codes(answer)["upstream"] == "waits for upstream: a (queued)"
    assert "trigger rule all_success can still be met" in codes(answer)["trigger_rule"]
    assert answer.summary == "b is pending: waits for upstream: a (queued)"
    assert "no_scheduler" not in codes(answer)


def test_a_trigger_rule_that_can_no_longer_be_met_says_what_the_next_tick_does(engine: Engine) -> None:
    engine.submit(CHAIN)
    run_id = engine.trigger()
    engine.scheduler.tick(time.time())
    token = claim(engine, run_id, "a")
    assert engine.store.finish_task(
        run_id, "a", 1, "w1", state=TaskState.FAILED, now=time.time(), exit_code=3, lease_token=token
    )
    answer = explain(engine, run_id, "b")
    assert codes(answer)["trigger_rule_unmet"] == (
        "trigger rule all_success can no longer be met: it becomes upstream_failed at the next scheduler tick"
    )
    assert codes(answer)["upstream_done"] == "upstream finished: a (failed)"
    engine.scheduler.tick(time.time())
    after = explain(engine, run_id, "b")
    assert after.state == TaskState.UPSTREAM_FAILED
    assert (
        "never ran: trigger rule all_success could not be met (upstream: a (failed))"
        in codes(after)["not_run"]
    )
    failed = codes(explain(engine, run_id, "a"))["ended"]
    assert "failed at " in failed and "after 1 attempt(s) of 1; exit code 3" in failed


def test_a_ready_task_held_back_by_max_active_tasks(engine: Engine) -> None:
    engine.submit(PAIR.format(extra="max_active_tasks: 1\n", task=""))
    run_id = engine.trigger("pair")
    engine.scheduler.tick(time.time())
    assert engine.states(run_id) == {"x": "queued", "y": "pending"}
    answer = explain(engine, run_id, "y")
    assert codes(answer)["max_active_tasks"] == (
        "waiting for a task slot: 1 task(s) of pair queued or running, max_active_tasks is 1"
    )
    assert answer.summary.startswith("y is pending: waiting for a task slot")


def test_a_task_of_a_queued_run_gives_the_runs_waiting_note(engine: Engine) -> None:
    engine.submit(CHAIN.replace("id: chain\n", "id: chain\nmax_active_runs: 1\n"))
    engine.trigger()
    second = engine.trigger()
    engine.scheduler.tick(time.time())
    answer = explain(engine, second, "a")
    assert codes(answer)["run_queued"] == (
        "its run is queued: waiting for a run slot: 1 run(s) of chain running, max_active_runs is 1"
    )


# -- queued --------------------------------------------------------------------------------------------
def test_a_queued_task_tells_queue_depth_and_whether_a_worker_can_take_it(engine: Engine) -> None:
    engine.submit(PAIR.format(extra="", task=""))
    run_id = engine.trigger("pair")
    engine.scheduler.tick(time.time())
    now = time.time()
    answer = explain(engine, run_id, "x", now)
    assert answer.state == TaskState.QUEUED and "queued since " in codes(answer)["queued"]
    assert codes(answer)["queue_depth"] == "2 message(s) wait in the queue to be taken"
    assert "no worker is alive" in codes(answer)["no_worker"]
    assert answer.summary.startswith("x is queued: no worker is alive")
    beat(engine.store, "w1", 1, ("other/t",), now)
    assert (
        codes(explain(engine, run_id, "x", now))["workers_busy"]
        == "all 1 slot(s) of 1 alive worker(s) are busy"
    )
    beat(engine.store, "w1", 3, ("other/t",), now)
    assert codes(explain(engine, run_id, "x", now))["workers"] == "1 worker(s) alive, 2 of 3 slot(s) free"
    # A worker silent for longer than three heartbeats does not count as alive.
    assert "no_worker" in codes(explain(engine, run_id, "x", now + 3 * HEARTBEAT + 1))


# -- up for retry --------------------------------------------------------------------------------------
def test_up_for_retry_gives_the_attempt_and_the_next_try(engine: Engine) -> None:
    engine.submit(PAIR.format(extra="", task=", retries: 2"))
    run_id = engine.trigger("pair")
    engine.scheduler.tick(time.time())
    now = time.time()
    token = claim(engine, run_id, "x", at=now)
    assert engine.store.finish_task(
        run_id,
        "x",
        1,
        "w1",
        state=TaskState.UP_FOR_RETRY,
        now=now,
        exit_code=1,
        retry_at=now + 30,
        lease_token=token,
    )
    answer = explain(engine, run_id, "x", now)
    message = codes(answer)["retry_backoff"]
    assert message.startswith("attempt 1 of 3 failed; next try at ") and message.endswith("(in 30 s)")
    assert answer.summary == f"x is up_for_retry: {message}"
    due = codes(explain(engine, run_id, "x", now + 31))
    assert due["retry_backoff"].endswith("its backoff is over") and "ready" in due


# -- running -------------------------------------------------------------------------------------------
def test_a_running_task_names_its_worker_and_lease_and_a_silent_worker(engine: Engine) -> None:
    engine.submit(PAIR.format(extra="", task=""))
    run_id = engine.trigger("pair")
    engine.scheduler.tick(time.time())
    now = time.time()
    claim(engine, run_id, "x", at=now)
    beat(engine.store, "w1", 2, (f"{run_id}/x",), now)
    answer = explain(engine, run_id, "x", now)
    assert codes(answer)["running"].startswith("running on worker w1 since ")
    assert codes(answer)["lease"].endswith("(in 15 s); the worker renews it")
    assert "worker_stale" not in codes(answer)
    late = explain(engine, run_id, "x", now + 12)
    assert codes(late)["worker_stale"] == (
        "the worker's heartbeat is 12 s old (alive): it looks dead; the lease will be reaped in about 3 s"
    )
    assert late.summary.startswith("x is running: the worker's heartbeat is 12 s old")


# -- the DAG, the scheduler, lost attempts ---------------------------------------------------------------
def test_a_paused_or_inactive_dag_and_a_missing_scheduler(engine: Engine) -> None:
    engine.submit(CHAIN)
    run_id = engine.trigger()
    ops.pause_dag(engine.store, "chain")
    assert codes(explain(engine, run_id, "a"))["dag_paused"] == (
        "DAG chain is paused: no new scheduled runs are made; this manual run carries on"
    )
    ops.deactivate_dag(engine.store, "chain")
    assert "dag_inactive" in codes(explain(engine, run_id, "a"))
    engine.store.release_lease(LEADER_LEASE, "host-1-test")
    answer = explain(engine, run_id, "a")
    assert "nobody holds the scheduler lease" in codes(answer)["no_scheduler"]
    assert answer.summary.startswith("a is pending: no scheduler is running")


def test_a_failed_task_counts_its_lost_attempts(engine: Engine) -> None:
    engine.submit(PAIR.format(extra="", task=""))
    run_id = engine.trigger("pair")
    engine.scheduler.tick(time.time())
    token = claim(engine, run_id, "x")
    assert engine.store.finish_task(  # as the reaper gives up an attempt whose worker died
        run_id,
        "x",
        1,
        "w1",
        state=TaskState.UP_FOR_RETRY,
        now=time.time(),
        retry_at=time.time(),
        lease_token=token,
        attempt_state=TaskState.LOST,
        error="lost: worker w1 died",
    )
    engine.scheduler.tick(time.time())
    token = claim(engine, run_id, "x", attempt=2)
    assert engine.store.finish_task(
        run_id,
        "x",
        2,
        "w1",
        state=TaskState.FAILED,
        now=time.time(),
        exit_code=2,
        error="boom",
        lease_token=token,
    )
    message = codes(explain(engine, run_id, "x"))["ended"]
    assert "after 2 attempt(s) of 1, 1 of them lost with their worker; exit code 2; boom" in message


# -- through the API and the CLI -------------------------------------------------------------------------
def _queued_run(services: Services) -> str:
    ops.submit_dag(services.store, services.queue, CHAIN, max_bytes=1 << 20)
    return ops.trigger_run(services.store, services.queue, "chain").run.run_id


def test_the_route_answers_the_explanation_and_404s_an_unknown_task(services: Services) -> None:
    run_id = _queued_run(services)
    with TestClient(create_app(services, api_token="")) as http:
        resp = http.get(f"/api/v1/runs/{run_id}/tasks/b/explain")
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert (body["state"], body["run_state"]) == ("pending", "queued")
        assert {r["code"] for r in body["reasons"]} >= {"run_queued", "no_scheduler"}
        assert body["summary"].startswith("b is pending: no scheduler is running")
        missing = http.get(f"/api/v1/runs/{run_id}/tasks/nope/explain")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


def test_the_cli_prints_the_summary_and_reasons_and_json(services: Services) -> None:
    run_id = _queued_run(services)
    with serving(create_app(services, api_token="")) as url:
        try:
            api = LiveApi(url, services, CliRunner(env=CLEAN_ENV))
            result = api.cli("explain", run_id, "a")
            assert result.exit_code == 0, result.output
            lines = result.stdout.splitlines()
            assert lines[0].startswith("a is pending: no scheduler is running")
            assert any(line.split()[0] == "run_queued" for line in lines[1:])
            answer = api.cli_json("explain", run_id, "a")
            assert answer["task_id"] == "a" and answer["summary"] == lines[0]
            gone = api.cli("explain", run_id, "nope")
            assert gone.exit_code != 0 and "Traceback" not in gone.output
        finally:
            services.stopping.set()
