"""Task outputs end to end: stored with their attempt, passed to direct downstream tasks as env only.

Store cases run on SQLite and PostgreSQL; engine cases run a real scheduler and worker with real
`/bin/sh` tasks, on SQLite + the in-process queue and on PostgreSQL + Redis; the `flowforge test`
case runs the real command.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from flowforge.core.model import RunState, TaskState
from flowforge.store import Store
from tests.harness import REPO, clean_env, run_flowforge
from tests.test_engine import ENGINE_BACKENDS, Engine
from tests.test_store import T0, make_spec


@pytest.fixture(params=ENGINE_BACKENDS)
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "postgres+redis":
        e = Engine(
            tmp_path, db_url=request.getfixturevalue("pg_url"), queue_url=request.getfixturevalue("redis_url")
        )
    else:
        e = Engine(tmp_path)
    try:
        yield e.start()
    finally:
        e.close()


def dag(text: str) -> str:
    return textwrap.dedent(text).lstrip()


# -- the store ------------------------------------------------------------------------------------
def finish(store: Store, run_id: str, task_id: str, attempt: int, state: TaskState, **outputs: str) -> None:
    assert store.queue_tasks(run_id, [(task_id, attempt - 1)], T0 + attempt) == [task_id]
    claimed = store.claim_task(run_id, task_id, attempt, "w1", T0 + attempt)
    assert claimed is not None
    assert store.finish_task(
        run_id, task_id, attempt, "w1", state=state, now=T0 + attempt, lease_token=claimed.lease_token,
        outputs=outputs, error=None if state == TaskState.SUCCESS else "exit code 1",
    )  # fmt: skip


def test_outputs_are_kept_with_their_attempt(store: Store) -> None:
    store.put_dag(make_spec(), "src", T0)
    run_id = store.create_run("etl", triggered_by="t", params={}, now=T0).run_id
    finish(store, run_id, "extract", 1, TaskState.UP_FOR_RETRY, rows="1")
    finish(store, run_id, "extract", 2, TaskState.SUCCESS, rows="42", city="Zürich ✓", empty="", q="'\"$(x)")
    first, second = store.attempts(run_id, "extract")
    assert first.outputs == {"rows": "1"} and first.state == TaskState.FAILED  # kept, not passed on
    assert second.outputs == {"rows": "42", "city": "Zürich ✓", "empty": "", "q": "'\"$(x)"}
    assert store.task_outputs(run_id) == {"extract": second.outputs}
    assert store.task_outputs(run_id, ["extract", "transform"]) == {"extract": second.outputs}
    assert store.task_outputs(run_id, ["transform"]) == {} and store.task_outputs(run_id, []) == {}


def test_only_a_successful_attempt_with_outputs_counts_and_a_cleared_one_no_longer(store: Store) -> None:
    store.put_dag(make_spec(), "src", T0)
    run_id = store.create_run("etl", triggered_by="t", params={}, now=T0).run_id
    finish(store, run_id, "extract", 1, TaskState.SUCCESS)  # wrote none
    finish(store, run_id, "transform", 1, TaskState.FAILED, rows="7")  # failed: not passed on
    assert store.attempts(run_id, "extract")[0].outputs == {}
    assert store.task_outputs(run_id) == {}
    finish(store, run_id, "load", 1, TaskState.SUCCESS, done="yes")
    assert store.task_outputs(run_id) == {"load": {"done": "yes"}}
    store.set_run_state(run_id, [RunState.QUEUED], RunState.RUNNING, T0)
    assert store.clear_tasks(run_id, ["load"], T0 + 5) == ["load"]
    assert store.task_outputs(run_id) == {}  # the cleared success is history now
    assert store.attempts(run_id, "load")[0].outputs == {"done": "yes"}


# -- the engine -----------------------------------------------------------------------------------
PIPELINE = dag(
    """
    id: outputs
    tasks:
      - id: extract
        command: |
          echo "rows=42" >> "$FLOWFORGE_OUTPUT"
          echo "# a comment" >> "$FLOWFORGE_OUTPUT"
          echo "path=/data/out put.csv" >> "$FLOWFORGE_OUTPUT"
      - id: extract-users
        command: echo "count=7" > "$FLOWFORGE_OUTPUT"
      - id: transform
        command: |
          echo "rows: $FLOWFORGE_UPSTREAM_EXTRACT_ROWS"
          echo "path: $FLOWFORGE_UPSTREAM_EXTRACT_PATH"
          echo "users: $FLOWFORGE_UPSTREAM_EXTRACT_USERS_COUNT"
          echo "total=$((FLOWFORGE_UPSTREAM_EXTRACT_ROWS + FLOWFORGE_UPSTREAM_EXTRACT_USERS_COUNT))" >> "$FLOWFORGE_OUTPUT"
        depends_on: [extract, extract-users]
      - id: load
        command: env | grep '^FLOWFORGE_UPSTREAM_' | sort
        depends_on: [transform]
    """
)


def test_a_downstream_task_sees_its_direct_upstreams_outputs(engine: Engine) -> None:
    engine.submit(PIPELINE)
    run = engine.trigger("outputs")
    assert engine.wait(run.run_id).state == RunState.SUCCESS
    assert engine.log(run.run_id, "transform") == "rows: 42\npath: /data/out put.csv\nusers: 7\n"
    # Only direct upstreams: load sees transform's output, not extract's.
    assert engine.log(run.run_id, "load") == "FLOWFORGE_UPSTREAM_TRANSFORM_TOTAL=49\n"
    assert engine.store.attempts(run.run_id, "extract")[0].outputs == {
        "rows": "42",
        "path": "/data/out put.csv",
    }


def test_outputs_reach_the_downstream_as_data_never_as_shell(engine: Engine, tmp_path: Path) -> None:
    marker1, marker2 = tmp_path / "substituted", tmp_path / "chained"
    engine.submit(
        dag(
            f"""
            id: hostile
            tasks:
              - id: produce
                command: |
                  printf '%s\\n' 'sub=$(touch {marker1})' 'semi=x; touch {marker2}' 'tick=`touch {marker1}`' >> "$FLOWFORGE_OUTPUT"
              - id: consume
                command: |
                  echo "$FLOWFORGE_UPSTREAM_PRODUCE_SUB"
                  echo $FLOWFORGE_UPSTREAM_PRODUCE_SEMI
                  echo "$FLOWFORGE_UPSTREAM_PRODUCE_TICK"
                depends_on: [produce]
            """
        )
    )
    run = engine.trigger("hostile")
    assert engine.wait(run.run_id).state == RunState.SUCCESS
    assert engine.log(run.run_id, "consume").splitlines() == [
        f"$(touch {marker1})",
        f"x; touch {marker2}",
        f"`touch {marker1}`",
    ]
    assert not marker1.exists() and not marker2.exists()


@pytest.mark.parametrize(
    ("command", "error"),
    [
        (
            'printf "ok=1\\nnot a pair\\n" > "$FLOWFORGE_OUTPUT"',
            "task outputs: line 2: 'not a pair' is not KEY=VALUE",
        ),
        ('printf "bad-key=1\\n" > "$FLOWFORGE_OUTPUT"', "task outputs: line 1: 'bad-key' is not a key"),
        (
            'head -c 65537 /dev/zero | tr "\\0" x | sed "1s/^/k=/" > "$FLOWFORGE_OUTPUT"',
            "over the 64 KiB limit",
        ),
        (
            'i=0; while [ $i -le 100 ]; do echo "k$i=v" >> "$FLOWFORGE_OUTPUT"; i=$((i+1)); done',
            "task outputs: line 101: more than 100 keys",
        ),
        (
            'head -c 10000000 /dev/zero | tr "\\0" x > "$FLOWFORGE_OUTPUT"',
            "task outputs: over the 64 KiB limit",
        ),
    ],
    ids=["malformed", "bad-key", "64KiB+1", "101-keys", "10MB"],
)
def test_bad_outputs_fail_the_attempt_and_use_its_retries(engine: Engine, command: str, error: str) -> None:
    engine.submit(
        dag(
            f"""
            id: bad-outputs
            tasks:
              - id: produce
                command: {json.dumps(command)}
                retries: 1
                retry_delay_secs: 0.1
              - id: consume
                command: echo never
                depends_on: [produce]
            """
        )
    )
    run = engine.trigger("bad-outputs")
    assert engine.wait(run.run_id).state == RunState.FAILED
    assert engine.states(run.run_id) == {"produce": TaskState.FAILED, "consume": TaskState.UPSTREAM_FAILED}
    attempts = engine.store.attempts(run.run_id, "produce")
    assert [a.state for a in attempts] == [TaskState.FAILED, TaskState.FAILED]  # the retry ran too
    for a in attempts:
        assert a.exit_code == 0 and a.error is not None and error in a.error and a.outputs == {}
    assert engine.store.get_task_instance(run.run_id, "produce").error == attempts[-1].error


def test_only_the_successful_attempts_outputs_go_downstream(engine: Engine, tmp_path: Path) -> None:
    tried = tmp_path / "tried"
    engine.submit(
        dag(
            f"""
            id: second-time
            tasks:
              - id: produce
                command: |
                  if [ -e {tried} ]; then echo "try=second" >> "$FLOWFORGE_OUTPUT"; exit 0; fi
                  touch {tried}; echo "try=first" >> "$FLOWFORGE_OUTPUT"; exit 1
                retries: 1
                retry_delay_secs: 0.1
              - id: consume
                command: echo "$FLOWFORGE_UPSTREAM_PRODUCE_TRY"
                depends_on: [produce]
            """
        )
    )
    run = engine.trigger("second-time")
    assert engine.wait(run.run_id).state == RunState.SUCCESS
    assert [a.outputs for a in engine.store.attempts(run.run_id, "produce")] == [
        {"try": "first"},
        {"try": "second"},
    ]
    assert engine.log(run.run_id, "consume") == "second\n"


def test_a_secret_looking_output_is_masked_in_the_downstream_log_not_in_its_env(engine: Engine) -> None:
    engine.submit(
        dag(
            """
            id: secretive
            tasks:
              - id: login
                command: echo "api_token=tok-0123456789" >> "$FLOWFORGE_OUTPUT"
              - id: use
                command: |
                  echo "token is $FLOWFORGE_UPSTREAM_LOGIN_API_TOKEN"
                  [ "$FLOWFORGE_UPSTREAM_LOGIN_API_TOKEN" = tok-0123456789 ] && echo "it is the real one"
                depends_on: [login]
            """
        )
    )
    run = engine.trigger("secretive")
    assert engine.wait(run.run_id).state == RunState.SUCCESS
    assert engine.log(run.run_id, "use") == "token is ***\nit is the real one\n"


# -- flowforge test -------------------------------------------------------------------------------
def readme_example() -> str:
    """The example DAG of the README's "Task outputs" section."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text[text.index("\n## Task outputs\n") :]
    return section[
        section.index("```yaml\n") + len("```yaml\n") : section.index("```\n", section.index("```yaml"))
    ]


def test_the_readme_example_runs_under_flowforge_test_and_leaves_no_file(tmp_path: Path) -> None:
    work, tmp = tmp_path / "work", tmp_path / "tmp"
    work.mkdir()
    tmp.mkdir()
    (work / "outputs-demo.yaml").write_text(readme_example())
    env = clean_env(HOME=str(tmp_path), FLOWFORGE_HOME=str(tmp_path / "ffhome"), TMPDIR=str(tmp))
    result = run_flowforge("test", "outputs-demo.yaml", env=env, repo=work, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["[load] loading 42 rows from /data/users.csv"]  # as the README says
    assert list(tmp.iterdir()) == []  # each attempt's outputs file was removed
