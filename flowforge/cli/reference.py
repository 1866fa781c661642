"""The command-line reference, docs/CLI.md, written from the Typer app itself.

`python -m flowforge.cli.reference docs/CLI.md` rewrites the file; without an argument the text goes
to stdout. tests/test_cli_reference.py fails when docs/CLI.md differs from what this writes, so the
reference cannot drift from the commands, options, defaults and environment variables the program
really has. The text depends only on the app, never on the terminal, the environment or the Typer
release installed.
"""

from __future__ import annotations

import sys
import types
import typing
from pathlib import Path
from typing import Any

from flowforge.cli.jsonshapes import describe

REGENERATE = "python -m flowforge.cli.reference docs/CLI.md"

_HEADER = f"""# `flowforge` command-line reference

Generated from the program by `{REGENERATE}`; do not edit by hand
(`tests/test_cli_reference.py` fails when this file is stale).

Usage: `flowforge [GLOBAL OPTIONS] COMMAND [ARGS] [OPTIONS]`. Global options go before or after the
command (`flowforge runs --json` or `flowforge --json runs`). Exit codes: `0` ok, `1` the run failed (or the command failed), `2` bad
input (an invalid DAG file, an unknown DAG or run, a bad option), `3` the API is unreachable, `130`
interrupted. An option's environment variable is read when the option is not given.
"""

_TYPE_NAMES = {int: "integer", float: "number", str: "text", bool: "flag", Path: "path"}
_CLICK_TYPE_NAMES = {
    "IntParamType": "integer",
    "IntRange": "integer",
    "FloatParamType": "number",
    "FloatRange": "number",
    "StringParamType": "text",
    "Path": "path",
    "TyperPath": "path",
    "BoolParamType": "flag",
}


def reference() -> str:
    """docs/CLI.md: the global options, then every command in `flowforge --help` order."""
    import typer.main

    from flowforge.cli import app

    group = typer.main.get_command(app)
    commands = getattr(group, "commands", {})
    lines = [_HEADER, "## Global options", "", *_options_table(group.params), ""]
    lines += ["## Commands", ""]
    lines += [f"- [`{name}`](#flowforge-{name}): {_first_line(cmd.help)}" for name, cmd in _visible(commands)]
    for name, cmd in _visible(commands):
        lines += ["", *_command_section(name, cmd)]
    return "\n".join(lines).rstrip() + "\n"


def _visible(commands: dict[str, Any]) -> list[tuple[str, Any]]:
    return [(name, cmd) for name, cmd in commands.items() if not getattr(cmd, "hidden", False)]


def _command_section(name: str, cmd: Any) -> list[str]:
    """One command: its usage line, its help, its arguments and its options."""
    arguments = [p for p in cmd.params if _kind(p) == "argument"]
    options = [p for p in cmd.params if _kind(p) == "option" and not getattr(p, "hidden", False)]
    usage = " ".join(["flowforge", name, *(_argument_usage(p) for p in arguments)])
    lines = [f"## flowforge {name}", "", f"`{usage}{' [OPTIONS]' if options else ''}`", ""]
    lines.append(_paragraphs(cmd.help or ""))
    if arguments:
        lines += ["", "| argument | what |", "|---|---|"]
        lines += [f"| `{_argument_name(p)}` | {_cell(getattr(p, 'help', None) or '')} |" for p in arguments]
    if options:
        lines += ["", *_options_table(options)]
    if (shape := describe(name)) is not None:
        lines += ["", f"**`--json`**: {shape}"]
    return lines


def _options_table(params: list[Any]) -> list[str]:
    rows = ["| option | type | default | environment | what |", "|---|---|---|---|---|"]
    for p in params:
        if _kind(p) != "option" or getattr(p, "hidden", False):
            continue
        names = ", ".join(f"`{o}`" for o in [*p.opts, *p.secondary_opts])
        env = f"`{p.envvar}`" if isinstance(p.envvar, str) else ""
        rows.append(f"| {names} | {_type(p)} | {_default(p)} | {env} | {_cell(p.help or '')} |")
    return rows


def _kind(param: Any) -> str:
    return str(getattr(param, "param_type_name", ""))


def _argument_name(param: Any) -> str:
    return str(param.metavar or param.name.upper())


def _argument_usage(param: Any) -> str:
    name = _argument_name(param) + ("..." if param.nargs == -1 else "")
    return name if param.required else f"[{name}]"


def _type(param: Any) -> str:
    """The value an option takes, with its range; `flag` for an on/off switch; `repeatable` when multiple."""
    if getattr(param, "is_flag", False):
        return "flag"
    described = getattr(getattr(param, "type_descriptor", None), "annotation", None)
    if described is not None:
        name = _TYPE_NAMES.get(_plain(described), "text")
    else:
        kinds = [_CLICK_TYPE_NAMES.get(k.__name__) for k in type(param.type).__mro__]
        name = next((k for k in kinds if k), "text")
    low = getattr(param, "min", None)
    high = getattr(param, "max", None)
    if low is None and high is None and hasattr(param, "type"):
        low, high = getattr(param.type, "min", None), getattr(param.type, "max", None)
    if low is not None and high is not None:
        name += f" {low}–{high}"
    elif low is not None:
        name += f" ≥ {low}"
    return name + (", repeatable" if param.multiple else "")


def _plain(annotation: Any) -> Any:
    """`int` for `int | None`, `str` for `list[str]`: the type of one value."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType, list) and len(args) == 1:
        return _plain(args[0])
    return annotation


def _default(param: Any) -> str:
    value = param.default
    if getattr(param, "is_flag", False):
        return "on" if value else "off"
    if value is None or value == [] or value == () or "UNSET" in repr(value):
        return ""
    return f"`{value}`"


def _first_line(text: str | None) -> str:
    return _cell((text or "").strip().split("\n\n")[0])


def _paragraphs(text: str) -> str:
    """Help text as Markdown paragraphs: each paragraph's lines joined into one."""
    paragraphs = [" ".join(p.split()) for p in text.strip().split("\n\n")]
    return "\n\n".join(p for p in paragraphs if p)


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def main(argv: list[str]) -> int:
    """Write the reference to the file named in argv, or to stdout."""
    text = reference()
    if not argv:
        sys.stdout.write(text)
        return 0
    Path(argv[0]).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
