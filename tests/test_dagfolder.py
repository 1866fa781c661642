"""A DAG folder kept in step by a real `flowforge up --dags DIR`, `flowforge sync`, `activate` and `deactivate`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.harness import FlowForgeProcess, cli, free_port, run_flowforge, start_up, wait_until


def dag(dag_id: str, *tasks: str) -> str:
    """A DAG file's text: one echo task per name."""
    body = "".join(f"  - id: {t}\n    command: echo {t}\n" for t in tasks or ("one",))
    return f"id: {dag_id}\ntasks:\n{body}"


BROKEN = "id: alpha\ntasks:\n  - id: one\n    command: echo one\n    retries: many\n"  # line 5, column 14


def get(url: str, path: str) -> Any:
    answer = httpx.get(f"{url}{path}", timeout=10)
    answer.raise_for_status()
    return answer.json()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    path = tmp_path / "dags"
    path.mkdir()
    (path / "alpha.yaml").write_text(dag("alpha"))
    (path / "beta.yml").write_text(dag("beta"))
    (path / "notes.txt").write_text("not a DAG")
    return path


@pytest.fixture
def up(tmp_path: Path, folder: Path) -> Iterator[FlowForgeProcess]:
    proc = start_up(tmp_path / "home", "--dags", str(folder))
    try:
        yield proc
    finally:
        proc.stop()


def test_up_keeps_the_store_in_step_with_the_folder(up: FlowForgeProcess, folder: Path) -> None:
    url = up.url
    assert [d["id"] for d in get(url, "/api/v1/dags")["dags"]] == ["alpha", "beta"]
    state = get(url, "/api/v1/status")["dag_folder"]
    assert (state["path"], state["files"], state["dags"], state["problems"]) == (
        str(folder),
        2,
        ["alpha", "beta"],
        [],
    )
    # A DAG submitted otherwise is never touched by the folder.
    other = folder.parent / "other.yaml"
    other.write_text(dag("other"))
    assert cli("submit", str(other), url=url).returncode == 0

    # A changed file becomes a new version; a new file a new DAG.
    (folder / "alpha.yaml").write_text(dag("alpha", "one", "two"))
    (folder / "gamma.yaml").write_text(dag("gamma"))
    wait_until(
        "alpha version 2", lambda: get(url, "/api/v1/dags/alpha")["version"] == 2, 30, alive=up.check_alive
    )
    wait_until("gamma stored", lambda: "gamma" in get(url, "/api/v1/status")["dag_folder"]["dags"], 30)
    assert [t["id"] for t in get(url, "/api/v1/dags/alpha")["tasks"]] == ["one", "two"]

    # A broken file is reported with its place; the last good version stays active.
    (folder / "alpha.yaml").write_text(BROKEN)
    problems = wait_until(
        "the broken file reported",
        lambda: get(url, "/api/v1/status")["dag_folder"]["problems"],
        30,
        alive=up.check_alive,
    )
    assert problems[0]["file"] == str(folder / "alpha.yaml")
    assert problems[0]["text"].startswith(f"{folder / 'alpha.yaml'}:5:14: tasks[0].retries:"), problems
    alpha = get(url, "/api/v1/dags/alpha")
    assert (alpha["version"], alpha["active"]) == (2, True)
    assert f"{folder / 'alpha.yaml'}:5:14" in up.output()
    shown = cli("status", url=url)
    assert shown.returncode == 0 and f"{folder / 'alpha.yaml'}:5:14" in shown.stdout, shown.stdout

    # A removed file deactivates its DAG, and only that one.
    (folder / "beta.yml").unlink()
    wait_until("beta deactivated", lambda: not get(url, "/api/v1/dags/beta")["active"], 30)
    assert get(url, "/api/v1/dags/other")["active"] and get(url, "/api/v1/dags/alpha")["active"]

    # Fixed again: the problem goes, and a new version is stored.
    (folder / "alpha.yaml").write_text(dag("alpha", "one", "two", "three"))
    wait_until("alpha version 3", lambda: get(url, "/api/v1/dags/alpha")["version"] == 3, 30)
    assert get(url, "/api/v1/status")["dag_folder"]["problems"] == []


def test_two_files_declaring_one_dag_id_are_a_problem(up: FlowForgeProcess, folder: Path) -> None:
    (folder / "zeta.yaml").write_text(dag("alpha", "other-task"))
    problems = wait_until(
        "the clash reported", lambda: get(up.url, "/api/v1/status")["dag_folder"]["problems"], 30
    )
    assert problems[0]["file"] == str(folder / "zeta.yaml") and "alpha.yaml" in problems[0]["text"]
    assert get(up.url, "/api/v1/dags/alpha")["version"] == 1
    # The first file gone, the second one is read again and takes the id over.
    (folder / "alpha.yaml").unlink()
    wait_until("alpha from zeta.yaml", lambda: get(up.url, "/api/v1/dags/alpha")["version"] == 2, 30)
    assert get(up.url, "/api/v1/dags/alpha")["active"]


def test_up_refuses_a_dags_path_that_is_no_folder(tmp_path: Path) -> None:
    result = run_flowforge(
        "up", "--port", str(free_port()), "--home", str(tmp_path / "h"), "--dags", str(tmp_path / "nope")
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"--dags {tmp_path / 'nope'}: not a folder" in result.stderr


def test_sync_prune_activate_and_deactivate(tmp_path: Path) -> None:
    proc = start_up(tmp_path / "home")
    try:
        url = proc.url
        ci = tmp_path / "ci"
        ci.mkdir()
        (ci / "x.yaml").write_text(dag("x"))
        (ci / "y.yaml").write_text(dag("y"))
        (ci / "bad.yaml").write_text(BROKEN)
        extra = tmp_path / "z.yaml"
        extra.write_text(dag("z"))
        assert cli("submit", str(extra), url=url).returncode == 0

        first = cli("sync", str(ci), "--prune", url=url)
        assert first.returncode == 2, first.stderr
        assert f"{ci / 'bad.yaml'}:5:14: tasks[0].retries:" in first.stderr
        assert "not pruning: 1 file(s) invalid" in first.stderr
        assert f"submitted DAG x from {ci / 'x.yaml'}: version 1 (new DAG)" in first.stdout
        assert {d["id"] for d in get(url, "/api/v1/dags")["dags"]} == {"x", "y", "z"}

        (ci / "bad.yaml").unlink()
        (ci / "x.yaml").write_text(dag("x", "one", "two"))
        second = cli("sync", str(ci), "--prune", "--json", url=url)
        assert second.returncode == 0, second.stderr
        answer = json.loads(second.stdout)
        assert answer["deactivated"] == ["z"]
        assert [
            (f["dag_id"], f["submitted"]["version"], f["submitted"]["changed"]) for f in answer["files"]
        ] == [
            ("x", 2, True),
            ("y", 1, False),
        ]
        assert {d["id"] for d in get(url, "/api/v1/dags")["dags"]} == {"x", "y"}

        on = cli("activate", "z", url=url)
        assert on.returncode == 0 and "DAG z activated" in on.stdout, on.stderr
        assert get(url, "/api/v1/dags/z")["active"]
        assert cli("trigger", "z", url=url).returncode == 0
        off = cli("deactivate", "z", url=url)
        assert off.returncode == 0 and "DAG z deactivated" in off.stdout, off.stderr
        assert not get(url, "/api/v1/dags/z")["active"]
        assert cli("trigger", "z", url=url).returncode == 2
        unknown = cli("activate", "nope", url=url)
        assert unknown.returncode == 2 and "nope" in unknown.stderr
        assert cli("sync", str(extra), url=url).returncode == 2  # a file, not a folder
    finally:
        proc.stop()
