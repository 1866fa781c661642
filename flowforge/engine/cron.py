"""The scheduler's cron pass: a run for each tick of each scheduled DAG that calls for one.

Unique (dag_id, logical_date) in the store makes this safe with two schedulers: the second one's
insert of the same tick is refused (Conflict), logged and skipped.

`CronIndex` keeps every scheduled DAG's next tick in a heap, so a pass evaluates the schedules
of the DAGs that are due and of no other: with 1,000 DAGs firing once a minute, a pass touches
the dozen or so due that second. On every housekeeping tick it re-reads one narrow row per
active DAG (`Store.schedule_heads`) to see new versions, pauses, deactivations and a moved
`schedule_after`, and a DAG's spec only when its version changed. It starts afresh from the
store (with each DAG's newest logical date) when this scheduler starts to lead, and after a
pass that was cut short.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from flowforge.core.errors import Conflict
from flowforge.core.model import DagSpec
from flowforge.core.records import Run
from flowforge.core.schedule import Ticks
from flowforge.store.base import Store

log = logging.getLogger("flowforge.scheduler")

# With `catchup: false`, how many ticks since the leader's previous pass it looks at, at most.
MAX_TICKS_PER_PASS = 1000
# A pass later than this after the previous one follows downtime (a frozen process, a store
# outage), not a long tick: with `catchup: false` the ticks missed meanwhile collapse into one.
LATE_PASS_SECS = 30.0
# The scheduler's loop wakes this long after a cron tick is due (ticks are whole seconds: waking a
# hair early would find nothing due), and never waits less than MIN_WAIT_SECS for one.
WAKE_SLACK_SECS = 0.002
MIN_WAIT_SECS = 0.001


@dataclass
class _Entry:
    """What the index knows of one active DAG."""

    version: int
    schedule_after: float
    paused: bool
    spec: DagSpec
    ticks: Ticks | None  # the spec's schedule, parsed once; None: no schedule
    after: float  # ticks after this are due: the newest logical date made, or schedule_after
    next: float = math.inf  # the first tick after `after` (without catch-up: after the last pass too)
    seq: int = -1  # the heap item that stands for this entry; -1: none


class CronIndex:
    """The next tick of every scheduled DAG, soonest first, and the pass that makes their runs."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._entries: dict[str, _Entry] = {}
        self._heap: list[tuple[float, int, str]] = []  # (next tick, seq, dag_id); stale seqs skipped
        self._seq = itertools.count()
        self._blocked: list[str] = []  # due, but at max_active_runs: looked at again next pass
        self._intact = False  # False: rebuild from the store before the next pass

    def due(self, now: float) -> bool:
        """True when a DAG's tick at or before `now` waits for its run (without reading the store)."""
        top = self._peek()
        return self._intact and top is not None and top <= now

    def next_due(self) -> float | None:
        """The soonest tick any unpaused DAG waits for, None when there is none (or none is known)."""
        return self._peek() if self._intact else None

    def wait_secs(self, now: float, longest: float) -> float:
        """How long the scheduler may wait before its next tick: `longest`, or until a tick is due."""
        due = self.next_due()
        return longest if due is None else min(longest, max(due - now + WAKE_SLACK_SECS, MIN_WAIT_SECS))

    def make_runs(
        self,
        now: float,
        runs: list[Run],
        since: float | None,
        check_lead: Callable[[], None],
        *,
        refresh: bool = True,
    ) -> int:
        """Create the runs that cron ticks up to `now` call for; returns how many were created.

        `runs` are the active runs (counted against each DAG's `max_active_runs`); `since` is the
        `now` of this leader's previous pass, None when it was not leading then (the index is then
        rebuilt from the store); `refresh` re-reads what changed in the DAGs first; `check_lead`
        raises when this scheduler no longer holds the lease, before the runs are created (all in
        one transaction).
        """
        rebuild = since is None or not self._intact
        self._intact = False  # until the pass ends: one cut short leaves entries out of the heap
        if rebuild or refresh:
            self._refresh(rebuild)
        for dag_id in self._blocked:
            if dag_id in self._entries:
                self._push(self._entries[dag_id])
        self._blocked = []
        taken, wanted = self._take_due(now, Counter(run.dag_id for run in runs), since)
        created = self._make(wanted, now, check_lead) if wanted else 0
        for entry in taken:
            if self._entries.get(entry.spec.id) is entry:
                # Without catch-up, due() settled every tick up to `now`: those it left out (the DAG
                # was at its limit, or paused, when they came) are left out for good, as designed.
                self._schedule_next(entry, entry.after if entry.spec.catchup else max(entry.after, now))
        self._intact = True
        return created

    def _take_due(
        self, now: float, active: Counter[str], since: float | None
    ) -> tuple[list[_Entry], list[tuple[_Entry, float]]]:
        """Take the DAGs due by `now` off the heap: those taken, and (entry, tick) for each run to make."""
        taken: list[_Entry] = []
        wanted: list[tuple[_Entry, float]] = []
        while self._heap and self._heap[0][0] <= now:
            _, seq, dag_id = heapq.heappop(self._heap)
            entry = self._entries.get(dag_id)
            if entry is None or entry.seq != seq:
                continue
            entry.seq = -1
            if entry.paused:
                continue  # pushed again when it is unpaused
            room = entry.spec.max_active_runs - active[dag_id]
            if room <= 0:
                self._blocked.append(dag_id)
                continue
            assert entry.ticks is not None  # only a scheduled DAG is in the heap
            taken.append(entry)
            wanted += [(entry, tick) for tick in due(entry.spec, entry.ticks, entry.after, since, now, room)]
        return taken, wanted

    # -- keeping the index ----------------------------------------------------------------------
    def _refresh(self, rebuild: bool) -> None:
        """Bring the entries in line with the DAGs in the store; all afresh when `rebuild`."""
        heads = self.store.schedule_heads()
        latest: dict[str, float] | None = None
        if rebuild:
            self._entries, self._heap, self._blocked = {}, [], []
            latest = self.store.latest_logical_dates()
        present = {head[0] for head in heads}
        for gone in [d for d in self._entries if d not in present]:
            del self._entries[gone]  # deactivated: its heap item is skipped as stale
        for dag_id, version, paused, schedule_after in heads:
            entry = self._entries.get(dag_id)
            if entry is not None and (entry.version, entry.schedule_after) == (version, schedule_after):
                if entry.paused and not paused and entry.seq < 0:
                    entry.paused = False
                    self._push(entry)
                entry.paused = paused
                continue
            if entry is None and latest is None:  # a DAG new to the index: where do its ticks count from?
                latest = self.store.latest_logical_dates()
            made = entry.after if entry is not None else (latest or {}).get(dag_id, schedule_after)
            spec = self.store.get_dag_spec(dag_id, version)
            ticks = Ticks(spec.schedule, spec.timezone) if spec.schedule else None
            entry = _Entry(version, schedule_after, paused, spec, ticks, max(made, schedule_after))
            self._entries[dag_id] = entry
            self._schedule_next(entry, entry.after)

    def _schedule_next(self, entry: _Entry, start: float) -> None:
        """Put the entry in the heap at its first tick after `start` (not without a schedule)."""
        if entry.ticks is None:
            entry.next, entry.seq = math.inf, -1
            return
        entry.next = entry.ticks.next_after(start)
        self._push(entry)

    def _push(self, entry: _Entry) -> None:
        if entry.next == math.inf:
            return
        entry.seq = next(self._seq)
        heapq.heappush(self._heap, (entry.next, entry.seq, entry.spec.id))

    def _peek(self) -> float | None:
        """The soonest live heap item's tick; stale items on top are dropped on the way."""
        while self._heap:
            at, seq, dag_id = self._heap[0]
            entry = self._entries.get(dag_id)
            if entry is not None and entry.seq == seq and not entry.paused:
                return at
            heapq.heappop(self._heap)
            if entry is not None and entry.seq == seq:
                entry.seq = -1  # paused: pushed again when it is unpaused
        return None

    # -- making runs ----------------------------------------------------------------------------
    def _make(self, wanted: list[tuple[_Entry, float]], now: float, check_lead: Callable[[], None]) -> int:
        """A run for each (entry, tick), in one transaction; how many this scheduler made."""
        check_lead()
        made = self.store.create_scheduled_runs([(e.spec.id, t, dict(e.spec.params)) for e, t in wanted], now)
        created = 0
        for (entry, tick), run in zip(wanted, made, strict=True):
            dag_id = entry.spec.id
            if isinstance(run, Run):
                created += 1
                log.info("scheduled run for %s", tick, extra={"run_id": run.run_id, "dag_id": dag_id})
            elif isinstance(run, Conflict):
                log.info("run for %s already made by another scheduler", tick, extra={"dag_id": dag_id})
            else:  # deactivated since the index last looked
                log.info("DAG deactivated before its run for %s was made", tick, extra={"dag_id": dag_id})
                if self._entries.get(dag_id) is entry:
                    del self._entries[dag_id]
                continue
            entry.after = max(entry.after, tick)
        return created


def due(spec: DagSpec, ticks: Ticks, after: float, since: float | None, now: float, room: int) -> list[float]:
    """The ticks in (after, now] to make runs for, oldest first, at most `room`.

    With `catchup: false` the ticks missed while no scheduler led (or the DAG was paused) collapse
    into the latest one; but every tick since this leader's previous pass (`since`) is made: a pass
    that came late, after a long tick, is no downtime (up to LATE_PASS_SECS late).
    """
    if spec.catchup or since is None or since <= after or now - since > LATE_PASS_SECS:
        return ticks.due(after, now, catchup=spec.catchup, limit=room)
    if room <= 0:
        return []
    return ticks.due(since, now, catchup=True, limit=MAX_TICKS_PER_PASS)[-room:]
