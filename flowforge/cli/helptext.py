"""`--help`, written by FlowForge in plain text: the same under every Typer and Click version.

Typer's own help changes between versions (`<bool>` after flags, `{RUN_ID}` in usage lines,
boxes); this one reads the commands' parameters (by duck typing, so Typer's vendored Click and
Click itself both do) and writes them in Click's classic layout. `flowforge --help` is written
from `COMMANDS` without importing Typer at all, so that it starts fast; a test checks that
`COMMANDS` matches the registered commands (name, order, first line of the docstring).
Nothing here imports Typer or Click.
"""

from __future__ import annotations

import os
import sys
import textwrap
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from flowforge.cli.exits import EXIT_MEANINGS


class GlobalOption(NamedTuple):
    """An option every client command accepts before or after its name (`--json`, `--api-url`...)."""

    dest: str
    flag: str
    metavar: str | None  # None: a flag
    help: str
    envvar: str | None = None
    default: str | None = None  # on the root; after a command, not giving it keeps the root's


DEFAULT_API_URL = "http://127.0.0.1:8080"  # flowforge.settings.DEFAULT_API_URL; a test keeps them equal
GLOBAL_OPTIONS = (
    GlobalOption(
        "api_url", "--api-url", "URL", "Base URL of the FlowForge API.", "FLOWFORGE_API_URL", DEFAULT_API_URL
    ),
    GlobalOption(
        "token",
        "--token",
        "TOKEN",
        "API token, sent as 'Authorization: Bearer TOKEN'.",
        "FLOWFORGE_API_TOKEN",
    ),
    GlobalOption(
        "json_output", "--json", None, "Print JSON for scripts instead of tables; errors too (on stderr)."
    ),
    GlobalOption("utc", "--utc", None, "Show times in UTC (default: the local time zone, always named)."),
)
GLOBAL_DESTS = frozenset(o.dest for o in GLOBAL_OPTIONS)
VERSION_HELP = "Print the version and exit."
HELP_HELP = "Show this message and exit."
APP_HELP = "FlowForge: a DAG workflow scheduler for shell-command tasks."
APP_MORE = "`flowforge up` starts everything; the other commands talk to its API."

# Every command in `flowforge --help` order, with the first line of its docstring.
COMMANDS: tuple[tuple[str, str], ...] = (
    ("up", "Start everything in one process: API, web page, scheduler and workers. Ctrl-C stops it."),
    ("api", "Serve the REST API and the web page (no scheduler, no workers). Ctrl-C stops it."),
    (
        "scheduler",
        "Run the scheduler: start runs, queue ready tasks, retry, reap dead workers. Ctrl-C stops it.",
    ),
    ("worker", "Run a worker with N task slots; SIGTERM/Ctrl-C lets running tasks finish (within --grace)."),
    ("cancel", "Cancel a run: its running tasks are killed, the rest become cancelled."),
    ("retry", "Run failed tasks (or TASK_ID) again in the same run; earlier attempts stay in the history."),
    (
        "backfill",
        "Create a run for every schedule tick from --start to --end that has none yet, paced by max_active_runs.",
    ),
    (
        "validate",
        "Check DAG files and folders offline (no API needed), as CI would; exit 2 if any is invalid.",
    ),
    ("submit", "Validate DAG files and folders, then store them through the API: all of them, or none."),
    ("trigger", "Start a run of a DAG now and print its run id."),
    ("wait", "Wait for a run to end, riding out API restarts; exit 0 if it succeeded, 1 if not."),
    ("dags", "List DAGs with their version, schedule and next run."),
    ("runs", "List runs, newest first."),
    ("run", "Show a run and its tasks: state, attempt, duration, exit code, outputs."),
    ("logs", "Print task logs: one task's, every failed task's (--failed), or every task's."),
    ("status", "Counts of DAGs, runs and tasks by state, workers and queue depth."),
    ("workers", "List workers with host, slots, running tasks and last heartbeat."),
    ("pause", "Stop scheduling a DAG (runs in flight carry on)."),
    ("unpause", "Resume scheduling a DAG."),
    ("tui", "Open the terminal dashboard: DAGs, runs, a live graph, the runs × tasks grid and logs."),
    ("sync", "Submit every valid DAG file of a folder, file by file; exit 2 if any is invalid."),
    ("activate", "Activate a deactivated DAG again, at its latest version."),
    ("deactivate", "Deactivate a DAG: no new runs; its history stays."),
    (
        "test",
        "Run a DAG file once, here, with no server: task output live, exit 0 if the run succeeded, 1 if not.",
    ),
    ("explain", "Say why a task is in its state now: what it waits for, where it runs, or how it ended."),
    (
        "schedule",
        "Show the next schedule ticks of a DAG or DAG file, in its timezone and UTC, with DST notes.",
    ),
    ("versions", "List a DAG's stored versions, newest first: number, spec hash, when stored."),
    ("diff", "Show what changed in a DAG's YAML source between two versions, as a unified diff."),
    ("completion", "Print the shell completion script: `source <(flowforge completion bash)`."),
    (
        "prune",
        "Delete runs that ended before --older-than AGE, with their tasks, attempts, logs and events.",
    ),
)


def help_width() -> int:
    """Columns for help text: the terminal's (COLUMNS first), 80 in a pipe, at most 100."""
    try:
        columns = int(os.environ.get("COLUMNS", ""))
    except ValueError:
        try:
            columns = os.get_terminal_size(sys.stdout.fileno()).columns
        except (OSError, ValueError, AttributeError):
            columns = 80
    return max(40, min(columns, 100))


def _paragraphs(text: str, width: int, indent: str = "  ") -> list[str]:
    """Text re-wrapped to `width`, paragraph by paragraph (blank lines kept), at word boundaries."""
    out: list[str] = []
    for para in textwrap.dedent(text).strip().split("\n\n"):
        words = " ".join(para.split())
        out += textwrap.wrap(
            words, width, initial_indent=indent, subsequent_indent=indent, break_on_hyphens=False
        )
        out.append("")
    return out[:-1]


def definitions(rows: Sequence[tuple[str, str]], width: int) -> list[str]:
    """Aligned `term  text` rows; the text wraps at words in its column, a long term gets its own line."""
    if not rows:
        return []
    first = min(max(len(term) for term, _ in rows), 30) + 4
    room = max(width - first, 20)
    lines = []
    for term, text in rows:
        wrapped = textwrap.wrap(" ".join(text.split()), room, break_on_hyphens=False) or [""]
        if len(term) + 4 > first:
            lines.append(f"  {term}")
            lines += [" " * first + w for w in wrapped]
            continue
        lines.append(f"  {term:<{first - 2}}{wrapped[0]}".rstrip())
        lines += [" " * first + w for w in wrapped[1:]]
    return lines


def _section(title: str, rows: Sequence[tuple[str, str]], width: int) -> list[str]:
    return ["", f"{title}:", *definitions(rows, width)] if rows else []


def _global_rows() -> list[tuple[str, str]]:
    rows = []
    for o in GLOBAL_OPTIONS:
        extra = [f"env var: {o.envvar}"] if o.envvar else []
        if o.default:
            extra.append(f"default: {o.default}")
        rows.append((f"{o.flag} {o.metavar}" if o.metavar else o.flag, _with_extra(o.help, extra)))
    return rows


def _with_extra(text: str, extra: Iterable[str]) -> str:
    said = "; ".join(extra)
    return f"{text}  [{said}]" if said else text


def root_help(commands: Sequence[tuple[str, str]] = COMMANDS, width: int | None = None) -> str:
    """`flowforge --help`."""
    width = width or help_width()
    lines = [
        "Usage: flowforge [OPTIONS] COMMAND [ARGS]...",
        "",
        *_paragraphs(f"{APP_HELP} {APP_MORE}", width),
    ]
    options = [*_global_rows(), ("--version", VERSION_HELP), ("--help", HELP_HELP)]
    lines += _section("Options", options, width)
    lines += [
        "",
        *_paragraphs(
            "--api-url, --token, --json and --utc also work after the command: flowforge runs --json.", width
        ),
    ]
    lines += _section("Commands", commands, width)
    lines += _section("Exit codes", [(str(code), meaning) for code, meaning in EXIT_MEANINGS.items()], width)
    return "\n".join(lines) + "\n"


# -- a command's help, from its parameters ----------------------------------------------------------
_TYPE_NAMES = {"int": "INTEGER", "float": "FLOAT", "str": "TEXT", "Path": "PATH", "bool": "BOOLEAN"}


def _type_label(param: Any) -> str:
    """The metavar of a valued option: its own, else its type in Click's words (TEXT, INTEGER, PATH)."""
    if param.metavar:
        return str(param.metavar).strip("[]")
    descriptor = getattr(param, "type_descriptor", None)  # newer Typer: no Click type on its params
    if descriptor is not None:
        annotation = descriptor.annotation
        args = getattr(annotation, "__args__", None)
        if getattr(annotation, "__origin__", None) is list and args:
            annotation = args[0]
        return _TYPE_NAMES.get(getattr(annotation, "__name__", ""), "VALUE")
    kind = getattr(param, "type", None)
    choices = getattr(kind, "choices", None)
    if choices:
        return "[" + "|".join(str(c) for c in choices) + "]"
    name = str(getattr(kind, "name", "value")).upper()
    return name.removesuffix(" RANGE")


def _range(param: Any) -> str:
    low = getattr(param, "min", None)
    high = getattr(param, "max", None)
    kind = getattr(param, "type", None)
    low = low if low is not None else getattr(kind, "min", None)
    high = high if high is not None else getattr(kind, "max", None)
    if low is not None and high is not None:
        return f"{low}<=x<={high}"
    if low is not None:
        return f"x>={low}"
    return f"x<={high}" if high is not None else ""


def _is_flag(param: Any) -> bool:
    return bool(getattr(param, "is_flag", False)) and not getattr(param, "count", False)


def _option_row(param: Any) -> tuple[str, str]:
    names = ", ".join(sorted(param.opts, key=lambda o: (o.startswith("--"), o)))
    if param.secondary_opts:
        names += " / " + ", ".join(param.secondary_opts)
    term = names if _is_flag(param) else f"{names} {_type_label(param)}"
    extra = []
    envvar = param.envvar
    if envvar:
        extra.append("env var: " + (", ".join(envvar) if isinstance(envvar, list | tuple) else str(envvar)))
    default = param.default
    if param.show_default is not False and default not in (None, False, "", (), []) and not callable(default):
        extra.append(f"default: {param.opts[0] if default is True and param.secondary_opts else default}")
    span = _range(param)
    if span:
        extra.append(span)
    if param.required:
        extra.append("required")
    return term, _with_extra(param.help or "", extra)


def argument_piece(param: Any) -> str:
    """How an argument shows in the usage line: `RUN_ID`, `[TASK_ID]`, `[PATHS]...`."""
    name = str(param.metavar or param.name.upper()).strip("[]").removesuffix("...")
    more = "..." if param.nargs == -1 else ""
    return f"{name}{more}" if param.required else f"[{name}]{more}"


def usage_line(path: str, params: Iterable[Any], group: bool = False) -> str:
    """`Usage: flowforge logs [OPTIONS] RUN_ID [TASK_ID]`."""
    pieces = [argument_piece(p) for p in params if p.param_type_name == "argument"]
    tail = " COMMAND [ARGS]..." if group else ""
    return f"Usage: {path} [OPTIONS]{tail}" + "".join(f" {p}" for p in pieces)


def command_help(path: str, help_text: str | None, params: Sequence[Any], width: int | None = None) -> str:
    """A command's `--help`: usage, its docstring re-wrapped, arguments, options, global options."""
    width = width or help_width()
    lines = [usage_line(path, params)]
    if help_text:
        lines += ["", *_paragraphs(help_text.split("\f")[0], width)]
    arguments = [
        (argument_piece(p).strip("[]."), p.help or "") for p in params if p.param_type_name == "argument"
    ]
    own = [p for p in params if p.param_type_name == "option" and p.name not in GLOBAL_DESTS and not p.hidden]
    shared = [p for p in params if p.param_type_name == "option" and p.name in GLOBAL_DESTS]
    lines += _section("Arguments", arguments, width)
    lines += _section("Options", [_option_row(p) for p in own], width)
    if shared:
        lines += _section("Global options (also accepted before the command)", _global_rows(), width)
    return "\n".join(lines) + "\n"
