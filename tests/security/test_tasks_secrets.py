"""Secret-named variables a task inherits from the worker reach the task but not its log."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from flowforge.core.model import RunState
from flowforge.core.secrets import MASK
from flowforge.engine.logsink import LogBuffer
from tests.harness import clean_env, cli, start_up
from tests.test_engine import Engine

AWS = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
GITHUB = "ghp_16C7e42F292c6912E7710c838347Ae178B4a"
WORKER_ENV = {
    "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
    "AWS_SECRET_ACCESS_KEY": AWS,
    "github_token": GITHUB,  # any case, as for the DAG's env
    "REGION": "eu-west-1-region",  # not secret-named: shown
    "FLOWFORGE_API_TOKEN": "never-reaches-a-task",
}


@pytest.fixture
def engine(tmp_path) -> Iterator[Engine]:
    e = Engine(tmp_path, slots=1, base_env=WORKER_ENV)
    e.start()
    yield e
    e.close()


def run_task(engine: Engine, command: str) -> str:
    """The log of a one-task DAG running `command`, which must succeed."""
    engine.submit(f"id: d\ntasks:\n  - id: t\n    command: {command!r}\n")
    run = engine.trigger("d")
    assert engine.wait(run.run_id).state == RunState.SUCCESS
    return engine.log(run.run_id, "t")


def test_inherited_secret_values_are_masked_and_still_reach_the_task(engine):
    log = run_task(
        engine,
        f'echo "$AWS_SECRET_ACCESS_KEY $github_token $REGION"; [ "$AWS_SECRET_ACCESS_KEY" = "{AWS}" ] && echo same; '
        'echo "${FLOWFORGE_API_TOKEN:-unset}"',
    )
    assert log == f"{MASK} {MASK} eu-west-1-region\nsame\nunset\n"


def test_an_inherited_secret_printed_in_pieces_is_masked(engine):
    # The halves come more than a flush interval apart: they reach the log in separate chunks.
    log = run_task(
        engine,
        'printf "x%.10s" "$AWS_SECRET_ACCESS_KEY"; sleep 0.8; printf "%s\\n" "${AWS_SECRET_ACCESS_KEY#??????????}"',
    )
    assert log == f"x{MASK}\n"


def test_a_secret_is_masked_whatever_chunk_boundary_splits_it(tmp_path):
    engine = Engine(tmp_path)
    try:
        run, ti = engine.claimed_elsewhere("id: d\ntasks:\n  - {id: t, command: 'true'}\n", "d", "w1")
        assert ti is not None
        text = f"before {AWS} after\n"
        for cut in range(len(text) + 1):
            buffer = LogBuffer(engine.store, run.run_id, "t", 1, [AWS])
            buffer.write(text[:cut])
            buffer.write(text[cut:])
            buffer.close()
        log = engine.log(run.run_id, "t")
        assert log == f"before {MASK} after\n" * (len(text) + 1)
    finally:
        engine.close()


@pytest.mark.e2e
def test_flowforge_up_masks_the_secrets_of_its_own_environment(tmp_path):
    dag = tmp_path / "d.yaml"
    dag.write_text("id: d\ntasks:\n  - {id: t, command: 'echo \"key=$AWS_SECRET_ACCESS_KEY\"'}\n")
    up = start_up(tmp_path / "home", env=clean_env(AWS_SECRET_ACCESS_KEY=AWS))
    try:
        assert cli("submit", "-f", str(dag), url=up.url).returncode == 0
        result = cli("trigger", "d", "--wait", url=up.url)
        assert result.returncode == 0, result.stdout + result.stderr
        log = cli("logs", result.stdout.split()[0], "t", url=up.url)
    finally:
        assert up.stop() == 0, up.output()
    assert log.returncode == 0 and log.stdout == f"key={MASK}\n"
