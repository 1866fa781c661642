"""R6 for real: the PostgreSQL server itself, then the Redis server itself, restarted mid-run.

The scenario runs a PostgreSQL cluster of its own (`initdb` into a temporary directory, `pg_ctl`
on a free port) and a `redis-server` of its own without persistence; the servers the rest of the
suite shares are never touched. `flowforge api`, `flowforge scheduler` and two `flowforge worker`s
run against them; mid-run PostgreSQL is stopped (`pg_ctl stop -m fast`: every session is cut) and
started 5 s later, and later Redis is SIGKILLed and started 5 s later on the same port, empty.

Besides I1-I6 (and I7, the run ending in time): every role is back at work within 10 s of each
server accepting connections again, the API answers 503 within 5 s (never 500, never a hang)
while PostgreSQL is away, and no role logs an error or a traceback: an outage is a warning.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.chaos.cluster import ChaosCluster, Figures, RedisServer
from tests.chaos.invariants import query
from tests.chaos.ledger import Dag, layered_dag
from tests.chaos.pgserver import PostgresServer
from tests.chaos.steps import Queued, queued_tasks, record_hits, verify, wait_claimed, wait_in_flight
from tests.harness import wait_until

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(180)]

OUTAGE_SECS = 5.0  # how long each server stays down
LONG_OUTAGE_SECS = 30.0  # the variant: PostgreSQL down for longer than anything in FlowForge waits
RECONNECT_SECS = 10.0  # every role must be back within this of its server accepting connections
ANSWER_SECS = 5.0  # the API must answer within this, whatever is down
PROBE_EVERY_SECS = 0.5  # while a server is away, the API is asked this often
WORKERS = ("worker1", "worker2")
ROLES = ("api", "scheduler", *WORKERS)


@pytest.fixture
def private_pg() -> Iterator[PostgresServer]:
    """A PostgreSQL cluster owned by the test, to stop and start (the shared server is never touched)."""
    server = PostgresServer().init()
    try:
        server.start()
        yield server
    finally:
        server.destroy()


# -- what the API answers while a server is away ------------------------------------------------------
@dataclass
class Probes:
    """Each answer of the API while a server was away: (path, status or the client's error, seconds).

    Only requests asked and answered while it was away count; one answered after it came back is
    kept apart (`late`): it may rightly be a 200.
    """

    answers: list[tuple[str, int | str, float]] = field(default_factory=list)
    late: list[tuple[str, int | str, float]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    threads: list[threading.Thread] = field(default_factory=list)

    def join(self) -> None:
        """Wait for every request still waiting for its answer (each gives up after ANSWER_SECS)."""
        for t in self.threads:
            t.join(ANSWER_SECS + 1)

    def statuses(self, late: bool = False) -> dict[str, list[int | str]]:
        """Path → the statuses it was answered with (those answered after the server was back, if `late`)."""
        out: dict[str, list[int | str]] = {}
        for path, status, _ in self.late if late else self.answers:
            out.setdefault(path, []).append(status)
        return out

    def seen(self) -> dict[str, set[int | str]]:
        """The statuses each path was answered with."""
        return {path: set(statuses) for path, statuses in self.statuses().items()}

    def slowest(self) -> float:
        return max((secs for _, _, secs in self.answers + self.late), default=0.0)

    def text(self) -> str:
        def counts(late: bool) -> str:
            return "; ".join(
                f"{path} " + ", ".join(f"{s}×{statuses.count(s)}" for s in sorted(set(statuses), key=str))
                for path, statuses in sorted(self.statuses(late).items())
            )

        late = f"; answered once it was back: {counts(True)}" if self.late else ""
        return f"{counts(False)} (slowest {self.slowest():.1f}s){late}"


def probe_while(url: str, paths: list[str], until: threading.Event) -> tuple[Probes, threading.Thread]:
    """Ask the API for each path every PROBE_EVERY_SECS (a 5 s client timeout each) until `until` is set.

    Each request runs in a thread of its own, so a slow answer delays no other. Set `until` just
    before the server is started again: an answer that comes after is `late`. Returns the answers
    and the thread that starts the requests: once it has ended, `Probes.join` waits for the last.
    """
    probes = Probes()

    def ask(path: str) -> None:
        started = time.monotonic()
        try:
            status: int | str = httpx.get(f"{url}{path}", timeout=ANSWER_SECS).status_code
        except httpx.HTTPError as exc:
            status = type(exc).__name__
        answer = (path, status, time.monotonic() - started)
        with probes.lock:
            (probes.late if until.is_set() else probes.answers).append(answer)

    def drive() -> None:
        while not until.is_set():
            for path in paths:
                t = threading.Thread(target=ask, args=(path,), daemon=True)
                t.start()
                probes.threads.append(t)
            until.wait(PROBE_EVERY_SECS)

    driver = threading.Thread(target=drive, daemon=True)
    driver.start()
    return probes, driver


class StreamWatch:
    """A client following a live stream of the API, as the page and `flowforge logs -f` do.

    Records when each line starting with `counted` arrived, and whether the stream broke (an
    error status, or the connection cut mid-answer) or was ended by the server (a followed
    log ends with its attempt).
    """

    def __init__(self, url: str, path: str, counted: str = "") -> None:
        self.url, self.path, self.counted = url, path, counted
        self.arrivals: list[float] = []  # epoch of each counted line
        self.broken: str | None = None
        self.finished = False
        self._stop = threading.Event()
        self._open = threading.Event()
        self._thread = threading.Thread(target=self._follow, daemon=True)

    def start(self) -> StreamWatch:
        """Open the stream; returns once it answered 200 (its headers came)."""
        self._thread.start()
        wait_until(f"{self.path} to open", lambda: self._open.is_set() or self.broken, timeout=10)
        assert self.broken is None, f"{self.path} did not open: {self.broken}"
        return self

    def _follow(self) -> None:
        try:
            timeout = httpx.Timeout(ANSWER_SECS, read=None)
            with httpx.stream("GET", f"{self.url}{self.path}", timeout=timeout) as answer:
                if answer.status_code != 200:
                    self.broken = f"answered {answer.status_code}"
                    return
                self._open.set()
                for line in answer.iter_lines():
                    if self._stop.is_set():
                        return
                    if line.startswith(self.counted):
                        self.arrivals.append(time.time())
            self.finished = True
        except httpx.HTTPError as exc:
            self.broken = f"{type(exc).__name__}: {exc}"
        finally:
            self._open.set()

    def close(self) -> None:
        self._stop.set()

    def after(self, at: float) -> int:
        """How many counted lines arrived after epoch `at`."""
        return sum(1 for t in self.arrivals if t > at)


# -- when each role is back ---------------------------------------------------------------------------
def store_marks(c: ChaosCluster, worker_ids: dict[str, str]) -> dict[str, float]:
    """What each role last wrote to the store: the scheduler its lease's expiry, a worker its heartbeat."""
    marks = {}
    for holder, expires in query(c.db_url, "SELECT holder, expires_at FROM leases WHERE name = 'scheduler'"):
        if int(holder.rsplit("-", 2)[1]) == c.procs["scheduler"].pid:
            marks["scheduler"] = float(expires)
    beats = dict(query(c.db_url, "SELECT worker_id, last_heartbeat FROM workers"))
    for name, worker_id in worker_ids.items():
        if worker_id in beats:
            marks[name] = float(beats[worker_id])
    return marks


def api_answers(c: ChaosCluster, path: str) -> bool:
    try:
        return httpx.get(f"{c.url}{path}", timeout=ANSWER_SECS).status_code == 200
    except httpx.HTTPError:
        return False


def wait_back(
    c: ChaosCluster, checks: dict[str, Callable[[], bool]], since: float, timeout: float = 30
) -> dict[str, float]:
    """Seconds from `since` (epoch) until each check first held; each polled every 0.1 s in a thread of its own.

    (One check may block a while, as a request to an API waiting for its database does.)
    """
    back: dict[str, float] = {}
    done = threading.Event()

    def poll(name: str, check: Callable[[], bool]) -> None:
        while not done.is_set():
            try:
                if check():
                    back[name] = time.time() - since
                    return
            except Exception:  # the database this reads may be starting: try again
                pass
            done.wait(0.1)

    threads = [threading.Thread(target=poll, args=item, daemon=True) for item in checks.items()]
    for t in threads:
        t.start()
    try:
        c.wait_for(f"{sorted(checks)} to be back", lambda: len(back) == len(checks), timeout, poll=0.1)
    finally:
        done.set()
    return dict(sorted(back.items(), key=lambda item: item[1]))


def log_lines(c: ChaosCluster, name: str) -> list[dict[str, Any]]:
    """The JSON lines of a role's log (a line that is not JSON is kept as its text)."""
    lines = []
    for raw in (c.dir / f"{name}.log").read_text(errors="replace").splitlines():
        try:
            entry = json.loads(raw)
        except ValueError:
            entry = {"level": "text", "msg": raw}
        lines.append(entry if isinstance(entry, dict) else {"level": "text", "msg": raw})
    return lines


def logged_back(c: ChaosCluster, name: str, server: str, since: float) -> float | None:
    """Seconds from `since` (epoch) to the role's "SERVER is reachable again" log line, once it logged one."""
    for entry in log_lines(c, name):
        if str(entry.get("msg", "")).startswith(f"{server} is reachable again") and "ts" in entry:
            at = datetime.fromisoformat(entry["ts"]).timestamp()
            if at >= since - 0.01:
                return at - since
    return None


def wait_logged_back(c: ChaosCluster, server: str, since: float, timeout: float) -> dict[str, float]:
    """Seconds from `since` to each role's "SERVER is reachable again" line; waits up to `timeout` for all."""
    found: dict[str, float] = {}

    def every_role() -> bool:
        for name in ROLES:
            if name not in found and (secs := logged_back(c, name, server, since)) is not None:
                found[name] = secs
        return len(found) == len(ROLES)

    try:
        c.wait_for(f"every role to log {server} reachable again", every_role, timeout, poll=0.2)
    except AssertionError:
        pass  # the caller asserts on what was found, with the figures printed first
    return found


def tracebacks(c: ChaosCluster) -> list[str]:
    """Every log record with a traceback, and every line that is not a log record, in any role's log.

    An outage is a warning of one line (whatever its level, a fenced worker says so as an error);
    a traceback means an error nobody expected, or an expected one reported as if it was not.
    """
    found = []
    for name in ROLES:
        for entry in log_lines(c, name):
            if entry.get("level") == "text" or "exc" in entry:
                found.append(f"{name}: {entry.get('level')} {entry.get('msg')} {entry.get('exc', '')}"[:1500])
    return found


def levels(c: ChaosCluster) -> str:
    """How many warnings and errors each role logged."""
    counts = []
    for name in ROLES:
        entries = log_lines(c, name)
        w, e = (sum(x.get("level") == level for x in entries) for level in ("warning", "error"))
        counts.append(f"{name} {w}/{e}")
    return "warnings/errors logged: " + ", ".join(counts)


# -- the faults ---------------------------------------------------------------------------------------
@dataclass
class Restart:
    """One server's restart: when it went down, what the API answered meanwhile, when each role was back.

    `back` and `logged` count seconds from the moment the server was started again (it accepts
    connections a fraction of a second later): `back` until the role was seen at work (the API
    answering, the scheduler renewing its lease, a worker heartbeating), `logged` until the role
    logged the server reachable again.
    """

    down_at: float  # epoch
    secs: float  # how long it was down
    probes: Probes
    back: dict[str, float]
    logged: dict[str, float]
    lost: Queued = field(default_factory=set)  # Redis: queued tasks whose message went with it
    claimed: float = 0.0  # Redis: seconds from its start until every one of them was claimed
    streams_broken: str = ""  # PostgreSQL: how the live streams open across it broke, if they did

    def text(self, server: str) -> str:
        return (
            f"{server} down {self.secs:.0f}s; the API meanwhile: {self.probes.text()}; back at work "
            f"{secs_text(self.back)}; logged reachable again {secs_text(self.logged)}"
            + (f"; streams broken: {self.streams_broken}" if self.streams_broken else "")
        )


def outage(
    c: ChaosCluster, stop: Callable[[], object], start: Callable[[], object], secs: float
) -> tuple[float, float, Probes]:
    """Stop a server, ask the API for /api/v1/runs and /ready while it is away, start it `secs` later.

    Returns (epoch of the stop, epoch of the start, the API's answers).
    """
    down_at = time.time()
    stop()
    done = threading.Event()
    probes, driver = probe_while(c.url, ["/api/v1/runs", "/ready"], done)
    time.sleep(max(0.0, down_at + secs - time.time()))
    done.set()  # an answer from now on is late: the server is about to accept connections again
    driver.join()
    started = time.time()
    start()
    probes.join()
    return down_at, started, probes


def follow_running_log(c: ChaosCluster) -> StreamWatch:
    """Follow the log of a task that has just started, as `flowforge logs -f` does: a stream that lasts."""
    for _ in range(10):
        e = wait_in_flight(c)[0]
        path = f"/api/v1/runs/{e.run_id}/tasks/{e.task_id}/logs?attempt={e.attempt}&follow=1"
        log = StreamWatch(c.url, path).start()
        if not log.finished:
            return log
    raise AssertionError("every task ended before its log could be followed")


def restart_postgres(
    c: ChaosCluster, pg: PostgresServer, worker_ids: dict[str, str], secs: float = OUTAGE_SECS
) -> Restart:
    """Stop PostgreSQL (fast: every session cut) while tasks run, and start it `secs` later."""
    events = StreamWatch(c.url, "/api/v1/events", counted="id: ").start()  # as the page does
    before = store_marks(c, worker_ids)
    log = follow_running_log(c)
    down_at, started, probes = outage(c, lambda: pg.stop("fast"), pg.start, secs)

    def wrote(name: str) -> Callable[[], bool]:
        return lambda: store_marks(c, worker_ids).get(name, 0.0) > before.get(name, 0.0)

    checks = {"api": lambda: api_answers(c, "/api/v1/runs")}
    checks.update({name: wrote(name) for name in ("scheduler", *WORKERS)})
    checks["events"] = lambda: events.after(started) > 0 or events.broken is not None or events.finished
    back = wait_back(c, checks, started)
    events.close()
    log.close()
    streams = {
        "the event stream": events.broken or ("ended by the server" if events.finished else None),
        "the followed log": log.broken,
    }
    if streams["the event stream"]:
        back.pop("events")
    logged = wait_logged_back(c, "PostgreSQL", started, RECONNECT_SECS)
    broken = "; ".join(f"{what}: {why}" for what, why in streams.items() if why)
    return Restart(down_at, secs, probes, back, logged, streams_broken=broken)


def restart_redis(c: ChaosCluster, redis_server: RedisServer, run_id: str) -> Restart:
    """SIGKILL Redis while task messages wait in it, and start it 5 s later, empty, on the same port."""

    def waiting() -> Queued | None:
        queued = queued_tasks(c, [run_id])
        return queued if queued else None

    before = c.wait_for("tasks waiting in the queue", waiting, timeout=30, poll=0.02)
    lost: Queued = set()

    def start() -> None:
        lost.update(before & queued_tasks(c, [run_id]))  # still queued at the same attempt: message gone
        redis_server.start()

    down_at, started, probes = outage(c, redis_server.kill, start, OUTAGE_SECS)
    back = wait_back(c, {"api": lambda: api_answers(c, "/ready")}, started)
    since = time.monotonic() - (time.time() - started)  # the start, on the monotonic clock
    claimed = wait_claimed(c, [run_id], lost, since, timeout=30)
    logged = wait_logged_back(c, "Redis", started, RECONNECT_SECS)
    return Restart(down_at, OUTAGE_SECS, probes, back, logged, lost, claimed)


def secs_text(secs: dict[str, float]) -> str:
    return ", ".join(f"{name} {s:.1f}s" for name, s in secs.items()) or "-"


# -- the scenarios ------------------------------------------------------------------------------------
def start_cluster(c: ChaosCluster, rng: random.Random) -> tuple[dict[str, str], Dag, str]:
    """api, scheduler and two one-slot workers; a run of 43 tasks (chains and fan-in) triggered.

    Two slots for layers of six tasks: messages wait in Redis. Returns (name → worker_id, the
    DAG, the run's id).
    """
    c.start_api()
    c.start_scheduler()
    for name in WORKERS:
        c.start_worker(name, 1)
    worker_ids = c.wait_workers(list(WORKERS))
    dag = layered_dag("restarts", c.ledger, rng, layers=7, width=6, sleep=(0.3, 1.0))
    c.submit(dag.yaml)
    return worker_ids, dag, c.trigger(dag.dag_id)


def assert_recovered(c: ChaosCluster, server: str, restart: Restart) -> None:
    """The API answered in time while the server was away; every role was back within RECONNECT_SECS."""
    assert restart.probes.slowest() < ANSWER_SECS, restart.text(server)
    assert all(s in (200, 503) for _, s, _ in restart.probes.late), restart.text(server)
    assert set(restart.logged) == set(ROLES), restart.text(server)
    assert not restart.streams_broken, restart.text(server)
    slowest = max([*restart.back.values(), *restart.logged.values()])
    assert slowest < RECONNECT_SECS, restart.text(server)


def assert_no_tracebacks(c: ChaosCluster) -> None:
    problems = tracebacks(c)
    assert not problems, "\n".join(problems[:20])


def run_text(c: ChaosCluster, dag: Dag, duration: float) -> str:
    load = Path("/proc/loadavg").read_text().split()[0]
    return f"the run of {len(dag.task_ids)} tasks took {duration:.1f}s; {levels(c)}; 1-minute load average {load}"


def test_r6_postgres_and_redis_restarted(
    tmp_path: Path, private_pg: PostgresServer, private_redis: RedisServer, seed: int, figures: Figures
) -> None:
    """PostgreSQL stopped for 5 s at about a third of a run, Redis killed for 5 s at about two thirds."""
    rng = random.Random(seed)
    c = ChaosCluster(tmp_path, db_url=private_pg.create_database("flowforge"), queue_url=private_redis.url)
    try:
        start = time.monotonic()
        worker_ids, dag, run_id = start_cluster(c, rng)
        triggered = time.monotonic()
        c.wait_progress([run_id], rng.uniform(0.25, 0.35), timeout=60)
        pg = restart_postgres(c, private_pg, worker_ids)
        c.wait_progress([run_id], rng.uniform(0.6, 0.7), timeout=60)
        redis = restart_redis(c, private_redis, run_id)
        c.wait_runs([run_id], timeout=90)
        duration = time.monotonic() - triggered

        record_hits(figures, c, [pg.down_at])
        figures.faults += 1
        figures.hits += 1 if redis.lost else 0
        figures.tasks_hit += len(redis.lost)
        figures.recovery = [max(pg.back.values()), redis.claimed]
        figures.notes += [
            pg.text("PostgreSQL"),
            redis.text("Redis"),
            f"Redis: {len(redis.lost)} queued task(s) lost their message, all claimed {redis.claimed:.1f}s "
            "after it was started again",
            run_text(c, dag, duration),
        ]
        verify(c, figures, {run_id: dag})
        figures.elapsed = time.monotonic() - start

        # PostgreSQL away: every answer that needs it is a 503, in time; Redis away: reads go on.
        assert pg.probes.seen() == {"/api/v1/runs": {503}, "/ready": {503}}, pg.text("PostgreSQL")
        assert redis.probes.seen() == {"/api/v1/runs": {200}, "/ready": {503}}, redis.text("Redis")
        assert_recovered(c, "PostgreSQL", pg)
        assert_recovered(c, "Redis", redis)
        assert figures.hits == figures.faults == 2, f"{figures.hits} of {figures.faults} faults hit work"
        assert redis.claimed < RECONNECT_SECS + 5, redis.claimed  # reconnected, then the stranded sweep
        assert_no_tracebacks(c)
    finally:
        c.close()


def test_r6_postgres_down_30s(
    tmp_path: Path, private_pg: PostgresServer, private_redis: RedisServer, seed: int, figures: Figures
) -> None:
    """PostgreSQL stopped for 30 s mid-run: far past every lease, the pool's reconnection window, a tick."""
    rng = random.Random(seed)
    c = ChaosCluster(tmp_path, db_url=private_pg.create_database("flowforge"), queue_url=private_redis.url)
    try:
        start = time.monotonic()
        worker_ids, dag, run_id = start_cluster(c, rng)
        triggered = time.monotonic()
        c.wait_progress([run_id], rng.uniform(0.3, 0.5), timeout=60)
        pg = restart_postgres(c, private_pg, worker_ids, secs=LONG_OUTAGE_SECS)
        c.wait_runs([run_id], timeout=90)
        duration = time.monotonic() - triggered

        record_hits(figures, c, [pg.down_at])
        figures.recovery = [max(pg.back.values())]
        figures.notes += [pg.text("PostgreSQL"), run_text(c, dag, duration)]
        verify(c, figures, {run_id: dag})
        figures.elapsed = time.monotonic() - start

        assert pg.probes.seen() == {"/api/v1/runs": {503}, "/ready": {503}}, pg.text("PostgreSQL")
        assert_recovered(c, "PostgreSQL", pg)
        assert figures.hits == figures.faults == 1, "the outage struck no work in flight"
        assert_no_tracebacks(c)
    finally:
        c.close()
