"""The records' JSON-ready forms: shallow copies that never share a mutable part with the record."""

from __future__ import annotations

from flowforge.core.model import RunState, TaskState
from flowforge.core.records import Run, TaskInstance


def test_a_runs_dict_is_its_fields_with_the_state_as_text_and_params_of_its_own() -> None:
    run = Run("r1", "d", 1, RunState.RUNNING, "api", {"day": "mon"}, None, 10.0)
    d = run.to_dict()
    assert d["state"] == "running" and d["params"] == {"day": "mon"} and d["run_id"] == "r1"
    d["params"]["day"] = "tue"
    assert run.params == {"day": "mon"}  # the record is unchanged


def test_a_task_instances_dict_never_carries_the_lease_token_nor_the_lost_attempts() -> None:
    ti = TaskInstance("r1", "t", TaskState.RUNNING, 2, worker_id="w", lease_token="secret", lost_attempts=1)
    d = ti.to_dict()
    assert d["state"] == "running" and d["attempt"] == 2 and d["worker_id"] == "w"
    assert "lease_token" not in d and "lost_attempts" not in d and "secret" not in repr(d)
