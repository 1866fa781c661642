"""Reading typed DAG-file fields out of a YNode tree, each problem recorded with its field and place.

`Reader` is what `dagfile` checks values with: text, ids, integers, seconds, booleans, mappings,
env, string lists, timezones and params; each reader adds a located `Problem` instead of raising,
so a user sees every problem of a file at once.
"""

from __future__ import annotations

import difflib
import math
import re
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from flowforge.core.errors import Problem
from flowforge.core.yamlnodes import MAP, SCALAR, SEQ, YNode

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
ID_RULE = "an id starts with a letter or digit and holds only letters, digits, '_', '.' and '-' (at most 128)"
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
ENV_RULE = "a name starts with a letter or '_' and holds only letters, digits and '_'"


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
        return f"true/false ({'true' if v else 'false'})"
    return f"the number {v}" if isinstance(v, (int, float)) else f"the text '{v}'"


def did_you_mean(word: str, choices: list[str]) -> str:
    # Case first: difflib finds nothing close between 'utc' and 'UTC'.
    close = [c for c in choices if c.lower() == word.lower()] or difflib.get_close_matches(word, choices, n=1)
    return f"; did you mean '{close[0]}'?" if close else ""


class Reader:
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
                    did_you_mean(str(key), list(allowed))
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
            self.add(f"'{key}' must be text, not {what_it_is(node)}{hint}", path + key, node)
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
            self.add(f"'{key}' must be a whole number, not {what_it_is(node)}", path + key, node)
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
            self.add(f"'{key}' must be a number of seconds, not {what_it_is(node)}", path + key, node)
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
            where = f"{path}{key}.{name}"
            if not isinstance(name, str) or not _ENV_NAME.fullmatch(name):
                self.add(f"'{name}' is not a valid {what} name: {ENV_RULE}", where, node.keys[name])
            elif value.kind != SCALAR:
                self.add(f"{what} '{name}' must be a plain value, not {what_it_is(value)}", where, value)
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
            hint = did_you_mean(tz, sorted(available_timezones()))
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
