"""DAG files: YAML text in, a validated DagSpec out, or every problem found with its line and column.

The schema is the README's "The DAG file". Reading (tags, aliases, syntax) lives in `yamlnodes`; this module checks
what the values mean. Problems are collected rather than raised one at a time, so a user fixes a
file in one pass; an answer lists at most `MAX_PROBLEMS` of them, each quoting at most a few dozen
characters of a value, so a hostile file cannot make its answer larger than itself.
"""

from __future__ import annotations

from os import PathLike
from pathlib import Path
from typing import Any

from flowforge.core.errors import DagValidationError, Problem, Problems, shown
from flowforge.core.fields import MAX_COUNT, MAX_RETRIES, NUL_RULE, Reader, closest, did_you_mean, what_it_is
from flowforge.core.graph import find_cycles
from flowforge.core.model import DagSpec, TaskSpec, TriggerRule
from flowforge.core.retry import DEFAULT_MAX_RETRY_DELAY_SECS, DEFAULT_RETRY_DELAY_SECS
from flowforge.core.schedule import validate_schedule
from flowforge.core.yamlnodes import MAP, SEQ, YNode, read_yaml

MAX_BYTES = 1_048_576
MAX_TASKS = 10_000

TOP_KEYS = (
    "id", "name", "description", "schedule", "timezone", "catchup", "max_active_runs",
    "max_active_tasks", "run_timeout_secs", "params", "default_retries", "default_timeout_secs",
    "env", "tags", "tasks", "retry_delay_secs", "max_retry_delay_secs",
)  # fmt: skip
TASK_KEYS = (
    "id", "name", "command", "depends_on", "retries", "timeout_secs", "trigger_rule", "env",
    "retry_delay_secs", "max_retry_delay_secs",
)  # fmt: skip

_RULES = tuple(rule.value for rule in TriggerRule)
# Airflow's rules that FlowForge does not have: named as such, never "corrected" to a rule of ours
# (the closest spelling, e.g. none_skipped → none_failed, often means the opposite).
AIRFLOW_ONLY_RULES = (
    "always", "dummy", "one_done", "none_skipped", "all_skipped", "none_failed_or_skipped",
    "none_failed_min_one_success", "all_done_setup_success", "all_done_min_one_success",
)  # fmt: skip
# A cycle through more tasks than this is named by its first and last ones.
_MAX_CYCLE_NAMES = 12
# Working out suggestions is quadratic; past this many unknown dependencies, stop suggesting.
_MAX_SUGGESTIONS = 25


def load_dag(
    text: str | bytes, source: str = "<string>", *, max_bytes: int = MAX_BYTES, max_tasks: int = MAX_TASKS
) -> DagSpec:
    """Parse and validate a DAG file's text; raise DagValidationError listing every problem found."""
    raw = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    if len(raw) > max_bytes:
        raise DagValidationError(
            [Problem(f"the file is {len(raw):,} bytes, over the limit of {max_bytes:,}")], source
        )
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            line = raw.count(b"\n", 0, e.start) + 1
            raise DagValidationError([Problem("the file is not UTF-8 text", "", line)], source) from None
    root, problems = read_yaml(text, problems=Problems())
    if root is None and not problems:
        problems.append(Problem("the file is empty; a DAG file needs at least 'id' and 'tasks'"))
    elif root is not None and root.kind != MAP:
        problems.append(
            Problem(
                f"a DAG file must be a mapping of keys such as 'id' and 'tasks', not {what_it_is(root)}",
                "",
                root.line,
                root.column,
            )
        )
    else:
        spec = _dag(root, Reader(problems), max_tasks) if root is not None else None
        if spec is not None and not problems:
            return spec
    # Reading order (the line a user will look at first comes first), at most MAX_PROBLEMS of them.
    raise DagValidationError(problems, source)


DAG_SUFFIXES = (".yaml", ".yml")


def dag_files_in(folder: Path) -> list[Path]:
    """The DAG files directly in `folder` (`*.yaml`, `*.yml`; not hidden, not in subfolders), sorted by
    name; OSError when the folder cannot be read."""
    return sorted(
        p for p in folder.iterdir() if p.suffix in DAG_SUFFIXES and not p.name.startswith(".") and p.is_file()
    )


def load_dag_file(
    path: str | PathLike[str], *, max_bytes: int = MAX_BYTES, max_tasks: int = MAX_TASKS
) -> DagSpec:
    """Read one DAG file and validate it with `load_dag`; unreadable files raise DagValidationError too."""
    source = str(path)
    try:
        with open(path, "rb") as f:
            # One byte more than allowed is enough to know the file is too large.
            raw = f.read(max_bytes + 1)
    except OSError as e:
        raise DagValidationError([Problem(f"cannot read the file: {e.strerror or e}")], source) from None
    return load_dag(raw, source, max_bytes=max_bytes, max_tasks=max_tasks)


def _dag(root: YNode, r: Reader, max_tasks: int) -> DagSpec | None:
    r.keys(root, TOP_KEYS, "", "a DAG")
    dag_id = r.ident(root, "", "DAG")
    tz = r.timezone(root)
    kw: dict[str, Any] = {
        "name": r.text(root, "name", "") or None,  # empty: the id, as when absent
        "description": r.text(root, "description", ""),
        "timezone": tz,
        "catchup": r.boolean(root, "catchup", ""),
        "max_active_runs": r.integer(root, "max_active_runs", "", 1, MAX_COUNT),
        "max_active_tasks": r.integer(root, "max_active_tasks", "", 1, MAX_COUNT),
        "run_timeout_secs": r.seconds(root, "run_timeout_secs", ""),
        "params": r.params(root),
        "default_timeout_secs": r.seconds(root, "default_timeout_secs", ""),
        "env": r.env(root, ""),
        "tags": tuple(t for t, _ in r.strings(root, "tags", "", "tags")),
    }
    schedule = r.text(root, "schedule", "")
    if schedule is not None:
        why = validate_schedule(schedule, tz or "UTC")
        if why:
            r.add(why, "schedule", root.value["schedule"])
        kw["schedule"] = schedule
    defaults = {
        "retries": r.integer(root, "default_retries", "", 0, MAX_RETRIES) or 0,
        "timeout_secs": kw["default_timeout_secs"],
        "retry_delay_secs": r.seconds(root, "retry_delay_secs", "") or DEFAULT_RETRY_DELAY_SECS,
        "max_retry_delay_secs": r.seconds(root, "max_retry_delay_secs", "") or DEFAULT_MAX_RETRY_DELAY_SECS,
    }
    tasks = _tasks(root, r, max_tasks, defaults)
    if dag_id is None or tasks is None or r.problems:
        return None
    # Absent keys keep the model's defaults.
    given = {k: v for k, v in kw.items() if v is not None}
    return DagSpec(
        id=dag_id, tasks=tasks, **{"name": dag_id, **given, "default_retries": defaults["retries"]}
    )


def _task_list(root: YNode, r: Reader, max_tasks: int) -> list[YNode] | None:
    """The nodes under `tasks`, or None (with a problem) when there is no usable list."""
    node = root.value.get("tasks")
    if node is None:
        r.add("missing required key 'tasks' (the list of tasks of this DAG)", "tasks", root)
        return None
    if node.kind != SEQ:
        r.add(f"'tasks' must be a list of tasks, not {what_it_is(node)}", "tasks", node)
        return None
    if not node.value:
        r.add("the DAG has no tasks; list at least one under 'tasks'", "tasks", node)
        return None
    if len(node.value) > max_tasks:
        r.add(f"the DAG has {len(node.value):,} tasks, over the limit of {max_tasks:,}", "tasks", node)
        return None
    return list(node.value)


def _tasks(root: YNode, r: Reader, max_tasks: int, defaults: dict[str, Any]) -> tuple[TaskSpec, ...] | None:
    nodes = _task_list(root, r, max_tasks)
    if nodes is None:
        return None
    specs: list[TaskSpec] = []
    first: dict[str, YNode] = {}  # task id -> its id node, to point back at the first of duplicates
    deps: list[tuple[int, str, list[tuple[str, YNode]]]] = []
    for i, t in enumerate(nodes):
        path = f"tasks[{i}]."
        if t.kind != MAP:
            r.add(
                f"each task must be a mapping with at least 'id' and 'command', not {what_it_is(t)}",
                path[:-1],
                t,
            )
            continue
        task_id, depends_on, spec = _task(t, r, path, defaults)
        if task_id is None:
            continue
        if task_id in first:
            r.add(
                f"duplicate task id '{task_id}' (first defined at line {first[task_id].line})",
                path + "id",
                t.value["id"],
            )
            continue
        first[task_id] = t.value["id"]
        deps.append((i, task_id, depends_on))
        if spec is not None:  # without a command it is still a known id, so dependants get no problem
            specs.append(spec)
    _check_dependencies(r, deps, list(first))
    return tuple(specs)


def _task(
    t: YNode, r: Reader, path: str, defaults: dict[str, Any]
) -> tuple[str | None, list[tuple[str, YNode]], TaskSpec | None]:
    """One task's id, its dependencies and its spec (None when it has no usable id or command)."""
    r.keys(t, TASK_KEYS, path, "a task")
    task_id = r.ident(t, path, "task")
    command = r.text(t, "command", path, required="the shell command the task runs")
    if command is not None and not command.strip():
        r.add("'command' is empty", path + "command", t.value["command"])
    elif command is not None and "\x00" in command:
        r.add(f"'command' {NUL_RULE}", path + "command", t.value["command"])
    depends_on = r.strings(t, "depends_on", path, "task ids this task waits for")
    rule = r.text(t, "trigger_rule", path)
    if rule is not None and rule not in _RULES:
        r.add(_unknown_rule(rule), path + "trigger_rule", t.value["trigger_rule"])
        rule = None
    retries = r.integer(t, "retries", path, 0, MAX_RETRIES)
    # An explicit `timeout_secs: null` means no limit, even when the DAG sets a default.
    timeout = r.seconds(t, "timeout_secs", path) if "timeout_secs" in t.value else defaults["timeout_secs"]
    delay = r.seconds(t, "retry_delay_secs", path)
    max_delay = r.seconds(t, "max_retry_delay_secs", path)
    env = r.env(t, path)
    name = r.text(t, "name", path)
    if task_id is None or command is None:
        return task_id, depends_on, None
    spec = TaskSpec(
        id=task_id,
        command=command,
        name=name or task_id,
        depends_on=tuple(d for d, _ in depends_on),
        retries=defaults["retries"] if retries is None else retries,
        timeout_secs=timeout,
        trigger_rule=TriggerRule(rule) if rule else TriggerRule.ALL_SUCCESS,
        env=env,
        retry_delay_secs=delay or defaults["retry_delay_secs"],
        max_retry_delay_secs=max_delay or defaults["max_retry_delay_secs"],
    )
    return task_id, depends_on, spec


def _unknown_rule(rule: str) -> str:
    """Why a trigger rule is refused: a typo of one of ours, or one of Airflow's that we lack."""
    supported = f"the rules FlowForge supports are {', '.join(_RULES)}"
    near = closest(rule, [*_RULES, *AIRFLOW_ONLY_RULES])
    if near == rule:
        return f"trigger_rule '{rule}' is an Airflow rule that FlowForge does not support; {supported}"
    if near in AIRFLOW_ONLY_RULES:  # a typo of one: FlowForge lacks the rule it was meant to be
        return (
            f"unknown trigger_rule '{shown(rule)}' (Airflow's '{near}' is not supported either); {supported}"
        )
    hint = f"; did you mean '{near}'?" if near is not None else ""
    return f"unknown trigger_rule '{shown(rule)}'; {supported}{hint}"


def _cycle_names(cycle: list[str]) -> str:
    """`a → b → c → a`; a long cycle keeps its first and last tasks and says how many it leaves out."""
    if len(cycle) > _MAX_CYCLE_NAMES:
        half = _MAX_CYCLE_NAMES // 2
        cut = len(cycle) - 2 * half
        cycle = [*cycle[:half], f"… ({cut:,} more tasks) …", *cycle[-half:]]
    return " → ".join([*cycle, cycle[0]])


def _check_dependencies(
    r: Reader, deps: list[tuple[int, str, list[tuple[str, YNode]]]], ids: list[str]
) -> None:
    """Missing, self and repeated dependencies, then cycles among the dependencies that are fine."""
    known = set(ids)
    index = {task_id: i for i, task_id in enumerate(ids)}
    rows = {task_id: (row, entries) for row, task_id, entries in deps}
    edges: list[tuple[str, str]] = []
    for row, task_id, entries in deps:
        seen: set[str] = set()
        for j, (dep, dnode) in enumerate(entries):
            if dep in known and dep != task_id and dep not in seen:
                edges.append((dep, task_id))
                seen.add(dep)
                continue
            field = f"tasks[{row}].depends_on[{j}]"
            if dep == task_id:
                r.add(f"task '{task_id}' depends on itself", field, dnode)
            elif dep in seen:
                r.add(f"'{shown(dep)}' is listed more than once in depends_on", field, dnode)
            else:
                hint = ""
                if r.suggestions < _MAX_SUGGESTIONS:
                    r.suggestions += 1
                    hint = did_you_mean(dep, ids)
                r.add(
                    f"task '{task_id}' depends on '{shown(dep)}', which is not a task of this DAG{hint}",
                    field,
                    dnode,
                )
            seen.add(dep)
    for cycle in find_cycles(edges):
        # Start at the task that comes first in the file, and point at the dependency closing the loop.
        k = min(range(len(cycle)), key=lambda n: index[cycle[n]])
        cycle = cycle[k:] + cycle[:k]
        row, entries = rows[cycle[0]]
        j = next(j for j, (dep, _) in enumerate(entries) if dep == cycle[-1])
        r.add(
            f"dependency cycle: {_cycle_names(cycle)} (each task must finish before the next one starts), "
            "so none of these tasks can ever run",
            f"tasks[{row}].depends_on[{j}]",
            entries[j][1],
        )
