"""`validate` and `submit` with many files and folders: each file reported, all submitted or none."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flowforge.cli import app
from tests.cli_support import BAD, CLEAN_ENV, GOOD, LiveApi


def dag(name: str, tasks: int = 1) -> str:
    lines = [f"id: {name}", "tasks:"]
    lines += [f"  - {{id: t{i}, command: 'echo {i}'}}" for i in range(tasks)]
    return "\n".join(lines) + "\n"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A folder of DAG files as a repository keeps them, with files that are not DAGs beside them."""
    dags = tmp_path / "dags"
    (dags / "nested").mkdir(parents=True)
    (dags / "a.yaml").write_text(dag("alpha", 2))
    (dags / "b.yml").write_text(dag("beta"))
    (dags / "README.md").write_text("not a DAG\n")
    (dags / ".draft.yaml").write_text("id: [unfinished\n")  # an editor's hidden file
    (dags / "nested" / "c.yaml").write_text(dag("gamma"))  # only the folder itself is read
    return dags


def stored(api: LiveApi) -> list[str]:
    return sorted(d.dag_id for d in api.services.store.list_dags(include_inactive=True))


def test_every_f_option_is_submitted_not_only_the_last(api: LiveApi, tmp_path: Path) -> None:
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text(dag("alpha"))
    b.write_text(dag("beta"))
    result = api.cli("submit", "-f", str(a), "-f", str(b))
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        f"submitted DAG alpha from {a}: version 1 (new DAG)",
        f"submitted DAG beta from {b}: version 1 (new DAG)",
    ]
    assert stored(api) == ["alpha", "beta"]


def test_a_folder_stands_for_its_yaml_files(api: LiveApi, folder: Path) -> None:
    checked = api.cli("validate", str(folder))
    assert checked.exit_code == 0, checked.output
    assert checked.stdout.splitlines() == [
        f"ok: {folder / 'a.yaml'} (DAG alpha, 2 tasks)",
        f"ok: {folder / 'b.yml'} (DAG beta, 1 tasks)",
    ]
    submitted = api.cli("submit", str(folder))
    assert submitted.exit_code == 0, submitted.output
    assert stored(api) == ["alpha", "beta"]
    [one, two] = api.cli_json("submit", str(folder))  # again: unchanged, reported per file
    assert (one["file"], one["submitted"]["id"], one["submitted"]["changed"]) == (
        str(folder / "a.yaml"),
        "alpha",
        False,
    )
    assert two["submitted"]["version"] == 1


def test_one_invalid_file_submits_none_and_exits_2(api: LiveApi, folder: Path) -> None:
    bad = folder / "bad.yaml"
    bad.write_text(BAD)
    result = api.cli("submit", str(folder))
    assert result.exit_code == 2
    assert f"{bad}:5:" in result.stderr and "nothing submitted: 1 of 3 file(s) invalid" in result.stderr
    assert result.stdout == "" and stored(api) == []
    as_json = api.cli("--json", "submit", str(folder))
    assert as_json.exit_code == 2
    results = json.loads(as_json.stdout)
    assert [(r["valid"], r["submitted"]) for r in results] == [(True, None), (True, None), (False, None)]
    error = json.loads(as_json.stderr)["error"]
    assert (error["code"], error["exit_code"]) == ("invalid_dag", 2) and stored(api) == []


def test_validate_reports_each_file_and_the_same_id_twice(tmp_path: Path) -> None:
    runner = CliRunner(env=CLEAN_ENV)
    good, bad, twin = tmp_path / "good.yaml", tmp_path / "bad.yaml", tmp_path / "twin.yaml"
    good.write_text(GOOD)
    bad.write_text(BAD)
    twin.write_text(GOOD.replace("echo bye", "echo ciao"))
    result = runner.invoke(app, ["validate", str(good), str(bad), str(twin), str(tmp_path / "gone.yaml")])
    assert result.exit_code == 2
    lines = result.stdout.splitlines()
    assert lines[0] == f"ok: {good} (DAG hello, 2 tasks)"
    assert lines[1].startswith(f"{bad}:5:")
    assert lines[2] == f"{twin}: id: DAG id 'hello' is also declared by {good}"
    assert lines[3].startswith(f"{tmp_path / 'gone.yaml'}: cannot read the file")
    assert result.stderr == "error: 3 of 4 file(s) invalid\n"


def test_an_empty_folder_or_no_path_is_bad_input(tmp_path: Path) -> None:
    runner = CliRunner(env=CLEAN_ENV)
    empty = tmp_path / "empty"
    empty.mkdir()
    result = runner.invoke(app, ["validate", str(empty)])
    assert result.exit_code == 2 and f"{empty}: no *.yaml or *.yml file in this folder" in result.stdout
    nothing = runner.invoke(app, ["submit"])
    assert nothing.exit_code == 2 and "name at least one DAG file or folder" in nothing.stderr


def test_the_same_file_named_twice_is_read_once(api: LiveApi, folder: Path) -> None:
    result = api.cli("submit", str(folder), "-f", str(folder / "a.yaml"))
    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) == 2
