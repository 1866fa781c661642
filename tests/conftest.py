"""Shared fixtures. Store fixtures: one contract suite run against every store backend."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from flowforge.services import Services
from flowforge.store import Store, open_store
from tests.backends import PG_ENV, REDIS_ENV, pg_database, redis_prefix, require_env

if TYPE_CHECKING:
    from tests.cli_support import LiveApi

# "postgres" runs on a fresh database per test, and is skipped unless FLOWFORGE_TEST_PG is set.
STORE_BACKENDS = ["sqlite-memory", "sqlite-file", "postgres"]


def open_test_store(backend: str, tmp_path: Path) -> Store:
    """A fresh, migrated store of the named backend."""
    if backend == "sqlite-memory":
        return open_store("sqlite://:memory:")
    if backend == "sqlite-file":
        return open_store(f"sqlite:///{tmp_path / 'store' / 'flowforge.db'}")
    raise ValueError(f"unknown store backend {backend!r}")


@pytest.fixture(params=STORE_BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A fresh migrated store of each backend, closed afterwards."""
    if request.param == "postgres":
        s = open_store(request.getfixturevalue("pg_url"))
    else:
        s = open_test_store(request.param, tmp_path)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """The URL of a fresh, empty PostgreSQL database, dropped afterwards; skips without FLOWFORGE_TEST_PG."""
    with pg_database(require_env(PG_ENV)) as url:
        yield url


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A Redis queue URL with a fresh key prefix, deleted afterwards; skips without FLOWFORGE_TEST_REDIS."""
    with redis_prefix(require_env(REDIS_ENV)) as url:
        yield url


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    """Real services for API tests: a SQLite file in tmp_path and the in-process queue."""
    from flowforge.services import build_services
    from flowforge.settings import Settings

    s = build_services(
        Settings(home=tmp_path, db_url=f"sqlite:///{tmp_path / 'ff.db'}", queue_url="memory://")
    )
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def api(services: Services) -> Iterator[LiveApi]:
    """The real API on `services`, served by uvicorn in a thread, and the CLI run against it."""
    from typer.testing import CliRunner

    from flowforge.api import create_app
    from tests.cli_support import CLEAN_ENV, LiveApi, serving

    with serving(create_app(services, api_token="")) as url:
        try:
            yield LiveApi(url, services, CliRunner(env=CLEAN_ENV))
        finally:
            services.stopping.set()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """With FLOWFORGE_TEST_NO_SKIPS=1 (set by .ci/run) a run that skipped anything fails."""
    if os.environ.get("FLOWFORGE_TEST_NO_SKIPS") != "1":
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if skipped and exitstatus == 0:
        reporter.write_line(
            f"FLOWFORGE_TEST_NO_SKIPS=1: {len(skipped)} test(s) skipped, which CI does not allow"
        )
        session.exitstatus = 1
