"""An attempt's stored log is capped (FLOWFORGE_MAX_LOG_BYTES); the task still runs to its end."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from flowforge.core.model import RunState
from flowforge.engine.logsink import LogBuffer, truncation_note
from tests.harness import clean_env, cli, start_up
from tests.test_engine import Engine

CAP = 100_000
LINE = "abcdefghi\n"  # what `yes abcdefghi` prints, 10 bytes a line
NOTE = re.compile(r"\[flowforge\] log truncated: ([\d,]+) more bytes of output were not stored")


def output(size: int) -> str:
    """The first `size` bytes of `yes abcdefghi`."""
    return (LINE * (size // len(LINE) + 1))[:size]


def dropped(log: str) -> int | None:
    """The byte count the truncation line of `log` gives, None without one; fails on more than one."""
    found = NOTE.findall(log)
    assert len(found) <= 1, "the truncation line is written once"
    return int(found[0].replace(",", "")) if found else None


@pytest.fixture
def engine(tmp_path) -> Iterator[Engine]:
    e = Engine(tmp_path, slots=1, max_log_bytes=CAP)
    e.start()
    yield e
    e.close()


@pytest.mark.parametrize("size", [CAP // 2, CAP, CAP * 4, CAP * 16, CAP * 64])
def test_a_log_keeps_its_first_bytes_and_says_how_much_it_dropped(engine, size):
    engine.submit(
        f"id: big\ntasks:\n  - {{id: t, command: 'yes abcdefghi | head -c {size}; echo done >&2'}}\n"
    )
    run = engine.trigger("big")
    assert engine.wait(run.run_id, timeout=60).state == RunState.SUCCESS
    log = engine.log(run.run_id, "t")
    full = output(size) + "done\n"
    if len(full) <= CAP:
        assert log == full and dropped(log) is None
    else:
        # Cut after exactly CAP bytes; the line is on a line of its own.
        assert log == full[:CAP] + truncation_note(len(full) - CAP, CAP)
        assert dropped(log) == len(full) - CAP


@pytest.fixture
def attempt(tmp_path) -> Iterator[tuple[Engine, str]]:
    """An engine (not started) and a run whose task `t` has a claimed attempt 1 to write a log for."""
    e = Engine(tmp_path)
    run, ti = e.claimed_elsewhere("id: d\ntasks:\n  - {id: t, command: 'true'}\n", "d", "w1")
    assert ti is not None
    yield e, run.run_id
    e.close()


def test_a_cut_never_splits_a_character_and_counts_bytes(attempt):
    engine, run_id = attempt
    buffer = LogBuffer(engine.store, run_id, "t", 1, [], max_bytes=11)
    buffer.write("é" * 10)  # 20 bytes: 5 whole characters fit in 11
    buffer.write("more")
    buffer.close()
    assert engine.log(run_id, "t") == "é" * 5 + "\n" + truncation_note(10 + 4, 11)


def test_a_secret_across_the_cap_is_masked_not_half_shown(attempt):
    engine, run_id = attempt
    secret = "hunter2-very-secret"
    buffer = LogBuffer(engine.store, run_id, "t", 1, [secret], max_bytes=10)
    buffer.write("abc ")
    buffer.write(secret[:5])
    buffer.write(secret[5:] + "\n")
    buffer.close()
    log = engine.log(run_id, "t")
    assert "hunte" not in log and log.startswith("abc ***")


def test_output_past_the_cap_is_drained_so_the_task_ends(engine):
    # 40 MB through a pipe: were the output not read past the cap, the task would block on it.
    engine.submit("id: flood\ntasks:\n  - {id: t, command: 'yes | head -c 40000000; echo finished'}\n")
    run = engine.trigger("flood")
    assert engine.wait(run.run_id, timeout=60).state == RunState.SUCCESS
    log = engine.log(run.run_id, "t")
    assert len(log.encode()) <= CAP + 200 and dropped(log) == 40_000_000 + len("finished\n") - CAP


@pytest.mark.e2e
def test_flowforge_up_caps_logs_at_flowforge_max_log_bytes(tmp_path):
    dag = tmp_path / "big.yaml"
    dag.write_text("id: big\ntasks:\n  - {id: t, command: 'yes abcdefghi | head -c 3000000'}\n")
    up = start_up(tmp_path / "home", env=clean_env(FLOWFORGE_MAX_LOG_BYTES="5000"))
    try:
        assert cli("submit", "-f", str(dag), url=up.url).returncode == 0
        result = cli("trigger", "big", "--wait", url=up.url, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr
        log = cli("logs", result.stdout.split()[0], "t", url=up.url)
    finally:
        assert up.stop() == 0, up.output()
    assert log.returncode == 0, log.stderr
    assert log.stdout == output(5000) + truncation_note(3_000_000 - 5000, 5000)
