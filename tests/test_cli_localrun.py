"""`flowforge test FILE`: a DAG file run once by real `flowforge` processes, with no server.

Each test runs `python -m flowforge test …` in a temporary working directory, with HOME,
FLOWFORGE_HOME and TMPDIR pointed at temporary directories, and real shell tasks.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.harness import FlowForgeProcess, clean_env, pid_alive, run_flowforge, wait_until

PIPELINE = """\
id: pipeline
tasks:
  - id: extract
    command: "echo extracted; echo twice"
  - id: transform
    command: "echo transformed"
    depends_on: [extract]
  - id: load
    command: "echo loaded"
    depends_on: [transform]
"""


@dataclass
class Place:
    """Where a `flowforge test` process runs: its working directory and the folders it must leave alone."""

    cwd: Path
    home: Path
    flowforge_home: Path
    tmp: Path

    def env(self) -> dict[str, str]:
        return clean_env(HOME=str(self.home), FLOWFORGE_HOME=str(self.flowforge_home), TMPDIR=str(self.tmp))

    def dag(self, text: str, name: str = "dag.yaml") -> Path:
        path = self.cwd / name
        path.write_text(text)
        return path

    def test(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        return run_flowforge("test", *args, env=self.env(), repo=self.cwd, timeout=timeout)


@pytest.fixture
def place(tmp_path: Path) -> Place:
    p = Place(tmp_path / "work", tmp_path / "home", tmp_path / "ffhome", tmp_path / "tmp")
    for d in (p.cwd, p.home, p.tmp):
        d.mkdir()
    return p


def ran(stdout: str) -> set[str]:
    """The tasks that wrote output."""
    return set(re.findall(r"^\[([^\]]+)\] ", stdout, re.M))


def test_a_passing_dag_exits_0_with_prefixed_output_and_leaves_nothing_on_disk(place: Place) -> None:
    place.dag(PIPELINE)
    r = place.test("dag.yaml")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        "[extract] extracted",
        "[extract] twice",
        "[transform] transformed",
        "[load] loaded",
    ]
    for task in ("extract", "transform", "load"):
        assert f"{task}: running" in r.stderr
        assert re.search(rf"^{task}: success \(\d+\.\d s\)$", r.stderr, re.M), r.stderr
    assert "run success" in r.stderr
    assert not place.flowforge_home.exists()
    assert list(place.tmp.iterdir()) == []
    assert list(place.home.iterdir()) == []
    assert sorted(p.name for p in place.cwd.iterdir()) == ["dag.yaml"]


def test_a_failing_dag_exits_1_and_shows_the_failure_and_what_did_not_run(place: Place) -> None:
    place.dag(
        "id: broken\ntasks:\n"
        "  - {id: first, command: 'echo about to fail; exit 3'}\n"
        "  - {id: second, command: 'echo never', depends_on: [first]}\n"
    )
    r = place.test("dag.yaml")
    assert r.returncode == 1, r.stderr
    assert r.stdout == "[first] about to fail\n"
    assert re.search(r"^first: failed \(exit code 3, \d+\.\d s\)$", r.stderr, re.M), r.stderr
    assert re.search(r"^second: upstream_failed$", r.stderr, re.M), r.stderr
    assert "run failed" in r.stderr


def test_an_invalid_file_exits_2_with_its_located_problems(place: Place) -> None:
    place.dag("id: bad\ntasks:\n  - id: a\n    command: 'true'\n    depends_on: [nope]\n")
    r = place.test("dag.yaml")
    assert r.returncode == 2
    assert "dag.yaml:5:18: tasks[0].depends_on[0]: task 'a' depends on 'nope'" in r.stderr
    assert r.stdout == ""
    assert "Traceback" not in r.stderr
    missing = place.test("missing.yaml")
    assert missing.returncode == 2
    assert "missing.yaml" in missing.stderr and "cannot read the file" in missing.stderr


def test_task_runs_only_the_chosen_tasks_and_upstream_adds_their_dependencies(place: Place) -> None:
    place.dag(PIPELINE)
    only = place.test("dag.yaml", "--task", "load")
    assert only.returncode == 0, only.stderr
    assert only.stdout == "[load] loaded\n"
    with_upstream = place.test("dag.yaml", "--task", "transform", "--upstream")
    assert with_upstream.returncode == 0, with_upstream.stderr
    assert ran(with_upstream.stdout) == {"extract", "transform"}
    two = place.test("dag.yaml", "-t", "extract", "-t", "load")
    assert ran(two.stdout) == {"extract", "load"}
    unknown = place.test("dag.yaml", "--task", "lode")
    assert unknown.returncode == 2
    assert "no task 'lode'" in unknown.stderr and "load" in unknown.stderr
    assert unknown.stdout == ""


def test_params_are_resolved_like_a_trigger(place: Place) -> None:
    place.dag(
        "id: greet\nparams: {who: world}\ntasks:\n  - {id: hello, command: 'echo hello $FLOWFORGE_PARAM_WHO'}\n"
    )
    assert place.test("dag.yaml").stdout == "[hello] hello world\n"
    given = place.test("dag.yaml", "--param", "who=FlowForge")
    assert given.returncode == 0, given.stderr
    assert given.stdout == "[hello] hello FlowForge\n"
    typo = place.test("dag.yaml", "--param", "whom=x")
    assert typo.returncode == 2
    assert "whom" in typo.stderr and typo.stdout == ""
    malformed = place.test("dag.yaml", "--param", "who")
    assert malformed.returncode == 2 and "KEY=VALUE" in malformed.stderr


def test_a_retrying_task_shows_each_attempt(place: Place) -> None:
    place.dag(
        "id: flaky\nretry_delay_secs: 0.1\ntasks:\n"
        "  - id: flaky\n    retries: 2\n    command: |\n"
        '      echo "attempt $FLOWFORGE_ATTEMPT"\n'
        '      if [ "$FLOWFORGE_ATTEMPT" -lt 3 ]; then exit 1; fi\n'
    )
    r = place.test("dag.yaml")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["[flaky] attempt 1", "[flaky] attempt 2", "[flaky] attempt 3"]
    assert re.search(r"^flaky: up_for_retry \(exit code 1, ", r.stderr, re.M), r.stderr
    assert re.search(r"^flaky: up_for_retry \(attempt 2, exit code 1, ", r.stderr, re.M), r.stderr
    assert re.search(r"^flaky: success \(attempt 3, ", r.stderr, re.M), r.stderr
    assert re.search(r"^  flaky +success +3 attempts$", r.stderr, re.M), r.stderr


def test_a_task_past_its_timeout_is_killed_and_fails(place: Place) -> None:
    place.dag("id: slow\ntasks:\n  - {id: slow, command: 'echo start; sleep 60', timeout_secs: 1}\n")
    r = place.test("dag.yaml", timeout=40)
    assert r.returncode == 1, r.stderr
    assert r.stdout == "[slow] start\n"
    line = next(x for x in r.stderr.splitlines() if x.startswith("slow: failed"))
    assert "timed out" in line or "timeout" in line, r.stderr


def test_json_prints_one_object_per_line_ending_with_the_run(place: Place) -> None:
    place.dag(PIPELINE)
    r = place.test("dag.yaml", "--json")
    assert r.returncode == 0, r.stderr
    events = [json.loads(line) for line in r.stdout.splitlines()]
    assert {"event": "output", "task_id": "extract", "attempt": 1, "text": "extracted"} in events
    assert events[-1]["event"] == "run" and events[-1]["run"]["state"] == "success"
    assert [t["state"] for t in events[-1]["tasks"]] == ["success"] * 3
    assert any(e["event"] == "task" and e["state"] == "success" for e in events)


@pytest.mark.parametrize("lines", [2_000, 8_000, 32_000])
def test_concurrent_output_is_never_cut_mid_line(place: Place, lines: int) -> None:
    """Two tasks writing at once: every line whole under its own prefix, none lost, at any size."""
    command = f"seq {lines} | sed 's/^/TASK-line-/;s/$/-{'x' * 50}/'"
    place.dag(
        "id: busy\ntasks:\n"
        f'  - {{id: a, command: "{command.replace("TASK", "a")}"}}\n'
        f'  - {{id: b, command: "{command.replace("TASK", "b")}"}}\n'
    )
    r = place.test("dag.yaml", timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    out = r.stdout.splitlines()
    assert len(out) == 2 * lines
    shape = re.compile(r"\[(a|b)\] (a|b)-line-\d+-x{50}")
    for line in out:
        m = shape.fullmatch(line)
        assert m and m.group(1) == m.group(2), line


def test_a_line_with_no_end_is_cut_into_prefixed_pieces(place: Place) -> None:
    place.dag("id: long\ntasks:\n  - {id: long, command: \"head -c 200000 /dev/zero | tr '\\\\0' y\"}\n")
    r = place.test("dag.yaml")
    assert r.returncode == 0, r.stderr
    pieces = r.stdout.splitlines()
    assert all(p.startswith("[long] ") for p in pieces)
    assert sum(len(p) - len("[long] ") for p in pieces) == 200_000
    assert len(pieces) == 4  # 64 KiB each at most


def test_ctrl_c_kills_running_tasks_and_exits_130(place: Place, tmp_path: Path) -> None:
    place.dag("id: long\ntasks:\n  - {id: sleeper, command: 'echo $$ > pid; echo started; sleep 120'}\n")
    log = tmp_path / "out.log"
    proc = FlowForgeProcess(["test", "dag.yaml"], env=place.env(), log_path=log, repo=place.cwd)
    try:
        pid_file = place.cwd / "pid"
        wait_until("the task to start", lambda: pid_file.exists() and pid_file.read_text().strip(), 30)
        task_pid = int(pid_file.read_text())
        wait_until("its output to show", lambda: "[sleeper] started" in log.read_text(), 30)
        proc.kill(signal.SIGINT)
        assert proc.proc.wait(30) == 130, log.read_text()
        wait_until("the task to be killed", lambda: not pid_alive(task_pid), 10)
        assert "interrupted" in log.read_text()
    finally:
        proc.stop()
