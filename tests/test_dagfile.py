"""DAG file parsing and validation (the README's DAG file reference): every problem located, in plain words."""

from __future__ import annotations

from pathlib import Path
from textwrap import dedent

import pytest

from flowforge.core.dagfile import load_dag, load_dag_file
from flowforge.core.errors import DagValidationError, Problem, Problems
from flowforge.core.model import TriggerRule

WORKLOADS = Path(__file__).resolve().parent.parent / "benchmarks" / "workloads"


def problems(text: str, **limits: int) -> list[Problem]:
    """The problems load_dag reports for `text` (failing the test if it loads)."""
    with pytest.raises(DagValidationError) as info:
        load_dag(dedent(text), "dag.yaml", **limits)
    assert info.value.source == "dag.yaml"
    return info.value.problems


# Each case: YAML, then the one problem expected: (field, line, column) and a phrase of its message.
ONE_PROBLEM = {
    "cycle names its tasks in order": (
        """\
        id: d
        tasks:
          - id: a
            command: x
            depends_on: [c]
          - id: b
            command: x
            depends_on: [a]
          - id: c
            command: x
            depends_on: [b]
        """,
        ("tasks[0].depends_on[0]", 5, 18),
        "cycle: a → b → c → a",
    ),
    "missing dependency suggests the close id": (
        """\
        id: d
        tasks:
          - id: extract
            command: x
          - id: load
            command: x
            depends_on: [extrct]
        """,
        ("tasks[1].depends_on[0]", 7, 18),
        "'extrct', which is not a task of this DAG; did you mean 'extract'?",
    ),
    "self dependency": (
        """\
        id: d
        tasks:
          - id: a
            command: x
            depends_on:
              - a
        """,
        ("tasks[0].depends_on[0]", 6, 9),
        "task 'a' depends on itself",
    ),
    "dependency listed twice": (
        """\
        id: d
        tasks:
          - {id: a, command: x}
          - {id: b, command: x, depends_on: [a, a]}
        """,
        ("tasks[1].depends_on[1]", 4, 41),
        "'a' is listed more than once",
    ),
    "duplicate task id points at the second and names the first's line": (
        """\
        id: d
        tasks:
          - id: a
            command: x
          - id: a
            command: y
        """,
        ("tasks[1].id", 5, 9),
        "duplicate task id 'a' (first defined at line 3)",
    ),
    "unknown top-level key with suggestion": (
        """\
        id: d
        schedul: "@daily"
        tasks: [{id: a, command: x}]
        """,
        ("schedul", 2, 1),
        "unknown key 'schedul'; did you mean 'schedule'?",
    ),
    "unknown task key with suggestion": (
        """\
        id: d
        tasks:
          - id: a
            command: x
          - id: b
            command: x
            depend_on: [a]
        """,
        ("tasks[1].depend_on", 7, 5),
        "did you mean 'depends_on'?",
    ),
    "unknown key without a close match lists the allowed keys": (
        """\
        id: d
        tasks:
          - id: a
            command: x
            colour: red
        """,
        ("tasks[0].colour", 5, 5),
        "the keys a task can have are id, name, command, depends_on",
    ),
    "retries as text": (
        "id: d\ntasks:\n  - id: a\n    command: x\n    retries: three\n",
        ("tasks[0].retries", 5, 14),
        "must be a whole number, not the text 'three'",
    ),
    "retries as a boolean is not a number": (
        "id: d\ntasks:\n  - id: a\n    command: x\n    retries: true\n",
        ("tasks[0].retries", 5, 14),
        "must be a whole number, not true/false",
    ),
    "retries as a fraction": (
        "id: d\ntasks:\n  - id: a\n    command: x\n    retries: 1.5\n",
        ("tasks[0].retries", 5, 14),
        "must be a whole number, not the number 1.5",
    ),
    "depends_on as a string instead of a list": (
        "id: d\ntasks:\n  - {id: a, command: x}\n  - id: b\n    command: x\n    depends_on: a\n",
        ("tasks[1].depends_on", 6, 17),
        "must be a list of task ids this task waits for, not the text 'a'",
    ),
    "depends_on entry that is not text": (
        "id: d\ntasks:\n  - id: a\n    command: x\n    depends_on: [[b]]\n",
        ("tasks[0].depends_on[0]", 5, 18),
        "each entry of 'depends_on' must be text",
    ),
    "command as a boolean": (
        "id: d\ntasks:\n  - id: a\n    command: true\n",
        ("tasks[0].command", 4, 14),
        "must be text, not true/false (true); put it in quotes",
    ),
    "empty command": (
        "id: d\ntasks:\n  - id: a\n    command: '  '\n",
        ("tasks[0].command", 4, 14),
        "'command' is empty",
    ),
    "catchup as text": (
        "id: d\ncatchup: 'yes'\ntasks: [{id: a, command: x}]\n",
        ("catchup", 2, 10),
        "must be true or false",
    ),
    "timeout as text": (
        "id: d\ntasks:\n  - id: a\n    command: x\n    timeout_secs: ten\n",
        ("tasks[0].timeout_secs", 5, 19),
        "must be a number of seconds",
    ),
    "env value that is a list": (
        "id: d\nenv:\n  PATHS: [a, b]\ntasks: [{id: a, command: x}]\n",
        ("env.PATHS", 3, 10),
        "environment variable 'PATHS' must be a plain value, not a list",
    ),
    "env without a value": (
        "id: d\ntasks:\n  - id: a\n    command: x\n    env: {TOKEN: null}\n",
        ("tasks[0].env.TOKEN", 5, 18),
        "has no value",
    ),
    "env as a list": (
        "id: d\nenv: [A=1]\ntasks: [{id: a, command: x}]\n",
        ("env", 2, 6),
        "must be a mapping of environment variable names to values, not a list",
    ),
    "negative retries": (
        "id: d\ntasks:\n  - id: a\n    command: x\n    retries: -1\n",
        ("tasks[0].retries", 5, 14),
        "must be 0 or more, not -1",
    ),
    "negative default_retries": (
        "id: d\ndefault_retries: -2\ntasks: [{id: a, command: x}]\n",
        ("default_retries", 2, 18),
        "must be 0 or more, not -2",
    ),
    "zero timeout": (
        "id: d\ntasks:\n  - id: a\n    command: x\n    timeout_secs: 0\n",
        ("tasks[0].timeout_secs", 5, 19),
        "must be more than 0 seconds, not 0",
    ),
    "negative default timeout": (
        "id: d\ndefault_timeout_secs: -5\ntasks: [{id: a, command: x}]\n",
        ("default_timeout_secs", 2, 23),
        "must be more than 0 seconds, not -5",
    ),
    "zero run timeout": (
        "id: d\nrun_timeout_secs: 0.0\ntasks: [{id: a, command: x}]\n",
        ("run_timeout_secs", 2, 19),
        "must be more than 0 seconds",
    ),
    "infinite retry delay": (
        "id: d\nretry_delay_secs: .inf\ntasks: [{id: a, command: x}]\n",
        ("retry_delay_secs", 2, 19),
        "must be at most 604,800 seconds (7 days), not .inf",
    ),
    "max_active_runs below one": (
        "id: d\nmax_active_runs: 0\ntasks: [{id: a, command: x}]\n",
        ("max_active_runs", 2, 18),
        "must be 1 or more, not 0",
    ),
    "max_active_tasks below one": (
        "id: d\nmax_active_tasks: -3\ntasks: [{id: a, command: x}]\n",
        ("max_active_tasks", 2, 19),
        "must be 1 or more, not -3",
    ),
    "cron field out of range": (
        "id: d\nschedule: '61 * * * *'\ntasks: [{id: a, command: x}]\n",
        ("schedule", 2, 11),
        "'61 * * * *' is not a valid cron expression: [61 * * * *] is not acceptable, out of range",
    ),
    "cron with seven fields": (
        "id: d\nschedule: '0 0 0 * * * 2030'\ntasks: [{id: a, command: x}]\n",
        ("schedule", 2, 11),
        "has 7 fields; a schedule must have 5 fields",
    ),
    "unknown schedule shortcut": (
        "id: d\nschedule: '@fortnightly'\ntasks: [{id: a, command: x}]\n",
        ("schedule", 2, 11),
        "unknown schedule shortcut '@fortnightly'",
    ),
    "schedule that never fires": (
        "id: d\nschedule: '0 0 30 2 *'\ntasks: [{id: a, command: x}]\n",
        ("schedule", 2, 11),
        "never matches a real date",
    ),
    "unknown trigger rule lists the rules": (
        "id: d\ntasks:\n  - id: a\n    command: x\n    trigger_rule: all_sucess\n",
        ("tasks[0].trigger_rule", 5, 19),
        (
            "the rules FlowForge supports are all_success, all_done, all_failed, one_success, "
            "one_failed, none_failed; did you mean 'all_success'?"
        ),
    ),
    # Airflow rules FlowForge lacks are named as such: the closest spelling of ours means the opposite.
    "Airflow's none_skipped is not corrected to none_failed": (
        "id: d\ntasks:\n  - id: a\n    command: x\n    trigger_rule: none_skipped\n",
        ("tasks[0].trigger_rule", 5, 19),
        (
            "trigger_rule 'none_skipped' is an Airflow rule that FlowForge does not support; the rules "
            "FlowForge supports are all_success, all_done, all_failed, one_success, one_failed, none_failed"
        ),
    ),
    "Airflow's all_skipped is not corrected to all_failed": (
        "id: d\ntasks:\n  - {id: a, command: x, trigger_rule: all_skipped}\n",
        ("tasks[0].trigger_rule", 3, 39),
        "'all_skipped' is an Airflow rule that FlowForge does not support",
    ),
    "a typo of an Airflow rule is not one of ours either": (
        "id: d\ntasks:\n  - {id: a, command: x, trigger_rule: none_skiped}\n",
        ("tasks[0].trigger_rule", 3, 39),
        "unknown trigger_rule 'none_skiped' (Airflow's 'none_skipped' is not supported either); the rules",
    ),
    "a YAML 1.1 word as a key is reported as written": (
        "id: d\nyes: 1\ntasks: [{id: a, command: x}]\n",
        ("yes", 2, 1),
        "unknown key 'yes'",
    ),
    "a long value is quoted cut short": (
        "id: d\ntasks:\n  - {id: a, command: x, depends_on: [" + "z" * 5000 + "]}\n",
        ("tasks[0].depends_on[0]", 3, 38),
        "task 'a' depends on '" + "z" * 59 + "…', which is not a task of this DAG",
    ),
    "an aliased key is reported where the alias stands": (
        "id: d\nname: &n STAGE\nenv: {STAGE: a, *n : b}\ntasks: [{id: a, command: x}]\n",
        ("env.STAGE", 3, 17),
        "duplicate key 'STAGE' (first at line 3)",
    ),
    "empty task list": (
        "id: d\ntasks: []\n",
        ("tasks", 2, 8),
        "the DAG has no tasks",
    ),
    "tasks as a mapping": (
        "id: d\ntasks:\n  a: {command: x}\n",
        ("tasks", 3, 3),
        "'tasks' must be a list of tasks, not a mapping",
    ),
    "task that is not a mapping": (
        "id: d\ntasks:\n  - {id: a, command: x}\n  - echo hi\n",
        ("tasks[1]", 4, 5),
        "each task must be a mapping",
    ),
    "missing dag id": (
        "name: d\ntasks: [{id: a, command: x}]\n",
        ("id", 1, 1),
        "missing required key 'id'",
    ),
    "missing tasks": (
        "id: d\n",
        ("tasks", 1, 1),
        "missing required key 'tasks'",
    ),
    "missing command is located at the task": (
        "id: d\ntasks:\n  - id: a\n    name: A\n",
        ("tasks[0].command", 3, 5),
        "missing required key 'command'",
    ),
    "task id without a value": (
        "id: d\ntasks:\n  - id:\n    command: x\n",
        ("tasks[0].id", 3, 8),
        "no value for the required key 'id'",
    ),
    "bad characters in the dag id": (
        "id: my dag!\ntasks: [{id: a, command: x}]\n",
        ("id", 1, 5),
        "'my dag!' is not a valid DAG id: an id starts with a letter or digit",
    ),
    "task id starting with a dash": (
        "id: d\ntasks:\n  - id: -a\n    command: x\n",
        ("tasks[0].id", 3, 9),
        "'-a' is not a valid task id",
    ),
    "task id too long": (
        f"id: d\ntasks:\n  - id: {'a' * 129}\n    command: x\n",
        ("tasks[0].id", 3, 9),
        "(at most 128)",
    ),
    "task id as a number": (
        "id: d\ntasks:\n  - id: 7\n    command: x\n",
        ("tasks[0].id", 3, 9),
        "'id' must be text, not the number 7; put it in quotes",
    ),
    "bad env key": (
        "id: d\ntasks:\n  - id: a\n    command: x\n    env:\n      MY-VAR: 1\n",
        ("tasks[0].env.MY-VAR", 6, 7),
        "'MY-VAR' is not a valid environment variable name",
    ),
    "bad param name": (
        "id: d\nparams: {2fast: 1}\ntasks: [{id: a, command: x}]\n",
        ("params.2fast", 2, 10),
        "'2fast' is not a valid param name",
    ),
    "params that collide once upper-cased": (
        "id: d\nparams: {region: eu, REGION: us}\ntasks: [{id: a, command: x}]\n",
        ("params.REGION", 2, 30),
        "would both become FLOWFORGE_PARAM_REGION",
    ),
    "param default that is a mapping": (
        "id: d\nparams: {limits: {a: 1}}\ntasks: [{id: a, command: x}]\n",
        ("params.limits", 2, 18),
        "param 'limits' must be a plain value, not a mapping",
    ),
    "tags as a string": (
        "id: d\ntags: etl\ntasks: [{id: a, command: x}]\n",
        ("tags", 2, 7),
        "'tags' must be a list of tags, not the text 'etl'; write tags: [etl]",
    ),
    "tag that is a number": (
        "id: d\ntags: [etl, 7]\ntasks: [{id: a, command: x}]\n",
        ("tags[1]", 2, 13),
        "each entry of 'tags' must be text",
    ),
    "bad timezone suggests the close name": (
        "id: d\ntimezone: Europe/Berln\ntasks: [{id: a, command: x}]\n",
        ("timezone", 2, 11),
        "unknown timezone 'Europe/Berln'; use an IANA name such as 'Europe/Berlin' or 'UTC'",
    ),
    "timezone in the wrong case": (
        "id: d\ntimezone: utc\ntasks: [{id: a, command: x}]\n",
        ("timezone", 2, 11),
        "unknown timezone 'utc'; use an IANA name such as 'Europe/Berlin' or 'UTC'; did you mean 'UTC'?",
    ),
    "duplicate top-level key": (
        "id: d\ntasks: [{id: a, command: x}]\nid: e\n",
        ("id", 3, 1),
        "duplicate key 'id' (first at line 1); YAML would silently keep only the last one",
    ),
    "duplicate task key": (
        "id: d\ntasks:\n  - id: a\n    command: x\n    command: y\n",
        ("tasks[0].command", 5, 5),
        "duplicate key 'command' (first at line 4)",
    ),
    "duplicate env key": (
        "id: d\ntasks:\n  - id: a\n    command: x\n    env: {A: 1, A: 2}\n",
        ("tasks[0].env.A", 5, 17),
        "duplicate key 'A'",
    ),
    "not a mapping: a list": (
        "- id: d\n- tasks: []\n",
        ("", 1, 1),
        "a DAG file must be a mapping of keys such as 'id' and 'tasks', not a list",
    ),
    "not a mapping: text": (
        "just some words\n",
        ("", 1, 1),
        "must be a mapping of keys such as 'id' and 'tasks', not the text 'just some words'",
    ),
    "YAML syntax error is located where the parser failed": (
        "id: d\ntasks:\n  - id: a\n    command: [x\n  - id: b\n",
        ("", 5, 7),
        "expected ',' or ']'",
    ),
    "YAML syntax error: bad indentation": (
        "id: d\n  name: x\ntasks: []\n",
        ("", 2, 7),
        "YAML syntax error: mapping values are not allowed",
    ),
    "custom tag": (
        "id: d\ntasks:\n  - id: a\n    command: !shell echo hi\n",
        ("tasks[0].command", 4, 14),
        "the YAML tag !shell is not allowed",
    ),
    "standard tag with no use in a DAG file": (
        "id: d\ntags: !!set {a, b}\ntasks: [{id: a, command: x}]\n",
        ("tags", 2, 7),
        "the YAML tag !!set is not supported in a DAG file",
    ),
    "explicit int tag on a non-number": (
        "id: d\ntasks:\n  - id: a\n    command: x\n    retries: !!int many\n",
        ("tasks[0].retries", 5, 14),
        "'many' cannot be read as !!int",
    ),
    "several documents": (
        "id: d\ntasks: [{id: a, command: x}]\n---\nid: e\n",
        ("", 3, 1),
        "more than one YAML document",
    ),
    "empty file": ("", ("", None, None), "the file is empty"),
    "only comments": ("# nothing yet\n", ("", None, None), "the file is empty"),
    "alias to an undefined anchor": (
        "id: d\ntasks: *all\n",
        ("tasks", 2, 8),
        "the alias *all refers to no anchor &all defined before it",
    ),
    "recursive alias": (
        "id: d\nx: &loop [a, *loop]\ntasks: [{id: a, command: x}]\n",
        ("x[1]", 2, 14),
        "refers to no anchor &loop defined before it (or to a value that contains the alias",
    ),
    "too many tasks": (
        "id: d\ntasks:\n  - {id: a, command: x}\n  - {id: b, command: x}\n  - {id: c, command: x}\n",
        ("tasks", 3, 3),
        "the DAG has 3 tasks, over the limit of 2",
    ),
}


@pytest.mark.parametrize(("text", "where", "phrase"), ONE_PROBLEM.values(), ids=ONE_PROBLEM)
def test_one_problem_located(text: str, where: tuple[str, int | None, int | None], phrase: str) -> None:
    limits = {"max_tasks": 2} if "tasks, over the limit" in phrase else {}
    found = problems(text, **limits)
    assert len(found) == 1, [p.format("dag.yaml") for p in found]
    p = found[0]
    assert (p.field, p.line, p.column) == where, p.format("dag.yaml")
    assert phrase in p.message


def test_python_tag_is_refused_and_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    text = f'id: d\ndescription: !!python/object/apply:os.system ["touch {marker}"]\ntasks: [{{id: a, command: x}}]\n'
    [p] = problems(text)
    assert (p.field, p.line, p.column) == ("description", 2, 14)
    assert "the YAML tag !!python/object/apply:os.system is not allowed" in p.message
    assert not marker.exists()


def test_python_tag_in_a_value_that_matters_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    text = f'id: d\ntasks:\n  - id: a\n    command: !!python/object/apply:os.system ["touch {marker}"]\n'
    found = problems(text)
    assert any("not allowed" in p.message and p.line == 4 for p in found)
    assert not marker.exists()


@pytest.mark.timeout(10)
def test_alias_bomb_is_rejected_without_expanding_it() -> None:
    # "Billion laughs": 9 levels of 10 aliases each would expand to 10**9 strings;
    # expanding it would never finish within the timeout.
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, 10):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    text = "id: d\n" + "\n".join(lines) + "\ntasks: [{id: a, command: x}]\n"
    [p] = problems(text)
    assert "aliases (*name) written out" in p.message and p.line is not None


def test_alias_node_limit_stops_many_tiny_values() -> None:
    from flowforge.core.yamlnodes import read_yaml

    text = "a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\nb: [" + ", ".join(["*a"] * 200) + "]\n"
    root, found = read_yaml(text, max_nodes=1000)
    assert root is None
    [p] = found.listing()
    assert "alias bomb" in p.message and (p.line, p.field) == (2, "b[89]")


def test_deep_nesting_is_rejected_not_a_crash() -> None:
    # libyaml's C composer recurses per level and would take the interpreter down with it.
    [p] = problems("id: d\nx: " + "[" * 100_000 + "]" * 100_000 + "\ntasks: []\n")
    assert "nested more than" in p.message and p.line == 2


def test_too_large_is_refused_before_parsing() -> None:
    text = "id: d\ntasks: [{id: a, command: x}]\n# " + "x" * 200 + "\n"
    [p] = problems(text, max_bytes=100)
    assert "over the limit of 100" in p.message


def test_too_large_file(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text("id: d\ntasks: [{id: a, command: x}]\n" + "#" * 5000 + "\n")
    with pytest.raises(DagValidationError) as info:
        load_dag_file(path, max_bytes=1000)
    assert "over the limit of 1,000" in info.value.problems[0].message
    assert info.value.source == str(path)


def test_unreadable_file_is_a_problem_not_a_traceback(tmp_path: Path) -> None:
    with pytest.raises(DagValidationError) as info:
        load_dag_file(tmp_path / "missing.yaml")
    [p] = info.value.problems
    assert p.message.startswith("cannot read the file")


def test_not_utf8() -> None:
    with pytest.raises(DagValidationError) as info:
        load_dag(b"id: d\ntasks: [{id: a, command: '\xff'}]\n")
    assert info.value.problems[0].message == "the file is not UTF-8 text"
    assert info.value.problems[0].line == 2


def test_many_problems_reported_at_once_in_file_order() -> None:
    text = """\
        id: d
        max_active_runs: 0
        tasks:
          - id: a
            command: x
            retries: -1
          - id: b
            comand: x
            depends_on: [zz]
        """
    found = problems(text)
    assert [(p.field, p.line) for p in found] == [
        ("max_active_runs", 2),
        ("tasks[0].retries", 6),
        ("tasks[1].command", 7),
        ("tasks[1].comand", 8),
        ("tasks[1].depends_on[0]", 9),
    ]


def test_two_cycles_are_both_reported() -> None:
    text = """\
        id: d
        tasks:
          - {id: a, command: x, depends_on: [b]}
          - {id: b, command: x, depends_on: [a]}
          - {id: c, command: x, depends_on: [d]}
          - {id: d, command: x, depends_on: [c]}
        """
    found = problems(text)
    assert sorted(p.message.split(" (")[0] for p in found) == [
        "dependency cycle: a → b → a",
        "dependency cycle: c → d → c",
    ]


def test_a_long_cycle_names_its_ends_and_counts_the_rest() -> None:
    n = 1_000
    rows = "".join(f"  - {{id: t{i:04d}, command: x, depends_on: [t{(i + 1) % n:04d}]}}\n" for i in range(n))
    [p] = problems(f"id: d\ntasks:\n{rows}")
    names = p.message.split(" (each")[0]
    assert names.startswith("dependency cycle: t0000 → t0999 → t0998") and "… (988 more tasks) …" in names
    assert names.endswith("t0005 → t0004 → t0003 → t0002 → t0001 → t0000") and len(p.message) < 400


def test_problems_keep_the_first_in_file_order_whatever_order_they_are_found_in() -> None:
    found = Problems(limit=3)
    for line in (9, 2, 7, 5, 1, 8):
        found.append(Problem(f"at {line}", "", line, 1))
    found.append(Problem("nowhere"))
    assert [p.message for p in found.listing()] == [
        "at 1",
        "at 2",
        "at 5",
        "… and 4 more problems (not listed)",
    ]
    error = DagValidationError(found, "dag.yaml")
    assert error.total == 7 and len(error.problems) == 4


def test_problem_format_names_file_line_column_and_field() -> None:
    text = """\
        # A DAG with a typo in a dependency.
        id: demo
        description: two tasks
        tasks:
          - id: a
            command: echo a
            retries: 1
          - id: b
            command: echo b
            retries: 2
            depends_on:
            - nope
        """
    with pytest.raises(DagValidationError) as info:
        load_dag(dedent(text), "file.yaml")
    [p] = info.value.problems
    line = p.format("file.yaml")
    assert line.startswith("file.yaml:12:7: tasks[1].depends_on[0]: task 'b' depends on 'nope'")
    assert str(info.value) == line


FULL = """\
id: etl-pipeline
name: ETL Data Pipeline
description: Extract, transform and load
schedule: "0 0 * * * *"
timezone: Europe/Berlin
catchup: true
max_active_runs: 1
max_active_tasks: 4
run_timeout_secs: 7200
params: {region: eu, batch: 500, dry_run: false}
default_retries: 3
default_timeout_secs: 3600
retry_delay_secs: 2
max_retry_delay_secs: 30
env: {STAGE: prod, DEBUG: true, RATIO: 0.5}
tags: [etl, nightly]
tasks:
  - id: extract-users
    name: Extract Users
    command: "echo extracting && sleep 2"
    depends_on: []
    retries: 5
    timeout_secs: 120
    trigger_rule: all_success
    env: {WAREHOUSE_URL: "postgres://warehouse:5432/analytics"}
    retry_delay_secs: 0.5
    max_retry_delay_secs: 10
  - id: transform
    command: echo transform
    depends_on: [extract-users]
    trigger_rule: all_done
  - id: report
    command: echo report
    depends_on: [transform]
    timeout_secs: null
"""


def test_full_example_loads_with_defaults_applied() -> None:
    spec = load_dag(FULL, "etl.yaml")
    assert (spec.id, spec.name, spec.description) == (
        "etl-pipeline",
        "ETL Data Pipeline",
        "Extract, transform and load",
    )
    assert (spec.schedule, spec.timezone, spec.catchup) == ("0 0 * * * *", "Europe/Berlin", True)
    assert (spec.max_active_runs, spec.max_active_tasks, spec.run_timeout_secs) == (1, 4, 7200.0)
    assert spec.params == {"region": "eu", "batch": "500", "dry_run": "false"}
    assert (spec.default_retries, spec.default_timeout_secs) == (3, 3600.0)
    assert spec.env == {"STAGE": "prod", "DEBUG": "true", "RATIO": "0.5"}
    assert spec.tags == ("etl", "nightly")
    extract, transform, report = spec.tasks
    assert extract.name == "Extract Users" and extract.depends_on == ()
    assert (extract.retries, extract.timeout_secs, extract.trigger_rule) == (
        5,
        120.0,
        TriggerRule.ALL_SUCCESS,
    )
    assert extract.env == {"WAREHOUSE_URL": "postgres://warehouse:5432/analytics"}
    assert (extract.retry_delay_secs, extract.max_retry_delay_secs) == (0.5, 10.0)
    # Defaults from the DAG level.
    assert transform.name == "transform" and transform.depends_on == ("extract-users",)
    assert (transform.retries, transform.timeout_secs, transform.trigger_rule) == (
        3,
        3600.0,
        TriggerRule.ALL_DONE,
    )
    assert (transform.retry_delay_secs, transform.max_retry_delay_secs) == (2.0, 30.0)
    assert transform.env == {}
    # An explicit null timeout means no limit, whatever the default.
    assert report.timeout_secs is None


def test_minimal_dag_gets_every_default() -> None:
    spec = load_dag("id: tiny\ntasks:\n  - id: only\n    command: 'true'\n")
    assert (spec.name, spec.schedule, spec.timezone, spec.catchup) == ("tiny", None, "UTC", False)
    assert (spec.max_active_runs, spec.max_active_tasks) == (16, 16)
    [task] = spec.tasks
    assert (task.name, task.retries, task.timeout_secs) == ("only", 0, None)
    assert (task.retry_delay_secs, task.max_retry_delay_secs) == (1.0, 60.0)
    assert task.trigger_rule is TriggerRule.ALL_SUCCESS


def test_anchors_share_values() -> None:
    text = """\
        id: d
        env: &shared {STAGE: prod}
        tasks:
          - {id: a, command: x, env: *shared}
          - {id: b, command: x, env: *shared}
        """
    spec = load_dag(dedent(text))
    assert [t.env for t in spec.tasks] == [{"STAGE": "prod"}, {"STAGE": "prod"}]


def test_merge_keys_apply_defaults_and_explicit_keys_win() -> None:
    text = """\
        id: d
        tasks:
          - &base {id: a, command: x, retries: 2, env: {A: "1"}}
          - {<<: *base, id: b, retries: 4}
          - {<<: *base, id: c}
        """
    spec = load_dag(dedent(text))
    assert [(t.id, t.retries, t.env) for t in spec.tasks] == [
        ("a", 2, {"A": "1"}),
        ("b", 4, {"A": "1"}),
        ("c", 2, {"A": "1"}),
    ]


def test_bytes_with_bom_load() -> None:
    assert load_dag(b"\xef\xbb\xbfid: d\ntasks: [{id: a, command: x}]\n").id == "d"


def test_params_and_env_are_taken_as_written_not_as_yaml_11_reads_them() -> None:
    text = """\
        id: d
        params: {a: yes, b: ~, c: 0x10, d: 1_000, e: '5', f: 2026-01-01, g: no, h: 0755}
        env: {MODE: 0755, VERSION: 1.10, AT: 12:30, FLAG: on, OFF: off, EXP: 1e3, Q: "0755"}
        tasks: [{id: a, command: x, env: {N: 007, NULLISH: ''}}]
        """
    spec = load_dag(dedent(text))
    assert spec.params == {
        "a": "yes", "b": None, "c": "0x10", "d": "1_000", "e": "5", "f": "2026-01-01", "g": "no", "h": "0755",
    }  # fmt: skip
    assert spec.env == {
        "MODE": "0755", "VERSION": "1.10", "AT": "12:30", "FLAG": "on", "OFF": "off", "EXP": "1e3", "Q": "0755",
    }  # fmt: skip
    assert spec.tasks[0].env == {"N": "007", "NULLISH": ""}


def test_typed_fields_still_read_yaml_words_and_numbers() -> None:
    spec = load_dag(
        "id: d\ncatchup: yes\ndefault_retries: 0x3\nmax_active_runs: 1_0\ntasks: [{id: a, command: x}]\n"
    )
    assert (spec.catchup, spec.default_retries, spec.max_active_runs) == (True, 3, 10)


def test_keys_are_read_as_written() -> None:
    """`on:` is the key 'on' (an unknown key), not True; env names such as ON or NULL are names."""
    found = problems("id: d\non: push\ntasks: [{id: a, command: x}]\n")
    assert [(p.field, p.line, p.message.split(";")[0]) for p in found] == [("on", 2, "unknown key 'on'")]
    spec = load_dag("id: d\nenv: {ON: 1, No: 2, NULL: 3}\ntasks: [{id: a, command: x}]\n")
    assert spec.env == {"ON": "1", "No": "2", "NULL": "3"}


@pytest.mark.parametrize(("name", "tasks"), [("W1", 200), ("W2", 50), ("W3", 200), ("W4", 5000)])
def test_workloads_load(name: str, tasks: int) -> None:
    spec = load_dag_file(WORKLOADS / f"{name}.yaml")
    assert spec.id == name and len(spec.tasks) == tasks
