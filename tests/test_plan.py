"""The planner: what the scheduler does to a run, as a pure function."""

from flowforge.core.model import DagSpec, RunState, TaskSpec, TaskState, TriggerRule
from flowforge.core.plan import TaskView, plan_run


def diamond(**rules: TriggerRule) -> DagSpec:
    def t(tid, deps=()):
        return TaskSpec(
            id=tid,
            command="true",
            depends_on=tuple(deps),
            trigger_rule=rules.get(tid, TriggerRule.ALL_SUCCESS),
        )

    return DagSpec(id="d", tasks=(t("a"), t("b"), t("c", ["a", "b"]), t("d", ["c"])))


ORDER = ["a", "b", "c", "d"]


def views(**states):
    return {tid: TaskView(states.get(tid, TaskState.PENDING), 0) for tid in ORDER}


def test_roots_are_queued_first():
    plan = plan_run(diamond(), ORDER, views(), now=0)
    assert plan.to_queue == [("a", 0), ("b", 0)]
    assert plan.run_state is None


def test_failure_propagates_upstream_failed_all_the_way_down_in_one_plan():
    plan = plan_run(diamond(), ORDER, views(a=TaskState.FAILED, b=TaskState.SUCCESS), now=0)
    assert plan.to_upstream_failed == [("c", 0), ("d", 0)]
    assert plan.run_state is RunState.FAILED


def test_skip_propagates_and_run_succeeds():
    spec = diamond(c=TriggerRule.ONE_FAILED)
    plan = plan_run(spec, ORDER, views(a=TaskState.SUCCESS, b=TaskState.SUCCESS), now=0)
    assert plan.to_skip == [("c", 0), ("d", 0)]
    assert plan.run_state is RunState.SUCCESS


def test_all_done_runs_cleanup_after_a_failure():
    spec = diamond(c=TriggerRule.ALL_DONE)
    plan = plan_run(spec, ORDER, views(a=TaskState.FAILED, b=TaskState.SUCCESS), now=0)
    assert plan.to_queue == [("c", 0)]


def test_retry_waits_for_its_time():
    tasks = views()
    tasks["a"] = TaskView(TaskState.UP_FOR_RETRY, 1, retry_at=10.0)
    tasks["b"] = TaskView(TaskState.RUNNING, 1)
    assert plan_run(diamond(), ORDER, tasks, now=9.9).to_queue == []
    assert plan_run(diamond(), ORDER, tasks, now=10.0).to_queue == [("a", 1)]


def test_capacity_holds_back_ready_tasks():
    plan = plan_run(diamond(), ORDER, views(), now=0, capacity=1)
    assert plan.to_queue == [("a", 0)]
    assert plan.waiting_for_slot == 1


def test_run_succeeds_when_all_tasks_succeeded():
    plan = plan_run(diamond(), ORDER, {t: TaskView(TaskState.SUCCESS, 1) for t in ORDER}, now=0)
    assert plan.run_state is RunState.SUCCESS and plan.to_queue == []


def test_retry_without_a_task_clears_failures_and_what_they_stopped():
    from flowforge.core.plan import tasks_to_clear

    states = {
        "a": TaskState.FAILED,
        "b": TaskState.SUCCESS,
        "c": TaskState.UPSTREAM_FAILED,
        "d": TaskState.UPSTREAM_FAILED,
    }
    assert tasks_to_clear(diamond(), states) == ["a", "c", "d"]


def test_retry_of_a_task_takes_downstream_that_never_ran_or_everything_with_downstream():
    from flowforge.core.plan import tasks_to_clear

    states = {
        "a": TaskState.SUCCESS,
        "b": TaskState.FAILED,
        "c": TaskState.UPSTREAM_FAILED,
        "d": TaskState.UPSTREAM_FAILED,
    }
    assert tasks_to_clear(diamond(), states, "b") == ["b", "c", "d"]
    done = {t: TaskState.SUCCESS for t in ORDER}
    assert tasks_to_clear(diamond(), done, "c") == ["c"]
    assert tasks_to_clear(diamond(), done, "c", with_downstream=True) == ["c", "d"]
    assert tasks_to_clear(diamond(), done, "a", with_downstream=True) == ["a", "c", "d"]
