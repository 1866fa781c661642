"""Whatever a task prints reaches the store in linear time and bounded memory, stored as printed.

Output goes `run_command` → `LogBuffer` (secrets masked, size capped) → `Store.append_log`, on
SQLite and PostgreSQL. Showing stored escape sequences safely is the CLI's and TUI's business.
"""

from __future__ import annotations

import os
import sys
import time
import tracemalloc

import pytest

from flowforge.core.dagfile import load_dag
from flowforge.engine.executor import run_command
from flowforge.engine.logsink import LogBuffer
from flowforge.engine.output import FLUSH_CHARS, READ_SIZE
from flowforge.store.base import Store

ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
DAG = "id: d\ntasks:\n  - {id: t, command: 'true'}\n"
SECRET = "s3cr3t-value-0123456789"
PY = sys.executable


def new_attempt(store: Store) -> str:
    """A new run of DAG `d` whose task `t` has a running attempt 1; its run id."""
    now = time.time()
    if not store.list_dags():
        store.put_dag(load_dag(DAG), DAG, now)
    run = store.create_run("d", triggered_by="test", params={}, now=now)
    assert store.queue_tasks(run.run_id, [("t", 0)], now) == ["t"]
    assert store.claim_task(run.run_id, "t", 1, "w1", now) is not None
    return run.run_id


def through_the_worker_path(
    store: Store, command: str, secrets: list[str] | None = None
) -> tuple[str, float]:
    """Run `command` with its output going to the store as a worker sends it; (stored log, seconds)."""
    run_id = new_attempt(store)
    buffer = LogBuffer(store, run_id, "t", 1, secrets or [])
    started = time.perf_counter()
    try:
        result = run_command(command, env=ENV, timeout=120, sink=buffer.write)
    finally:
        buffer.close()
    elapsed = time.perf_counter() - started
    assert result.succeeded, result.error
    return store.read_log(run_id, "t", 1)[0], elapsed


# Shapes of hostile output, each `n` units long.
SHAPES = {
    # One line of n MB, no newline anywhere.
    "one-long-line": lambda n: f"head -c {n * 1_000_000} /dev/zero | tr '\\0' a",
    # n × 25,000 writes of one byte each.
    "tiny-writes": lambda n: f"{PY} -c \"import os\nfor _ in range({n * 25_000}): os.write(1, b'x')\"",
    # n MB of random bytes: mostly invalid UTF-8.
    "invalid-utf8": lambda n: f"head -c {n * 1_000_000} /dev/urandom",
    # n MB of colour escapes, carriage returns and bells, with the secret's prefix all over (masker busy).
    "escapes-and-near-secrets": lambda n: (
        f"{PY} -c \"import sys\nsys.stdout.write('\\x1b[31m{SECRET[:-1]}\\x1b[0m\\r\\x07' * {n * 25_000})\""
    ),
}


def best_of(tries: int, store: Store, command: str) -> float:
    return min(through_the_worker_path(store, command, [SECRET])[1] for _ in range(tries))


@pytest.mark.parametrize("shape", list(SHAPES))
def test_output_reaches_the_store_in_linear_time(store, shape):
    times = {n: best_of(3, store, SHAPES[shape](n)) for n in (1, 4, 16)}
    detail = ", ".join(f"{n}×: {t * 1000:.0f} ms" for n, t in times.items())
    # Linear would be 16; quadratic 256. Generous slack for a shared machine.
    assert times[16] < 40 * times[1], f"{shape}: time grows faster than the output ({detail})"
    assert times[4] < 12 * times[1], f"{shape}: time grows faster than the output ({detail})"


def test_a_fast_task_is_handed_on_in_bounded_pieces_and_memory():
    chunks: list[int] = []
    tracemalloc.start()
    try:
        result = run_command(
            "head -c 64000000 /dev/zero", env=ENV, timeout=120, sink=lambda text: chunks.append(len(text))
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.succeeded and sum(chunks) == 64_000_000
    assert max(chunks) <= FLUSH_CHARS + READ_SIZE, "a batch must not hold all the output read meanwhile"
    assert peak < 16 * 1024 * 1024, f"reading 64 MB of output peaked at {peak / 1e6:.0f} MB"


def test_a_long_line_and_a_flood_of_tiny_writes_are_stored_whole(store):
    log, _ = through_the_worker_path(store, "head -c 3000000 /dev/zero | tr '\\0' a")
    assert log == "a" * 3_000_000
    log, _ = through_the_worker_path(
        store, f"{PY} -c \"import os\nfor _ in range(50000): os.write(1, b'xy')\""
    )
    assert log == "xy" * 50_000


def test_escape_sequences_and_invalid_utf8_are_stored_as_printed(store):
    printed = "\x1b[31mred\x1b[0m\r\n\x07bell \x1b]0;title\x07 \x1b[2J\x1b[H end\n"
    log, _ = through_the_worker_path(store, f'{PY} -c "import sys; sys.stdout.write({printed!r})"')
    assert log == printed
    log, _ = through_the_worker_path(store, r"printf 'ok \377\376 \342\202 end\n'")
    assert log == "ok \ufffd\ufffd \ufffd end\n"


def test_a_nul_byte_is_stored_on_every_store_as_a_replacement_character(store):
    log, _ = through_the_worker_path(store, r"printf 'a\000b\n'; printf 'more\n'")
    assert log == "a\ufffdb\nmore\n"
