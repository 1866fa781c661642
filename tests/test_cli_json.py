"""Every `--json` output is what docs/CLI.md says it is: the real CLI against a real server, its
output checked against the API model `flowforge.cli.jsonshapes` names (which the reference shows)."""

from __future__ import annotations

import json
import time
from typing import Any

from flowforge.api import models
from flowforge.cli.application import COMMAND_MODULES
from flowforge.cli.jsonshapes import SHAPES
from flowforge.cli.reference import reference
from flowforge.core.model import TaskState
from tests.cli_support import LiveApi, start_task

SCHEDULED = """\
id: nightly
schedule: "@daily"
tasks:
  - {id: extract, command: echo extract}
  - {id: load, command: echo load, depends_on: [extract]}
"""
NO_JSON = {"up", "api", "scheduler", "worker", "tui", "completion"}  # processes, a screen, a shell script


def check(api: LiveApi, command: str, *args: str) -> Any:
    """Run `flowforge COMMAND ARGS --json`; its output must be the model SHAPES names."""
    result = api.cli(command, *args, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    model = getattr(models, str(SHAPES[command][0]))
    model.model_validate(data)
    return data


def test_every_command_with_json_output_has_its_shape_in_the_reference() -> None:
    assert set(SHAPES) == set(COMMAND_MODULES) - NO_JSON
    text = reference()
    for command in SHAPES:
        section = text.split(f"## flowforge {command}\n", 1)[1].split("\n## ", 1)[0]
        assert "**`--json`**" in section, command


def test_the_json_of_each_command_is_the_answer_the_reference_names(api: LiveApi, tmp_path: Any) -> None:
    dag_file = tmp_path / "nightly.yaml"
    dag_file.write_text(SCHEDULED, encoding="utf-8")
    assert api.cli("submit", str(dag_file)).exit_code == 0
    lists = {
        "dags": check(api, "dags"),
        "workers": check(api, "workers"),
        "versions": check(api, "versions", "nightly"),
    }
    for key, page in lists.items():  # read page by page, printed as one page holding everything
        assert page["has_more"] is False and page["offset"] == 0 and page["limit"] == len(page[key]), key
    assert [d["id"] for d in lists["dags"]["dags"]] == ["nightly"] and lists["dags"]["total"] == 1
    assert lists["versions"]["latest_version"] == 1
    run_id = check(api, "trigger", "nightly")["run_id"]
    for command, args in {
        "run": [run_id],
        "runs": [],
        "status": [],
        "explain": [run_id, "load"],
        "schedule": ["nightly"],
        "pause": ["nightly"],
        "unpause": ["nightly"],
        "deactivate": ["nightly"],
        "activate": ["nightly"],
    }.items():
        check(api, command, *args)
    store, now = api.services.store, time.time()
    start_task(api, run_id, "extract")
    store.append_log(run_id, "extract", 1, "extracted\n")
    lines = api.cli("logs", run_id, "extract", "--json").stdout.splitlines()
    pages = [models.LogPage.model_validate(json.loads(line)) for line in lines]
    assert "".join(p.text for p in pages) == "extracted\n"
    store.finish_task(run_id, "extract", 1, "w1", state=TaskState.FAILED, now=now, exit_code=7, error="boom")
    check(api, "retry", run_id)
    check(api, "cancel", run_id)
