"""Reading typed DAG-file fields out of a YNode tree, each problem recorded with its field and place.

`Reader` is what `dagfile` checks values with: text, ids, integers, seconds, booleans, mappings,
env, string lists, timezones and params; each reader adds a located `Problem` instead of raising,
so a user sees every problem of a file at once. Env values and param defaults are taken as written
(`0755` stays "0755", `on` stays "on"): they reach tasks as text. Messages quote values as the user
wrote them, cut to a few dozen characters.
"""

from __future__ import annotations

import difflib
import math
import re
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from flowforge.core.errors import Problem, Problems, shown
from flowforge.core.yamlnodes import MAP, SCALAR, SEQ, YNode

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
ID_RULE = "an id starts with a letter or digit and holds only letters, digits, '_', '.' and '-' (at most 128)"
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
ENV_RULE = "a name starts with a letter or '_' and holds only letters, digits and '_'"
MAX_RETRIES = 100
MAX_SECONDS = 7 * 24 * 3600  # a timeout or retry delay longer than 7 days is a mistake; leave it out
MAX_COUNT = 1_000_000  # max_active_runs, max_active_tasks: far beyond any deployment, inside int64
# Suggestions compare words pairwise (difflib is quadratic in their length): no id or key is longer.
_MAX_SUGGEST_CHARS = 128
NUL_RULE = "contains a NUL character (\\0), which cannot be passed to a process"


def what_it_is(node: YNode) -> str:
    """What a value is, in words, for 'must be X, not Y' messages."""
    if node.kind == SEQ:
        return "a list"
    if node.kind == MAP:
        return "a mapping"
    v = node.value
    if v is None:
        return "empty (null)"
    if isinstance(v, bool):
        return f"true/false ({node.text or ('true' if v else 'false')})"
    if isinstance(v, (int, float)):
        return f"the number {shown(node.text or v)}"
    return f"the text '{shown(v)}'"


def closest(word: str, choices: list[str]) -> str | None:
    """The choice `word` is most likely a typo of, or None."""
    if len(word) > _MAX_SUGGEST_CHARS:
        return None
    # Case first: difflib finds nothing close between 'utc' and 'UTC'.
    lower = word.lower()
    same = [c for c in choices if c.lower() == lower]
    if same:
        return same[0]
    short = [c for c in choices if len(c) <= _MAX_SUGGEST_CHARS]
    close = difflib.get_close_matches(word, short, n=1)
    return close[0] if close else None


def did_you_mean(word: str, choices: list[str]) -> str:
    """`; did you mean 'x'?` for the closest choice, or nothing."""
    close = closest(word, choices)
    return f"; did you mean '{close}'?" if close is not None else ""


class Reader:
    """Reads DAG-file values out of a YNode tree, collecting problems instead of stopping."""

    def __init__(self, problems: Problems) -> None:
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
                    did_you_mean(str(key), list(allowed))
                    or f"; the keys {what} can have are {', '.join(allowed)}"
                )
                self.add(f"unknown key '{shown(key)}'{hint}", f"{path}{shown(key)}", knode)

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
            self.add(f"'{key}' must be text, not {what_it_is(node)}{hint}", path + key, node)
            return None
        return node.value

    def ident(self, m: YNode, path: str, what: str) -> str | None:
        value = self.text(m, "id", path, required=f"every {what} needs an id")
        if value is not None and not _ID.fullmatch(value):
            self.add(f"'{shown(value)}' is not a valid {what} id: {ID_RULE}", path + "id", m.value["id"])
            return None
        return value

    def integer(self, m: YNode, key: str, path: str, minimum: int, maximum: int) -> int | None:
        """A whole number in [minimum, maximum]; None when absent or null."""
        node = m.value.get(key)
        if node is None or node.value is None:
            return None
        v = node.value
        # bool is an int in Python, but `retries: yes` is a mistake, not 1. A number too long to
        # compute reads as infinity (see yamlnodes), which is a whole number past any maximum.
        whole = isinstance(v, int) or (isinstance(v, float) and math.isinf(v))
        if node.kind != SCALAR or isinstance(v, bool) or not whole:
            self.add(f"'{key}' must be a whole number, not {what_it_is(node)}", path + key, node)
        elif v < minimum:
            self.add(f"'{key}' must be {minimum} or more, not {shown(node.text or v)}", path + key, node)
        elif v > maximum:
            self.add(f"'{key}' must be at most {maximum:,}, not {shown(node.text or v)}", path + key, node)
        else:
            return int(v)
        return None

    def seconds(self, m: YNode, key: str, path: str) -> float | None:
        """A number of seconds in (0, MAX_SECONDS]; None when absent or null (no limit)."""
        node = m.value.get(key)
        if node is None or node.value is None:
            return None
        v = node.value
        if node.kind != SCALAR or isinstance(v, bool) or not isinstance(v, (int, float)):
            self.add(f"'{key}' must be a number of seconds, not {what_it_is(node)}", path + key, node)
        elif 0 < v <= MAX_SECONDS:
            return float(v)
        else:
            bound = f"at most {MAX_SECONDS:,} seconds (7 days)" if v > 0 else "more than 0 seconds"
            self.add(
                f"'{key}' must be {bound}, not {shown(node.text or v)} (leave it out for no limit)",
                path + key,
                node,
            )
        return None

    def boolean(self, m: YNode, key: str, path: str) -> bool | None:
        node = m.value.get(key)
        if node is None or node.value is None:
            return None
        if node.kind != SCALAR or not isinstance(node.value, bool):
            self.add(f"'{key}' must be true or false, not {what_it_is(node)}", path + key, node)
            return None
        return bool(node.value)

    def mapping(self, m: YNode, key: str, path: str, what: str) -> list[tuple[str, YNode]]:
        """(name, value) pairs of a mapping of environment-safe names to plain values."""
        node = m.value.get(key)
        if node is None or node.value is None:
            return []
        if node.kind != MAP:
            self.add(
                f"'{key}' must be a mapping of {what} names to values, not {what_it_is(node)}",
                path + key,
                node,
            )
            return []
        assert node.keys is not None
        out = []
        for name, value in node.value.items():
            where = f"{path}{key}.{shown(name)}"
            if not isinstance(name, str) or not _ENV_NAME.fullmatch(name):
                self.add(f"'{shown(name)}' is not a valid {what} name: {ENV_RULE}", where, node.keys[name])
            elif value.kind != SCALAR:
                self.add(
                    f"{what} '{shown(name)}' must be a plain value, not {what_it_is(value)}", where, value
                )
            else:
                out.append((name, value))
        return out

    def as_written(self, node: YNode, what: str, where: str) -> str | None:
        """A plain value as the text the file has (`0755`, `1.10`, `on`), or None for null.

        Such values reach a process as text, so YAML 1.1's readings (493, 1.1, True) would only
        change them; one with a NUL character could not reach it at all.
        """
        if node.value is None:
            return None
        text = node.text if node.text is not None else str(node.value)
        if "\x00" in text:
            self.add(f"{what} {NUL_RULE}", where, node)
        return text

    def env(self, m: YNode, path: str) -> dict[str, str]:
        out = {}
        for name, node in self.mapping(m, "env", path, "environment variable"):
            what = f"environment variable '{shown(name)}'"
            where = f"{path}env.{shown(name)}"
            value = self.as_written(node, what, where)
            if value is None:
                self.add(f'{what} has no value; write "" for an empty one', where, node)
            else:
                out[name] = value
        return out

    def strings(self, m: YNode, key: str, path: str, what: str) -> list[tuple[str, YNode]]:
        """(text, node) for each item of a list of text values."""
        node = m.value.get(key)
        if node is None or node.value is None:
            return []
        if node.kind != SEQ:
            example = f"{key}: [{shown(node.value)}]" if node.kind == SCALAR else f"{key}: [a, b]"
            self.add(
                f"'{key}' must be a list of {what}, not {what_it_is(node)}; write {example}", path + key, node
            )
            return []
        out = []
        for i, item in enumerate(node.value):
            if item.kind != SCALAR or not isinstance(item.value, str):
                self.add(
                    f"each entry of '{key}' must be text (one of the {what}), not {what_it_is(item)}",
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
            hint = did_you_mean(tz, sorted(available_timezones())) if len(tz) <= _MAX_SUGGEST_CHARS else ""
            self.add(
                f"unknown timezone '{shown(tz)}'; use an IANA name such as 'Europe/Berlin' or 'UTC'{hint}",
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
                    f"params '{shown(seen[env_name])}' and '{shown(name)}' would both become "
                    f"FLOWFORGE_PARAM_{shown(env_name)}",
                    f"params.{shown(name)}",
                    node,
                )
            seen[env_name] = name
            # As written, like env: a param reaches its task as FLOWFORGE_PARAM_<NAME>.
            out[name] = self.as_written(node, f"param '{shown(name)}'", f"params.{shown(name)}")
        return out
