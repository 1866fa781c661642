"""The Store protocol: everything the engine, API and CLI need from the database.

The store is the single source of truth. Every state change is a conditional update
(compare-and-set on state and attempt), so a stale worker or a duplicate queue message
can never overwrite a newer attempt. Times are Unix epoch seconds (float).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from flowforge.core.errors import Conflict, NotFound
from flowforge.core.model import DagSpec, RunState, TaskState
from flowforge.core.records import Attempt, DagRecord, DagVersion, Event, Run, TaskInstance, WorkerInfo
from flowforge.store.tasks import Finish

# Names of the leases held in the store (see Store.hold_lease).
LEADER_LEASE = "scheduler"  # held by the one scheduler that plans; a standby waits for it

# One prune batch (one transaction) takes at most this many runs, and no more runs than keep its
# task instances within PRUNE_BATCH_TASKS (a single larger run goes alone: a DAG has at most
# 10,000 tasks), so that no writer waits long on it.
PRUNE_BATCH_RUNS = 500
PRUNE_BATCH_TASKS = 5_000


@dataclass(frozen=True)
class PruneBatch:
    """What one batch of `Store.prune_runs` deleted (or, on a dry run, would delete), and where it ended.

    `last` is the (ended_at, run_id) of the last run the batch took: pass it as `after` for the
    next batch. None when no run is left to prune.
    """

    runs: int = 0
    task_instances: int = 0
    attempts: int = 0
    log_chunks: int = 0
    events: int = 0
    last: tuple[float, str] | None = None


class Store(Protocol):
    """Persistent state of DAGs, runs, task instances, attempts, logs and workers."""

    # -- DAGs -------------------------------------------------------------------------
    def put_dag(self, spec: DagSpec, source: str, now: float) -> DagRecord:
        """Store a DAG; a new version only when the spec differs from the latest.

        Atomically: inserts the DAG (version 1) or, when the spec changed, the next version;
        always marks the DAG active again. Returns the record as stored.
        """
        ...

    def get_dag(self, dag_id: str) -> DagRecord:
        """The DAG with its latest version (active or not); raises NotFound."""
        ...

    def list_dags(self, include_inactive: bool = False) -> list[DagRecord]:
        """All DAGs ordered by id, latest version each; inactive ones only when asked."""
        ...

    def get_dag_spec(self, dag_id: str, version: int) -> DagSpec:
        """The spec of one stored version; raises NotFound."""
        ...

    def list_dag_versions(self, dag_id: str, limit: int, offset: int = 0) -> list[DagVersion]:
        """A page of a DAG's stored versions, newest first, without their sources ([] for none)."""
        ...

    def get_dag_version(self, dag_id: str, version: int) -> DagVersion:
        """One stored version with its YAML source; raises NotFound."""
        ...

    def set_dag_flags(
        self,
        dag_id: str,
        *,
        active: bool | None = None,
        paused: bool | None = None,
        schedule_after: float | None = None,
    ) -> DagRecord:
        """Change a DAG's active/paused flags and where its cron ticks count from; raises NotFound."""
        ...

    # -- runs -------------------------------------------------------------------------
    def create_run(
        self,
        dag_id: str,
        *,
        triggered_by: str,
        params: dict[str, Any],
        now: float,
        logical_date: float | None = None,
        idempotency_key: str | None = None,
    ) -> Run:
        """Create a `queued` run of the DAG's latest version with every task `pending`, atomically.

        With an `idempotency_key` that the DAG already has a run for, that run is returned
        and nothing is created (a client retrying a trigger gets one run, not two).

        Raises NotFound for an unknown or inactive DAG, and Conflict when the DAG already has
        a run for this `logical_date` (so a cron tick can never start two runs).
        """
        ...

    def get_run(self, run_id: str) -> Run:
        """One run; raises NotFound."""
        ...

    def list_runs(
        self,
        *,
        dag_id: str | None = None,
        states: Sequence[RunState] | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[Run]:
        """Runs, newest first, filtered by DAG and state."""
        ...

    def ended_runs(self, dag_id: str, limit: int) -> list[Run]:
        """The DAG's last `limit` ended runs (success, failed, cancelled), the last to end first.

        One query on the index runs_dag_ended, however long the history. [] for none or no DAG.
        """
        ...

    def set_run_state(self, run_id: str, expected: Sequence[RunState], new: RunState, now: float) -> bool:
        """Move a run to `new` if it is in one of `expected`; sets started_at/ended_at.

        Returns False (changing nothing) when the run was not in an expected state.
        """
        ...

    # -- task instances -----------------------------------------------------------------
    def task_instances(self, run_id: str) -> list[TaskInstance]:
        """Every task instance of a run, in the order of the DAG's tasks; NotFound for no run."""
        ...

    def run_view(self, run_id: str) -> tuple[Run, list[TaskInstance], dict[str, dict[str, str]]]:
        """What a run's detail shows, read on one connection: the run, its task instances in the
        order of the DAG's tasks, and the outputs its tasks pass downstream (as `task_outputs`);
        raises NotFound."""
        ...

    def get_task_instance(self, run_id: str, task_id: str) -> TaskInstance:
        """One task instance; raises NotFound."""
        ...

    def attempts(self, run_id: str, task_id: str) -> list[Attempt]:
        """Every attempt of a task instance, oldest first."""
        ...

    def task_outputs(self, run_id: str, task_ids: Sequence[str] | None = None) -> dict[str, dict[str, str]]:
        """What the run's tasks pass downstream, by task id: the outputs of each one's successful attempt.

        Only tasks in `task_ids` (by default every task) that succeeded with outputs are in it; an
        attempt cleared by a retry no longer counts. One query, however many tasks.
        """
        ...

    def success_durations(
        self, dag_id: str, task_ids: Sequence[str], limit: int = 20
    ) -> dict[str, list[float]]:
        """By task id, the durations (ended - started, seconds) of each task's last `limit` successful
        attempts over every run of the DAG, the last to end first.

        A task without a successful attempt is not in it. One query for the whole set (for each
        hundred tasks, beyond that), each task's part read from the index attempts_task_success.
        """
        ...

    def queue_tasks(self, run_id: str, tasks: Sequence[tuple[str, int]], now: float) -> list[str]:
        """Queue each (task_id, attempt) that is still `pending`/`up_for_retry` at that attempt.

        In one transaction: the instance becomes `queued` with attempt+1, and a `queued`
        attempt row is added. Returns the ids actually queued (a task whose state or attempt
        moved on meanwhile is left alone).
        """
        ...

    def set_task_states(
        self,
        run_id: str,
        tasks: Sequence[tuple[str, int]],
        expected: Sequence[TaskState],
        new: TaskState,
        now: float,
    ) -> list[str]:
        """Move each (task_id, attempt) in one of `expected` at that attempt to `new`; returns ids moved."""
        ...

    def claim_task(
        self, run_id: str, task_id: str, attempt: int, worker_id: str, now: float, lease_secs: float = 15.0
    ) -> TaskInstance | None:
        """`queued` → `running` for exactly this attempt, recording the worker and a new lease.

        The lease (a fresh random `lease_token`, valid until now+lease_secs) is the attempt's
        fencing token: renewals and the result count only with it. Returns the updated
        instance, or None when it was not queued at that attempt (a duplicate or stale
        message): the caller must then not run it.
        """
        ...

    def renew_leases(
        self, worker_id: str, leases: Sequence[tuple[str, str, int, str]], now: float, lease_secs: float
    ) -> list[tuple[str, str, int, str]]:
        """Extend the leases (run_id, task_id, attempt, token) this worker holds, in one transaction.

        Returns those it lost (the attempt is no longer running under that token: cancelled,
        timed out, or given up as lost): the worker must kill them and drop their results.
        """
        ...

    def hold_lease(self, name: str, holder: str, now: float, ttl: float) -> bool:
        """Take or keep the lease `name` (e.g. "scheduler") for `holder` until now+ttl.

        Atomic; False while another holder's lease has not expired.
        """
        ...

    def release_lease(self, name: str, holder: str) -> None:
        """Give up the lease `name` if `holder` has it, so that a standby takes over at once."""
        ...

    def lease_holder(self, name: str, now: float) -> str | None:
        """The holder of the lease `name` if it has not expired at `now`; None when nobody holds it."""
        ...

    def finish_task(
        self,
        run_id: str,
        task_id: str,
        attempt: int,
        worker_id: str,
        *,
        state: TaskState,
        now: float,
        exit_code: int | None = None,
        error: str | None = None,
        retry_at: float | None = None,
        lease_token: str | None = None,
        attempt_state: TaskState | None = None,
        free: bool | None = None,
        outputs: Mapping[str, str] | None = None,
    ) -> bool:
        """`running` → `state` (success, failed or up_for_retry) if this worker still runs this attempt.

        With `lease_token`, only while the attempt still holds that lease. The attempt row
        records the attempt's own result: `attempt_state`, by default `failed` when the
        instance goes `up_for_retry` (the reaper says `lost`). A `free` attempt (by default,
        one recorded as `lost`) failed through no fault of the task: it adds one to the
        instance's `lost_attempts` and uses none of the task's retries. Returns False, changing
        nothing, when the attempt was fenced off. `outputs` (what the task wrote to $FLOWFORGE_OUTPUT)
        are kept with the attempt; a successful attempt's reach its downstream (`task_outputs`).
        """
        ...

    def finish_and_claim(
        self,
        finished: tuple[str, str, int],
        result: Finish,
        worker_id: str,
        now: float,
        *,
        claim: tuple[str, str, int],
        lease_secs: float = 15.0,
    ) -> tuple[bool, TaskInstance | None]:
        """`finish_task` of `finished` (run_id, task_id, attempt) with `result`, then `claim_task` of `claim`, in one transaction.

        (False, None), changing nothing, when the finish is fenced off; else (True, the claimed
        instance, or None when `claim` was not queued at that attempt).
        """
        ...

    def active_task_counts(self) -> dict[str, int]:
        """Number of `queued` + `running` task instances per dag_id, over all active runs."""
        ...

    def stop_run(self, run_id: str, state: RunState, reason: str, now: float) -> bool:
        """End a queued/running run now as `state` (cancelled, or failed on a run timeout), atomically.

        Queued, running and up-for-retry tasks become `cancelled` (or `failed` with `reason`
        when the run fails); pending tasks become `cancelled`; open attempts are closed the same
        way. Workers see their attempt is no longer running and kill it; its late result is
        fenced off. Returns False, changing nothing, when the run had already ended; NotFound.
        """
        ...

    def clear_tasks(self, run_id: str, task_ids: Sequence[str], now: float) -> list[str]:
        """Make finished tasks `pending` again so that they run once more, in one transaction.

        Their attempts are kept (marked cleared) and the next attempt number follows on.
        The run is re-opened (`running`) when it had ended. Raises NotFound for an unknown run
        or task, and Conflict, changing nothing, when a named task has not finished.
        """
        ...

    def latest_logical_dates(self) -> dict[str, float]:
        """The newest logical date of each DAG's scheduled (or backfilled) runs."""
        ...

    def logical_dates(self, dag_id: str, start: float, end: float) -> set[float]:
        """Logical dates of the DAG's runs within [start, end]."""
        ...

    def schedule_heads(self) -> list[tuple[str, int, bool, float]]:
        """(dag_id, latest version, paused, schedule_after) of every active DAG, in no order: one narrow row each."""
        ...

    def create_scheduled_runs(
        self, ticks: Sequence[tuple[str, float, dict[str, Any]]], now: float
    ) -> list[Run | Conflict | NotFound]:
        """Create a `queued` run (every task `pending`) for each (dag_id, logical date, params), atomically.

        One transaction for them all; each run is of its DAG's latest version, `triggered_by`
        "schedule". In the order given, the run made, or (not raised) Conflict when the DAG
        already has a run for that logical date, NotFound for an unknown or inactive DAG.
        """
        ...

    def prune_runs(
        self,
        before: float,
        *,
        after: tuple[float, str] | None = None,
        dry_run: bool = False,
        max_runs: int = PRUNE_BATCH_RUNS,
        max_tasks: int = PRUNE_BATCH_TASKS,
    ) -> PruneBatch:
        """Delete one batch of finished runs that ended before `before`, in one transaction.

        Only runs in a terminal state (success, failed, cancelled) go, never a queued or running
        one, with their task instances, attempts, log pieces and events; DAGs and their versions
        stay. Runs go oldest first (by end time, then id), from just after `after`; a batch takes
        at most `max_runs` runs, and stops before the run that would take its task instances past
        `max_tasks` (a run larger than that goes alone). The outcome counts (`outcome_counts`)
        keep counting what was deleted. With `dry_run`, counts what the batch would delete and
        deletes nothing. Call again with `after=batch.last` until `last` is None.
        """
        ...

    # -- events -------------------------------------------------------------------------
    def events_after(self, after: int, limit: int = 500) -> list[Event]:
        """State changes with an id above `after`, oldest first, at most `limit`.

        Every change to a DAG, run or task instance writes one event in its own transaction;
        ids follow commit order, so a reader resuming after id N never misses one.
        """
        ...

    def last_event_id(self) -> int:
        """The id of the newest event (0 when there is none yet)."""
        ...

    def prune_events(self, keep: int) -> None:
        """Forget all but the newest `keep` events."""
        ...

    # -- logs ---------------------------------------------------------------------------
    def append_log(self, run_id: str, task_id: str, attempt: int, text: str) -> None:
        """Append a chunk of output to an attempt's log; raises NotFound for an unknown attempt."""
        ...

    def read_log(
        self, run_id: str, task_id: str, attempt: int, after: int = 0, max_bytes: int | None = None
    ) -> tuple[str, int]:
        """The log text written after cursor `after` (0 = from the start), and the new cursor.

        With `max_bytes`, the text stops at a piece boundary before it would pass that many
        UTF-8 bytes, yet holds at least one piece when there is one; read on from the cursor.
        """
        ...

    # -- workers ------------------------------------------------------------------------
    def upsert_worker(self, worker: WorkerInfo) -> None:
        """Register a worker or record its heartbeat (host, pid, slots, running, state)."""
        ...

    def list_workers(self) -> list[WorkerInfo]:
        """Every known worker, most recent heartbeat first."""
        ...

    # -- overview -----------------------------------------------------------------------
    def counts(self) -> dict[str, dict[str, int]]:
        """{"dags": {"active": n, "paused": n, "inactive": n}, "runs": {state: n}, "tasks": {state: n}}."""
        ...

    def outcome_counts(self) -> dict[str, dict[tuple[str, str], int]]:
        """Counts by (dag_id, state) for the outcome counters of /metrics.

        {"runs": runs that ended (success, failed, cancelled), counted as each one ends (a run
        re-opened by a retry and ended again counts again), "attempts": every attempt by its
        current state (queued and running ones too), "retries": the attempts numbered 2 or more}.
        Runs and attempts deleted by `prune_runs` are still counted.
        """
        ...

    def fold_counts(self) -> int:
        """Move the count changes recorded since the last fold into the totals; the changes folded.

        The counts read the same before and after: this only keeps them quick to read. One folder
        at a time (another finds nothing to do); the scheduler's housekeeping calls it.
        """
        ...

    def close(self) -> None:
        """Release connections."""
        ...
