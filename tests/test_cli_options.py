"""Global options before or after the command, errors as JSON for scripts, and `--help` as people read it."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer.main
from typer.testing import CliRunner

from flowforge.api import create_app
from flowforge.cli import app, helptext
from flowforge.cli.group import first_line
from flowforge.services import Services
from flowforge.settings import DEFAULT_API_URL
from tests.cli_support import CLEAN_ENV, GOOD, LiveApi, serving
from tests.harness import clean_env, free_port, run_flowforge

SERVER_COMMANDS = {"up", "api", "scheduler", "worker"}
LOCAL_COMMANDS = {"completion"}  # talks to no API (its completions do, with the environment's URL)


def commands() -> dict[str, object]:
    group = typer.main.get_command(app)
    return dict(group.commands)  # type: ignore[attr-defined]


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner(env=CLEAN_ENV)


@pytest.fixture
def api(services: Services, runner: CliRunner) -> Iterator[LiveApi]:
    with serving(create_app(services, api_token="")) as url:
        try:
            yield LiveApi(url, services, runner)
        finally:
            services.stopping.set()


def test_json_api_url_token_and_utc_work_after_the_command(services: Services, runner: CliRunner) -> None:
    with serving(create_app(services, api_token="s3cret")) as url:
        before = runner.invoke(app, ["--api-url", url, "--token", "s3cret", "--json", "dags"])
        after = runner.invoke(app, ["dags", "--api-url", url, "--token", "s3cret", "--json"])
        assert before.exit_code == after.exit_code == 0, after.output
        empty = {"dags": [], "total": 0, "limit": 0, "offset": 0, "has_more": False}
        assert json.loads(after.stdout) == json.loads(before.stdout) == empty
        # Given after the command, they win over those given before it (and over the environment).
        env = {"FLOWFORGE_API_URL": f"http://127.0.0.1:{free_port()}"}
        won = runner.invoke(app, ["--token", "wrong", "runs", "--api-url", url, "--token", "s3cret"], env=env)
        assert won.exit_code == 0, won.output
        assert runner.invoke(app, ["status", "--api-url", url, "--utc", "--token", "s3cret"]).exit_code == 0


def test_every_client_command_takes_the_global_options(runner: CliRunner, tmp_path: Path) -> None:
    dag_file = tmp_path / "hello.yaml"
    dag_file.write_text(GOOD)
    args = {**ARGS, "validate": [str(dag_file)], "submit": [str(dag_file)], "sync": [str(tmp_path)]}
    args["test"] = [str(dag_file)]
    for name in set(commands()) - SERVER_COMMANDS - LOCAL_COMMANDS:
        shown = runner.invoke(app, [name, "--help"])
        assert shown.exit_code == 0, name
        for flag in ("--json", "--api-url URL", "--token TOKEN", "--utc"):
            assert re.search(rf"^  {flag}\s", shown.stdout, re.M), (name, flag)
        if name == "tui":
            continue  # it would open the dashboard
        # Accepted after the command: the API they point at (where nothing listens) is what fails.
        url = f"http://127.0.0.1:{free_port()}"
        result = runner.invoke(
            app, [name, *args.get(name, []), "--json", "--api-url", url, "--utc", "--token", "t"]
        )
        expected = 0 if name in ("validate", "test") else 3  # both work offline
        assert result.exit_code == expected, (name, result.output)
        if expected:
            assert json.loads(result.stderr)["error"]["code"] == "unreachable", name


ARGS = {
    "trigger": ["hello"],
    "backfill": ["hello", "--start", "2026-01-01", "--end", "2026-01-02"],
    "pause": ["hello"],
    "unpause": ["hello"],
    "explain": ["some-run", "some-task"],
    **{name: ["hello"] for name in ("activate", "deactivate")},
    **{name: ["hello"] for name in ("schedule", "versions", "diff")},
    **{name: ["some-run"] for name in ("cancel", "retry", "wait", "run", "logs")},
    "prune": ["--older-than", "30d"],
}


def test_errors_are_json_on_stderr_with_json(api: LiveApi, runner: CliRunner) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    unreachable = runner.invoke(app, ["runs", "--json", "--api-url", nowhere])
    assert unreachable.exit_code == 3 and unreachable.stdout == ""
    error = json.loads(unreachable.stderr)["error"]
    assert (error["code"], error["exit_code"]) == ("unreachable", 3) and nowhere in error["message"]
    assert error["exit_meaning"] == "the API could not be reached"
    missing = api.cli("run", "no-such-run", "--json")
    assert missing.exit_code == 2
    assert json.loads(missing.stderr)["error"] == {
        "code": "not_found",
        "message": "no run 'no-such-run'",
        "exit_code": 2,
        "exit_meaning": helptext.EXIT_MEANINGS[2],
    }
    usage = api.cli("runs", "--limit", "zero", "--json")
    assert usage.exit_code == 2 and json.loads(usage.stderr)["error"]["code"] == "usage"
    unknown_option = api.cli("--json", "runs", "--jsn")
    assert json.loads(unknown_option.stderr)["error"]["message"].startswith("No such option: --jsn")
    plain = api.cli("runs", "--jsn")
    assert plain.exit_code == 2 and plain.stderr.startswith("Usage: flowforge runs [OPTIONS]\n")
    assert "Error: No such option: --jsn" in plain.stderr


def test_every_help_reads_plainly(runner: CliRunner) -> None:
    for name, command in commands().items():
        shown = runner.invoke(app, [name, "--help"], env={"COLUMNS": "80"})
        assert shown.exit_code == 0, name
        text = shown.stdout
        for artefact in ("<bool>", "<str>", "<int", "{", "[[", "╭", "│"):
            assert artefact not in text, (name, artefact, text)
        usage = text.splitlines()[0]
        assert usage.startswith(f"Usage: flowforge {name} [OPTIONS]"), usage
        assert max(len(line) for line in text.splitlines()) <= 80, name
        for param in command.params:  # type: ignore[attr-defined]
            if param.param_type_name == "option":
                assert param.opts[0] in text, (name, param.opts[0])
            else:
                assert (param.metavar or param.name.upper()).strip("[]") in usage, (name, param.name)


def test_help_names_the_exit_codes_and_matches_the_fast_path(runner: CliRunner) -> None:
    slow = runner.invoke(app, ["--help"], env={"COLUMNS": "90"})
    assert slow.exit_code == 0
    fast = run_flowforge("--help", env=clean_env(COLUMNS="90"))
    assert fast.returncode == 0 and fast.stdout == slow.stdout
    for code, meaning in helptext.EXIT_MEANINGS.items():
        assert re.search(rf"^  {code}\s+{re.escape(meaning[:20])}", slow.stdout, re.M), code
    assert run_flowforge("--version").stdout == runner.invoke(app, ["--version"]).stdout


def test_the_fast_help_lists_the_registered_commands() -> None:
    registered = [(name, first_line(c.help)) for name, c in commands().items()]  # type: ignore[attr-defined]
    assert list(helptext.COMMANDS) == registered, "update flowforge/cli/helptext.py COMMANDS"
    assert helptext.DEFAULT_API_URL == DEFAULT_API_URL
