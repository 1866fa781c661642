"""docs/CLI.md is the reference `python -m flowforge.cli.reference` writes from the Typer app.

A command, option, default or environment variable added to the CLI without regenerating the file
fails here, with the one command that brings it up to date.
"""

from __future__ import annotations

import difflib
import subprocess
import sys
from pathlib import Path

from flowforge.cli.reference import REGENERATE, reference

REPO = Path(__file__).resolve().parent.parent
CLI_MD = REPO / "docs" / "CLI.md"


def test_docs_cli_md_is_what_the_program_says() -> None:
    assert CLI_MD.exists(), f"docs/CLI.md is missing; write it with: {REGENERATE}"
    written = CLI_MD.read_text(encoding="utf-8")
    wanted = reference()
    if written != wanted:
        diff = "".join(
            list(
                difflib.unified_diff(
                    written.splitlines(keepends=True),
                    wanted.splitlines(keepends=True),
                    "docs/CLI.md",
                    "the program",
                )
            )[:60]
        )
        raise AssertionError(f"docs/CLI.md is stale; regenerate it with: {REGENERATE}\n{diff}")


def test_reference_names_every_command_and_option_of_the_app() -> None:
    import typer.main

    from flowforge.cli import app

    text = reference()
    group = typer.main.get_command(app)
    for name, command in group.commands.items():
        if command.hidden:
            continue
        assert f"## flowforge {name}\n" in text, f"flowforge {name} is not in the reference"
        for param in command.params:
            for opt in getattr(param, "opts", []):
                if opt.startswith("-") and not param.hidden:
                    assert f"`{opt}`" in text, f"flowforge {name} {opt} is not in the reference"
    assert "`FLOWFORGE_API_URL`" in text and "`FLOWFORGE_LOG_LEVEL`" in text


def test_the_regeneration_command_writes_the_file(tmp_path: Path) -> None:
    # The command the failure message names, run as a user would, writes exactly the reference.
    target = tmp_path / "CLI.md"
    module = REGENERATE.split()[2]
    done = subprocess.run(
        [sys.executable, "-m", module, str(target)], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert target.read_text(encoding="utf-8") == reference()
