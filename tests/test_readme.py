"""The README's set-up and tour commands, run as a newcomer would, against the installed wheel.

Each fenced bash block that follows a `<!-- readme-test: NAME -->` comment in README.md is read here.
The set-up block's first command must install the checkout and start `flowforge up --examples`: that
command is started from the wheel's fresh virtualenv (tests/packaging_support.py) with a temporary
home and a free port added. The tour blocks then run in bash, line by line, in a temporary directory
with that virtualenv first on PATH and FLOWFORGE_API_URL pointing at it. A command must exit with the
code its comment names (`exits N`), else 0: when the README and the program disagree, this fails with
the README's line.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.harness import REPO, FlowForgeProcess, free_port
from tests.packaging_support import Installed, installed_wheel

README = REPO / "README.md"
MARK = re.compile(r"<!--\s*readme-test:\s*([\w-]+)\s*-->")
EXITS = re.compile(r"#.*\bexits (\d+)\b")
HEREDOC = re.compile(r"<<-?\s*'?\"?(\w+)'?\"?")
FAILED = 100  # the script's own exit code when a command exited otherwise than documented


@dataclass(frozen=True)
class Block:
    """A marked bash block of the README: its name, and its lines with their line numbers."""

    name: str
    lines: list[tuple[int, str]]


def readme_blocks(text: str) -> list[Block]:
    """Every fenced bash block that follows a readme-test mark, in order."""
    blocks: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        mark = MARK.search(lines[i])
        i += 1
        if not mark:
            continue
        while i < len(lines) and not lines[i].strip():
            i += 1
        assert i < len(lines) and lines[i].strip() == "```bash", (
            f"README.md:{i}: a readme-test mark needs a ```bash block"
        )
        body: list[tuple[int, str]] = []
        i += 1
        while i < len(lines) and lines[i].strip() != "```":
            body.append((i + 1, lines[i]))
            i += 1
        blocks.append(Block(mark.group(1), body))
    return blocks


def checked_script(block: Block) -> str:
    """The block as a bash script that stops at the first command exiting otherwise than documented."""
    out: list[str] = []
    lines = iter(block.lines)
    for number, line in lines:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        out.append(line)
        heredoc = HEREDOC.search(line)
        if heredoc:  # the document's lines, verbatim, up to its terminator
            for _, body in lines:
                out.append(body)
                if body.strip() == heredoc.group(1):
                    break
        expected = int(m.group(1)) if (m := EXITS.search(line)) else 0
        command = shlex.quote(line.split("  #", 1)[0].strip())
        out.append(
            f'rc=$?; if [ "$rc" != {expected} ]; then '
            f'echo "README.md:{number}: exit $rc, the README says {expected}: "{command} >&2; exit {FAILED}; fi'
        )
    return "\n".join(out) + "\n"


BLOCKS = readme_blocks(README.read_text(encoding="utf-8"))
SETUP = [b for b in BLOCKS if b.name == "setup"]
TOURS = [b for b in BLOCKS if b.name == "tour"]


def setup_commands() -> tuple[str, str]:
    assert len(SETUP) == 1, "README.md needs one readme-test: setup block"
    commands = [line.split("  #", 1)[0].strip() for _, line in SETUP[0].lines if line.strip()]
    assert len(commands) == 2, f"the set-up is two commands, not {len(commands)}"
    return commands[0], commands[1]


def test_setup_commands_are_what_the_project_offers() -> None:
    start, test = setup_commands()
    # Each in a fresh virtualenv, installing this checkout, as a newcomer on a fresh machine would.
    for command in (start, test):
        steps = [s.strip() for s in command.split("&&")]
        assert steps[0].startswith("python3 -m venv ") and steps[1].startswith(". "), command
    assert "pip install ." in start and start.split("&&")[-1].split() == ["flowforge", "up", "--examples"]
    extras = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "optional-dependencies"
    ]
    assert "pip install -e '.[test]'" in test and "test" in extras, "the test command installs the test extra"
    assert any(spec.startswith("flowforge[all]") for spec in extras["test"]), (
        "the test extra brings every driver"
    )
    assert test.split("&&")[-1].split() == ["python", "-m", "pytest"], test


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    return installed_wheel(tmp_path_factory)


@pytest.fixture(scope="module")
def newcomer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("newcomer")


@pytest.fixture(scope="module")
def up(
    installed: Installed, newcomer_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FlowForgeProcess]:
    """The README's `flowforge up --examples`, from the wheel, with a temporary home and a free port."""
    start, _ = setup_commands()
    program, *args = shlex.split(start.split("&&")[-1])
    assert program == "flowforge"
    home = tmp_path_factory.mktemp("readme-home")
    port = free_port()
    proc = FlowForgeProcess(
        [*args, "--port", str(port), "--home", str(home)],
        name="up (README)",
        port=port,
        env=installed.env(),
        log_path=home.parent / f"{home.name}-up.log",
        repo=newcomer_dir,
        program=[str(installed.flowforge)],
    )
    try:
        yield proc.wait_healthy()
    finally:
        proc.stop()


@pytest.mark.packaging
@pytest.mark.timeout(900)
def test_tour_commands_exit_as_the_readme_says(
    installed: Installed, newcomer_dir: Path, up: FlowForgeProcess
) -> None:
    assert TOURS, "README.md has no readme-test: tour block"
    for block in TOURS:
        script = checked_script(block)
        done = subprocess.run(
            ["bash", "-c", script],
            cwd=newcomer_dir,
            env=installed.env(FLOWFORGE_API_URL=up.url, COLUMNS="120"),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        where = f"README.md:{block.lines[0][0]}"
        assert done.returncode != FAILED, (
            f"{done.stderr.strip().splitlines()[-1]}\n--- output:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )
        assert done.returncode == 0, (
            f"the block at {where} ended with {done.returncode}:\n{done.stderr[-3000:]}"
        )
        up.check_alive()


def test_checked_script_catches_a_wrong_exit_code() -> None:
    # The checker itself: a command documented to exit 2 that exits 0 stops the script with FAILED.
    block = Block("tour", [(7, "true   # exits 2: documented wrongly"), (8, "echo never")])
    done = subprocess.run(["bash", "-c", checked_script(block)], capture_output=True, text=True, check=False)
    assert done.returncode == FAILED and "README.md:7: exit 0, the README says 2" in done.stderr
    assert "never" not in done.stdout
