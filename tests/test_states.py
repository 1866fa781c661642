"""The state machine: trigger rules, attempt outcomes, run roll-up, backoff."""

import pytest

from flowforge.core.model import RunState, TaskState, TriggerRule
from flowforge.core.retry import backoff_delay, should_retry
from flowforge.core.states import Readiness, attempt_outcome, evaluate_trigger, run_outcome

S, F, UF, SK, R, P, Q, C = (
    TaskState.SUCCESS,
    TaskState.FAILED,
    TaskState.UPSTREAM_FAILED,
    TaskState.SKIPPED,
    TaskState.RUNNING,
    TaskState.PENDING,
    TaskState.QUEUED,
    TaskState.CANCELLED,
)
READY, WAIT, UPF, SKIP = Readiness.READY, Readiness.WAIT, Readiness.UPSTREAM_FAILED, Readiness.SKIPPED


@pytest.mark.parametrize(
    "rule, upstream, expected",
    [
        # all_success: every upstream succeeded; fails early, skips when one was skipped
        (TriggerRule.ALL_SUCCESS, [S, S], READY),
        (TriggerRule.ALL_SUCCESS, [S, R], WAIT),
        (TriggerRule.ALL_SUCCESS, [F, R], UPF),
        (TriggerRule.ALL_SUCCESS, [UF, S], UPF),
        (TriggerRule.ALL_SUCCESS, [SK, S], SKIP),
        (TriggerRule.ALL_SUCCESS, [C, S], UPF),
        # all_done: every upstream finished, whatever the outcome
        (TriggerRule.ALL_DONE, [S, F], READY),
        (TriggerRule.ALL_DONE, [UF, SK], READY),
        (TriggerRule.ALL_DONE, [S, Q], WAIT),
        (TriggerRule.ALL_DONE, [F, TaskState.UP_FOR_RETRY], WAIT),
        # all_failed: every upstream failed; skipped as soon as one succeeded
        (TriggerRule.ALL_FAILED, [F, UF], READY),
        (TriggerRule.ALL_FAILED, [F, R], WAIT),
        (TriggerRule.ALL_FAILED, [F, S], SKIP),
        (TriggerRule.ALL_FAILED, [SK, F], SKIP),
        # one_success: ready at the first success, without waiting for the rest
        (TriggerRule.ONE_SUCCESS, [S, R], READY),
        (TriggerRule.ONE_SUCCESS, [F, R], WAIT),
        (TriggerRule.ONE_SUCCESS, [F, F], UPF),
        (TriggerRule.ONE_SUCCESS, [SK, SK], SKIP),
        # one_failed: ready at the first failure; skipped when all finished without one
        (TriggerRule.ONE_FAILED, [F, R], READY),
        (TriggerRule.ONE_FAILED, [UF, P], READY),
        (TriggerRule.ONE_FAILED, [S, R], WAIT),
        (TriggerRule.ONE_FAILED, [S, S], SKIP),
        # none_failed: all finished and none failed (skipped is fine)
        (TriggerRule.NONE_FAILED, [S, SK], READY),
        (TriggerRule.NONE_FAILED, [S, R], WAIT),
        (TriggerRule.NONE_FAILED, [F, R], UPF),
        (TriggerRule.NONE_FAILED, [UF, S], UPF),
    ],
)
def test_trigger_rules(rule, upstream, expected):
    assert evaluate_trigger(rule, upstream) is expected


@pytest.mark.parametrize("rule", list(TriggerRule))
def test_task_without_upstream_is_ready_for_every_rule(rule):
    assert evaluate_trigger(rule, []) is READY


@pytest.mark.parametrize("n, delay", [(0, 1), (1, 2), (2, 4), (3, 8), (5, 32), (6, 60), (7, 60), (1000, 60)])
def test_default_backoff_is_two_to_the_n_capped_at_sixty(n, delay):
    assert backoff_delay(n) == delay


def test_backoff_base_and_cap_are_configurable():
    assert backoff_delay(3, base=0.5, cap=3) == 3
    assert backoff_delay(2, base=0.5, cap=3) == 2


def test_backoff_rejects_negative_attempts():
    with pytest.raises(ValueError):
        backoff_delay(-1)


@pytest.mark.parametrize(
    "attempt, retries, retry", [(1, 0, False), (1, 1, True), (2, 1, False), (3, 3, True), (4, 3, False)]
)
def test_retries_count_after_the_first_attempt(attempt, retries, retry):
    assert should_retry(attempt, retries) is retry


def test_attempt_outcome_success_failure_and_retry_time():
    assert attempt_outcome(1, 3, True, now=100.0) == (TaskState.SUCCESS, None)
    assert attempt_outcome(1, 3, False, now=100.0) == (TaskState.UP_FOR_RETRY, 102.0)
    assert attempt_outcome(3, 3, False, now=100.0) == (TaskState.UP_FOR_RETRY, 108.0)
    assert attempt_outcome(4, 3, False, now=100.0) == (TaskState.FAILED, None)
    assert attempt_outcome(1, 1, False, now=0.0, retry_delay=0.01) == (TaskState.UP_FOR_RETRY, 0.02)


@pytest.mark.parametrize(
    "states, outcome",
    [
        ([S, S], RunState.SUCCESS),
        ([S, SK], RunState.SUCCESS),
        ([S, F], RunState.FAILED),
        ([S, UF], RunState.FAILED),
        ([S, R], None),
        ([S, TaskState.UP_FOR_RETRY], None),
        ([C, C], RunState.CANCELLED),
    ],
)
def test_run_outcome(states, outcome):
    assert run_outcome(states) == outcome
