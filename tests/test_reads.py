"""A run's detail read in one transaction says what the separate reads say."""

from __future__ import annotations

import pytest

from flowforge.core.errors import NotFound
from flowforge.core.model import RunState, TaskState
from flowforge.store import Store
from tests.prune_support import NOW, ended_run, running_run, submit


def test_a_run_view_is_the_run_its_tasks_and_their_outputs(store: Store) -> None:
    submit(store)
    for run_id in (ended_run(store, NOW, RunState.FAILED), running_run(store, NOW)):
        run, tasks, outputs = store.run_view(run_id)
        assert run == store.get_run(run_id)
        assert tasks == store.task_instances(run_id) and [t.task_id for t in tasks] == ["extract", "load"]
        assert outputs == store.task_outputs(run_id)
    with pytest.raises(NotFound, match="no run 'nope'"):
        store.run_view("nope")


def test_a_run_view_carries_the_outputs_of_successful_tasks(store: Store) -> None:
    submit(store)
    run_id = running_run(store, NOW)  # extract is running, attempt 1
    done = store.finish_task(
        run_id, "extract", 1, "w1", state=TaskState.SUCCESS, now=NOW + 1, outputs={"rows": "42"}
    )
    assert done
    assert store.run_view(run_id)[2] == {"extract": {"rows": "42"}} == store.task_outputs(run_id)
