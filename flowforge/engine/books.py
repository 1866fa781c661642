"""What the scheduler knows of its running runs' task instances, kept up to date from the event log.

A tick used to read every task instance of every running run and evaluate every pending task;
on a wide DAG that was most of the time between a task ending and its child starting. `Books`
keeps each running run's task instances as last seen, and a tick reads only what changed since
the last one: the event log (`events_after`) is numbered in commit order and has one event per
task state change, with the state and attempt the change committed. Applying the events after
the last one seen, in order, gives every run as it was at the newest of them: a snapshot, as
one read of the table gives. Each run's book also says which tasks to evaluate next (the
changed ones and those downstream of them, see `plan.plan_tasks`).

It reads everything again (`full`) when asked (each housekeeping tick: the reaper needs the
running attempts' leases, which heartbeats renew without an event), when it has nothing yet
(start-up, after a failed tick, after leading again), and when the events it needs may be gone
(pruned, or too many to be worth reading one by one).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace

from flowforge.core.errors import NotFound
from flowforge.core.model import TASK_TERMINAL, RunState, TaskState
from flowforge.core.plan import DagShape
from flowforge.core.records import Event, Run, TaskInstance
from flowforge.store.base import Store

EVENT_PAGE = 500
EVENT_PAGES = 20  # more changes than this many pages since the last tick: read everything again
ACTIVE = (TaskState.QUEUED, TaskState.RUNNING)


@dataclass
class RunBook:
    """One running run's task instances, with their count per state and the tasks to evaluate next."""

    tis: dict[str, TaskInstance]
    counts: Counter[TaskState]
    queued: set[str] = field(default_factory=set)
    retrying: set[str] = field(default_factory=set)  # up for retry: due once their time comes
    dirty: set[str] = field(default_factory=set)  # to evaluate on the next plan

    @classmethod
    def of(cls, tis: list[TaskInstance]) -> RunBook:
        """The book of a run just read in full: every task is evaluated on the next plan."""
        book = cls({ti.task_id: ti for ti in tis}, Counter(ti.state for ti in tis))
        book.queued = {ti.task_id for ti in tis if ti.state == TaskState.QUEUED}
        book.retrying = {ti.task_id for ti in tis if ti.state == TaskState.UP_FOR_RETRY}
        book.dirty = set(book.tis)
        return book

    @property
    def active(self) -> int:
        """Queued and running task instances (they count against max_active_tasks)."""
        return self.counts[TaskState.QUEUED] + self.counts[TaskState.RUNNING]

    def candidates(self) -> set[str]:
        """The tasks the next plan evaluates: the changed ones, those downstream of them, and retries."""
        return self.dirty | self.retrying

    def put(self, ti: TaskInstance, shape: DagShape) -> None:
        """Take a task instance as it is now, and note which tasks its change may have made ready.

        Itself when it is pending again (a retry cleared it). Its downstream tasks when it
        became or stopped being done: trigger rules tell the done states apart, but no state
        that is not done (pending, queued, running, up for retry) from another.
        """
        tid = ti.task_id
        old = self.tis[tid].state
        self.tis[tid] = ti
        self.counts[old] -= 1
        self.counts[ti.state] += 1
        for states, state in ((self.queued, TaskState.QUEUED), (self.retrying, TaskState.UP_FOR_RETRY)):
            if ti.state == state:
                states.add(tid)
            else:
                states.discard(tid)
        if ti.state == TaskState.PENDING:
            self.dirty.add(tid)
        if old != ti.state and (old in TASK_TERMINAL or ti.state in TASK_TERMINAL):
            self.dirty.update(shape.children[tid])


class Books:
    """The task instances of every running run as of the newest event read, by run_id."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.runs: dict[str, RunBook] = {}
        self.cursor: int | None = None  # the newest event applied; None: read everything next
        # Task instance rows read and tasks evaluated, in all: tests count them.
        self.rows_read = 0
        self.tasks_planned = 0

    def forget(self) -> None:
        """Read everything again on the next refresh (after a failed tick, or when not leading)."""
        self.cursor = None
        self.runs.clear()

    def drop(self, run_id: str) -> None:
        """Stop following a run that ended."""
        self.runs.pop(run_id, None)

    def read(self, run_id: str) -> RunBook:
        """Read one run in full (a run just started, or one whose events do not suffice)."""
        tis = self.store.task_instances(run_id)
        self.rows_read += len(tis)
        book = self.runs[run_id] = RunBook.of(tis)
        return book

    def refresh(self, running: dict[str, DagShape], full: bool) -> None:
        """Bring the books of the running runs (their shapes by run_id) up to date; drop the others."""
        events = None if full or self.cursor is None else self._changes(self.cursor)
        if events is None:
            self.runs.clear()
            self.cursor = self.store.last_event_id()  # before the reads: they are at least as new
        else:
            for run_id in [r for r in self.runs if r not in running]:
                del self.runs[run_id]
            self._apply(events, running)
        for run_id in running:
            if run_id not in self.runs:
                self._read_new(run_id)

    def _read_new(self, run_id: str) -> None:
        try:
            self.read(run_id)
        except NotFound:  # deleted since it was listed: the next tick does not list it
            pass

    def _changes(self, cursor: int) -> list[Event] | None:
        """The events after `cursor`, or None when they cannot be relied on to be all of them."""
        events: list[Event] = []
        while True:
            page = self.store.events_after(cursor if not events else events[-1].id, EVENT_PAGE)
            events += page
            if len(page) < EVENT_PAGE:
                break
            if len(events) >= EVENT_PAGE * EVENT_PAGES:
                return None
        if events and events[0].id != cursor + 1:
            return None  # pruned (or an event of a deleted row never written): no gap is trusted
        if events:
            self.cursor = events[-1].id
        return events

    def _apply(self, events: list[Event], running: dict[str, DagShape]) -> None:
        """Apply each task's newest event; a run whose events do not suffice is read in full."""
        latest: dict[tuple[str, str], Event] = {}
        for e in events:
            if e.kind == "task" and e.run_id in self.runs and e.task_id is not None:
                latest[(e.run_id, e.task_id)] = e
        stale: set[str] = set()
        for (run_id, task_id), e in latest.items():
            if run_id in stale:
                continue
            ti = self._updated(self.runs[run_id], run_id, task_id, e)
            if ti is None:
                stale.add(run_id)
            else:
                self.runs[run_id].put(ti, running[run_id])
        for run_id in stale:
            del self.runs[run_id]  # read again by `refresh`

    def _updated(self, book: RunBook, run_id: str, task_id: str, e: Event) -> TaskInstance | None:
        """The task instance as of event `e`; None when only reading the whole run will tell."""
        ti = book.tis.get(task_id)
        if ti is None or e.state is None or e.attempt is None:
            return None
        state = TaskState(e.state)
        if state != TaskState.UP_FOR_RETRY:
            ended_at = e.ts if state in TASK_TERMINAL else None  # for the queue-latency metric
            return replace(ti, state=state, attempt=e.attempt, ended_at=ended_at, retry_at=None)
        # When to retry is not in the event: read the row, and rely on it only if it has not moved on.
        try:
            row = self.store.get_task_instance(run_id, task_id)
        except NotFound:
            return None
        self.rows_read += 1
        return row if (row.state, row.attempt) == (state, e.attempt) else None


@dataclass
class Load:
    """What a tick counts against the DAGs' limits, kept up to date as it starts runs and queues tasks."""

    running_runs: defaultdict[str, int]  # by dag_id
    active_tasks: defaultdict[str, int]  # queued or running task instances, by dag_id

    @classmethod
    def of(cls, runs: list[Run], books: Books) -> Load:
        """Count the running runs and their active tasks (from their books, up to date)."""
        load = cls(defaultdict(int), defaultdict(int))
        for run in runs:
            if run.state == RunState.RUNNING:
                load.running_runs[run.dag_id] += 1
                book = books.runs.get(run.run_id)
                if book is not None:
                    load.active_tasks[run.dag_id] += book.active
        return load
