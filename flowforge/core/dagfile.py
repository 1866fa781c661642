"""DAG files: YAML text in, a validated DagSpec out, or every problem found with its line and column.

The schema is the README's "The DAG file". Reading (tags, aliases, syntax) lives in `yamlnodes`; this module checks
what the values mean. Problems are collected rather than raised one at a time, so a user fixes a
file in one pass.
"""

from __future__ import annotations

import difflib
import math
import re
from os import PathLike
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from flowforge.core.errors import DagValidationError, Problem
from flowforge.core.graph import find_cycles
from flowforge.core.model import DagSpec, TaskSpec, TriggerRule
from flowforge.core.retry import DEFAULT_MAX_RETRY_DELAY_SECS, DEFAULT_RETRY_DELAY_SECS
from flowforge.core.schedule import validate_schedule
from flowforge.core.yamlnodes import MAP, SCALAR, SEQ, YNode, read_yaml

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

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
ID_RULE = "an id starts with a letter or digit and holds only letters, digits, '_', '.' and '-' (at most 128)"
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
ENV_RULE = "a name starts with a letter or '_' and holds only letters, digits and '_'"
_RULES = tuple(rule.value for rule in TriggerRule)
# Working out suggestions is quadratic; past this many unknown dependencies, stop suggesting.
_MAX_SUGGESTIONS = 25


def _a(node: YNode) -> str:
    """What a value is, in words, for 'must be X, not Y' messages."""
    if node.kind == SEQ:
        return "a list"
    if node.kind == MAP:
        return "a mapping"
    v = node.value
    if v is None:
        return "empty (null)"
    if isinstance(v, bool):
        return f"true/false ({'true' if v else 'false'})"
    return f"the number {v}" if isinstance(v, (int, float)) else f"the text '{v}'"


def _did_you_mean(word: str, choices: list[str]) -> str:
    # Case first: difflib finds nothing close between 'utc' and 'UTC'.
    close = [c for c in choices if c.lower() == word.lower()] or difflib.get_close_matches(word, choices, n=1)
    return f"; did you mean '{close[0]}'?" if close else ""


class _Reader:
    """Reads DAG-file values out of a YNode tree, collecting problems instead of stopping."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        self.suggestions = 0

    def add(self, message: str, field: str, node: YNode | None) -> None:
        if node is not None and node.bad:
            return  # its YAML tag was refused already; a type complaint would only repeat that
        line, column = (node.line, node.column) if node is not None else (None, None)
        self.problems.append(Problem(message, field, line, column))

    def keys(self, m: YNode, allowed: tuple[str, ...], path: str, what: str) -> None:
        """Report keys that `what` does not have: usually typos, so suggest the closest."""
        assert m.keys is not None
        for key, knode in m.keys.items():
            if key not in allowed:
                hint = (
                    _did_you_mean(str(key), list(allowed))
                    or f"; the keys {what} can have are {', '.join(allowed)}"
                )
                self.add(f"unknown key '{key}'{hint}", f"{path}{key}", knode)

    def text(self, m: YNode, key: str, path: str, *, required: str = "") -> str | None:
        """A text value; `required` explains the key when it must be present."""
        node = m.value.get(key)
        if node is None or node.value is None:
            if required:
                gap = "missing required key" if node is None else "no value for the required key"
                self.add(f"{gap} '{key}' ({required})", path + key, node or m)
            return None
        if node.kind != SCALAR or not isinstance(node.value, str):
            hint = "; put it in quotes" if node.kind == SCALAR else ""
            self.add(f"'{key}' must be text, not {_a(node)}{hint}", path + key, node)
            return None
        return node.value

    def ident(self, m: YNode, path: str, what: str) -> str | None:
        value = self.text(m, "id", path, required=f"every {what} needs an id")
        if value is not None and not _ID.fullmatch(value):
            self.add(f"'{value}' is not a valid {what} id: {ID_RULE}", path + "id", m.value["id"])
            return None
        return value

    def integer(self, m: YNode, key: str, path: str, minimum: int) -> int | None:
        node = m.value.get(key)
        if node is None or node.value is None:
            return None
        v = node.value
        # bool is an int in Python, but `retries: yes` is a mistake, not 1.
        if node.kind != SCALAR or isinstance(v, bool) or not isinstance(v, int):
            self.add(f"'{key}' must be a whole number, not {_a(node)}", path + key, node)
        elif v < minimum:
            self.add(f"'{key}' must be {minimum} or more, not {v}", path + key, node)
        else:
            return v
        return None

    def seconds(self, m: YNode, key: str, path: str) -> float | None:
        """A positive, finite number of seconds; None when absent or null (no limit)."""
        node = m.value.get(key)
        if node is None or node.value is None:
            return None
        v = node.value
        if node.kind != SCALAR or isinstance(v, bool) or not isinstance(v, (int, float)):
            self.add(f"'{key}' must be a number of seconds, not {_a(node)}", path + key, node)
        elif not math.isfinite(v) or v <= 0:
            self.add(
                f"'{key}' must be more than 0 seconds, not {v} (leave it out for no limit)", path + key, node
            )
        else:
            return float(v)
        return None

    def boolean(self, m: YNode, key: str, path: str) -> bool | None:
        node = m.value.get(key)
        if node is None or node.value is None:
            return None
        if node.kind != SCALAR or not isinstance(node.value, bool):
            self.add(f"'{key}' must be true or false, not {_a(node)}", path + key, node)
            return None
        return bool(node.value)

    def mapping(self, m: YNode, key: str, path: str, what: str) -> list[tuple[str, YNode]]:
        """(name, value) pairs of a mapping of environment-safe names to plain values."""
        node = m.value.get(key)
        if node is None or node.value is None:
            return []
        if node.kind != MAP:
            self.add(f"'{key}' must be a mapping of {what} names to values, not {_a(node)}", path + key, node)
            return []
        assert node.keys is not None
        out = []
        for name, value in node.value.items():
            where = f"{path}{key}.{name}"
            if not isinstance(name, str) or not _ENV_NAME.fullmatch(name):
                self.add(f"'{name}' is not a valid {what} name: {ENV_RULE}", where, node.keys[name])
            elif value.kind != SCALAR:
                self.add(f"{what} '{name}' must be a plain value, not {_a(value)}", where, value)
            else:
                out.append((name, value))
        return out

    def env(self, m: YNode, path: str) -> dict[str, str]:
        out = {}
        for name, node in self.mapping(m, "env", path, "environment variable"):
            v = node.value
            if v is None:
                self.add(
                    f"environment variable '{name}' has no value; write \"\" for an empty one",
                    f"{path}env.{name}",
                    node,
                )
            else:
                # Environment values are strings; YAML's true/false become the usual lower-case words.
                out[name] = ("true" if v else "false") if isinstance(v, bool) else str(v)
        return out

    def strings(self, m: YNode, key: str, path: str, what: str) -> list[tuple[str, YNode]]:
        """(text, node) for each item of a list of text values."""
        node = m.value.get(key)
        if node is None or node.value is None:
            return []
        if node.kind != SEQ:
            example = f"{key}: [{node.value}]" if node.kind == SCALAR else f"{key}: [a, b]"
            self.add(f"'{key}' must be a list of {what}, not {_a(node)}; write {example}", path + key, node)
            return []
        out = []
        for i, item in enumerate(node.value):
            if item.kind != SCALAR or not isinstance(item.value, str):
                self.add(
                    f"each entry of '{key}' must be text (one of the {what}), not {_a(item)}",
                    f"{path}{key}[{i}]",
                    item,
                )
            else:
                out.append((item.value, item))
        return out

    def timezone(self, m: YNode) -> str | None:
        tz = self.text(m, "timezone", "")
        if tz is None:
            return None
        try:
            ZoneInfo(tz)
            return tz
        except (ZoneInfoNotFoundError, ValueError, OSError):
            # Only on this error path is the timezone database listed, for the suggestion.
            hint = _did_you_mean(tz, sorted(available_timezones()))
            self.add(
                f"unknown timezone '{tz}'; use an IANA name such as 'Europe/Berlin' or 'UTC'{hint}",
                "timezone",
                m.value["timezone"],
            )
            return None

    def params(self, m: YNode) -> dict[str, Any]:
        out: dict[str, Any] = {}
        seen: dict[str, str] = {}
        for name, node in self.mapping(m, "params", "", "param"):
            # Params reach tasks as FLOWFORGE_PARAM_<NAME>, so names equal once upper-cased collide.
            env_name = name.upper()
            if env_name in seen:
                self.add(
                    f"params '{seen[env_name]}' and '{name}' would both become FLOWFORGE_PARAM_{env_name}",
                    f"params.{name}",
                    node,
                )
            seen[env_name] = name
            out[name] = node.value
        return out


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
    root, problems = read_yaml(text)
    if root is None and not problems:
        problems.append(Problem("the file is empty; a DAG file needs at least 'id' and 'tasks'"))
    elif root is not None and root.kind != MAP:
        problems.append(
            Problem(
                f"a DAG file must be a mapping of keys such as 'id' and 'tasks', not {_a(root)}",
                "",
                root.line,
                root.column,
            )
        )
    else:
        spec = _dag(root, _Reader(problems), max_tasks) if root is not None else None
        if spec is not None and not problems:
            return spec
    # Reading order: the line a user will look at first comes first.
    problems.sort(key=lambda p: (p.line is None, p.line or 0, p.column or 0))
    raise DagValidationError(problems, source)


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


def _dag(root: YNode, r: _Reader, max_tasks: int) -> DagSpec | None:
    r.keys(root, TOP_KEYS, "", "a DAG")
    dag_id = r.ident(root, "", "DAG")
    tz = r.timezone(root)
    kw: dict[str, Any] = {
        "name": r.text(root, "name", "") or None,  # empty: the id, as when absent
        "description": r.text(root, "description", ""),
        "timezone": tz,
        "catchup": r.boolean(root, "catchup", ""),
        "max_active_runs": r.integer(root, "max_active_runs", "", 1),
        "max_active_tasks": r.integer(root, "max_active_tasks", "", 1),
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
        "retries": r.integer(root, "default_retries", "", 0) or 0,
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


def _tasks(root: YNode, r: _Reader, max_tasks: int, defaults: dict[str, Any]) -> tuple[TaskSpec, ...] | None:
    node = root.value.get("tasks")
    if node is None:
        r.add("missing required key 'tasks' (the list of tasks of this DAG)", "tasks", root)
        return None
    if node.kind != SEQ:
        r.add(f"'tasks' must be a list of tasks, not {_a(node)}", "tasks", node)
        return None
    if not node.value:
        r.add("the DAG has no tasks; list at least one under 'tasks'", "tasks", node)
        return None
    if len(node.value) > max_tasks:
        r.add(f"the DAG has {len(node.value):,} tasks, over the limit of {max_tasks:,}", "tasks", node)
        return None
    specs: list[TaskSpec] = []
    first: dict[str, YNode] = {}  # task id -> its id node, to point back at the first of duplicates
    deps: list[tuple[int, str, list[tuple[str, YNode]]]] = []
    for i, t in enumerate(node.value):
        path = f"tasks[{i}]."
        if t.kind != MAP:
            r.add(f"each task must be a mapping with at least 'id' and 'command', not {_a(t)}", path[:-1], t)
            continue
        r.keys(t, TASK_KEYS, path, "a task")
        task_id = r.ident(t, path, "task")
        command = r.text(t, "command", path, required="the shell command the task runs")
        if command is not None and not command.strip():
            r.add("'command' is empty", path + "command", t.value["command"])
        depends_on = r.strings(t, "depends_on", path, "task ids this task waits for")
        rule = r.text(t, "trigger_rule", path)
        if rule is not None and rule not in _RULES:
            hint = _did_you_mean(rule, list(_RULES))
            r.add(
                f"unknown trigger_rule '{rule}'; use one of {', '.join(_RULES)}{hint}",
                path + "trigger_rule",
                t.value["trigger_rule"],
            )
            rule = None
        retries = r.integer(t, "retries", path, 0)
        # An explicit `timeout_secs: null` means no limit, even when the DAG sets a default.
        timeout = (
            r.seconds(t, "timeout_secs", path) if "timeout_secs" in t.value else defaults["timeout_secs"]
        )
        delay = r.seconds(t, "retry_delay_secs", path)
        max_delay = r.seconds(t, "max_retry_delay_secs", path)
        env = r.env(t, path)
        name = r.text(t, "name", path)
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
        if command is None:
            continue  # still a known id above, so its dependants get no second, confusing problem
        specs.append(
            TaskSpec(
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
        )
    _check_dependencies(r, deps, list(first))
    return tuple(specs)


def _check_dependencies(
    r: _Reader, deps: list[tuple[int, str, list[tuple[str, YNode]]]], ids: list[str]
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
                r.add(f"'{dep}' is listed more than once in depends_on", field, dnode)
            else:
                hint = ""
                if r.suggestions < _MAX_SUGGESTIONS:
                    r.suggestions += 1
                    hint = _did_you_mean(dep, ids)
                r.add(
                    f"task '{task_id}' depends on '{dep}', which is not a task of this DAG{hint}",
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
        names = " → ".join([*cycle, cycle[0]])
        r.add(
            f"dependency cycle: {names} (each task must finish before the next one starts), "
            "so none of these tasks can ever run",
            f"tasks[{row}].depends_on[{j}]",
            entries[j][1],
        )
