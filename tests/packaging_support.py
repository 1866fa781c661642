"""The built sdist and wheel, and a fresh virtualenv with only the wheel installed, once per session.

tests/test_packaging.py and tests/test_readme.py both run FlowForge as a user who installed the
wheel would: from that virtualenv's `bin/`, in a working directory outside the checkout, so nothing
can be read from the source tree. Building and installing take most of a minute, so they happen
once, the first time either module asks, and are shared.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.harness import REPO, clean_env

# Building and installing fetch the build backend and the dependencies (from pip's cache when warm).
INSTALL_TIMEOUT = 600


@dataclass(frozen=True)
class Installed:
    """The distributions built from the checkout, and a virtualenv holding the wheel (no extras)."""

    sdist: Path
    wheel: Path
    venv: Path

    @property
    def bin(self) -> Path:
        return self.venv / "bin"

    @property
    def flowforge(self) -> Path:
        """The console script pip installed."""
        return self.bin / "flowforge"

    @property
    def python(self) -> Path:
        return self.bin / "python"

    def env(self, **extra: str) -> dict[str, str]:
        """An environment as a user of the virtualenv has it: its bin first, no FLOWFORGE_* setting,
        nothing that points Python at the checkout."""
        env = clean_env(**extra)
        for name in ("PYTHONPATH", "PYTHONHOME", "PYTHONSAFEPATH"):
            env.pop(name, None)
        env["VIRTUAL_ENV"] = str(self.venv)
        env["PATH"] = f"{self.bin}{os.pathsep}{env.get('PATH', '')}"
        return env


_installed: Installed | None = None


def _run(args: list[str | Path], cwd: Path, what: str) -> None:
    done = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=clean_env(PIP_DISABLE_PIP_VERSION_CHECK="1"),
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT,
        check=False,
    )
    if done.returncode != 0:
        raise AssertionError(
            f"{what} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )


def installed_wheel(factory: pytest.TempPathFactory) -> Installed:
    """`python -m build` (the sdist, then the wheel from the sdist), then a fresh venv with the wheel."""
    global _installed
    if _installed is not None:
        return _installed
    base = factory.mktemp("packaging")
    dist = base / "dist"
    _run([sys.executable, "-m", "build", "--outdir", dist, REPO], base, "python -m build")
    sdists, wheels = sorted(dist.glob("*.tar.gz")), sorted(dist.glob("*.whl"))
    assert len(sdists) == 1 and len(wheels) == 1, (
        f"expected one sdist and one wheel, got {sorted(dist.iterdir())}"
    )
    venv = base / "venv"
    _run([sys.executable, "-m", "venv", venv], base, "python -m venv")
    _run(
        [venv / "bin" / "python", "-m", "pip", "install", "--quiet", wheels[0]], base, "pip install the wheel"
    )
    _installed = Installed(sdist=sdists[0], wheel=wheels[0], venv=venv)
    return _installed
