"""Fixtures of the chaos suite: clusters of real processes, a seed per scenario, and the figures."""

from __future__ import annotations

import os
import random
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chaos.cluster import REPORT, ChaosCluster, Figures, RedisServer

SEED_ENV = "CHAOS_SEED"  # set it to replay a scenario's kill schedule


@pytest.fixture
def seed(request: pytest.FixtureRequest) -> int:
    """The seed of this scenario's fault schedule: $CHAOS_SEED, else a fresh one, printed either way."""
    raw = os.environ.get(SEED_ENV, "").strip()
    value = int(raw) if raw else random.SystemRandom().randrange(1_000_000)
    print(f"\n[{request.node.name}] seed {value} (replay with {SEED_ENV}={value})")
    return value


@pytest.fixture
def figures(request: pytest.FixtureRequest, seed: int) -> Iterator[Figures]:
    """The scenario's figures: printed after it, and gathered for the summary at the end."""
    fig = Figures(scenario=request.node.name, seed=seed)
    start = time.monotonic()
    yield fig
    if not fig.elapsed:
        fig.elapsed = time.monotonic() - start
    REPORT.append(fig)
    print("\n" + fig.text())


@pytest.fixture
def worker_mode() -> str:
    """How `pg_cluster`'s workers reach their work: "direct" (the store and the queue) unless a
    scenario is parametrized with "api" (`worker --api-url`, through the execution API)."""
    return "direct"


@pytest.fixture
def pg_cluster(tmp_path: Path, pg_url: str, redis_url: str, worker_mode: str) -> Iterator[ChaosCluster]:
    """A cluster on a fresh PostgreSQL database and Redis key prefix (skipped without them)."""
    cluster = ChaosCluster(tmp_path, db_url=pg_url, queue_url=redis_url, worker_mode=worker_mode)
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
def sqlite_cluster(tmp_path: Path) -> Iterator[ChaosCluster]:
    """A cluster for `flowforge up` on SQLite and its in-process queue."""
    cluster = ChaosCluster(
        tmp_path, db_url=f"sqlite:///{tmp_path / 'home' / 'flowforge.db'}", queue_url="memory://"
    )
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server owned by the test, to kill and restart (the shared one is never touched)."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    server = RedisServer(tmp_path).start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
def redis_cluster(tmp_path: Path, pg_url: str, private_redis: RedisServer) -> Iterator[ChaosCluster]:
    """A cluster on a fresh PostgreSQL database whose queue is the test's own redis-server."""
    cluster = ChaosCluster(tmp_path, db_url=pg_url, queue_url=private_redis.url)
    try:
        yield cluster
    finally:
        cluster.close()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Every chaos scenario's figures, together, at the end of the test run."""
    if not REPORT:
        return
    tr = terminalreporter
    tr.section("chaos figures")
    for fig in REPORT:
        tr.write_line(fig.text())
    total = Figures(scenario="all", seed=0)
    for fig in REPORT:
        for name in (
            "tasks",
            "runs",
            "runs_completed",
            "faults",
            "hits",
            "tasks_hit",
            "lost_attempts",
            "re_executions",
            "double_successes",
            "losses",
        ):
            setattr(total, name, getattr(total, name) + getattr(fig, name))
        total.recovery += fig.recovery
        total.elapsed += fig.elapsed
    tr.write_line(
        f"all {len(REPORT)} scenario(s): {total.tasks} tasks, {total.runs_completed}/{total.runs} runs completed, "
        f"{total.faults} faults injected, {total.hits} hit work in flight ({total.tasks_hit} tasks), "
        f"{total.double_successes} double successes, {total.losses} losses, "
        f"worst recovery {max(total.recovery, default=0):.1f}s, {total.elapsed:.0f}s in all"
    )
