"""End to end: a real `flowforge up` process driven by the real CLI, crashes included."""

from __future__ import annotations

import json
import signal
import time

import httpx
import pytest

from tests.harness import cli, start_up, wait_until

pytestmark = pytest.mark.e2e

CHAIN = """\
id: chain3
tasks:
  - {id: one, command: echo one}
  - {id: two, command: echo two, depends_on: [one]}
  - {id: three, command: echo three, depends_on: [two]}
"""


def task_state(url: str, run_id: str, task_id: str) -> str:
    """The state of one task of a run, as the API shows it."""
    return str(httpx.get(f"{url}/api/v1/runs/{run_id}/tasks/{task_id}").json()["state"])


def ended(url: str, run_id: str) -> dict | None:
    """The run once it has ended, else None."""
    run = httpx.get(f"{url}/api/v1/runs/{run_id}").json()
    return run if run["state"] in ("success", "failed", "cancelled") else None


@pytest.fixture
def up(tmp_path):
    proc = start_up(tmp_path / "home", "--examples", "--concurrency", "2")
    yield proc
    assert proc.stop() == 0, proc.output()


def test_examples_are_loaded_and_hello_succeeds(up):
    dags = cli("--json", "dags", url=up.url)
    assert dags.returncode == 0, dags.stderr
    ids = {d["id"] for d in json.loads(dags.stdout)["dags"]}
    assert {"hello", "etl-pipeline", "flaky-retries", "timeout-demo"} <= ids
    result = cli("trigger", "hello", "--wait", url=up.url)
    assert result.returncode == 0, result.stderr
    run_id = result.stdout.strip().splitlines()[0]
    log = cli("logs", run_id, "hello", url=up.url)
    assert log.returncode == 0 and log.stdout == "hello from FlowForge\n"
    run = json.loads(cli("--json", "run", run_id, url=up.url).stdout)
    assert run["state"] == "success"
    assert [t["state"] for t in run["tasks"]] == ["success", "success"]


def test_submit_trigger_wait_and_a_failing_run(up, tmp_path):
    dag = tmp_path / "chain3.yaml"
    dag.write_text(CHAIN)
    assert cli("submit", "-f", str(dag), url=up.url).returncode == 0
    ok = cli("trigger", "chain3", "--wait", url=up.url)
    assert ok.returncode == 0, ok.stderr
    failed = cli("trigger", "timeout-demo", "--wait", url=up.url)
    assert failed.returncode == 1
    assert "stuck" in failed.stdout + failed.stderr
    runs = json.loads(cli("--json", "runs", "--dag", "timeout-demo", url=up.url).stdout)["runs"]
    assert runs[0]["state"] == "failed"


def test_bad_input_exit_codes(up, tmp_path):
    assert cli("trigger", "no-such-dag", url=up.url).returncode == 2
    assert cli("run", "no-such-run", url=up.url).returncode == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text("id: bad\ntasks:\n  - {id: a, command: x, depends_on: [a]}\n")
    result = cli("submit", "-f", str(bad), url=up.url)
    assert result.returncode == 2 and "bad.yaml:3" in result.stderr
    listed = json.loads(cli("--json", "dags", url=up.url).stdout)["dags"]
    assert "bad" not in {d["id"] for d in listed}  # nothing half-stored


def test_chain_of_three_finishes_fast(up, tmp_path):
    """The first figure for the benchmark: trigger → run end of a 3-task echo chain."""
    dag = tmp_path / "chain3.yaml"
    dag.write_text(CHAIN)
    assert cli("submit", "-f", str(dag), url=up.url).returncode == 0
    with httpx.Client(base_url=up.url) as client:
        timings = []
        for _ in range(5):
            start = time.monotonic()
            run = client.post("/api/v1/runs", json={"dag_id": "chain3"}).json()
            assert wait_until("the chain to end", lambda r=run: ended(up.url, r["run_id"]), 30, poll=0.005)
            timings.append(time.monotonic() - start)
    print(f"\n3-task chain, trigger to success: median {sorted(timings)[2] * 1000:.0f} ms")
    detail = httpx.get(f"{up.url}/api/v1/runs/{run['run_id']}").json()
    assert [t["state"] for t in detail["tasks"]] == ["success"] * 3


def test_a_crash_mid_run_loses_nothing(tmp_path):
    """SIGKILL `flowforge up` while a run is in flight; after a restart the run finishes."""
    home = tmp_path / "home"
    first = start_up(home, "--concurrency", "2")
    dag = tmp_path / "slow.yaml"
    dag.write_text("""\
id: slow
retry_delay_secs: 0.1
tasks:
  - {id: a, command: echo a}
  - {id: b, command: "sleep 2; echo b", depends_on: [a], retries: 1}
  - {id: c, command: echo c, depends_on: [b]}
""")
    try:
        assert cli("submit", "-f", str(dag), url=first.url).returncode == 0
        run_id = cli("trigger", "slow", url=first.url).stdout.strip()
        wait_until("b to run", lambda: task_state(first.url, run_id, "b") == "running", timeout=10)
    finally:
        first.kill(signal.SIGKILL)
        first.proc.wait(5)
    second = start_up(home, "--concurrency", "2")
    try:
        result = cli("trigger", "slow", url=second.url)  # a new run works too
        assert result.returncode == 0
        waited = cli("run", run_id, url=second.url)
        run = wait_until("the run to end", lambda: ended(second.url, run_id), timeout=30)
        assert run["state"] == "success", run
        b = httpx.get(f"{second.url}/api/v1/runs/{run_id}/tasks/b").json()
        assert [a["state"] for a in b["attempts"]] == ["lost", "success"]
        assert "died" in b["attempts"][0]["error"]
        assert waited.returncode == 0
    finally:
        assert second.stop() == 0, second.output()


def test_cancel_retry_and_backfill_from_the_cli(up, tmp_path):
    flag = tmp_path / "fixed"
    dag = tmp_path / "ops.yaml"
    dag.write_text(f"""\
id: ops
schedule: "@daily"
max_active_runs: 2
tasks:
  - {{id: check, command: "test -f {flag}"}}
  - {{id: report, command: echo reported, depends_on: [check]}}
""")
    assert cli("submit", "-f", str(dag), url=up.url).returncode == 0
    failed = cli("trigger", "ops", "--wait", url=up.url)
    assert failed.returncode == 1
    run_id = failed.stdout.strip().splitlines()[0]
    flag.write_text("")
    retried = cli("retry", run_id, url=up.url)
    assert retried.returncode == 0 and "check, report" in retried.stdout
    assert (
        wait_until("the retried run to end", lambda: ended(up.url, run_id), timeout=15)["state"] == "success"
    )
    dry = cli("backfill", "ops", "--start", "2026-01-01", "--end", "2026-01-03", "--dry-run", url=up.url)
    assert dry.returncode == 0 and "would be created" in dry.stdout and "2026-01-03" in dry.stdout
    real = cli("backfill", "ops", "--start", "2026-01-01", "--end", "2026-01-03", url=up.url)
    assert real.returncode == 0, real.stderr
    runs = json.loads(cli("--json", "runs", "--dag", "ops", url=up.url).stdout)["runs"]
    backfilled = [r for r in runs if r["triggered_by"] == "backfill"]
    assert len(backfilled) == 3 and {r["state"] for r in backfilled} == {"success"}
    stuck = tmp_path / "stuck.yaml"
    stuck.write_text("id: stuck\ntasks:\n  - {id: t, command: 'sleep 60'}\n")
    assert cli("submit", "-f", str(stuck), url=up.url).returncode == 0
    run_id = cli("trigger", "stuck", url=up.url).stdout.strip()
    wait_until("the task to run", lambda: task_state(up.url, run_id, "t") == "running", timeout=15)
    cancelled = cli("cancel", run_id, url=up.url)
    assert cancelled.returncode == 0 and "cancelled" in cancelled.stdout
    assert cli("cancel", run_id, url=up.url).returncode == 2  # already over: 409
