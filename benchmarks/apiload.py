"""P1 / P2: the API under an open-loop load while runs go on (`python -m benchmarks --api-load`).

CLIENTS clients offer RATE requests per second in all for SECS seconds. The load is open-loop:
each client sends on its own clock (one request every CLIENTS / RATE seconds, phases spread)
whether or not its last answer came, so a slow server meets a growing queue instead of a politely
waiting client. The mix: 70 % reads (the runs list, a run's detail, the DAG list), 20 % triggers of
two small DAGs, 10 % log reads and event streams (opened, answered, closed).

Measured on `flowforge up` (SQLite, in-process queue) and on two `flowforge api` processes sharing
PostgreSQL with a scheduler and two workers (Redis): 5xx answers, connection errors,
"database is locked" in the logs, GET p50/p99, trigger p99, whether every run succeeded, the
engine's hand-off p50 (a task's end to the next one's start in a chain) during the load and idle,
and, on PostgreSQL, the connections used against the pools' sizes. The load generator shares the
machine with the server: latencies are indicative, reported with the 1-minute load average.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from benchmarks import REPO_DIR
from benchmarks.meta import finish, meta
from benchmarks.runners import TERMINAL, handoffs
from benchmarks.stats import percentile
from flowforge.core.dagfile import load_dag
from flowforge.roles import KEEP_ALIVE_SECS
from flowforge.settings import Settings, db_pool_size
from tests.backends import PG_ENV, REDIS_ENV, pg_database, redis_prefix
from tests.cluster import Cluster
from tests.pg_connections import ConnectionSampler

CLIENTS = 200
RATE = 200.0  # requests per second, all clients together
SECS = 60.0
SLOTS = 4
GOALS = {"get_p99_ms_up": 100.0, "get_p99_ms_distributed": 75.0, "trigger_p99_ms": 250.0}
# (kind, weight): 70 % reads, 20 % triggers, 10 % logs and event streams.
MIX = (("runs", 35), ("run", 25), ("dags", 10), ("trigger", 20), ("logs", 5), ("events", 5))
READS = ("runs", "run", "dags")
CHAIN = "id: load-chain\ntasks:\n" + "".join(
    f"  - {{id: t{i}, command: 'echo step {i}'{', depends_on: [t' + str(i - 1) + ']' if i else ''}}}\n"
    for i in range(4)
)
SINGLE = "id: load-one\nmax_active_runs: 64\ntasks:\n  - {id: t, command: 'echo one; echo two'}\n"
CHAIN_SPEC = load_dag(CHAIN)
IDLE_RUNS = 5
PAGE = 500  # runs per page of the list (its largest page)
Progress = Callable[[str], None]


@dataclass(frozen=True)
class Shape:
    """How much load: `clients` sending `rate` requests per second in all for `secs` seconds."""

    clients: int = CLIENTS
    rate: float = RATE
    secs: float = SECS


# -- the load --------------------------------------------------------------------------------------
@dataclass
class Tally:
    """What the clients saw: latency per kind, statuses, errors; the runs they triggered."""

    latencies: dict[str, list[float]] = field(default_factory=dict)  # kind -> seconds
    statuses: dict[int, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)  # connection errors by exception name
    runs: list[tuple[str, str]] = field(default_factory=list)  # (run_id, dag_id)
    late_secs: float = 0.0  # how far behind its clock the generator fell, at most
    started: float = 0.0  # perf_counter time the load began
    timeline: list[tuple[float, float]] = field(default_factory=list)  # (sent after start, latency)

    def add(self, kind: str, status: int, secs: float, sent: float) -> None:
        self.latencies.setdefault(kind, []).append(secs)
        self.timeline.append((sent - self.started, secs))
        self.statuses[status] = self.statuses.get(status, 0) + 1


def _pick(rng: random.Random) -> str:
    return rng.choices([k for k, _ in MIX], weights=[w for _, w in MIX])[0]


async def _request(http: httpx.AsyncClient, kind: str, tally: Tally, rng: random.Random) -> None:
    known = tally.runs[-200:]
    started = time.perf_counter()
    try:
        if kind == "runs":
            r = await http.get("/api/v1/runs", params={"limit": 50})
        elif kind == "dags":
            r = await http.get("/api/v1/dags")
        elif kind == "run":
            r = await http.get(f"/api/v1/runs/{rng.choice(known)[0]}")
        elif kind == "logs":
            run_id, dag_id = rng.choice(known)
            r = await http.get(f"/api/v1/runs/{run_id}/tasks/{'t0' if dag_id == 'load-chain' else 't'}/logs")
        elif kind == "events":
            async with http.stream("GET", "/api/v1/events", params={"after": 0}) as r:
                async for _ in r.aiter_bytes():
                    break  # the first events: the stream answers; the client goes away
        else:
            dag_id = "load-chain" if rng.random() < 0.25 else "load-one"
            r = await http.post("/api/v1/runs", json={"dag_id": dag_id, "triggered_by": "api-load"})
            if r.status_code == 201:
                tally.runs.append((r.json()["run_id"], dag_id))
    except httpx.HTTPError as exc:
        tally.errors[type(exc).__name__] = tally.errors.get(type(exc).__name__, 0) + 1
        return
    tally.add(kind, r.status_code, time.perf_counter() - started, started)


async def _client(
    http: httpx.AsyncClient, index: int, start: float, shape: Shape, tally: Tally, rng: random.Random
) -> None:
    """One client: a request every clients / rate seconds from its phase on, never waiting for answers."""
    interval = shape.clients / shape.rate
    loop = asyncio.get_running_loop()
    due = start + interval * index / shape.clients
    sent: list[asyncio.Task[None]] = []
    while due < start + shape.secs:
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            tally.late_secs = max(tally.late_secs, -delay)
        sent.append(asyncio.create_task(_request(http, _pick(rng), tally, rng)))
        due += interval
    await asyncio.gather(*sent)


async def _load(urls: list[str], shape: Shape, tally: Tally, seed: int) -> None:
    # Every client is made before the clock starts: making 200 takes the event loop a while.
    # A client drops an idle connection before the server would (KEEP_ALIVE_SECS): a request sent on
    # a connection the server is closing that very moment fails, the client's doing, not the server's.
    limits = httpx.Limits(keepalive_expiry=KEEP_ALIVE_SECS / 2)
    clients = [
        httpx.AsyncClient(base_url=urls[i % len(urls)], timeout=30.0, limits=limits)
        for i in range(shape.clients)
    ]
    try:
        start = asyncio.get_running_loop().time() + 0.5
        tally.started = time.perf_counter() + 0.5
        await asyncio.gather(
            *(
                _client(http, i, start, shape, tally, random.Random(seed + i))
                for i, http in enumerate(clients)
            )
        )
    finally:
        for http in clients:
            await http.aclose()


# -- the deployments -------------------------------------------------------------------------------
def start_up(folder: Path) -> tuple[Cluster, list[str], dict[str, int]]:
    cluster = Cluster(folder)
    cluster.start_up(SLOTS)
    return cluster, [cluster.url], {}


def start_distributed(folder: Path, services: ExitStack) -> tuple[Cluster, list[str], dict[str, int], str]:
    """Two APIs, a scheduler and two workers on a fresh database and key prefix; (cluster, API URLs,
    each process's PostgreSQL pool size, the database URL)."""
    db_url = services.enter_context(pg_database(os.environ[PG_ENV].strip()))
    queue_url = services.enter_context(redis_prefix(os.environ[REDIS_ENV].strip()))
    cluster = Cluster(folder, db_url=db_url, queue_url=queue_url)
    urls = [cluster.start_api(name).url for name in ("api1", "api2")]
    cluster.start_scheduler()
    for name in ("worker1", "worker2"):
        cluster.start_worker(name, SLOTS)
    cluster.wait_workers(["worker1", "worker2"], timeout=60)
    settings = Settings(home=folder, db_url=db_url, queue_url=queue_url, concurrency=SLOTS)
    pools = {name: db_pool_size(settings, "api") for name in ("api1", "api2")}
    pools |= {"scheduler": db_pool_size(settings, "scheduler")}
    pools |= {name: db_pool_size(settings, "worker") for name in ("worker1", "worker2")}
    return cluster, urls, pools, db_url


# -- one measurement -------------------------------------------------------------------------------
def chain_handoffs(http: httpx.Client, run_ids: list[str]) -> list[float]:
    """Every hand-off of these chain runs, in seconds."""
    out: list[float] = []
    for run_id in run_ids:
        out += handoffs(CHAIN_SPEC, http.get(f"/api/v1/runs/{run_id}").json()["tasks"])
    return out


def run_states(http: httpx.Client) -> dict[str, str]:
    """Every run's state by run id, page by page."""
    states: dict[str, str] = {}
    offset = 0
    while True:
        page = http.get("/api/v1/runs", params={"limit": PAGE, "offset": offset})
        page.raise_for_status()
        body = page.json()
        states |= {run["run_id"]: run["state"] for run in body["runs"]}
        if not body["has_more"]:
            return states
        offset += PAGE


def wait_runs(http: httpx.Client, run_ids: list[str], timeout: float) -> dict[str, int]:
    """Wait until every run has ended (or `timeout`); their states, counted."""
    deadline = time.monotonic() + timeout
    while True:
        states = run_states(http)
        if all(states.get(r) in TERMINAL for r in run_ids) or time.monotonic() > deadline:
            break
        time.sleep(1.0)
    counted: dict[str, int] = {}
    for run_id in run_ids:
        state = states.get(run_id, "missing")
        counted[state] = counted.get(state, 0) + 1
    return counted


def idle_runs(http: httpx.Client) -> list[str]:
    """IDLE_RUNS chain runs one after the other on the idle deployment (for the idle hand-off)."""
    ids = []
    for _ in range(IDLE_RUNS):
        run_id = http.post("/api/v1/runs", json={"dag_id": "load-chain", "triggered_by": "idle"}).json()[
            "run_id"
        ]
        wait_runs(http, [run_id], 60)
        ids.append(run_id)
    return ids


def measure(
    label: str, cluster: Cluster, urls: list[str], shape: Shape, progress: Progress, seed: int = 1
) -> dict[str, Any]:
    """The load against `urls` and everything the section reports but PostgreSQL's connections."""
    http = httpx.Client(base_url=urls[0], timeout=30.0)
    try:
        for text in (CHAIN, SINGLE):
            http.post("/api/v1/dags", json={"yaml": text}).raise_for_status()
        idle = idle_runs(http)
        tally = Tally(runs=[(r, "load-chain") for r in idle])
        progress(f"api-load {label}: {shape.clients} clients, {shape.rate:g} requests/s for {shape.secs:g}s")
        load_before = os.getloadavg()[0]
        began = time.monotonic()
        asyncio.run(_load(urls, shape, tally, seed))
        took = time.monotonic() - began
        load_after = os.getloadavg()[0]
        triggered = [r for r, _ in tally.runs if r not in idle]
        progress(f"api-load {label}: waiting for {len(triggered)} runs to end")
        states = wait_runs(http, triggered, timeout=600)
        chains = [r for r, d in tally.runs if d == "load-chain" and r not in idle][-100:]
        during, before = chain_handoffs(http, chains), chain_handoffs(http, idle)
    finally:
        http.close()
    gets = [s for k in READS for s in tally.latencies.get(k, [])]
    return {
        "requests": sum(tally.statuses.values()) + sum(tally.errors.values()),
        "offered_per_sec": shape.rate,
        "seconds": round(took, 1),
        "generator_late_secs": round(tally.late_secs, 3),
        "statuses": {str(k): v for k, v in sorted(tally.statuses.items())},
        "http_5xx": sum(v for k, v in tally.statuses.items() if k >= 500),
        "connection_errors": sum(tally.errors.values()),
        "errors": tally.errors,
        "database_locked_in_logs": cluster.count_in_logs("database is locked"),
        "get_p50_ms": _ms(percentile(gets, 50)),
        "get_p99_ms": _ms(percentile(gets, 99)),
        "trigger_p50_ms": _ms(percentile(tally.latencies.get("trigger", []), 50)),
        "trigger_p99_ms": _ms(percentile(tally.latencies.get("trigger", []), 99)),
        "by_kind_p99_ms": {k: _ms(percentile(v, 99)) for k, v in sorted(tally.latencies.items())},
        "runs": len(triggered),
        "run_states": states,
        "handoff_p50_ms_idle": _ms(percentile(before, 50)),
        "handoff_p50_ms_load": _ms(percentile(during, 50)),
        "load1_during": [round(load_before, 2), round(load_after, 2)],
    }


def _ms(secs: float | None) -> float | None:
    return None if secs is None else round(secs * 1000.0, 1)


def run_api_load(
    folder: Path, *, distributed: bool | None, progress: Progress, seed: int = 1
) -> dict[str, Any]:
    """The `api_load` section: on `up`, and on two APIs over PostgreSQL unless told not to (or unset)."""
    section: dict[str, Any] = {"meta": meta(REPO_DIR, clients=CLIENTS, rate=RATE, secs=SECS), "goals": GOALS}
    cluster, urls, _ = start_up(folder / "up")
    try:
        section["up"] = measure("up (SQLite)", cluster, urls, Shape(), progress, seed)
    finally:
        cluster.close()
    have_pg = bool(os.environ.get(PG_ENV, "").strip() and os.environ.get(REDIS_ENV, "").strip())
    if distributed is False or (distributed is None and not have_pg):
        section["distributed_skipped"] = (
            f"{PG_ENV} and {REDIS_ENV} not set" if not have_pg else "--no-distributed"
        )
        finish(section["meta"])
        return section
    with ExitStack() as services:
        cluster, urls, pools, db_url = start_distributed(folder / "distributed", services)
        connections = ConnectionSampler(db_url, every=0.5).start()
        try:
            section["distributed"] = measure("2 x api (PostgreSQL)", cluster, urls, Shape(), progress, seed)
        finally:
            connections.stop()
            cluster.close()
        section["distributed"] |= {
            "pg_connections_peak": connections.peak_total,
            "pg_connections_peak_by_name": dict(connections.peak),
            "pool_sizes": pools,
        }
    finish(section["meta"])
    return section


# -- the report ------------------------------------------------------------------------------------
def _judge(value: float | None, goal: float) -> str:
    return "" if value is None else (" ✓" if value < goal else f" ✗ (goal < {goal:g})")


def api_load_lines(section: dict[str, Any]) -> list[str]:
    """The section as text lines, each figure with its goal."""
    m = section["meta"]
    lines = [
        f"API under load: {m['clients']} clients, {m['rate']:g} requests/s open-loop for {m['secs']:g}s "
        f"(load average {m.get('load1_start')} at the start, {m.get('load1_end')} at the end, "
        f"{m.get('cpus_start')} CPUs; the generator shares the machine: latencies are indicative)"
    ]
    for key, goal_key in (("up", "get_p99_ms_up"), ("distributed", "get_p99_ms_distributed")):
        r = section.get(key)
        if r is None:
            if key == "distributed" and section.get("distributed_skipped"):
                lines.append(f"  distributed: skipped ({section['distributed_skipped']})")
            continue
        goals = section["goals"]
        lines += [
            f"  {key}: {r['requests']} requests in {r['seconds']}s (load average {r['load1_during'][0]} → "
            f"{r['load1_during'][1]}); 5xx {r['http_5xx']}{_judge(r['http_5xx'], 1)}, connection errors "
            f"{r['connection_errors']}{_judge(r['connection_errors'], 1)}, 'database is locked' in logs "
            f"{r['database_locked_in_logs']}",
            f"    GET p50 {r['get_p50_ms']} ms, p99 {r['get_p99_ms']} ms{_judge(r['get_p99_ms'], goals[goal_key])}; "
            f"trigger p50 {r['trigger_p50_ms']} ms, p99 {r['trigger_p99_ms']} ms"
            f"{_judge(r['trigger_p99_ms'], goals['trigger_p99_ms'])}; p99 by kind {r['by_kind_p99_ms']}",
            f"    runs triggered {r['runs']}: {r['run_states']}; hand-off p50 idle {r['handoff_p50_ms_idle']} ms, "
            f"under load {r['handoff_p50_ms_load']} ms; generator at most {r['generator_late_secs']}s behind",
        ]
        if "pg_connections_peak" in r:
            pools = r["pool_sizes"]
            lines.append(
                f"    PostgreSQL connections: peak {r['pg_connections_peak']} of pools totalling "
                f"{sum(pools.values())} ({', '.join(f'{k} {v}' for k, v in pools.items())}); "
                f"peak by application name {r.get('pg_connections_peak_by_name', {})}"
            )
    return lines
