"""`flowforge prune` against a real server: what it prints, --dry-run, --json, bad ages and tokens."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from flowforge import operations_prune
from flowforge.api import create_app
from flowforge.core.model import RunState
from flowforge.services import Services
from tests.cli_support import CLEAN_ENV, LiveApi, serving
from tests.harness import clean_env, cli
from tests.prune_support import DAY, bulk_history, ended_run, running_run, submit, table_counts


@pytest.fixture
def api(services: Services) -> Iterator[LiveApi]:
    with serving(create_app(services, api_token="full-token", api_read_token="read-token")) as url:
        try:
            yield LiveApi(url, services, CliRunner(env={**CLEAN_ENV, "FLOWFORGE_API_TOKEN": "full-token"}))
        finally:
            services.stopping.set()


@pytest.fixture
def old_runs(services: Services) -> list[str]:
    """Two runs that ended 40 days ago, one that ended yesterday, and a running one 90 days old."""
    store, now = services.store, time.time()
    submit(store, at=now - 400 * DAY)
    old = [ended_run(store, now - 40 * DAY, s) for s in (RunState.SUCCESS, RunState.FAILED)]
    ended_run(store, now - DAY)
    running_run(store, now - 90 * DAY)
    return old


def test_dry_run_then_prune_print_what_goes(api: LiveApi, old_runs: list[str]) -> None:
    before = table_counts(api.services.store)
    dry = api.cli("prune", "--older-than", "30d", "--dry-run", "--utc")
    assert dry.exit_code == 0, dry.output
    lines = dry.stdout.splitlines()
    assert lines[0].startswith("would delete what ended before ") and lines[0].endswith(
        "UTC (older than 30d):"
    )
    assert lines[1].split() == ["runs", "2"] and lines[2].split() == ["task", "instances", "4"]
    assert lines[-1] == "nothing was deleted (--dry-run)"
    assert table_counts(api.services.store) == before

    done = api.cli("prune", "--older-than", "30d")
    assert done.exit_code == 0, done.output
    assert done.stdout.startswith("deleted what ended before ") and "--dry-run" not in done.stdout
    assert done.stdout.splitlines()[1:] == lines[1:-1]  # what the dry run said would go
    after = table_counts(api.services.store)
    assert after["runs"] == before["runs"] - 2 and all(api.services.store.list_runs(limit=10))


def test_json_prints_the_answer(api: LiveApi, old_runs: list[str]) -> None:
    answer = api.cli_json("prune", "--older-than", "720h")
    assert (answer["runs"], answer["task_instances"], answer["dry_run"]) == (2, 4, False)
    assert abs(answer["cutoff"] - (time.time() - 30 * DAY)) < 60
    assert api.cli_json("prune", "--older-than", "720h")["runs"] == 0  # nothing left to delete


def test_a_bad_age_is_exit_2_naming_it(api: LiveApi, old_runs: list[str]) -> None:
    for age in ("0d", "-3d", "101y", "200000w"):
        result = api.cli("--json", "prune", "--older-than", age)
        assert result.exit_code == 2, (age, result.output)
        error = json.loads(result.stderr)["error"]
        assert error["code"] == "invalid_request" and "older_than" in error["message"], age
    missing = api.cli("prune")
    assert missing.exit_code == 2 and "--older-than" in missing.stderr
    assert table_counts(api.services.store)["runs"] == 4


def test_the_real_cli_needs_the_full_token(api: LiveApi, old_runs: list[str]) -> None:
    """The installed command in its own process, against the server: a read token is refused."""
    refused = cli(
        "prune", "--older-than", "30d", url=api.url, env=clean_env(FLOWFORGE_API_TOKEN="read-token")
    )
    assert refused.returncode == 2 and "read-only" in refused.stderr, refused.stderr
    assert table_counts(api.services.store)["runs"] == 4
    done = cli(
        "--json", "prune", "--older-than", "30d", url=api.url, env=clean_env(FLOWFORGE_API_TOKEN="full-token")
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["runs"] == 2 and table_counts(api.services.store)["runs"] == 2


def test_a_long_prune_takes_as_many_requests_as_it_needs(
    api: LiveApi, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(operations_prune, "REQUEST_BUDGET_SECS", 0.0)  # one batch per request
    bulk_history(services.store, runs=1_100, tasks=2, ended=time.time() - 40 * DAY)
    dry = api.cli_json("prune", "--older-than", "30d", "--dry-run")
    assert (dry["runs"], dry["task_instances"], dry["next"]) == (1_100, 2_200, None)
    done = api.cli("prune", "--older-than", "30d")
    assert done.exit_code == 0, done.output
    assert done.stdout.splitlines()[1].split() == ["runs", "1,100"]
    assert table_counts(services.store)["runs"] == 0
