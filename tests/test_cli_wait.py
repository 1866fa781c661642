"""Waiting on runs through API restarts: real `flowforge up` processes killed and started again under the CLI."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.harness import REPO, FlowForgeProcess, clean_env, cli, free_port, start_cli, start_up, wait_until

pytestmark = pytest.mark.e2e


def gated(flag: Path) -> str:
    """A DAG whose first task runs until `flag` exists: the test decides when the run can end."""
    return f"""\
id: gated
schedule: "@daily"
tasks:
  - {{id: gate, command: "while [ ! -f {flag} ]; do sleep 0.05; done; echo opened"}}
  - {{id: after, command: echo after, depends_on: [gate]}}
"""


class Lines:
    """The lines a process writes to one of its pipes, read as they come (a thread per pipe)."""

    def __init__(self, pipe: object) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(pipe,), daemon=True)
        self._thread.start()

    def _read(self, pipe: object) -> None:
        for line in pipe:  # type: ignore[attr-defined]
            self.lines.append(line.rstrip("\n"))

    def having(self, text: str) -> str | None:
        return next((line for line in self.lines if text in line), None)

    def text(self) -> str:
        self._thread.join(10)
        return "\n".join(self.lines)


def up_on(home: Path, port: int) -> FlowForgeProcess:
    """`flowforge up` on this port and home, healthy."""
    proc = FlowForgeProcess(
        ["up", "--port", str(port), "--home", str(home), "--concurrency", "2"],
        name="up",
        port=port,
        log_path=home.parent / f"{home.name}-{port}-up.log",
    )
    return proc.wait_healthy()


def state_of(url: str, run_id: str, task_id: str | None = None) -> str | None:
    path = f"/api/v1/runs/{run_id}" + (f"/tasks/{task_id}" if task_id else "")
    try:
        return str(httpx.get(url + path, timeout=2).json()["state"])
    except httpx.HTTPError:
        return None


@pytest.fixture
def flag(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "open"
    yield path
    path.touch()  # whatever happened, no task keeps waiting for it


def test_trigger_wait_rides_out_a_crash_and_restart_of_up(tmp_path: Path, flag: Path) -> None:
    home, port = tmp_path / "home", free_port()
    dag = tmp_path / "gated.yaml"
    dag.write_text(gated(flag))
    first = up_on(home, port)
    try:
        assert cli("submit", str(dag), url=first.url).returncode == 0
        waiting = start_cli("trigger", "gated", "--wait", "--timeout", "120", url=first.url)
        out, err = Lines(waiting.stdout), Lines(waiting.stderr)
        run_id = wait_until("the run id", lambda: out.lines[0] if out.lines else None, 30)
        wait_until("the gate to run", lambda: state_of(first.url, run_id, "gate") == "running", 30)
    finally:
        first.kill(signal.SIGKILL)
        first.proc.wait(10)
    wait_until("the CLI to notice", lambda: err.having("lost the API"), 30, context=err.text)
    assert waiting.poll() is None, err.text()  # still waiting, not exit 3
    second = up_on(home, port)
    try:
        wait_until("the CLI to reconnect", lambda: err.having("reconnected to the API"), 30, context=err.text)
        flag.touch()
        assert waiting.wait(60) == 0, err.text()
        assert f"run {run_id} success in" in out.text()
        assert state_of(second.url, run_id) == "success"
        assert err.having("after: success"), err.text()  # progress went on after the restart
    finally:
        assert second.stop() == 0, second.output()


def test_wait_gives_up_after_its_timeout_with_exit_4(tmp_path: Path, flag: Path) -> None:
    up = start_up(tmp_path / "home")
    dag = tmp_path / "gated.yaml"
    dag.write_text(gated(flag))
    try:
        assert cli("submit", str(dag), url=up.url).returncode == 0
        run_id = cli("trigger", "gated", url=up.url).stdout.strip()
        gave_up = cli("wait", run_id, "--timeout", "0.5", url=up.url)
        assert gave_up.returncode == 4, gave_up.stderr
        assert f"gave up waiting for run {run_id} after --timeout 0.5s; it carries on" in gave_up.stderr
        as_json = cli("wait", run_id, "--timeout", "0.2", "--json", url=up.url)
        assert as_json.returncode == 4
        assert json.loads(as_json.stderr.splitlines()[-1])["error"]["code"] == "gave_up_waiting"
        assert state_of(up.url, run_id) in ("queued", "running")  # it carries on
        # The API gone for good while the CLI waits: it tries until --timeout, then exits 4 (not 3).
        waiting = start_cli("wait", run_id, "--timeout", "3", url=up.url)
        err = Lines(waiting.stderr)
        wait_until("the CLI to follow the run", lambda: err.having("gate: running"), 30, context=err.text)
        up.kill(signal.SIGKILL)
        assert waiting.wait(30) == 4, err.text()
        assert err.having("lost the API") and err.having("gave up waiting"), err.text()
        assert cli("wait", run_id, url=up.url).returncode == 3  # unreachable at the start
    finally:
        up.stop()


def test_wait_and_trigger_json_print_the_final_run_with_its_tasks(tmp_path: Path, flag: Path) -> None:
    up = start_up(tmp_path / "home")
    dag = tmp_path / "gated.yaml"
    dag.write_text(gated(flag))
    flag.touch()
    try:
        assert cli("submit", str(dag), url=up.url).returncode == 0
        ran = cli("trigger", "gated", "--wait", "--json", url=up.url)
        assert ran.returncode == 0, ran.stderr
        final = json.loads(ran.stdout)
        assert final["state"] == "success" and [t["state"] for t in final["tasks"]] == ["success"] * 2
        waited = cli("wait", final["run_id"], url=up.url)
        assert waited.returncode == 0 and waited.stdout.startswith(f"run {final['run_id']} success in")
    finally:
        assert up.stop() == 0, up.output()


def test_backfill_piped_with_its_progress_keeps_whole_lines(tmp_path: Path, flag: Path) -> None:
    """Stdout and stderr into one pipe, as CI captures them: every line stays whole."""
    up = start_up(tmp_path / "home")
    dag = tmp_path / "gated.yaml"
    dag.write_text(gated(flag))
    flag.touch()
    try:
        assert cli("submit", str(dag), url=up.url).returncode == 0
        argv = [sys.executable, "-m", "flowforge", "--api-url", up.url, "backfill", "gated"]
        argv += ["--start", "2026-01-01", "--end", "2026-01-03"]
        done = subprocess.run(
            argv,
            cwd=REPO,
            env=clean_env(TZ="UTC"),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stdout
        lines = done.stdout.splitlines()
        run_ids = [line.split()[-1] for line in lines if line.startswith("2026-01-0")]
        assert len(run_ids) == 3, lines
        for run_id in run_ids:
            assert f"{run_id}  success" in lines, lines  # the summary line, whole
            assert sum(run_id in line for line in lines) >= 2
        for line in lines:  # no line holds two outputs run together
            assert line.count("success") <= 1 and line.count("run ") <= 1, line
    finally:
        assert up.stop() == 0, up.output()
