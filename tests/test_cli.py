"""The CLI: offline validation, and the client commands against a real API server on a free port."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from flowforge.api import create_app
from flowforge.cli import app, helptext
from flowforge.core.model import RunState, TaskState
from flowforge.services import Services
from tests.cli_support import (
    BAD,
    CLEAN_ENV,
    GOOD,
    LiveApi,
    served,
    serving,
    start_task,
    wait_more,
)
from tests.harness import free_port


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner(env=CLEAN_ENV)


@pytest.fixture
def good_file(tmp_path: Path) -> Path:
    path = tmp_path / "hello.yaml"
    path.write_text(GOOD)
    return path


@pytest.fixture
def bad_file(tmp_path: Path) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(BAD)
    return path


@pytest.fixture
def api(services: Services, runner: CliRunner) -> Iterator[LiveApi]:
    """A real API server over real services; no scheduler, so runs stay queued unless a test moves them."""
    with serving(create_app(services, api_token="")) as url:
        try:
            yield LiveApi(url, services, runner)
        finally:
            services.stopping.set()  # open event streams end, so the server stops at once


# -- offline -------------------------------------------------------------------------------
def test_validate_good_file(runner: CliRunner, good_file: Path) -> None:
    result = runner.invoke(app, ["validate", str(good_file)])
    assert result.exit_code == 0, result.output
    assert f"ok: {good_file} (DAG hello, 2 tasks)" in result.stdout


def test_validate_bad_file_exits_2_with_locations(runner: CliRunner, good_file: Path, bad_file: Path) -> None:
    result = runner.invoke(app, ["validate", str(good_file), str(bad_file)])
    assert result.exit_code == 2
    assert re.search(
        rf"^{re.escape(str(bad_file))}:5:\d+: tasks\[0\]\.depends_on.*missing", result.stdout, re.M
    ), result.stdout
    assert "ok: " in result.stdout and "Traceback" not in result.output


def test_validate_missing_file_exits_2(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(app, ["validate", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2 and "cannot read the file" in result.stdout


def test_validate_json(runner: CliRunner, good_file: Path, bad_file: Path) -> None:
    result = runner.invoke(app, ["--json", "validate", str(good_file), str(bad_file)])
    assert result.exit_code == 2
    good, bad = json.loads(result.stdout)
    assert good == {"file": str(good_file), "valid": True, "dag_id": "hello", "tasks": 2, "problems": []}
    assert bad["valid"] is False and bad["problems"][0]["line"] == 5


def test_unreachable_api_exits_3_with_the_url(runner: CliRunner) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    result = runner.invoke(app, ["--api-url", url, "dags"])
    assert result.exit_code == 3
    assert result.stderr.startswith(f"error: cannot reach the FlowForge API at {url} (")
    assert result.stderr.rstrip().endswith("Is 'flowforge up' running?")
    assert result.stderr.count("\n") == 1 and result.stdout == ""


def test_up_refuses_a_public_address_without_a_token(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(app, ["up", "--host", "0.0.0.0", "--home", str(tmp_path)])
    assert result.exit_code == 2 and "FLOWFORGE_API_TOKEN" in result.stderr and "--insecure" in result.stderr
    assert not (tmp_path / "flowforge.db").exists()  # refused before opening anything


def test_token_is_sent(services: Services, runner: CliRunner) -> None:
    with serving(create_app(services, api_token="s3cret")) as url:
        refused = runner.invoke(app, ["--api-url", url, "dags"])
        assert refused.exit_code == 2 and "token" in refused.stderr
        assert runner.invoke(app, ["--api-url", url, "--token", "s3cret", "dags"]).exit_code == 0
        env_token = runner.invoke(app, ["--api-url", url, "dags"], env={"FLOWFORGE_API_TOKEN": "s3cret"})
        assert env_token.exit_code == 0


def test_the_app_loads_without_the_client_or_rich() -> None:
    # `flowforge --version` and `--help` start fast: httpx, the API models and Rich load when a command needs them.
    heavy = "{'httpx', 'rich', 'pydantic', 'flowforge.client', 'flowforge.api'}"
    code = f"import sys, flowforge.cli.application; print(sorted({heavy} & set(sys.modules)))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"
    # `flowforge --version` and `--help` are answered before Typer is imported at all.
    code = "import sys, flowforge.cli; sys.argv[1:] = ['--help']; flowforge.cli.main(); print(sorted(m for m in sys.modules if m.startswith(('typer', 'click'))))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.rstrip().endswith("[]") and "Usage: flowforge [OPTIONS] COMMAND" in out


def test_a_command_line_loads_only_its_command_and_no_pydantic() -> None:
    # A client command loads its own module, the HTTP client and no validation library: a CI job
    # calls the CLI hundreds of times. (Against no server: the modules load all the same.)
    code = (
        "import sys, flowforge.cli; sys.argv[1:] = ['--api-url', 'http://127.0.0.1:9', 'runs', '--json']\n"
        "try: flowforge.cli.main()\nexcept SystemExit: pass\n"
        "print(sorted(m for m in sys.modules if m.startswith(('flowforge.cli.', 'pydantic', 'httpx', 'fastapi'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = set(ast.literal_eval(out.strip().splitlines()[-1]))
    assert "flowforge.cli.commands" in loaded
    assert not loaded & {
        "flowforge.cli.server",
        "flowforge.cli.localrun",
        "flowforge.cli.sync",
        "pydantic",
        "httpx",
    }


def test_each_command_is_registered_by_the_module_the_table_names() -> None:
    import importlib

    import typer

    from flowforge.cli.application import COMMAND_MODULES

    registered = {}
    for module in dict.fromkeys(COMMAND_MODULES.values()):
        one = typer.Typer()
        importlib.import_module(f"flowforge.cli.{module}").register(one)
        registered.update({i.name or i.callback.__name__: module for i in one.registered_commands})
    assert registered == COMMAND_MODULES
    assert list(COMMAND_MODULES) == [name for name, _ in helptext.COMMANDS]


def test_help_lists_every_command(runner: CliRunner) -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for name in (
        "up",
        "submit",
        "validate",
        "trigger",
        "dags",
        "runs",
        "run",
        "logs",
        "status",
        "workers",
        "pause",
        "unpause",
    ):
        assert re.search(rf"^\W*{name}\s+\S", result.stdout, re.M), name


# -- against a real server -------------------------------------------------------------------
def test_submit_and_dags(api: LiveApi, good_file: Path) -> None:
    first = api.cli("submit", "-f", str(good_file))
    assert first.exit_code == 0, first.output
    assert first.stdout.strip() == f"submitted DAG hello from {good_file}: version 1 (new DAG)"
    again = api.cli("submit", str(good_file))
    assert again.stdout.strip() == f"submitted DAG hello from {good_file}: version 1 (unchanged)"
    good_file.write_text(GOOD.replace("echo bye", "echo goodbye"))
    assert "version 2 (changed: new version)" in api.cli("submit", "-f", str(good_file)).stdout
    table = api.cli("dags")
    assert table.exit_code == 0 and "hello" in table.stdout
    [dag] = api.cli_json("dags")["dags"]
    assert (dag["id"], dag["version"], dag["task_count"]) == ("hello", 2, 2)


def test_submit_invalid_file_is_caught_locally(api: LiveApi, bad_file: Path) -> None:
    result = api.cli("submit", "-f", str(bad_file))
    assert result.exit_code == 2 and f"{bad_file}:5:" in result.stderr
    assert api.services.store.list_dags(include_inactive=True) == []


def test_trigger_runs_run(api: LiveApi, good_file: Path) -> None:
    api.cli("submit", "-f", str(good_file))
    result = api.cli("trigger", "hello", "--param", "who=you")
    assert result.exit_code == 0, result.output
    run_id = result.stdout.strip()
    run = api.services.store.get_run(run_id)
    assert (run.state, run.triggered_by, run.params) == (RunState.QUEUED, "cli", {"who": "you"})
    assert run_id in api.cli("runs").stdout
    page = api.cli_json("runs", "--dag", "hello", "--state", "queued", "--limit", "5")
    assert [r["run_id"] for r in page["runs"]] == [run_id] and page["limit"] == 5
    assert api.cli_json("runs", "--state", "success")["runs"] == []
    shown = api.cli("run", run_id)
    assert shown.exit_code == 0 and "greet" in shown.stdout and "pending" in shown.stdout
    detail = api.cli_json("run", run_id)
    assert [t["task_id"] for t in detail["tasks"]] == ["greet", "bye"]
    assert api.cli_json("trigger", "hello")["state"] == "queued"


def test_trigger_bad_input_exits_2(api: LiveApi, good_file: Path) -> None:
    api.cli("submit", "-f", str(good_file))
    unknown = api.cli("trigger", "ghost")
    assert unknown.exit_code == 2 and "ghost" in unknown.stderr and "Traceback" not in unknown.output
    undeclared = api.cli("trigger", "hello", "-p", "colour=red")
    assert undeclared.exit_code == 2 and "colour" in undeclared.stderr
    malformed = api.cli("trigger", "hello", "-p", "nonsense")
    assert malformed.exit_code == 2 and "KEY=VALUE" in malformed.output
    assert api.cli("run", "no-such-run").exit_code == 2


def test_logs(api: LiveApi, good_file: Path) -> None:
    api.cli("submit", "-f", str(good_file))
    run_id = api.cli("trigger", "hello").stdout.strip()
    start_task(api, run_id, "greet")
    api.services.store.append_log(run_id, "greet", 1, "hello you\n<b>raw</b> [red]text[/red]\n")
    result = api.cli("logs", run_id, "greet")
    assert result.exit_code == 0 and result.stdout == "hello you\n<b>raw</b> [red]text[/red]\n"
    chunks = [json.loads(line) for line in api.cli("--json", "logs", run_id, "greet").stdout.splitlines()]
    assert chunks[0]["text"].startswith("hello you") and chunks[0]["attempt"] == 1
    assert api.cli("logs", run_id, "greet", "--attempt", "2").exit_code == 2
    # --follow polls until the attempt is done: finish it from another thread while the CLI follows.
    store = api.services.store

    def finish_later() -> None:
        reads = served(store, "read_log")
        wait_more(reads, "the log")  # it follows now
        store.append_log(run_id, "greet", 1, "late line\n")
        wait_more(reads, "the log")
        store.finish_task(run_id, "greet", 1, "w1", state=TaskState.SUCCESS, now=time.time(), exit_code=0)

    threading.Thread(target=finish_later).start()
    followed = api.cli("logs", run_id, "greet", "--follow")
    assert followed.exit_code == 0 and followed.stdout.endswith("[red]text[/red]\nlate line\n")


def test_pause_unpause_status_workers(api: LiveApi, good_file: Path) -> None:
    api.cli("submit", "-f", str(good_file))
    assert api.cli("pause", "hello").stdout.strip() == "DAG hello paused"
    assert api.cli_json("dags")["dags"][0]["paused"] is True
    assert api.cli("unpause", "hello").stdout.strip() == "DAG hello unpaused"
    assert api.cli_json("unpause", "hello")["paused"] is False
    assert api.cli("pause", "ghost").exit_code == 2
    status = api.cli("status")
    assert status.exit_code == 0 and "Queue depth" in status.stdout
    assert "not ready; scheduler: no leader" in " ".join(status.stdout.split()), "no scheduler runs here"
    assert api.cli_json("status")["dags"]["active"] == 1
    assert api.cli("workers").exit_code == 0
    assert api.cli_json("workers") == {"workers": [], "total": 0, "limit": 0, "offset": 0, "has_more": False}


def _play_run(api: LiveApi, outcome: TaskState) -> Callable[[], None]:
    """Act as scheduler and worker for the next run of `hello`: greet ends with `outcome`."""
    store = api.services.store

    def play() -> None:
        deadline = time.monotonic() + 10
        while not (runs := store.list_runs(dag_id="hello")) and time.monotonic() < deadline:
            time.sleep(0.02)
        run_id = runs[0].run_id
        store.set_run_state(run_id, [RunState.QUEUED], RunState.RUNNING, time.time())
        start_task(api, run_id, "greet")
        fetches = served(store, "run_view")
        store.append_log(run_id, "greet", 1, "".join(f"line {i}\n" for i in range(30)))
        wait_more(fetches, "the running run")  # it draws a frame of it
        store.finish_task(
            run_id,
            "greet",
            1,
            "w1",
            state=outcome,
            now=time.time(),
            exit_code=0 if outcome == TaskState.SUCCESS else 7,
            error=None if outcome == TaskState.SUCCESS else "exit code 7",
        )
        if outcome == TaskState.SUCCESS:
            start_task(api, run_id, "bye")
            store.finish_task(run_id, "bye", 1, "w1", state=TaskState.SUCCESS, now=time.time(), exit_code=0)
        else:
            store.set_task_states(
                run_id, [("bye", 0)], [TaskState.PENDING], TaskState.UPSTREAM_FAILED, time.time()
            )
        final = RunState.SUCCESS if outcome == TaskState.SUCCESS else RunState.FAILED
        store.set_run_state(run_id, [RunState.RUNNING], final, time.time())

    return play


@pytest.mark.parametrize(("outcome", "code"), [(TaskState.SUCCESS, 0), (TaskState.FAILED, 1)])
def test_trigger_wait_exits_with_the_run_result(
    api: LiveApi, good_file: Path, outcome: TaskState, code: int
) -> None:
    api.cli("submit", "-f", str(good_file))
    player = threading.Thread(target=_play_run(api, outcome))
    player.start()
    result = api.cli("trigger", "hello", "--wait")
    player.join()
    assert result.exit_code == code, result.output
    run_id = result.stdout.splitlines()[0]
    assert f"run {run_id} {'success' if code == 0 else 'failed'} in" in result.stdout
    if code:
        assert "Failed tasks" in result.stdout and "exit code 7" in result.stdout
        assert "line 29" in result.stdout and "line 9\n" not in result.stdout  # only the tail of the log
    assert "greet" in result.stderr  # the live progress went to stderr


def test_trigger_wait_json(api: LiveApi, good_file: Path) -> None:
    api.cli("submit", "-f", str(good_file))
    player = threading.Thread(target=_play_run(api, TaskState.FAILED))
    player.start()
    result = api.cli("--json", "trigger", "hello", "--wait")
    player.join()
    assert result.exit_code == 1
    final = json.loads(result.stdout)
    assert final["state"] == "failed" and [t["state"] for t in final["tasks"]] == [
        "failed",
        "upstream_failed",
    ]


def test_the_client_models_give_back_the_json_the_api_sent(api: LiveApi, good_file: Path) -> None:
    """`--json` prints `model_dump(mode="json")`: it must be what the API sent, key for key, in order."""
    from flowforge.client import ApiClient

    raw = httpx.Client(base_url=api.url)
    run_id = ApiClient(api.url).trigger(ApiClient(api.url).submit_dag(GOOD).id).run_id
    start_task(api, run_id, "greet")
    api.services.store.append_log(run_id, "greet", 1, "hi\n")

    def same(model: Any, path: str, method: str = "GET", **kwargs: Any) -> None:
        sent = raw.request(method, path, **kwargs).text
        assert json.dumps(model.model_dump(mode="json")) == json.dumps(json.loads(sent)), path

    with ApiClient(api.url) as client, raw:
        same(client.status(), "/api/v1/status")
        same(client.get_dag("hello"), "/api/v1/dags/hello")
        same(client.list_runs(limit=5), "/api/v1/runs", params={"limit": 5, "offset": 0})
        same(client.get_run(run_id), f"/api/v1/runs/{run_id}")
        same(client.get_task(run_id, "greet"), f"/api/v1/runs/{run_id}/tasks/greet")
        same(client.logs(run_id, "greet"), f"/api/v1/runs/{run_id}/tasks/greet/logs", params={"after": 0})
        [dag] = client.list_dags()
        assert json.dumps(dag.model_dump(mode="json")) == json.dumps(
            raw.get("/api/v1/dags").json()["dags"][0]
        )
