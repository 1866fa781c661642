"""Shared fixtures. Store fixtures: one contract suite run against every store backend."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from flowforge.store import Store, open_store

# A later change adds "postgres" here when FLOWFORGE_TEST_PG names a test database.
STORE_BACKENDS = ["sqlite-memory", "sqlite-file"]


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
    s = open_test_store(request.param, tmp_path)
    try:
        yield s
    finally:
        s.close()
