"""One run of one DAG in this process, with no server: what `flowforge test` runs.

The DAG is stored in a SQLite store held in memory (nothing is written to disk), and one
`Scheduler` and one `Worker` (the same classes, built as `roles` builds them for `up`) run in
threads on the in-process queue. The run is triggered as the API would (`operations.trigger_run`)
and followed through the store: its events give each task's state changes, its log API each
attempt's output, cut into whole lines.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

from flowforge.core.errors import InvalidRequest
from flowforge.core.model import RUN_TERMINAL, TASK_TERMINAL, DagSpec, TaskState
from flowforge.core.records import Attempt, Run, TaskInstance
from flowforge.operations import trigger_run
from flowforge.roles import make_scheduler, make_worker
from flowforge.services import Services, build_services
from flowforge.settings import Settings
from flowforge.store import Store

MEMORY_DB = "sqlite://:memory:"  # one connection shared by every thread (store/sqlite.py)
POLL_SECS = 0.1  # how often the run's events and its running tasks' logs are read
EVENT_BATCH = 500  # events read at once
LOG_READ_BYTES = 1024 * 1024  # read from a log at once
MAX_LINE_CHARS = 64 * 1024  # output with no newline for this long is shown as a line of its own
STOP_GRACE_SECS = 0.0  # on Ctrl-C running tasks are killed at once (Worker.run's grace)
# Task states worth a line: what a user waits for (queued and pending are the engine's business).
SHOWN_STATES = frozenset({TaskState.RUNNING, TaskState.UP_FOR_RETRY, *TASK_TERMINAL})


@dataclass(frozen=True)
class OutputLine:
    """One line a task wrote (without its newline)."""

    task_id: str
    attempt: int
    text: str


@dataclass(frozen=True)
class TaskChange:
    """A task reached a state; for an ended attempt, the attempt's record."""

    task_id: str
    state: TaskState
    attempt: int
    record: Attempt | None = None


@dataclass(frozen=True)
class RunResult:
    """The run as it ended, and its tasks."""

    run: Run
    tasks: list[TaskInstance]


def select_tasks(spec: DagSpec, task_ids: Iterable[str], upstream: bool) -> DagSpec:
    """The DAG cut down to `task_ids` (with `upstream`, and every task they depend on, transitively).

    Dependencies on tasks left out are dropped: they count as met. The schedule is dropped too,
    so that no other run starts. InvalidRequest names an unknown task id.
    """
    wanted = list(dict.fromkeys(task_ids))
    if not wanted:
        return replace(spec, schedule=None)
    known = {t.id: t for t in spec.tasks}
    unknown = [t for t in wanted if t not in known]
    if unknown:
        raise InvalidRequest(
            "unknown_task",
            f"DAG {spec.id!r} has no task {', '.join(map(repr, unknown))} (its tasks: {', '.join(known)})",
        )
    keep = set(wanted)
    stack = list(wanted) if upstream else []
    while stack:
        for dep in known[stack.pop()].depends_on:
            if dep not in keep:
                keep.add(dep)
                stack.append(dep)
    tasks = tuple(
        replace(t, depends_on=tuple(d for d in t.depends_on if d in keep)) for t in spec.tasks if t.id in keep
    )
    return replace(spec, tasks=tasks, schedule=None)


class LineSplitter:
    """Text of one attempt's log, cut into whole lines; a line past MAX_LINE_CHARS is cut there."""

    def __init__(self) -> None:
        self.partial = ""

    def feed(self, text: str) -> list[str]:
        """The lines `text` completes."""
        lines = (self.partial + text).split("\n")
        self.partial = lines.pop()
        while len(self.partial) > MAX_LINE_CHARS:
            lines.append(self.partial[:MAX_LINE_CHARS])
            self.partial = self.partial[MAX_LINE_CHARS:]
        return lines

    def finish(self) -> list[str]:
        """The last line, when the output did not end with a newline."""
        rest, self.partial = self.partial, ""
        return [rest] if rest else []


class RunFollower:
    """Reads a run's events and its running attempts' logs, calling back in order, in one thread."""

    def __init__(
        self,
        store: Store,
        run_id: str,
        on_output: Callable[[OutputLine], None],
        on_change: Callable[[TaskChange], None],
    ) -> None:
        self.store = store
        self.run_id = run_id
        self.on_output = on_output
        self.on_change = on_change
        self.after = 0  # the last event read
        self.live: dict[tuple[str, int], tuple[int, LineSplitter]] = {}  # attempt -> log cursor, splitter
        self.ended = False

    def step(self) -> None:
        """Read what happened since the last step: new events, then new output of running attempts."""
        while True:
            events = self.store.events_after(self.after, EVENT_BATCH)
            for event in events:
                self.after = event.id
                if event.run_id != self.run_id or event.state is None:
                    continue
                if event.kind == "run" and event.state in RUN_TERMINAL:
                    self.ended = True
                elif event.kind == "task" and event.task_id is not None:
                    self._task_event(event.task_id, TaskState(event.state), event.attempt or 0)
            if len(events) < EVENT_BATCH:
                break
        for key in list(self.live):
            self._read_log(key, to_end=False)

    def _task_event(self, task_id: str, state: TaskState, attempt: int) -> None:
        key = (task_id, attempt)
        if state == TaskState.RUNNING:
            self.live.setdefault(key, (0, LineSplitter()))
        elif key in self.live:  # the attempt ended: its whole log was written before its result
            self._read_log(key, to_end=True)
            del self.live[key]
        if state not in SHOWN_STATES:
            return
        record = None
        if state != TaskState.RUNNING and attempt:
            record = next(
                (a for a in self.store.attempts(self.run_id, task_id) if a.attempt == attempt), None
            )
        self.on_change(TaskChange(task_id, state, attempt, record))

    def _read_log(self, key: tuple[str, int], *, to_end: bool) -> None:
        cursor, splitter = self.live[key]
        while True:
            text, cursor = self.store.read_log(self.run_id, *key, after=cursor, max_bytes=LOG_READ_BYTES)
            lines = splitter.feed(text)
            if to_end and not text:
                lines += splitter.finish()
            for line in lines:
                self.on_output(OutputLine(key[0], key[1], line))
            self.live[key] = (cursor, splitter)
            if not text or not to_end:
                return

    def follow(self) -> None:
        """Step until the run has ended."""
        while not self.ended:
            self.step()
            if not self.ended:
                time.sleep(POLL_SECS)


def local_settings(settings: Settings) -> Settings:
    """`settings` with the store in memory, the in-process queue and no metrics endpoint."""
    return replace(settings, db_url=MEMORY_DB, queue_url="memory://", metrics_port=None)


@contextmanager
def _ignoring_sigint() -> Iterator[None]:
    """A second Ctrl-C must not cut the clean-up short (and leave tasks running): held off meanwhile."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def run_once(
    spec: DagSpec,
    settings: Settings,
    *,
    params: Mapping[str, Any] | None = None,
    on_output: Callable[[OutputLine], None],
    on_change: Callable[[TaskChange], None],
) -> RunResult:
    """Store `spec`, run it once with a scheduler and a worker in threads, and return how it ended.

    On KeyboardInterrupt the worker stops at once, killing its running tasks, and it propagates.
    Bad params raise InvalidRequest before any task runs.
    """
    services = build_services(local_settings(settings))
    stop = threading.Event()
    threads: list[threading.Thread] = []
    try:
        services.store.put_dag(spec, "", time.time())
        run = trigger_run(services.store, services.queue, spec.id, params=params, triggered_by="test").run
        threads = _start(services, stop)
        RunFollower(services.store, run.run_id, on_output, on_change).follow()
        return RunResult(services.store.get_run(run.run_id), services.store.task_instances(run.run_id))
    finally:
        with _ignoring_sigint():
            stop.set()
            services.queue.close()  # wakes the worker's slots and the scheduler now, as `up` does
            for t in threads:
                t.join(settings.kill_grace_secs + 10)
            services.close()


def _start(services: Services, stop: threading.Event) -> list[threading.Thread]:
    """The worker and the scheduler, each in a thread of its own, started (the worker first)."""
    worker = make_worker(services)
    scheduler = make_scheduler(services)
    threads = [
        threading.Thread(target=worker.run, args=(stop, STOP_GRACE_SECS), name="worker", daemon=True),
        threading.Thread(
            target=scheduler.run, args=(stop, services.settings.tick_secs), name="scheduler", daemon=True
        ),
    ]
    for t in threads:
        t.start()
    return threads
