"""Task outputs: the `KEY=VALUE` lines a task writes to `$FLOWFORGE_OUTPUT`, and how they reach downstream.

The rules, in one place: each line is `KEY=VALUE`, KEY a name (`[A-Za-z_][A-Za-z0-9_]*`, at most
64 characters), VALUE the rest of the line as written (no quoting; a trailing CR is dropped).
Blank lines and lines starting with `#` are skipped; a later key overrides an earlier one. The
file holds at most MAX_OUTPUT_BYTES and MAX_OUTPUT_KEYS keys. A downstream task sees each output of
a direct upstream task U as `FLOWFORGE_UPSTREAM_<U>_<KEY>` (upper-cased, other characters as `_`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

OUTPUT_ENV = "FLOWFORGE_OUTPUT"  # the variable naming the file a task writes its outputs to
UPSTREAM_PREFIX = "FLOWFORGE_UPSTREAM_"
MAX_OUTPUT_BYTES = 64 * 1024
MAX_OUTPUT_KEYS = 100
MAX_KEY_CHARS = 64
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NOT_NAME = re.compile(r"[^A-Z0-9_]")
_QUOTED_CHARS = 60  # of a bad line, quoted in the error


class OutputsError(ValueError):
    """The outputs file breaks a rule; the message names the rule and, for a line, its number."""

    def __init__(self, problem: str, line: int | None = None) -> None:
        where = f"line {line}: " if line is not None else ""
        super().__init__(f"task outputs: {where}{problem}")


def _quoted(text: str) -> str:
    """A line as an error quotes it: cut short, control characters escaped (`repr`)."""
    return repr(text if len(text) <= _QUOTED_CHARS else text[:_QUOTED_CHARS] + "…")


def parse_outputs(data: bytes) -> dict[str, str]:
    """The outputs in the bytes of an outputs file; OutputsError for a broken rule.

    `data` may be cut short at MAX_OUTPUT_BYTES + 1 bytes by the reader: anything over
    MAX_OUTPUT_BYTES is refused before a line is read.
    """
    if len(data) > MAX_OUTPUT_BYTES:
        raise OutputsError(f"over the {MAX_OUTPUT_BYTES // 1024} KiB limit")
    outputs: dict[str, str] = {}
    for number, raw in enumerate(data.split(b"\n"), start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise OutputsError("not UTF-8 text", number) from None
        if line.endswith("\r"):
            line = line[:-1]
        if not line.strip() or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise OutputsError(f"{_quoted(line)} is not KEY=VALUE", number)
        if not _KEY.fullmatch(key) or len(key) > MAX_KEY_CHARS:
            raise OutputsError(
                f"{_quoted(key)} is not a key: letters, digits and _, not starting with a digit, "
                f"at most {MAX_KEY_CHARS} characters",
                number,
            )
        if "\x00" in value:
            raise OutputsError(f"the value of {key} holds a NUL character", number)
        outputs.pop(key, None)  # a key written again takes its new place, as the last word
        outputs[key] = value
        if len(outputs) > MAX_OUTPUT_KEYS:
            raise OutputsError(f"more than {MAX_OUTPUT_KEYS} keys", number)
    return outputs


def env_name_part(text: str) -> str:
    """`text` as part of a variable name: upper-cased, any character but A-Z, 0-9 and _ as `_`."""
    return _NOT_NAME.sub("_", text.upper())


def upstream_env(outputs: Mapping[str, Mapping[str, str]]) -> dict[str, str]:
    """`FLOWFORGE_UPSTREAM_<TASK>_<KEY>` for each output of each task in `outputs` (task id → outputs).

    Where two names come out the same (tasks `a-b` and `a_b`), the task whose id sorts last wins.
    """
    env: dict[str, str] = {}
    for task_id in sorted(outputs):
        prefix = f"{UPSTREAM_PREFIX}{env_name_part(task_id)}_"
        for key, value in outputs[task_id].items():
            env[prefix + env_name_part(key)] = value
    return env
