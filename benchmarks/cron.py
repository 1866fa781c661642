"""1,000 scheduled DAGs: how long each scheduler tick takes, and how late each cron run is made.

DAG i (of 1,000) has one `true` task and the 6-field schedule `S * * * * *` with S = i % 60: each
fires once a minute, and 16 or 17 of them fire at every second of the minute. They are submitted
to `flowforge up` (SQLite) and, when PostgreSQL and Redis are configured, to `api` + `scheduler` +
one worker; after a settling pause the schedules are watched for two minutes.

Tick durations come from the scheduler itself: at debug level it logs how long each tick took
(`tick_ms`, timed around `Scheduler.tick` as benchmarks/scale.py times it in-process), every tick
of the window counted, those with housekeeping (cron pass included) also apart. Lateness is each
run's `created_at` minus its logical date (the tick), read from the store; a tick of the window
without its run counts as missed. Goals: tick p99 under 50 ms, every run made within 1 s of its tick.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from benchmarks import REPO_DIR
from benchmarks.meta import finish, meta
from benchmarks.runners import distributed_unavailable
from benchmarks.stats import percentile
from flowforge.store import open_store
from tests.backends import PG_ENV, REDIS_ENV, pg_database, redis_prefix
from tests.cluster import Cluster

DAGS = 1000
WATCH_SECS = 120.0
SETTLE_SECS = 10.0  # after the last DAG is submitted, before the window opens
GRACE_SECS = 3.0  # after the window closes, for its last ticks' runs to be made
SLOTS = 4
TICK_P99_GOAL_MS = 50.0
LATE_GOAL_SECS = 1.0
SCHEDULE_CHOICE = "DAG i fires at second i % 60 of every minute (6-field cron, UTC)"


def dag_yaml(i: int) -> str:
    """DAG number `i`: one `true` task, firing once a minute at second i % 60."""
    return f'id: cron{i:04d}\nschedule: "{i % 60} * * * * *"\ntasks:\n  - {{id: t, command: "true"}}\n'


@contextmanager
def deployment(kind: str, folder: Path, repo: Path) -> Iterator[tuple[Cluster, str, str]]:
    """(the cluster, the name of the process that schedules, the store URL) of a running deployment."""
    with ExitStack() as stack:
        if kind == "up":
            cluster = Cluster(folder, log_level="debug", repo=repo)
            stack.callback(cluster.close)
            cluster.start_up(SLOTS)
            yield cluster, "up", f"sqlite:///{cluster.home / 'flowforge.db'}"
            return
        db_url = stack.enter_context(pg_database(os.environ[PG_ENV].strip()))
        queue_url = stack.enter_context(redis_prefix(os.environ[REDIS_ENV].strip()))
        cluster = Cluster(folder, db_url=db_url, queue_url=queue_url, repo=repo)
        stack.callback(cluster.close)
        cluster.start_api()
        cluster.start("scheduler", "scheduler", env={"FLOWFORGE_LOG_LEVEL": "debug"})
        cluster.start_worker("worker", SLOTS)
        cluster.wait_workers(["worker"], timeout=60)
        yield cluster, "scheduler", db_url


def run_cron(
    folder: Path,
    *,
    dags: int = DAGS,
    watch_secs: float = WATCH_SECS,
    settle_secs: float = SETTLE_SECS,
    distributed: bool | None = None,
    progress: Any = print,
    repo: Path = REPO_DIR,
) -> dict[str, Any]:
    """The `cron` section: `up`, and the distributed scheduler on PostgreSQL when it can run."""
    section: dict[str, Any] = {
        "meta": meta(repo, dags=dags, watch_secs=watch_secs, schedules=SCHEDULE_CHOICE, slots=SLOTS),
        "goals": {"tick_p99_ms": TICK_P99_GOAL_MS, "late_max_s": LATE_GOAL_SECS},
        "systems": {},
    }
    kinds = ["up"]
    skipped = distributed_unavailable(repo) if distributed is not False else "not asked for"
    if skipped is None:
        kinds.append("distributed")
    section["distributed_skipped"] = skipped
    for kind in kinds:
        with deployment(kind, folder / kind, repo) as (cluster, scheduler, url):
            figures = watch(cluster, scheduler, url, dags, watch_secs, settle_secs, progress, kind)
        section["systems"][kind] = figures
    finish(section["meta"])
    return section


def watch(
    cluster: Cluster,
    scheduler: str,
    url: str,
    dags: int,
    watch_secs: float,
    settle_secs: float,
    progress: Any,
    kind: str,
) -> dict[str, Any]:
    """Submit the DAGs, watch their schedules for `watch_secs`, and measure the ticks and runs."""
    submitted = time.time()
    for i in range(dags):
        cluster.submit(dag_yaml(i))
    start = time.time() + settle_secs
    end = start + watch_secs
    progress(
        f"cron {kind}: {dags} DAGs submitted in {time.time() - submitted:.1f}s; watching {watch_secs:g}s"
    )
    proc = cluster.procs[scheduler]
    time.sleep(max(start - time.time(), 0.0))
    cpu_start = proc.cpu()
    while time.time() < end:
        cluster.check_alive()
        time.sleep(min(1.0, max(end - time.time(), 0.0)))
    cpu_end = proc.cpu()
    time.sleep(GRACE_SECS)  # for the window's last ticks to have their runs
    log_path = proc.log_path
    assert log_path is not None
    figures: dict[str, Any] = {
        "window": {"start": start, "end": end},
        # CPU seconds per second of the process that schedules (for `up`: its API and worker too).
        "cpu_share": None if cpu_start is None or cpu_end is None else (cpu_end - cpu_start) / watch_secs,
        "ticks": tick_figures(log_path, start, end),
        "runs": run_figures(url, dags, start, end),
    }
    ticks, runs = figures["ticks"]["all"], figures["runs"]
    progress(
        f"cron {kind}: {ticks['n']} ticks, p99 {_ms(ticks['p99_ms'])}, max {_ms(ticks['max_ms'])}; "
        f"{runs['made']}/{runs['expected']} runs, late p99 {_s(runs['late_p99_s'])}, max {_s(runs['late_max_s'])}; "
        f"{scheduler} used {_share(figures['cpu_share'])} of a core"
    )
    return figures


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f} ms"


def _share(value: float | None) -> str:
    return "–" if value is None else f"{value:.0%}"


def _s(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f} s"


def tick_figures(log_path: Path, start: float, end: float) -> dict[str, Any]:
    """p50/p95/p99/max of the ticks the scheduler logged within [start, end]: all, and with housekeeping."""
    every: list[float] = []
    housekept: list[float] = []
    making: list[float] = []
    for line in log_path.read_text(errors="replace").splitlines():
        if '"tick_ms"' not in line:
            continue
        try:
            entry = json.loads(line)
            at = datetime.fromisoformat(entry["ts"]).timestamp()
        except (ValueError, KeyError):
            continue
        if not start <= at <= end:
            continue
        every.append(entry["tick_ms"])
        if entry.get("housekeeping"):
            housekept.append(entry["tick_ms"])
        if entry.get("runs_created"):
            making.append(entry["tick_ms"])
    return {
        "all": spread(every),
        "housekeeping": spread(housekept),
        "making_runs": spread(making),
        "per_sec": len(every) / (end - start),
    }


def spread(values: list[float]) -> dict[str, Any]:
    """n, p50, p95, p99 and max of tick durations in milliseconds."""
    return {
        "n": len(values),
        "p50_ms": percentile(values, 50),
        "p95_ms": percentile(values, 95),
        "p99_ms": percentile(values, 99),
        "max_ms": max(values) if values else None,
    }


def expected_ticks(dags: int, start: float, end: float) -> int:
    """How many ticks of the `dag_yaml` schedules fall within [start, end]."""
    first, last = int(start) + (start % 1 > 0), int(end)
    per_second = [len(range(s, dags, 60)) for s in range(60)]  # DAGs firing at each second
    return sum(per_second[t % 60] for t in range(first, last + 1))


def run_figures(url: str, dags: int, start: float, end: float) -> dict[str, Any]:
    """Lateness (created_at − logical date) of the scheduled runs whose tick fell within [start, end]."""
    store = open_store(url)
    try:
        runs = store.list_runs(limit=1_000_000)
    finally:
        store.close()
    mine = [r for r in runs if r.logical_date is not None and start <= r.logical_date <= end]
    late = [r.created_at - r.logical_date for r in mine if r.logical_date is not None]
    keys = {(r.dag_id, r.logical_date) for r in mine}
    expected = expected_ticks(dags, start, end)
    return {
        "expected": expected,
        "made": len(keys),
        "missed": expected - len(keys),
        "duplicates": len(mine) - len(keys),
        "ended": sum(str(r.state) in ("success", "failed", "cancelled") for r in mine),
        "succeeded": sum(str(r.state) == "success" for r in mine),
        "late_p50_s": percentile(late, 50),
        "late_p99_s": percentile(late, 99),
        "late_max_s": max(late) if late else None,
    }


def cron_lines(results: dict[str, Any]) -> list[str]:
    """The cron section as report lines: ticks p50/p95/p99/max, run lateness, missed ticks, per system."""
    from benchmarks.report import _goal, machine_text  # report.py reads this module lazily: no cycle

    section = results.get("cron")
    if not section:
        return []
    m = section["meta"]
    goal_ms = section["goals"]["tick_p99_ms"]
    goal_s = section["goals"]["late_max_s"]
    lines = [
        f"{m.get('dags'):,} scheduled DAGs ({m.get('schedules')}), watched {m.get('watch_secs'):g}s; {machine_text(m)}"
    ]
    for name, s in section["systems"].items():
        for label, t in (
            ("every tick", s["ticks"]["all"]),
            ("ticks with housekeeping", s["ticks"]["housekeeping"]),
        ):
            judged = _goal(None if t["p99_ms"] is None else t["p99_ms"] < goal_ms, section)
            lines.append(
                f"{name}, {label} ({t['n']}): p50 {_ms(t['p50_ms'])}, p95 {_ms(t['p95_ms'])}, "
                f"p99 {_ms(t['p99_ms'])}{judged}, max {_ms(t['max_ms'])}"
            )
        r = s["runs"]
        on_time = None if r["late_max_s"] is None else r["late_max_s"] <= goal_s and r["missed"] == 0
        lines.append(
            f"{name}, cron runs: {r['made']}/{r['expected']} ticks made ({r['missed']} missed, "
            f"{r['duplicates']} twice), created − tick p50 {_s(r['late_p50_s'])}, p99 {_s(r['late_p99_s'])}, "
            f"max {_s(r['late_max_s'])}{_goal(on_time, section)}; the scheduling process used "
            f"{_share(s.get('cpu_share'))} of a core"
        )
    if section.get("distributed_skipped"):
        lines.append(f"distributed: skipped ({section['distributed_skipped']})")
    return lines
