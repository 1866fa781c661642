"""Where the per-task time goes: a workload on an in-process engine under cProfile.

Scheduler + Worker (2 slots) + SqliteStore (a file, WAL) + MemoryQueue in threads, as
`flowforge up` runs them, without the API. Every thread gets its own cProfile (installed by
`threading.setprofile` as the thread starts); the profiles are merged at the end. cProfile rather
than a sampling profiler because the work is spread over many threads (scheduler, slots, one
output reader per task), and a sampler such as pyinstrument follows only the thread it started in.
"""

from __future__ import annotations

import cProfile
import os
import pstats
import threading
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from benchmarks.meta import finish, meta
from benchmarks.workloads import Workload, load_workload
from flowforge.core.model import RunState
from flowforge.engine.scheduler import Scheduler
from flowforge.engine.worker import Worker
from flowforge.queues.memory import MemoryQueue
from flowforge.store.sqlite import SqliteStore

# Blocking waits: their own time is time a thread slept, not work; left out of the own-time list.
WAITS = (
    "acquire' of '_thread.lock",
    "acquire' of '_thread.RLock",
    "select.select",
    "posix.waitpid",
    "time.sleep",
    "posix.read",
    "_thread.start_new_thread",
)


class Engine:
    """The engine of `flowforge up` in this process: scheduler and worker threads on one store and queue."""

    def __init__(self, store: SqliteStore, queue: MemoryQueue, slots: int = 2) -> None:
        self.store = store
        self.queue = queue
        self.stop = threading.Event()
        self.scheduler = Scheduler(store, queue)
        self.worker = Worker(store, queue, slots=slots)
        self.threads = [
            threading.Thread(target=self.scheduler.run, args=(self.stop, 1.0), name="scheduler", daemon=True),
            threading.Thread(target=self.worker.run, args=(self.stop, 5.0), name="worker", daemon=True),
        ]

    def start(self) -> Engine:
        """Start the scheduler and the worker."""
        for t in self.threads:
            t.start()
        return self

    def run(self, dag_id: str, timeout: float = 300.0) -> float:
        """Trigger one run and wait for its end; returns trigger → ended_at in seconds."""
        sent = time.time()
        run = self.store.create_run(dag_id, triggered_by="benchmark", params={}, now=sent)
        self.queue.wake_scheduler()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            time.sleep(0.05)
            done = self.store.get_run(run.run_id)
            if done.state in (RunState.SUCCESS, RunState.FAILED, RunState.CANCELLED):
                assert done.ended_at is not None
                return done.ended_at - sent
        raise RuntimeError(f"run {run.run_id} did not end within {timeout:g}s")

    def close(self) -> None:
        """Stop the threads (the queue is shared with the next engine, so it stays open)."""
        self.stop.set()
        self.queue.wake_scheduler()
        for t in self.threads:
            t.join(15)


def _rows(stats: pstats.Stats, key: str, top: int, per: int, skip_waits: bool) -> list[dict[str, Any]]:
    entries = []
    for (filename, line, func), (_cc, ncalls, tottime, cumtime, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        where = f"{Path(filename).name}:{line}({func})" if line else func
        if skip_waits and any(w in where for w in WAITS):
            continue
        entries.append(
            {
                "function": where,
                "calls": ncalls,
                "own_s": tottime,
                "cum_s": cumtime,
                "own_us_per_task": tottime / per * 1e6,
                "cum_us_per_task": cumtime / per * 1e6,
            }
        )
    entries.sort(key=lambda e: e[key], reverse=True)
    return entries[:top]


def run_profile(
    name: str, folder: Path, *, runs: int = 3, top: int = 25, console: Console | None = None
) -> dict[str, Any]:
    """Profile `runs` runs of workload `name`; print the top functions; returns the `profile` section."""
    console = console or Console()
    workload: Workload = load_workload(name)
    folder.mkdir(parents=True, exist_ok=True)
    store = SqliteStore(str(folder / "flowforge.db"))
    queue = MemoryQueue()
    section: dict[str, Any] = {"meta": meta(workload=name, runs=runs), "workload": name}
    try:
        store.put_dag(workload.spec, workload.yaml, time.time())
        warm = Engine(store, queue).start()
        section["unprofiled_seconds"] = [warm.run(workload.spec.id) for _ in range(2)]
        warm.close()

        profiles: list[cProfile.Profile] = []
        lock = threading.Lock()

        def start_profile(frame: Any, event: str, arg: Any) -> None:
            profile = cProfile.Profile()
            with lock:
                profiles.append(profile)
            profile.enable()  # replaces this hook for the rest of the thread

        main_profile = cProfile.Profile()
        cpu_before = os.times()
        threading.setprofile(start_profile)
        try:
            engine = Engine(store, queue).start()
            main_profile.enable()
            walls = [engine.run(workload.spec.id) for _ in range(runs)]
            main_profile.disable()
            engine.close()
        finally:
            threading.setprofile(None)
        cpu_after = os.times()
        section["profiled_seconds"] = walls
        stats = pstats.Stats(main_profile)
        for p in profiles:
            try:
                stats.add(p)
            except TypeError:  # a thread that never called anything profiled
                continue
        per = workload.tasks * runs
        section["tasks_profiled"] = per
        section["cpu_ms_per_task"] = (
            ((cpu_after.user - cpu_before.user) + (cpu_after.system - cpu_before.system)) / per * 1000
        )
        section["by_cumulative"] = _rows(stats, "cum_s", top, per, skip_waits=False)
        section["by_own_time"] = _rows(stats, "own_s", top, per, skip_waits=True)
        finish(section["meta"])
    finally:
        queue.close()
        store.close()
    _print(section, console)
    return section


def _print(section: dict[str, Any], console: Console) -> None:
    console.print(
        f"profile of {section['workload']}: {section['tasks_profiled']} tasks, runs took "
        + ", ".join(f"{s:.2f}s" for s in section["profiled_seconds"])
        + f" under the profiler ({', '.join(f'{s:.2f}s' for s in section['unprofiled_seconds'])} without); "
        f"CPU of this process {section['cpu_ms_per_task']:.2f} ms per task (profiler included)"
    )
    for key, title, col in (
        ("by_cumulative", "cumulative time (waits included)", "cum_us_per_task"),
        ("by_own_time", "own time (blocking waits left out)", "own_us_per_task"),
    ):
        table = Table(title=f"top functions by {title}, all threads")
        for c in ("function", "calls", "own s", "cum s", "µs/task"):
            table.add_column(c, justify="left" if c == "function" else "right")
        for e in section[key]:
            table.add_row(
                e["function"], str(e["calls"]), f"{e['own_s']:.3f}", f"{e['cum_s']:.3f}", f"{e[col]:.0f}"
            )
        console.print(table)
