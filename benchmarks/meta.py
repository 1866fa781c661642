"""What a result was measured on: when, which machine and load, which versions."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from typing import Any

from benchmarks import REPO_DIR
from benchmarks.make import make_version
from flowforge import __version__


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def commit() -> str | None:
    """The checked-out commit (with `+changes` when the tree differs from it), or None."""
    # No optional locks: `git status` must not rewrite the index while others work in the tree.
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO_DIR,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
            env=env,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO_DIR,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
            env=env,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return sha + ("+changes" if dirty else "")


def meta(**extra: Any) -> dict[str, Any]:
    """A section's metadata; call at the start and update `load_after` at the end."""
    return {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "cpus": os.cpu_count(),
        "load_before": load_average(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "flowforge": __version__,
        "commit": commit(),
        "make": make_version(),
        **extra,
    }
