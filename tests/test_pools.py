"""PostgreSQL connection pools sized after each process's role, and held to that size under load.

The bounds are read from the running store of each role on a real PostgreSQL database; then a
real deployment (api, scheduler, a direct worker and an API-mode worker) runs a few hundred tasks
while every process's connections, told apart by their `application_name`, are counted in
`pg_stat_activity`: none ever holds more than its pool allows, and nothing fails for want of one.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from flowforge.services import build_services
from flowforge.settings import API_THREADS, SCHEDULER_CONNECTIONS, Settings, db_pool_size
from flowforge.store.postgres import MIN_CONNECTIONS, PostgresStore
from tests.backends import with_query
from tests.chaos.cluster import WORKER_TOKEN, ChaosCluster
from tests.harness import free_port, run_flowforge
from tests.pg_connections import ConnectionSampler, database_of

SLOTS = 4
EXPECTED = {
    "api": API_THREADS,
    "scheduler": SCHEDULER_CONNECTIONS,
    "worker": SLOTS + 1,
    "up": API_THREADS + SCHEDULER_CONNECTIONS + SLOTS + 1,
}


NAMES = (
    "SELECT DISTINCT application_name FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()"
)


def settings_on(pg_url: str, tmp_path: Path) -> Settings:
    return Settings(home=tmp_path, db_url=pg_url, queue_url="memory://", concurrency=SLOTS)


@pytest.mark.parametrize("role", sorted(EXPECTED))
def test_each_role_has_a_pool_sized_after_what_it_does(pg_url: str, tmp_path: Path, role: str) -> None:
    services = build_services(settings_on(pg_url, tmp_path), role=role)
    try:
        store = services.store
        assert isinstance(store, PostgresStore)
        assert store.pool_bounds == (MIN_CONNECTIONS, EXPECTED[role])
        store.counts()
        # Its connections carry the role's name, for pg_stat_activity and the server's logs.
        with psycopg.connect(pg_url) as conn:
            names = conn.execute(NAMES, (database_of(pg_url),)).fetchall()
        assert names == [(f"flowforge-{role}",)]
    finally:
        services.close()


def test_the_pool_setting_overrides_every_role(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLOWFORGE_DB_POOL_MAX", "5")
    settings = Settings.from_env({"FLOWFORGE_DB": pg_url}, home=tmp_path, concurrency=SLOTS)
    assert [db_pool_size(settings, role) for role in sorted(EXPECTED)] == [5, 5, 5, 5]
    services = build_services(settings, role="worker")
    try:
        assert isinstance(services.store, PostgresStore)
        assert services.store.pool_bounds == (MIN_CONNECTIONS, 5)
    finally:
        services.close()


@pytest.mark.parametrize("raw", ["0", "many", "-3", "2.5"])
def test_a_bad_pool_setting_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, raw: str) -> None:
    monkeypatch.setenv("FLOWFORGE_DB_POOL_MAX", raw)
    with pytest.raises(ValueError, match=r"FLOWFORGE_DB_POOL_MAX must be a whole number \(1 or more\)"):
        Settings.from_env({}, home=tmp_path)
    result = run_flowforge(
        "scheduler", env={"FLOWFORGE_DB_POOL_MAX": raw, "FLOWFORGE_HOME": str(tmp_path)}, timeout=60
    )
    assert result.returncode == 2, result.stderr
    assert "FLOWFORGE_DB_POOL_MAX" in result.stderr and "Traceback" not in result.stderr


def test_an_unknown_role_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown role 'janitor'"):
        db_pool_size(settings_on("sqlite:///x", tmp_path), "janitor")


def test_an_application_name_in_the_url_wins_over_the_role(pg_url: str, tmp_path: Path) -> None:
    services = build_services(
        settings_on(with_query(pg_url, application_name="etl-flowforge"), tmp_path), role="api"
    )
    try:
        with psycopg.connect(pg_url) as conn:
            names = conn.execute(NAMES, (database_of(pg_url),)).fetchall()
        assert names == [("etl-flowforge",)]
    finally:
        services.close()


# -- under load --------------------------------------------------------------------------------------
API_POOL = 3  # far below what 8 worker slots and 32 readers would use at once without a bound
TASKS = 240
LOAD_DAG = f"""\
id: load
max_active_tasks: {TASKS}
tasks:
""" + "".join(f"  - {{id: t{i}, command: 'echo task {i}; echo more output >&2'}}\n" for i in range(TASKS))


@pytest.fixture
def cluster(tmp_path: Path, pg_url: str, redis_url: str) -> Iterator[ChaosCluster]:
    c = ChaosCluster(tmp_path, db_url=pg_url, queue_url=redis_url)
    try:
        yield c
    finally:
        c.close()


def hammer(url: str, n: int, statuses: list[int], stop: threading.Event) -> None:
    """Read /api/v1/status over and over from `n` threads until `stop`; every answer's status."""

    def reader() -> None:
        with httpx.Client(base_url=url, timeout=30) as client:
            while not stop.is_set():
                statuses.append(client.get("/api/v1/status").status_code)

    threads = [threading.Thread(target=reader, daemon=True) for _ in range(n)]
    for t in threads:
        t.start()
    stop.wait()
    for t in threads:
        t.join(30)


@pytest.mark.e2e
@pytest.mark.timeout(240)
def test_no_process_holds_more_connections_than_its_pool_under_load(
    cluster: ChaosCluster, pg_url: str
) -> None:
    c = cluster
    c.env["FLOWFORGE_WORKER_TOKEN"] = WORKER_TOKEN
    sampler = ConnectionSampler(pg_url).start()
    try:
        port = free_port()
        api_env = {"FLOWFORGE_DB_POOL_MAX": str(API_POOL)}
        c.connect(c.start("api", "api", "--port", str(port), port=port, env=api_env))
        c.start_scheduler()
        c.start_worker("direct", SLOTS)
        c.start_worker("remote", SLOTS, mode="api")
        c.wait_workers(["direct", "remote"])
        c.submit(LOAD_DAG)
        run, statuses = run_while_reading(c, readers=32)
    finally:
        sampler.stop()
    assert run["state"] == "success"
    assert len({t["worker_id"] for t in run["tasks"]}) == 2  # the direct and the API-mode worker worked
    # 32 readers at once on an API of 3 connections: they waited their turn, none was refused.
    assert statuses and set(statuses) == {200}, sorted(set(statuses))
    assert sampler.samples > 10
    peak = dict(sampler.peak)
    print(f"\nmost connections at once, by process: {peak} ({sampler.samples} samples)")
    assert set(peak) <= {"flowforge-api", "flowforge-scheduler", "flowforge-worker"}, peak
    assert peak.get("flowforge-api", 0) <= API_POOL, peak
    assert peak.get("flowforge-scheduler", 0) <= SCHEDULER_CONNECTIONS, peak
    assert peak.get("flowforge-worker", 0) <= SLOTS + 1, peak
    # Nothing waited in vain for a connection: no store outage, no 503, in any process's log.
    for name in ("api", "scheduler", "direct", "remote"):
        text = c.procs[name].output()
        assert "unavailable" not in text.lower() and "Traceback" not in text, f"{name}:\n{text[-3000:]}"


def run_while_reading(c: ChaosCluster, readers: int) -> tuple[dict[str, Any], list[int]]:
    """Run the load DAG once while `readers` threads poll the API; the run, and the readers' statuses."""
    statuses: list[int] = []
    stop = threading.Event()
    reading = threading.Thread(target=hammer, args=(c.url, readers, statuses, stop), daemon=True)
    reading.start()
    try:
        run = c.wait_run(c.trigger("load"), timeout=180, poll=0.5)
    finally:
        stop.set()
        reading.join(60)
    return run, statuses
