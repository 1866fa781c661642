"""PostgreSQL beyond the shared store suite: several processes, racing migrations, outages, start-up errors."""

from __future__ import annotations

import threading
import time
from collections import Counter
from urllib.parse import urlsplit

import psycopg
import pytest

from flowforge.core.errors import Unavailable
from flowforge.store import Store, open_store
from flowforge.store.postgres import PostgresStore
from flowforge.store.schema import LATEST_VERSION
from tests.backends import TcpProxy, with_path
from tests.test_store import T0, claim_concurrently, make_spec, queued_run, raw


def test_concurrent_claims_across_stores(pg_url: str) -> None:
    """Four stores (four pools, as if four worker processes) race for the same 50 tasks."""
    stores: list[Store] = [open_store(pg_url, pool_size=2) for _ in range(4)]
    try:
        run_id, task_ids = queued_run(stores[0])
        assert claim_concurrently(stores, run_id, task_ids) == Counter({t: 1 for t in task_ids})
    finally:
        for s in stores:
            s.close()


def test_processes_starting_at_once_migrate_once(pg_url: str) -> None:
    """Eight stores opened together on an empty database: the advisory lock serialises the migration."""
    opened: list[Store] = []
    errors: list[BaseException] = []
    start = threading.Barrier(8)
    lock = threading.Lock()

    def open_one() -> None:
        start.wait()
        try:
            s = open_store(pg_url, pool_size=1)
        except BaseException as exc:
            with lock:
                errors.append(exc)
            return
        with lock:
            opened.append(s)

    threads = [threading.Thread(target=open_one) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    try:
        assert errors == [] and len(opened) == 8
        assert raw(opened[0], "SELECT version FROM schema_version ORDER BY version") == [
            (v,) for v in range(1, LATEST_VERSION + 1)
        ]
    finally:
        for s in opened:
            s.close()


def test_store_survives_its_connections_being_cut(pg_url: str) -> None:
    """Every server connection is terminated (a PostgreSQL restart): the next calls just work."""
    store = open_store(pg_url, pool_size=3)
    try:
        store.put_dag(make_spec(), "v1", T0)
        dbname = urlsplit(pg_url).path.lstrip("/")
        with psycopg.connect(pg_url, autocommit=True) as admin:
            admin.execute(
                # Waiting for each backend to end (as a restart does before the server is back).
                "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity"
                " WHERE datname = %s AND pid <> pg_backend_pid()",
                (dbname,),
            )
        for _ in range(5):
            assert store.get_dag("etl").version == 1
    finally:
        store.close()


def test_store_outage_raises_unavailable_then_recovers(pg_url: str) -> None:
    """While PostgreSQL is unreachable calls fail fast with Unavailable; once back, they succeed again."""
    target = urlsplit(pg_url)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 5432).start()
    store = PostgresStore(
        pg_url.replace(target.netloc, f"{target.username}@127.0.0.1:{proxy.port}", 1), timeout=1.0
    )
    try:
        store.put_dag(make_spec(), "v1", T0)
        proxy.stop()
        start = time.monotonic()
        with pytest.raises(Unavailable, match="PostgreSQL unavailable"):
            store.get_dag("etl")
        assert time.monotonic() - start < 10
        proxy.start()
        deadline = time.monotonic() + 15
        while True:
            try:
                assert store.get_dag("etl").version == 1
                break
            except Unavailable:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
    finally:
        proxy.stop()
        store.close()


def test_start_up_errors_name_the_cause(pg_url: str) -> None:
    with pytest.raises(Unavailable, match="Connection refused"):
        open_store("postgresql://postgres@127.0.0.1:1/flowforge")
    with pytest.raises(Unavailable, match='database "flowforge_no_such_db" does not exist'):
        open_store(with_path(pg_url, "/flowforge_no_such_db"))
    with pytest.raises(ValueError, match="FLOWFORGE_DB"):
        open_store("mysql://root@localhost/flowforge")
    with pytest.raises(ValueError, match="bad PostgreSQL URL"):
        open_store("postgresql://postgres@127.0.0.1:5432/x?no_such_option=1")
